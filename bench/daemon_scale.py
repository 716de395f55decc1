"""The running daemon's cost per event as the mailbox grows (issue 13, item 6).

    .venv/bin/python -m bench.daemon_scale                         # INBOX of 1 000 messages
    .venv/bin/python -m bench.daemon_scale --sizes 1000,100000     # and of 100 000 (~5 min more)

Per size: a private loopback Dovecot user with one INBOX of that many small messages (filled
once by MULTIAPPEND), an initial ``syncd sync``, then ``syncd run`` (the snapshot install of
the benchmark, IDLE on INBOX). Then, one at a time with quiet time between them:

- **new mail**: a message delivered by LMTP, timed from LMTP's reply to the file in the
  Maildir; a second IMAP client in IDLE on INBOX notes when the server reports it, which
  splits the time into the server's part (Dovecot holds IDLE notifications for 0.5 s) and
  syncd's part (from the server's EXISTS to the file);
- **local flag**: a file in ``cur/`` renamed to add ``F`` (as a mail reader flags a message),
  timed until the server shows ``\\Flagged`` (another client polling every 10 ms).

Each event starts once the daemon has used no CPU for ``--settle`` seconds, so events are
isolated. The daemon's CPU per event is read from ``/proc/PID/stat`` (user + system) from just
before the event until it is quiet again, so the work the event causes later (syncd sees its
own new file as a local change and syncs the folder once more) is counted; the daemon's idle
CPU over the same time is subtracted. Prints one JSON object.
"""

from __future__ import annotations

import argparse
import json
import os
import socket
import statistics
import subprocess
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

from bench import anchors, measure
from bench.server import BenchServer
from tests.servers.corpus import make_corpus
from tests.servers.dovecot import Dovecot, User


class IdleObserver(threading.Thread):
    """A second client in IDLE on INBOX: the time of each EXISTS the server sends."""

    def __init__(self, server: Dovecot, user: User) -> None:
        super().__init__(daemon=True)
        self.sock = socket.create_connection((server.host, server.imap_port), timeout=60)
        self.reader = self.sock.makefile("rb")
        self.user = user
        self.exists: list[float] = []
        self.idling = threading.Event()

    def _command(self, tag: bytes, line: bytes) -> None:
        self.sock.sendall(tag + b" " + line + b"\r\n")
        while not self.reader.readline().startswith(tag + b" "):
            pass

    def run(self) -> None:
        self.reader.readline()
        self._command(b"a", f'LOGIN "{self.user.name}" "{self.user.password}"'.encode())
        self._command(b"b", b"EXAMINE INBOX")
        self.sock.settimeout(None)
        self.sock.sendall(b"c IDLE\r\n")
        for line in self.reader:
            if line.startswith(b"+"):
                self.idling.set()
            elif line.endswith(b"EXISTS\r\n"):
                self.exists.append(time.monotonic())


def cpu_of(pid: int) -> float:
    fields = measure._stat_fields(pid)
    return 0.0 if fields is None else (int(fields[11]) + int(fields[12])) / measure._TICK


def quiet(pid: int, *, still: float, timeout: float = 60.0) -> None:
    """Wait until the daemon has used no CPU for ``still`` seconds (its work is done)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        before = cpu_of(pid)
        time.sleep(still)
        if cpu_of(pid) == before:
            return


def poll(cond: Any, timeout: float = 30.0, every: float = 0.002) -> float | None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if cond():
            return time.monotonic()
        time.sleep(every)
    return None


def names(inbox: Path) -> set[str]:
    return {n for sub in ("new", "cur") for n in os.listdir(inbox / sub)}


def one_size(size: int, work: Path, events: int, settle: float) -> dict[str, Any]:
    out: dict[str, Any] = {"messages": size}
    with BenchServer(work / "server") as srv:
        t0 = time.perf_counter()
        srv.load(make_corpus(size, ["INBOX"], seed=13, big_share=0.0, size_class="tiny"))
        out["fill_s"] = round(time.perf_counter() - t0, 1)
        user = srv.clone()
        root = work / "syncd"
        root.mkdir(parents=True)
        (root / "pw").write_text(user.password + "\n")
        config = root / "config.yaml"
        config.write_text(
            f"""state_dir: {root / "state"}
accounts:
  bench:
    maildir: {root / "Mail"}
    imap:
      host: 127.0.0.1
      port: {srv.dovecot.imap_port}
      tls: none
      username: {user.name}
      password_command: cat {root / "pw"}
      idle: [INBOX]
