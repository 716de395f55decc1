"""New mail reaches the Maildir as soon as the server reports it (issue 13, item 4)."""

from __future__ import annotations

import socket
import statistics
import threading
import time

import pytest

from tests.integration.conftest import Account, msg
from tests.integration.test_daemon import Daemon, wait_for
from tests.servers.dovecot import Dovecot, User

pytestmark = [pytest.mark.dovecot, pytest.mark.slow]

SAMPLES = 5
BOUND = 0.2
"""Seconds from the server's IDLE report to the local file, median of SAMPLES."""
SPACING = 1.0
"""Quiet time before each delivery, so that each one is isolated (see the docstring)."""


class IdleObserver(threading.Thread):
    """A second IMAP client in IDLE on INBOX: notes when the server reports each new message."""

    def __init__(self, server: Dovecot, user: User) -> None:
        super().__init__(daemon=True)
        self.sock = socket.create_connection((server.host, server.imap_port), timeout=30)
        self.reader = self.sock.makefile("rb")
        self.user = user
        self.exists: list[float] = []
        self.idling = threading.Event()

    def _command(self, tag: bytes, line: bytes) -> None:
        self.sock.sendall(tag + b" " + line + b"\r\n")
        while not self.reader.readline().startswith(tag + b" "):
            pass

    def run(self) -> None:
        self.reader.readline()  # greeting
        self._command(b"a", f'LOGIN "{self.user.name}" "{self.user.password}"'.encode())
        self._command(b"b", b"SELECT INBOX")
        self.sock.settimeout(None)
        self.sock.sendall(b"c IDLE\r\n")
        for line in self.reader:
            if line.startswith(b"+"):
                self.idling.set()
            elif line.endswith(b"EXISTS\r\n"):
                self.exists.append(time.monotonic())

    def close(self) -> None:
        self.sock.close()


def test_an_isolated_delivery_is_fetched_as_soon_as_the_server_reports_it(
    account: Account, dovecot: Dovecot, mail_user: User, tmp_path
) -> None:
    """Median of SAMPLES isolated LMTP deliveries, from the server's IDLE report to the file.

    Why not from the delivery: Dovecot itself holds every IDLE notification for 0.5 s after
    the first change it sees (``NOTIFY_DELAY_MSECS`` in ``lib-storage/mailbox-watch.c``, not
    configurable), to group changes. Measured here, an independent IDLE client gets EXISTS
    0.50-0.51 s after LMTP's reply, every time; that is the "fixed wait" of issue 13, and no
    IDLE client can beat it. What syncd controls is what follows: the IDLE thread's report,
    the worker's wake-up, SELECT, FETCH and the file. That is measured from the moment a
    second IDLE connection (this test's own) receives the same EXISTS.

    Isolated: each delivery comes SPACING seconds after the previous file appeared, longer
    than the local debounce (syncd's own new file is a local change) plus Dovecot's 0.5 s
    grouping, so neither a pending local debounce nor a server timer started by the previous
    round can shorten or lengthen it. (Back-to-back deliveries ride on such a timer, which
    is why they used to look ten times faster.)

    The bound: syncd's share was 10-30 ms per delivery on a loaded 2-core machine; 0.2 s
    leaves room for a slow sample or two (the median of 5 ignores two outliers), yet any
    fixed wait of its own fails it: the local debounce (0.25 s) applied to server changes,
    a sleep before the fetch, or an IDLE check that only looked every 0.5 s.
    """
    observer = IdleObserver(dovecot, mail_user)
    observer.start()
    daemon = Daemon(account, tmp_path)
    try:
        daemon.wait_message("READY=1")
        assert observer.idling.wait(10), "the observer's IDLE did not start"
        status = account.state_dir / "daemon.json"
        assert wait_for(lambda: status.exists() and '"INBOX": true' in status.read_text()), (
            daemon.text()
        )
        files: set[str] = set()
        shares: list[float] = []
        totals: list[float] = []
        for i in range(SAMPLES):
            time.sleep(SPACING)  # the scenario's spacing, not a synchronization
            seen = len(observer.exists)
            dovecot.deliver(mail_user, msg(100 + i, subject="isolated"))
            delivered = time.monotonic()

            def new_file(before: set[str] = files) -> set[str]:
                return {p.name for p in account.local_files()} - before

            arrived = wait_for(new_file, timeout=10, step=0.002)
            at = time.monotonic()
            assert arrived, f"delivery {i} never reached the Maildir\n{daemon.text()}"
            files |= arrived
            assert wait_for(lambda n=seen: len(observer.exists) > n, timeout=10)
            shares.append(at - observer.exists[seen])
            totals.append(at - delivered)
        share = statistics.median(shares)
        detail = (
            f"server report -> file {[round(s, 3) for s in shares]}, "
            f"delivery -> file {[round(t, 3) for t in totals]}"
        )
        assert share < BOUND, f"median {share:.3f} s: {detail}\n{daemon.text()}"
    finally:
        daemon.stop()
        observer.close()
