"""Faults on the wire: a proxy between syncd and the real servers cuts, stalls, drops and delays.

Every case follows the same story. The account is prepared so that the step under test
(IMAP initial sync, incremental sync, APPEND, POP3 RETR, SMTP DATA) moves a message with a
marker in the middle of its body; the proxy is armed to fault when the marker passes, so
the fault lands inside a literal, at that step and no other. The faulted run must end
within its short ``timeout:`` with a clear error naming the server, never a traceback.
The proxy is then healed and the next run must converge to what a run without faults
gives: the same messages on both sides, each exactly once, and no stray file in tmp/.
"""

from __future__ import annotations

import contextlib
import imaplib
import os
import resource
import signal
import socket
import subprocess
import threading
import time
from collections import Counter
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from syncd.errors import AuthError, TransientError
from tests.hardening import TIMEOUT, Result, Rig, lf, message, wait_for
from tests.hardening.faultproxy import C2S, S2C, FaultProxy, Mode
from tests.integration.test_daemon import Daemon
from tests.servers.dovecot import Dovecot, User
from tests.servers.smtpd import Smtpd

MARK = b"<<FAULT-HERE>>"
BIG = 200_000
"""Size of the marked message: big enough that the marker sits deep inside a literal."""
SLACK = 2.5
"""Seconds a faulted run may take beyond its timeout (process start-up, a loaded CI box)."""


