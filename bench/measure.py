"""Running a tool as a child process and measuring it, plus the byte-counting proxy.

``run()`` starts one process through a small launcher (``runner.c``) that forks it, reaps it with
``wait4`` and reports: wall time from the fork to the reap, CPU seconds (user + system) and peak
RSS from the rusage the kernel hands back.  On Linux that rusage covers the child *and* every
descendant it waited for, so a ``password_command``, fetchmail's MDA processes or OfflineIMAP's
helpers are included; peak RSS is the largest single process among them, not a sum.  (Why a
launcher at all: see ``runner.c``.)
"""

from __future__ import annotations

import contextlib
import itertools
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

_TICK = os.sysconf("SC_CLK_TCK")


@dataclass
class Run:
    """One measured process (or a sequence of processes, summed: see ``Run.combine``)."""

    wall: float
    user: float
    sys: float
    maxrss_kb: int
    rc: int
    argv: list[str] = field(default_factory=list)
    stderr: str = ""
    server_cpu: float | None = None
    """CPU seconds Dovecot's mail processes spent serving this run (None: not measured)."""
    processes: int = 1

    @property
    def cpu(self) -> float:
        return self.user + self.sys

    @property
    def maxrss_mb(self) -> float:
        return self.maxrss_kb / 1024

    def to_json(self) -> dict[str, Any]:
        d = asdict(self)
        d["cpu"] = self.cpu
        d["maxrss_mb"] = round(self.maxrss_mb, 2)
        d["stderr"] = self.stderr[-2000:]
        return d

    @staticmethod
    def combine(runs: Sequence[Run], wall: float) -> Run:
        """Many processes run back to back as one measurement (wall given by the caller)."""
        rc = next((r.rc for r in runs if r.rc != 0), 0)
        err = next((r.stderr for r in runs if r.rc != 0), "")
        return Run(
            wall=wall,
            user=sum(r.user for r in runs),
            sys=sum(r.sys for r in runs),
            maxrss_kb=max((r.maxrss_kb for r in runs), default=0),
            rc=rc,
            argv=runs[0].argv if runs else [],
            stderr=err,
            processes=len(runs),
        )


_launcher: list[str] = []
_scratch: Path | None = None
_counter = itertools.count()


def setup(scratch: Path) -> str:
    """Build the launcher (``runner.c``; ``runner.py`` without a C compiler); says which."""
    global _scratch
    _scratch = scratch
    scratch.mkdir(parents=True, exist_ok=True)
    here = Path(__file__).resolve().parent
    exe = scratch / "runner"
    cc = shutil.which("cc") or shutil.which("gcc")
    if cc is not None:
        done = subprocess.run(
            [cc, "-O2", "-o", str(exe), str(here / "runner.c")],
            capture_output=True,
            text=True,
            check=False,
        )
        if done.returncode == 0:
            _launcher[:] = [str(exe)]
            return "runner.c"
    _launcher[:] = [sys.executable, "-S", "-I", str(here / "runner.py")]
    return "runner.py"


def launcher_kind() -> str:
    return "runner.c" if len(_launcher) == 1 else "runner.py"


def run(
    argv: Sequence[str],
    *,
    cwd: Path | None = None,
    env: Mapping[str, str] | None = None,
    stdin: bytes | Path | None = None,
    log: Path | None = None,
    timeout: float = 3600,
) -> Run:
    """Run ``argv`` to completion through the launcher and measure it.

    Output goes to ``log`` (or is discarded).  On a timeout the whole process group is killed.
    """
    if not _launcher:
        setup(Path(tempfile.mkdtemp(prefix="bench-runner-")))
    assert _scratch is not None
    report = _scratch / f"run-{os.getpid()}-{next(_counter)}.ru"
    stdin_f: Any = subprocess.DEVNULL
    if isinstance(stdin, Path):
        stdin_f = stdin.open("rb")
    elif stdin is not None:
        stdin_f = subprocess.PIPE
    out: Any = log.open("ab") if log is not None else subprocess.DEVNULL
    try:
        t0 = time.perf_counter()
        proc = subprocess.Popen(
            [*_launcher, str(report), *argv],
            cwd=cwd,
            env=dict(env) if env is not None else None,
            stdin=stdin_f,
            stdout=out,
            stderr=out,
            start_new_session=True,  # one group: a timeout kills the tool with its launcher
        )
        if isinstance(stdin, bytes):
            assert proc.stdin is not None
            with contextlib.suppress(BrokenPipeError):
                proc.stdin.write(stdin)
            proc.stdin.close()
        try:
            rc = proc.wait(timeout)
        except subprocess.TimeoutExpired:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(proc.pid, signal.SIGKILL)
            rc = proc.wait()
        outer = time.perf_counter() - t0
    finally:
        if isinstance(stdin, Path):
            stdin_f.close()
        if log is not None:
            out.close()
    try:
        wall_s, user_s, sys_s, rss_s, status_s = report.read_text().split()
        report.unlink()
        wall, user, sys_, rss = float(wall_s), float(user_s), float(sys_s), int(rss_s)
        rc = os.waitstatus_to_exitcode(int(status_s))
    except (OSError, ValueError):  # the launcher itself failed or was killed
        wall, user, sys_, rss = outer, 0.0, 0.0, 0
        rc = rc or -1
    err = ""
    if rc != 0 and log is not None:
        err = log.read_bytes()[-4000:].decode("utf-8", "replace")
    return Run(wall, user, sys_, rss, rc, list(argv), err)


