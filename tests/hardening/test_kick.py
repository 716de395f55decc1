"""The daemon's connections belong to their threads; kicks and drops only ask them to reconnect.

A kick (resume from suspend, SIGUSR1) and a request (an IDLE change, a file change) come from
other threads than the account worker's. They must return at once even when the worker is
stuck in a command on a dead link: they set a flag and at most shut the worker's socket
down, and the worker reconnects by itself. And a connection that succeeded ends a series of
failures, so routine drops (a server that closes IDLE sessions, NAT timeouts) are followed
by a prompt reconnect, not by a backoff that grows until push decays into polling.

All against the real Dovecot, through the fault proxy; the times asserted are generous
bounds that only a blocking call or a growing backoff can exceed.
"""

from __future__ import annotations

import threading
import time
from collections import Counter
from collections.abc import Callable
from pathlib import Path

import pytest

from syncd.config import load_config
from syncd.daemon.supervisor import AccountWorker
from tests.hardening import Rig, lf, message, wait_for
from tests.hardening.faultproxy import C2S, S2C, FaultProxy
from tests.integration.test_daemon import Daemon
from tests.servers.dovecot import Dovecot, User

MARK = b"<<STALL-HERE>>"
LINK_TIMEOUT = 60.0
"""The account's ``timeout:``: longer than the whole test, so only a kick can end a stall."""
PROMPT = 2.0
"""kick() and request() do no I/O: they return in microseconds; 2 s is a blocked call."""


def _in_thread(call: Callable[[], None]) -> threading.Event:
    """Start ``call`` in a thread of its own; the event is set when it has returned."""
    done = threading.Event()

    def run() -> None:
        call()
        done.set()

    threading.Thread(target=run, daemon=True).start()
    return done


@pytest.mark.dovecot
def test_kick_and_request_return_at_once_while_the_worker_is_stuck_mid_append(
    dovecot: Dovecot, mail_user: User, tmp_path: Path
) -> None:
    with FaultProxy(dovecot.imap_port) as proxy:
        rig = Rig(dovecot, mail_user, tmp_path, port=proxy.port, timeout=LINK_TIMEOUT)
        config = load_config(rig.write_config())
        (account,) = config.accounts
        worker = AccountWorker(config, account)  # with its IDLE watcher on INBOX
        worker.start()
        try:
            assert wait_for(lambda: worker.status.last_sync is not None, timeout=20)
            assert wait_for(lambda: worker.idlers and all(i.connected for i in worker.idlers))
            raw = lf(message(1, body=MARK.decode(), size=100_000))
            cur = rig.folder_path() / "cur"
            cur.mkdir(parents=True, exist_ok=True)
            (cur / "1700000000.M1P1.local:2,S").write_bytes(raw)
            proxy.stall(when=MARK, direction=C2S)
            worker.request("INBOX")
            assert wait_for(proxy.fired.is_set, timeout=20), "the APPEND never started"
            # The worker is now inside its APPEND on a link that passes nothing, for longer
            # than the test lasts (timeout: 60).
            before = proxy.accepted
            start = time.monotonic()
            kicked = _in_thread(worker.kick)  # as after a resume
            requested = _in_thread(lambda: worker.request("INBOX"))  # as the IDLE watcher
            for done in (kicked, requested):
                done.wait(max(0.0, start + PROMPT - time.monotonic()))
            blocked = [n for n, e in (("kick", kicked), ("request", requested)) if not e.is_set()]
            assert not blocked, f"{' and '.join(blocked)} still blocked after {PROMPT} s"
            # Both connections, the worker's and the IDLE watcher's, are re-made while the
            # old link is still stalled: the kick reached the threads that own them.
            assert wait_for(lambda: proxy.accepted >= before + 2, timeout=10), (
                f"{proxy.accepted - before} new connection(s) after the kick"
            )
            # The network comes back (what the stall held is lost with the old links).
            proxy.cut()
            proxy.pass_()
            assert wait_for(lambda: rig.remote_bag() == Counter([raw]), timeout=30), (
                rig.remote_bag()
            )
            assert wait_for(lambda: all(i.connected for i in worker.idlers), timeout=15)
        finally:
            proxy.cut()  # first: a kick of a broken build, blocked on the link, must end
            worker.stop()
            worker.join(timeout=15)
        assert not worker.is_alive()
    assert rig.local_bag() == Counter([raw])
    assert rig.remote_bag() == Counter([raw]), "uploaded once, not twice"