def marked(i: int) -> bytes:
    return message(i, body=MARK.decode(), size=BIG // 2)


def arm(proxy: FaultProxy, mode: str, direction: str) -> None:
    """Arm the proxy to fault with ``mode`` when the marker passes in ``direction``."""
    if mode == "cut":
        proxy.cut(when=MARK, direction=direction)
    elif mode == "stall":
        proxy.stall(when=MARK, direction=direction)
    elif mode == "drop":
        proxy.drop(when=MARK, direction=direction)
    elif mode == "delay":
        # Latency above the timeout: every chunk after the marker comes too late.
        proxy.delay(TIMEOUT * 1.5, when=MARK, direction=direction)
    else:  # pragma: no cover
        raise ValueError(mode)


def heal(proxy: FaultProxy) -> None:
    """Back to a working network; what a stall held back is thrown away, as a dead link
    would (the late-delivery case has its own tests)."""
    proxy.cut()
    proxy.pass_()


def assert_clear_failure(r: Result, server: str, *, code: int = 1) -> None:
    text = r.text
    assert r.code == code, f"exit {r.code}\n{text}"
    assert "Traceback" not in text, text
    assert server in text, f"the message does not name {server}:\n{text}"
    assert r.seconds < 2 * TIMEOUT + SLACK, f"took {r.seconds:.1f} s with timeout {TIMEOUT}"


# -- the proxy itself ----------------------------------------------------------------------


class _Echo:
    """A loopback echo server, to test the proxy without mail servers."""

    def __init__(self) -> None:
        self.sock = socket.socket()
        self.sock.bind(("127.0.0.1", 0))
        self.sock.listen()
        self.port = self.sock.getsockname()[1]
        self.thread = threading.Thread(target=self._serve, daemon=True)
        self.thread.start()

    def _serve(self) -> None:
        while True:
            try:
                conn, _ = self.sock.accept()
            except OSError:
                return

            def echo(c: socket.socket = conn) -> None:
                with c, contextlib.suppress(OSError):
                    while data := c.recv(65536):
                        c.sendall(data)

            threading.Thread(target=echo, daemon=True).start()

    def close(self) -> None:
        with contextlib.suppress(OSError):
            self.sock.shutdown(socket.SHUT_RDWR)  # wakes the accept() in the thread
        self.sock.close()
        self.thread.join(timeout=5)


@pytest.fixture
def echo() -> Iterator[_Echo]:
    server = _Echo()
    yield server
    server.close()


def _talk(port: int, data: bytes, timeout: float = 0.5) -> bytes:
    with socket.create_connection(("127.0.0.1", port), timeout=timeout) as s:
        s.sendall(data)
        got = b""
        try:
            while len(got) < len(data):
                chunk = s.recv(65536)
                if not chunk:
                    break
                got += chunk
        except (TimeoutError, ConnectionResetError):
            pass
        return got


def test_proxy_modes_switch_at_run_time(echo: _Echo) -> None:
    with FaultProxy(echo.port) as proxy:
        assert _talk(proxy.port, b"hello") == b"hello"
        proxy.drop(after=3)
        assert _talk(proxy.port, b"hello") == b"hel"
        proxy.stall()
        assert _talk(proxy.port, b"hello", timeout=0.3) == b""
        proxy.delay(0.2)
        start = time.monotonic()
        assert _talk(proxy.port, b"hello", timeout=2) == b"hello"
        assert time.monotonic() - start >= 0.2
        proxy.cut()
        assert _talk(proxy.port, b"hello") == b""
        proxy.pass_()
        payload = os.urandom(300_000) + MARK + b"tail"
        proxy.drop(when=MARK, direction=S2C)
        assert _talk(proxy.port, payload, timeout=1) == payload[:300_000]
        assert proxy.fired.is_set() and proxy.mode is Mode.PASS  # one-shot
        assert _talk(proxy.port, b"again") == b"again"
    assert proxy.open_connections == 0


def test_proxy_stall_holds_then_releases(echo: _Echo) -> None:
    with FaultProxy(echo.port) as proxy, socket.create_connection(("127.0.0.1", proxy.port)) as s:
        s.settimeout(0.3)
        s.sendall(b"one")
        assert s.recv(10) == b"one"
        proxy.stall()
        s.sendall(b"two")
        with pytest.raises(TimeoutError):
            s.recv(10)
        proxy.pass_()
        s.settimeout(2)
        assert s.recv(10) == b"two"


# -- scenarios -----------------------------------------------------------------------------


@dataclass
class Case:
    """One step under test: how to prepare it, run it, and what convergence means."""

    rig: Rig
    proxy: FaultProxy
    direction: str
    command: tuple[str, ...]
    server_name: str
    check: Callable[[], None]


def _imap_rig(dovecot: Dovecot, user: User, root: Path, proxy: FaultProxy) -> Rig:
    return Rig(dovecot, user, root, port=proxy.port)


def _converged_imap(rig: Rig, expected: Counter[bytes]) -> None:
    assert rig.remote_bag() == expected, "server side"
    assert rig.local_bag() == expected, "local side"
    assert rig.stray_tmp() == []


def initial_sync(dovecot: Dovecot, user: User, root: Path, proxy: FaultProxy) -> Case:
    raws = [message(1), message(2), marked(3), message(4), message(5)]
    dovecot.fill(user, {"INBOX": [(r, ()) for r in raws]})
    rig = _imap_rig(dovecot, user, root, proxy)
    expected = Counter(lf(r) for r in raws)
    return Case(
        rig,
        proxy,
        S2C,
        ("sync",),
        "127.0.0.1",
        lambda: _converged_imap(rig, expected),
    )


def incremental_sync(dovecot: Dovecot, user: User, root: Path, proxy: FaultProxy) -> Case:
    first = [message(1), message(2), message(3)]
    dovecot.fill(user, {"INBOX": [(r, ()) for r in first]})
    rig = _imap_rig(dovecot, user, root, proxy)
    rig.ok("sync")
    # Both sides change: new server mail (one marked), a local flag change, a local file.
    later = [message(10), marked(11), message(12)]
    dovecot.fill(user, {"INBOX": [(r, ()) for r in later]})
    (p,) = [f for f in (rig.folder_path() / "new").iterdir() if f.read_bytes() == lf(first[0])]
    p.rename(p.parent.parent / "cur" / (p.name.split(":")[0] + ":2,FS"))
    local = lf(message(20))
    (rig.folder_path() / "cur" / "1700000000.M1P1.local:2,S").write_bytes(local)
    expected = Counter(lf(r) for r in first + later) + Counter([local])

    def check() -> None:
        _converged_imap(rig, expected)
        flags = [f for body, f in dovecot.messages(user).values() if lf(body) == lf(first[0])]
        assert flags == [{b"\\Flagged", b"\\Seen"}]

    return Case(rig, proxy, S2C, ("sync",), "127.0.0.1", check)


def append(dovecot: Dovecot, user: User, root: Path, proxy: FaultProxy) -> Case:
    first = [message(1), message(2)]
    dovecot.fill(user, {"INBOX": [(r, ()) for r in first]})
    rig = _imap_rig(dovecot, user, root, proxy)
    rig.ok("sync")
    cur = rig.folder_path() / "cur"
    local = [lf(message(30)), lf(marked(31)), lf(message(32))]
    for n, raw in enumerate(local):
        (cur / f"170000000{n}.M{n}P1.local:2,S").write_bytes(raw)
    expected = Counter(lf(r) for r in first) + Counter(local)
    return Case(
        rig,
        proxy,
        C2S,
        ("sync",),
        "127.0.0.1",
        lambda: _converged_imap(rig, expected),
    )


def pop3_retr(dovecot: Dovecot, user: User, root: Path, proxy: FaultProxy) -> Case:
    raws = [message(1), message(2), marked(3), message(4)]
    dovecot.fill(user, {"INBOX": [(r, ()) for r in raws]})
    rig = Rig(dovecot, user, root, kind="pop3", port=proxy.port, leave_on_server="false")
    expected = Counter(lf(r) for r in raws)

    def check() -> None:
        assert rig.local_bag() == expected
        assert rig.remote_bag() == Counter(), "delivered mail is deleted after the clean poll"
        assert rig.stray_tmp() == []

    case = Case(rig, proxy, S2C, ("sync",), "POP3 127.0.0.1", check)
    case.after_fault = lambda: _pop3_nothing_deleted(rig, expected)  # type: ignore[attr-defined]
    return case


def _pop3_nothing_deleted(rig: Rig, expected: Counter[bytes]) -> None:
    # DELE only marks; the faulted session never reached QUIT, so the server lost nothing.
    assert rig.remote_bag() == expected
    assert not rig.local_bag() - expected, "a partial or extra message was stored"


@pytest.fixture
def smtpd() -> Iterator[Smtpd]:
    with Smtpd(tls="none") as server:
        yield server


def smtp_data(dovecot: Dovecot, user: User, root: Path, proxy: FaultProxy, smtpd: Smtpd) -> Case:
    rig = Rig(
        dovecot,
        user,
        root,
        kind="pop3",
        smtp_port=proxy.port,
        smtp_user=smtpd.user,
        smtp_password=smtpd.password,
    )
    raws = [
        lf(message(1)).replace(b"To: bob@example.org", b"To: one@example.net"),
        lf(marked(2)).replace(b"To: bob@example.org", b"To: two@example.net"),
        lf(message(3)).replace(b"To: bob@example.org", b"To: three@example.net"),
    ]
    for raw in raws:
        rig.ok("sendmail", stdin=raw)

    def check() -> None:
        got = Counter(m.lf for m in smtpd.messages())
        assert got == Counter(raws), "each message reaches the server exactly once"
        rcpts = sorted(m.rcpt_tos for m in smtpd.messages())
        assert rcpts == [("one@example.net",), ("three@example.net",), ("two@example.net",)]
        queued = [p for d in ("new", "cur") for p in (rig.outbox / d).iterdir()]
        assert queued == [] and not (rig.outbox / "failed").exists()
        assert len(list((rig.maildir / "Sent" / "cur").iterdir())) == 3
        assert rig.stray_tmp() == []

    return Case(rig, proxy, C2S, ("send",), "SMTP 127.0.0.1", check)


STEPS = {
    "initial": initial_sync,
    "incremental": incremental_sync,
    "append": append,
    "pop3-retr": pop3_retr,
}


@pytest.mark.dovecot
@pytest.mark.parametrize("mode", ["cut", "stall", "drop", "delay"])
@pytest.mark.parametrize("step", [*STEPS, "smtp-data"])
def test_fault_then_converge(
    step: str,
    mode: str,
    dovecot: Dovecot,
    mail_user: User,
    tmp_path: Path,
    request: pytest.FixtureRequest,
) -> None:
    if step == "smtp-data":
        request.applymarker(pytest.mark.smtp)
        server = request.getfixturevalue("smtpd")
        proxy = FaultProxy(server.port)
        case = smtp_data(dovecot, mail_user, tmp_path, proxy, server)
    else:
        upstream = dovecot.pop3_port if step == "pop3-retr" else dovecot.imap_port
        proxy = FaultProxy(upstream)
        case = STEPS[step](dovecot, mail_user, tmp_path, proxy)
    with proxy:
        arm(proxy, mode, case.direction)
        r = case.rig.run(*case.command)
        assert proxy.fired.is_set(), f"the fault never fired\n{r.text}"
        if step == "smtp-data":
            # CONTRACT: `send` exits 0 when only temporary failures are left; it says so.
            assert_clear_failure(r, case.server_name, code=0)
            assert "kept queued" in r.err
            assert len(list((case.rig.outbox / "new").iterdir())) >= 1
        else:
            assert_clear_failure(r, case.server_name)
        after = getattr(case, "after_fault", None)
        if after is not None:
            after()
        heal(proxy)
        r = case.rig.run(*case.command)
        assert r.code == 0, r.text
        assert "Traceback" not in r.text
        case.check()
        # And a further run has nothing left to do.
        assert case.rig.run(*case.command).code == 0
        case.check()


# -- a slow link, and answers that arrive after syncd gave up ---------------------------------


@pytest.mark.dovecot
def test_latency_below_the_timeout_still_syncs(
    dovecot: Dovecot, mail_user: User, tmp_path: Path
) -> None:
    raws = [message(1), marked(2), message(3)]
    dovecot.fill(mail_user, {"INBOX": [(r, ()) for r in raws]})
    with FaultProxy(dovecot.imap_port) as proxy:
        rig = Rig(dovecot, mail_user, tmp_path, port=proxy.port)
        proxy.delay(0.02)
        r = rig.ok("sync")
        assert r.seconds > 0.2, "the delay was not applied"
        (rig.folder_path() / "cur" / "1700000000.M1P1.local:2,S").write_bytes(lf(message(9)))
        rig.ok("sync")
    expected = Counter(lf(r) for r in [*raws, message(9)])
    assert rig.remote_bag() == expected and rig.local_bag() == expected


@pytest.mark.dovecot
def test_append_completed_after_syncd_gave_up_is_matched_not_duplicated(
    dovecot: Dovecot, mail_user: User, tmp_path: Path
) -> None:
    """The stalled APPEND reaches the server after syncd timed out: the server stores the
    message though syncd recorded nothing. The next run pairs it by header fingerprint."""
    with FaultProxy(dovecot.imap_port) as proxy:
        rig = Rig(dovecot, mail_user, tmp_path, port=proxy.port)
        rig.ok("sync")
        local = [lf(message(40)), lf(marked(41))]
        for n, raw in enumerate(local):
            (rig.folder_path() / "cur" / f"170000000{n}.M{n}P1.local:2,S").write_bytes(raw)
        proxy.stall(when=MARK, direction=C2S)
        assert_clear_failure(rig.run("sync"), "127.0.0.1")
        proxy.pass_()  # the held bytes go through now, to a server whose client is gone
        late = wait_for(lambda: sum(rig.remote_bag().values()) == 2, timeout=5)
        r = rig.ok("sync")
    assert rig.remote_bag() == Counter(local), r.text
    assert rig.local_bag() == Counter(local)
    assert late, "the held APPEND never completed: this test did not test anything"
    assert "matched" in r.out, r.out  # paired, not uploaded again


@pytest.mark.smtp
def test_lost_reply_to_data_sends_again_with_the_same_message_id(
    dovecot: Dovecot, mail_user: User, tmp_path: Path, smtpd: Smtpd
) -> None:
    """The one duplicate SMTP allows: the server took the message, its 250 never came."""
    with FaultProxy(smtpd.port) as proxy:
        rig = Rig(
            dovecot,
            mail_user,
            tmp_path,
            kind="pop3",
            smtp_port=proxy.port,
            smtp_user=smtpd.user,
            smtp_password=smtpd.password,
        )
        raw = lf(message(1))
        rig.ok("sendmail", stdin=raw)
        proxy.stall(when=b"250 2.0.0 OK: queued", direction=S2C)
        r = rig.run("send")
        assert_clear_failure(r, "SMTP 127.0.0.1", code=0)
        assert "the server may have it, and it will be sent again" in r.err, r.err
        assert len(smtpd.messages()) == 1  # the server has it; syncd cannot know
        heal(proxy)
        rig.ok("send")
    copies = smtpd.messages()
    assert len(copies) == 2 and copies[0].data == copies[1].data
    assert b"Message-ID: <h1." in copies[0].data  # receivers drop the second by this id
    assert [p for d in ("new", "cur") for p in (rig.outbox / d).iterdir()] == []


# -- the daemon: IDLE through the proxy ------------------------------------------------------


@pytest.fixture
def idle_rig(dovecot: Dovecot, mail_user: User, tmp_path: Path) -> Iterator[tuple[Rig, FaultProxy]]:
    with FaultProxy(dovecot.imap_port) as proxy:
        yield Rig(dovecot, mail_user, tmp_path / "acct", port=proxy.port), proxy


def _daemon(rig: Rig, tmp_path: Path) -> Daemon:

    return Daemon(rig, tmp_path)  # type: ignore[arg-type]  # duck-typed: write_config, config


@pytest.mark.dovecot
@pytest.mark.slow
def test_idle_stalled_then_released_delivers(
    idle_rig: tuple[Rig, FaultProxy], dovecot: Dovecot, mail_user: User, tmp_path: Path
) -> None:
    rig, proxy = idle_rig
    d = _daemon(rig, tmp_path)
    try:
        d.wait_message("READY=1")
        dovecot.deliver(mail_user, message(1))
        assert wait_for(lambda: len(rig.local_bag()) == 1), d.text()
        proxy.stall()
        stored = dovecot.deliver(mail_user, message(2))
        time.sleep(1.0)
        assert lf(stored) not in rig.local_bag(), "nothing can pass a stalled link"
        proxy.pass_()
        assert wait_for(lambda: lf(stored) in rig.local_bag(), timeout=10), d.text()
        assert d.proc.poll() is None
    finally:
        assert d.stop() == 0
    assert sum(rig.local_bag().values()) == 2 and "Traceback" not in d.text()


@pytest.mark.dovecot
@pytest.mark.slow
def test_idle_cut_reconnects_and_syncs(
    idle_rig: tuple[Rig, FaultProxy], dovecot: Dovecot, mail_user: User, tmp_path: Path
) -> None:
    rig, proxy = idle_rig
    d = _daemon(rig, tmp_path)
    try:
        d.wait_message("READY=1")
        assert wait_for(lambda: proxy.open_connections >= 2)  # worker + IDLE on INBOX
        cpu_before = _cpu_seconds(d.proc.pid)
        proxy.cut()
        accepted_before = proxy.accepted
        stored = dovecot.deliver(mail_user, message(3))
        (rig.folder_path() / "cur").mkdir(parents=True, exist_ok=True)
        local = lf(message(4))
        (rig.folder_path() / "cur" / "1700000000.M1P1.local:2,S").write_bytes(local)
        time.sleep(2.5)
        assert d.proc.poll() is None
        cpu = _cpu_seconds(d.proc.pid) - cpu_before
        assert cpu < 0.5, f"{cpu:.2f} CPU-s while cut off: a hot reconnect loop?"
        assert proxy.accepted > accepted_before, "it never tried to reconnect"
        proxy.pass_()
        assert wait_for(lambda: lf(stored) in rig.local_bag(), timeout=15), d.text()
        assert wait_for(lambda: local in rig.remote_bag(), timeout=15), d.text()
    finally:
        assert d.stop() == 0
    assert rig.local_bag() == rig.remote_bag() == Counter([lf(stored), local])
    assert "Traceback" not in d.text()


@pytest.mark.dovecot
def test_connection_lost_during_login_is_not_a_wrong_password(
    dovecot: Dovecot, mail_user: User, tmp_path: Path
) -> None:
    with FaultProxy(dovecot.imap_port) as proxy:
        rig = Rig(dovecot, mail_user, tmp_path, port=proxy.port)
        proxy.cut(when=b" LOGIN ", direction=C2S)
        r = rig.run("sync")
        assert proxy.fired.is_set()
        assert_clear_failure(r, "127.0.0.1")
        assert "connection lost during login" in r.err and "login refused" not in r.err, r.err
        proxy.pass_()
        rig.ok("sync")


@pytest.mark.dovecot
@pytest.mark.slow
def test_daemon_cut_during_login_retries_soon(
    idle_rig: tuple[Rig, FaultProxy], dovecot: Dovecot, mail_user: User, tmp_path: Path
) -> None:
    """A lost connection during LOGIN must not count as a refused password, which would
    park the account for 30 minutes."""
    rig, proxy = idle_rig
    proxy.cut(when=b" LOGIN ", direction=C2S)
    d = _daemon(rig, tmp_path)
    try:
        d.wait_message("READY=1")
        assert wait_for(proxy.fired.is_set), d.text()
        time.sleep(1.0)
        proxy.pass_()
        stored = dovecot.deliver(mail_user, message(5))
        assert wait_for(lambda: lf(stored) in rig.local_bag(), timeout=15), d.text()
        assert "1800 s" not in d.text(), d.text()
    finally:
        assert d.stop() == 0


def _cpu_seconds(pid: int) -> float:
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


# -- disk full -----------------------------------------------------------------------------


@contextlib.contextmanager
def small_tmpfs(path: Path, size: str = "1m") -> Iterator[Callable[[str], None]]:
    """A tmpfs of ``size`` mounted on ``path`` (root only; skips otherwise); yields a
    function that resizes it."""
    path.mkdir(parents=True, exist_ok=True)
    done = subprocess.run(
        ["mount", "-t", "tmpfs", "-o", f"size={size},mode=0700", "tmpfs", str(path)],
        capture_output=True,
        check=False,
    )
    if done.returncode != 0:
        pytest.skip(f"cannot mount a tmpfs here: {done.stderr.decode().strip()}")

    def resize(new: str) -> None:
        subprocess.run(["mount", "-o", f"remount,size={new}", str(path)], check=True)

    try:
        yield resize
    finally:
        subprocess.run(["umount", "-l", str(path)], check=False)


def _limit_file_size(limit: int) -> Callable[[], None]:
    def preexec() -> None:
        resource.setrlimit(resource.RLIMIT_FSIZE, (limit, limit))
        signal.signal(signal.SIGXFSZ, signal.SIG_IGN)  # write() fails with EFBIG instead

    return preexec


def _no_partial_files(rig: Rig, folder: str, allowed: Counter[bytes]) -> None:
    got = rig.local_bag(folder)
    assert not got - allowed, "a partial or unknown message is in cur/ or new/"
    assert max(got.values(), default=1) == 1, "a message is there twice"
    assert [p for p in rig.stray_tmp() if not p.name.endswith(".syncd-tmp")] == []


@pytest.mark.dovecot
@pytest.mark.parametrize("how", ["tmpfs", "fsize"])
@pytest.mark.parametrize("kind", ["imap", "pop3"])
def test_disk_full_stores_nothing_partial_and_converges(
    kind: str, how: str, dovecot: Dovecot, mail_user: User, tmp_path: Path
) -> None:
    small = [message(i) for i in range(8)]
    big = [message(100 + i, size=300_000) for i in range(6)]  # 1.8 MB: more than fits
    if kind == "imap":
        dovecot.fill(mail_user, {"INBOX": [(r, ()) for r in small], "Big": [(r, ()) for r in big]})
    else:
        dovecot.fill(mail_user, {"INBOX": [(r, ()) for r in small + big]})
    rig = Rig(dovecot, mail_user, tmp_path / "acct", kind=kind, leave_on_server="false")
    folder = "Big" if kind == "imap" else "INBOX"
    everything = Counter(lf(r) for r in small + big)
    with contextlib.ExitStack() as stack:
        if how == "tmpfs":
            resize = stack.enter_context(small_tmpfs(rig.maildir, "1m"))
            r = rig.run("sync")
        else:
            r = rig.spawn("sync", preexec=_limit_file_size(200_000))
        assert r.code == 1, r.text
        assert "Traceback" not in r.text
        words = "No space left on device" if how == "tmpfs" else "File too large"
        assert words in r.text and "cannot deliver" in r.text, r.text
        _no_partial_files(rig, folder, everything)
        if kind == "pop3":
            assert rig.remote_bag() == everything, "nothing may be deleted on the server"
        # With room again, the next run converges without duplicates.
        if how == "tmpfs":
            resize("64m")
        r = rig.ok("sync")
        if kind == "imap":
            assert rig.local_bag("INBOX") == rig.remote_bag("INBOX") == Counter(map(lf, small))
            assert rig.local_bag("Big") == rig.remote_bag("Big") == Counter(map(lf, big))
        else:
            assert rig.local_bag() == everything and rig.remote_bag() == Counter()
        assert rig.stray_tmp() == []


@pytest.mark.parametrize(
    ("cause", "kind", "words"),
    [
        (imaplib.IMAP4.abort("socket error: EOF"), TransientError, "connection lost"),
        (ConnectionResetError(104, "reset"), TransientError, "connection lost"),
        (
            imaplib.IMAP4.error("[UNAVAILABLE] Temporary authentication failure."),
            TransientError,
            "for now",
        ),
        (imaplib.IMAP4.error("[AUTHENTICATIONFAILED] failed."), AuthError, "login refused"),
    ],
)
def test_only_a_refused_password_is_an_auth_error(
    cause: BaseException, kind: type, words: str
) -> None:
    """imapclient's login() wraps every failure in LoginError; the daemon parks an account
    for 30 minutes on AuthError, so a network or server hiccup must not become one."""
    from imapclient.exceptions import LoginError

    from syncd.drivers.imap import map_errors

    with pytest.raises(kind, match=words), map_errors("IMAP 127.0.0.1:1"):
        try:
            raise cause
        except Exception as exc:
            raise LoginError(str(exc)) from exc  # what imapclient's login() does