"""
        )
        first = measure.run([str(anchors.SYNCD), "sync", "-q", "-c", str(config)])
        if first.rc != 0:
            raise RuntimeError(f"initial sync failed: {first.stderr[-500:]}")
        out["initial_sync"] = {"wall_s": round(first.wall, 2), "peak_rss_mb": first.maxrss_mb}
        observer = IdleObserver(srv.dovecot, user)
        observer.start()
        with (root / "daemon.log").open("wb") as log:
            proc = subprocess.Popen(
                [str(anchors.SYNCD), "run", "-c", str(config)], stdout=log, stderr=log
            )
        try:
            status = root / "state" / "daemon.json"
            ready = poll(lambda: status.exists() and '"INBOX": true' in status.read_text(), 120)
            if ready is None or not observer.idling.wait(30):
                raise RuntimeError("the daemon or the observer did not reach IDLE")
            time.sleep(settle * 2)  # the first sync's echo and Dovecot's timers run out
            c0, w0 = cpu_of(proc.pid), time.monotonic()
            time.sleep(settle * 2)
            idle_rate = (cpu_of(proc.pid) - c0) / (time.monotonic() - w0)
            out["daemon_rss_mb_at_rest"] = _rss_mb(proc.pid)
            out["idle_cpu_per_s"] = idle_rate
            out["new_mail"] = _new_mail(srv, user, root, proc.pid, observer, events, settle)
            out["local_flag"] = _local_flag(srv, user, root, proc.pid, events, settle)
            for kind in ("new_mail", "local_flag"):
                for e in out[kind]["events"]:
                    e["cpu_s"] = max(0.0, e.pop("cpu_window_s") - idle_rate * e.pop("window_s"))
                _summarise(out[kind])
        finally:
            proc.terminate()
            proc.wait(30)
            observer.sock.close()
    return out


def _rss_mb(pid: int) -> float | None:
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return round(int(line.split()[1]) / 1024, 1)
    except OSError:
        pass
    return None


def _new_mail(
    srv: BenchServer,
    user: User,
    root: Path,
    pid: int,
    observer: IdleObserver,
    n: int,
    settle: float,
) -> dict[str, Any]:
    inbox = root / "Mail" / "INBOX"
    events = []
    for i in range(n):
        quiet(pid, still=settle)
        before, seen = names(inbox), len(observer.exists)
        raw = (
            f"From: bench@example.org\r\nTo: you@example.org\r\nSubject: event {i}\r\n"
            f"Message-ID: <event{i}.{time.time_ns()}@bench>\r\n\r\nnew mail {i}\r\n"
        ).encode()
        c0, w0 = cpu_of(pid), time.monotonic()
        srv.dovecot.deliver(user, raw)
        t0 = time.monotonic()
        t_file = poll(lambda before=before: bool(names(inbox) - before))
        quiet(pid, still=settle)
        c1, w1 = cpu_of(pid), time.monotonic()
        exists = observer.exists[seen] if len(observer.exists) > seen else None
        events.append(
            {
                "to_file_s": None if t_file is None else t_file - t0,
                "server_report_s": None if exists is None else exists - t0,
                "syncd_share_s": None if t_file is None or exists is None else t_file - exists,
                "cpu_window_s": c1 - c0,
                "window_s": w1 - w0,
            }
        )
    return {"events": events}


def _local_flag(
    srv: BenchServer, user: User, root: Path, pid: int, n: int, settle: float
) -> dict[str, Any]:
    cur = root / "Mail" / "INBOX" / "cur"
    candidates = sorted(p for p in os.listdir(cur) if "F" not in p.partition(":2,")[2])[:n]
    events = []
    with srv.dovecot.imap(user) as c:
        c.select_folder("INBOX", readonly=True)
        for name in candidates:
            quiet(pid, still=settle)
            flagged_before = set(c.search(["FLAGGED"]))
            base, _, info = name.partition(":2,")
            c0, w0 = cpu_of(pid), time.monotonic()
            t0 = time.monotonic()
            (cur / name).rename(cur / f"{base}:2,{''.join(sorted(set(info) | {'F'}))}")

            def flagged(before: set[int] = flagged_before) -> bool:
                c.noop()
                return bool(set(c.search(["FLAGGED"])) - before)

            t_flag = poll(flagged, every=0.01)
            quiet(pid, still=settle)
            c1, w1 = cpu_of(pid), time.monotonic()
            events.append(
                {
                    "to_server_s": None if t_flag is None else t_flag - t0,
                    "cpu_window_s": c1 - c0,
                    "window_s": w1 - w0,
                }
            )
    return {"events": events}


def _summarise(part: dict[str, Any]) -> None:
    events = part["events"]
    for key in events[0]:
        values = [e[key] for e in events if e[key] is not None]
        if values:
            part[f"median_{key}"] = round(statistics.median(values), 4)
    part["timeouts"] = sum(1 for e in events if e.get("to_file_s", e.get("to_server_s", 0)) is None)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--sizes", default="1000", help="INBOX sizes, e.g. 1000,100000")
    parser.add_argument("--events", type=int, default=8, help="events of each kind per size")
    parser.add_argument("--settle", type=float, default=1.0, help="quiet seconds before/after each")
    parser.add_argument("--work", type=Path, help="scratch directory (default: a new temp dir)")
    args = parser.parse_args()
    work = args.work or Path(tempfile.mkdtemp(prefix="syncd-daemon-scale-"))
    measure.setup(work / "runner")
    install = anchors.prepare_syncd(work)
    result: dict[str, Any] = {"syncd_install": install, "load_before": os.getloadavg()}
    result["sizes"] = [
        one_size(int(s), work / f"n{s}", args.events, args.settle) for s in args.sizes.split(",")
    ]
    result["load_after"] = os.getloadavg()
    print(json.dumps(result, indent=1))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