DROPS = 10
"""Sessions dropped in a row, each after its connection succeeded. A backoff that keeps
growing waits 0.5 * (2**DROPS - 1) s in total at least; one that restarts, about 1 s each."""
DROPS_WITHIN = 45.0


@pytest.mark.dovecot
@pytest.mark.slow
def test_idle_reconnects_promptly_after_every_routine_drop(
    dovecot: Dovecot, mail_user: User, tmp_path: Path
) -> None:
    """The server closes every IDLE session as soon as it is idling; after DROPS of those,
    a new message is still pushed within seconds."""
    with FaultProxy(dovecot.imap_port) as proxy:
        rig = Rig(
            dovecot,
            mail_user,
            tmp_path / "acct",
            port=proxy.port,
            imap_extra="      poll_interval: 3600\n",  # only IDLE can bring mail in time
        )
        proxy.drop(when=b"+ idling", direction=S2C, repeat=True)
        d = Daemon(rig, tmp_path)  # type: ignore[arg-type]  # duck-typed: write_config, config
        try:
            d.wait_message("READY=1")
            assert wait_for(lambda: proxy.fired_count >= DROPS, timeout=DROPS_WITHIN), (
                f"only {proxy.fired_count} IDLE sessions in {DROPS_WITHIN} s\n{d.text()}"
            )
            # The server stops dropping: the watcher is idling again within seconds (a
            # backoff grown by DROPS failures would wait 150-300 s here)...
            proxy.delay(0.0, when=b"+ idling", direction=S2C)  # only notes it passing
            assert wait_for(proxy.fired.is_set, timeout=10), d.text()
            # ...and pushes new mail at once (poll_interval is an hour).
            for i in (1, 2):
                stored = dovecot.deliver(mail_user, message(i))
                arrived = wait_for(lambda s=stored: lf(s) in rig.local_bag(), timeout=10)
                assert arrived, d.text()
        finally:
            assert d.stop() == 0
    assert "Traceback" not in d.text()


@pytest.mark.dovecot
@pytest.mark.slow
def test_worker_retries_promptly_when_its_connections_keep_dropping_mid_sync(
    dovecot: Dovecot, mail_user: User, tmp_path: Path
) -> None:
    """Each of the worker's sessions logs in, then is dropped at its first LIST: a failure
    after a successful connection starts the backoff over, so once the link heals the
    pending change goes out at once, not minutes later."""
    with FaultProxy(dovecot.imap_port) as proxy:
        rig = Rig(
            dovecot,
            mail_user,
            tmp_path / "acct",
            port=proxy.port,
            imap_extra="      idle: []\n      poll_interval: 3600\n",
        )
        rig.ok("sync")
        raw = lf(message(7))
        cur = rig.folder_path() / "cur"
        cur.mkdir(parents=True, exist_ok=True)
        (cur / "1700000000.M7P1.local:2,S").write_bytes(raw)
        proxy.drop(when=b' LIST "', direction=C2S, repeat=True)
        d = Daemon(rig, tmp_path)  # type: ignore[arg-type]  # duck-typed: write_config, config
        try:
            d.wait_message("READY=1")
            assert wait_for(lambda: proxy.fired_count >= DROPS, timeout=DROPS_WITHIN), (
                f"only {proxy.fired_count} sync attempts in {DROPS_WITHIN} s\n{d.text()}"
            )
            assert rig.remote_bag() == Counter()
            proxy.pass_()
            assert wait_for(lambda: rig.remote_bag() == Counter([raw]), timeout=10), d.text()
        finally:
            assert d.stop() == 0
    assert "Traceback" not in d.text()
