"""Two syncd processes on one account: the kernel lock (``flock``) lets only one work.

The second one waits a little (30 s for ``sync``, 5 s for ``send``, so a sync started while
the daemon is busy still goes through), then refuses with a message saying another syncd
is busy. The lock dies with its holder: a holder killed with SIGKILL leaves a lock file on
disk but no lock, and the next run proceeds at once.
"""

from __future__ import annotations

import functools
import os
import signal
import subprocess
import sys
import threading
import time
from collections import Counter
from pathlib import Path

import pytest

from syncd.errors import LockedError
from syncd.state import AccountLock
from tests.hardening import REPO, Rig, lf, message, wait_for
from tests.servers.dovecot import Dovecot, User

pytestmark = pytest.mark.dovecot


@pytest.fixture
def rig(dovecot: Dovecot, mail_user: User, tmp_path: Path) -> Rig:
    dovecot.fill(mail_user, {"INBOX": [(message(i), ()) for i in range(5)]})
    return Rig(dovecot, mail_user, tmp_path)


@pytest.fixture
def short_wait(monkeypatch: pytest.MonkeyPatch) -> None:
    """The commands wait up to 30 s for a busy account; a test need not."""
    original = AccountLock.acquire

    @functools.wraps(original)
    def acquire(self: AccountLock, wait: float = 0.0) -> None:
        original(self, wait=min(wait, 0.3))

    monkeypatch.setattr(AccountLock, "acquire", acquire)


def test_second_sync_refuses_while_the_account_is_held(rig: Rig, short_wait: None) -> None:
    rig.state_dir.mkdir(parents=True)
    with AccountLock(rig.state_dir, "acct"):  # a real flock, as another process holds it
        r = rig.run("sync")
        assert r.code == 1, r.text
        assert "account acct is busy: another syncd process" in r.err, r.err
        assert f"(pid {os.getpid()})" in r.err
        assert "Traceback" not in r.text
        assert not rig.maildir.exists() or rig.local_bag() == Counter()
        # `send` refuses the same way; `sendmail` needs no lock and queues at once.
        rig.smtp_port, rig.smtp_user, rig.smtp_password = 1, "u", "p"
        rig.ok("sendmail", stdin=lf(message(50)))
        (rig.outbox / "new").mkdir(parents=True, exist_ok=True)
        r = rig.run("send")
        assert r.code == 1 and "is busy" in r.err, r.text
        rig.smtp_port = None
    rig.ok("sync")
    assert rig.local_bag() == rig.remote_bag() and sum(rig.local_bag().values()) == 5


def test_sync_waits_for_a_short_holder_then_proceeds(rig: Rig) -> None:
    rig.state_dir.mkdir(parents=True)
    lock = AccountLock(rig.state_dir, "acct")
    lock.acquire()
    threading.Timer(1.0, lock.release).start()
    r = rig.spawn("sync")
    assert r.code == 0, r.text
    assert r.seconds >= 0.9, "it did not wait for the holder"
    assert sum(rig.local_bag().values()) == 5


def _holder(state_dir: Path) -> subprocess.Popen[bytes]:
    code = (
        "import sys, time\n"
        "from pathlib import Path\n"
        "from syncd.state import AccountLock\n"
        "AccountLock(Path(sys.argv[1]), 'acct').acquire()\n"
        "print('locked', flush=True)\n"
        "time.sleep(120)\n"
    )
    proc = subprocess.Popen(
        [sys.executable, "-c", code, str(state_dir)], stdout=subprocess.PIPE, cwd=REPO
    )
    assert proc.stdout is not None
    assert proc.stdout.readline() == b"locked\n"
    return proc


def test_a_holder_killed_with_sigkill_leaves_no_stale_lock(rig: Rig) -> None:
    rig.state_dir.mkdir(parents=True)
    holder = _holder(rig.state_dir)
    try:
        with pytest.raises(LockedError, match="is busy"):
            AccountLock(rig.state_dir, "acct").acquire()
    finally:
        holder.send_signal(signal.SIGKILL)
        holder.wait()
        assert holder.stdout is not None
        holder.stdout.close()
    assert (rig.state_dir / "acct.lock").exists()  # the file stays; the lock does not
    r = rig.spawn("sync")
    assert r.code == 0, r.text
    assert r.seconds < 10, "the next run waited for a dead holder"
    assert sum(rig.local_bag().values()) == 5


def test_a_sync_killed_mid_run_leaves_no_stale_lock(rig: Rig) -> None:
    killed = rig.spawn("sync", env={"SYNCD_TEST_STOP_AFTER_COMMITS": "2"})
    assert killed.code == -signal.SIGKILL, killed.text
    start = time.monotonic()
    rig.ok("sync")
    assert time.monotonic() - start < 5
    assert rig.local_bag() == rig.remote_bag() and sum(rig.local_bag().values()) == 5


def test_two_syncs_started_together_never_duplicate(rig: Rig) -> None:
    local = [lf(message(60 + i)) for i in range(3)]
    rig.write_config()
    cur = rig.folder_path() / "cur"
    cur.mkdir(parents=True)
    for name in ("new", "tmp"):
        (rig.folder_path() / name).mkdir()
    for i, raw in enumerate(local):
        (cur / f"170000000{i}.M{i}P1.local:2,S").write_bytes(raw)
    argv = [sys.executable, "-m", "syncd", "sync", "-c", str(rig.config)]
    procs = [
        subprocess.Popen(argv, cwd=REPO, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
        for _ in range(2)
    ]
    results = [(p.wait(timeout=60), p.communicate()) for p in procs]
    for code, (out, err) in results:
        assert code == 0, (out + err).decode()
    expected = Counter(lf(r) for r in [message(i) for i in range(5)]) + Counter(local)
    assert rig.local_bag() == expected
    assert rig.remote_bag() == expected


@pytest.mark.slow
def test_sync_while_the_daemon_runs(rig: Rig, tmp_path: Path) -> None:
    from tests.integration.test_daemon import Daemon

    d = Daemon(rig, tmp_path)  # type: ignore[arg-type]  # duck-typed: write_config, config
    try:
        d.wait_message("READY=1")
        assert wait_for(lambda: sum(rig.local_bag().values()) == 5), d.text()
        for i in range(3):
            rig.server.deliver(rig.user, message(70 + i))
            r = rig.spawn("sync", write=False)
            assert r.code == 0, r.text
        assert d.proc.poll() is None
        assert wait_for(lambda: rig.local_bag() == rig.remote_bag()), d.text()
    finally:
        assert d.stop() == 0
    assert sum(rig.local_bag().values()) == 8