# -- Dovecot's own CPU ------------------------------------------------------------------------


def _stat_fields(pid: int) -> list[str] | None:
    try:
        raw = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    # The command name may hold spaces: split after its closing parenthesis.
    return raw[raw.rindex(")") + 2 :].split()


def _children(pid: int) -> list[int]:
    out: list[int] = []
    for task in Path(f"/proc/{pid}/task").glob("*"):
        with contextlib.suppress(OSError):
            out += [int(x) for x in (task / "children").read_text().split()]
    return out


def _comm(pid: int) -> str:
    try:
        return Path(f"/proc/{pid}/comm").read_text().strip()
    except OSError:
        return ""


class ServerCpu:
    """CPU time of a Dovecot master's finished children (its imap/pop3 mail processes).

    A mail process serves one connection and is reaped by the master when the client is gone, so
    the delta of the master's ``cutime + cstime`` across a run (taken once no mail process is
    left) is what the server spent on that run.
    """

    MAIL_PROCESSES = ("imap", "pop3")

    def __init__(self, master_pid: int | None) -> None:
        self.pid = master_pid

    def idle(self, timeout: float = 3.0) -> None:
        """Wait until no imap/pop3 process is left under the master."""
        if self.pid is None:
            return
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if not any(_comm(c) in self.MAIL_PROCESSES for c in _children(self.pid)):
                return
            time.sleep(0.01)

    def total(self) -> float | None:
        if self.pid is None:
            return None
        self.idle()
        fields = _stat_fields(self.pid)
        if fields is None:
            return None
        # Fields 16 and 17 of /proc/PID/stat (cutime, cstime); index from field 3 on.
        return (int(fields[13]) + int(fields[14])) / _TICK


# -- byte-counting proxy -----------------------------------------------------------------------


class CountingProxy:
    """A loopback TCP proxy that counts the bytes each way; one thread pair per connection.

    ``down`` counts server -> client bytes, ``up`` client -> server, over all connections since
    the last ``reset()``.
    """

    BUF = 64 * 1024

    def __init__(self, target_host: str, target_port: int) -> None:
        self.target = (target_host, target_port)
        self._listener = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        self._listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self._listener.bind(("127.0.0.1", 0))
        self._listener.listen(64)
        self.port: int = self._listener.getsockname()[1]
        self._lock = threading.Lock()
        self.down = self.up = self.connections = self._active = 0
        self._closed = False
        self._thread = threading.Thread(target=self._accept, name="proxy-accept", daemon=True)

    def __enter__(self) -> CountingProxy:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._closed = True
        with contextlib.suppress(OSError):
            self._listener.shutdown(socket.SHUT_RDWR)
        self._listener.close()

    def reset(self) -> None:
        with self._lock:
            self.down = self.up = self.connections = 0

    def _accept(self) -> None:
        while not self._closed:
            try:
                client, _ = self._listener.accept()
            except OSError:
                return
            try:
                server = socket.create_connection(self.target)
            except OSError:
                client.close()
                continue
            for s in (client, server):
                s.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            with self._lock:
                self.connections += 1
                self._active += 2
            pair = [client, server, 0]  # the sockets and how many pumps have finished
            for src, dst, down in ((server, client, True), (client, server, False)):
                threading.Thread(
                    target=self._pump, args=(src, dst, down, pair), daemon=True
                ).start()

    def _pump(self, src: socket.socket, dst: socket.socket, down: bool, pair: list[Any]) -> None:
        n = 0
        try:
            while True:
                data = src.recv(self.BUF)
                if not data:
                    break
                dst.sendall(data)
                n += len(data)
        except OSError:
            pass
        with contextlib.suppress(OSError):
            dst.shutdown(socket.SHUT_WR)  # pass the end of this direction on
        with self._lock:
            if down:
                self.down += n
            else:
                self.up += n
            self._active -= 1
            pair[2] += 1
            last = pair[2] == 2
        if last:
            pair[0].close()
            pair[1].close()

    def wait_quiet(self, timeout: float = 5.0) -> None:
        """Wait until every connection is finished both ways, so the counts are complete."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            with self._lock:
                if self._active == 0:
                    return
            time.sleep(0.01)
