"""Kill a real `syncd sync` after every state commit in turn; the next run must converge.

Uses the test-only hook SYNCD_TEST_STOP_AFTER_COMMITS (see syncd/state.py): the process
SIGKILLs itself right after its N-th commit. For every N until a run completes, the
killed run is followed by a normal one, and the result must equal an uninterrupted sync:
the same messages with the same flags on both sides, nothing lost, nothing duplicated,
and no stray file left in tmp/.
"""

from __future__ import annotations

import signal
from collections import Counter

import pytest

from tests.integration.conftest import Account, msg

pytestmark = [pytest.mark.dovecot, pytest.mark.crash, pytest.mark.slow]


def lf(raw: bytes) -> bytes:
    return raw.replace(b"\r\n", b"\n")


def prepare(account: Account) -> None:
    """A synced account, then changes on both sides waiting for the next sync."""
    server, user = account.server, account.user
    for i in range(12):
        server.append(user, "INBOX", msg(i), flags=(b"\\Seen",) if i % 3 == 0 else ())
    server.create_folder(user, "Archive")
    for i in range(12, 16):
        server.append(user, "Archive", msg(i))
    account.sync()
    # Server side: new mail, flags, an expunge.
    for i in range(100, 106):
        server.append(user, "INBOX", msg(i))
    with server.imap(user) as c:
        c.select_folder("INBOX")
        c.add_flags([2, 3], [b"\\Flagged"])
        c.delete_messages([4])
        c.uid_expunge([4])
    server.create_folder(user, "Projects")
    server.append(user, "Projects", msg(200))
    # Local side: new files, a flag change, a delete, a move, a new folder.
    inbox = account.maildir / "INBOX"
    for i in range(300, 304):
        (inbox / "cur" / f"17000000{i}.M1P1.host:2,S").write_bytes(lf(msg(i)))
    files = sorted(account.local_files("INBOX"), key=lambda p: p.read_bytes())
    by_body = {p.read_bytes(): p for p in files}
    p5 = by_body[lf(msg(5))]
    p5.rename(p5.parent.parent / "cur" / (p5.name.split(":")[0] + ":2,RS"))
    by_body[lf(msg(6))].unlink()
    p7 = by_body[lf(msg(7))]
    p7.rename(account.maildir / "Archive" / "cur" / (p7.name.split(":")[0] + ":2,S"))
    new = account.maildir / "Local"
    for sub in ("cur", "new", "tmp"):
        (new / sub).mkdir(parents=True)
    (new / "cur" / "1.M1.h:2,S").write_bytes(lf(msg(400)))


def outcome(account: Account) -> dict[str, tuple[Counter, Counter]]:
    """Per folder: (remote body+flags multiset, local body+flags multiset)."""
    names = ["INBOX", "Archive", "Projects", "Local"]
    out = {}
    for name in names:
        remote = Counter(
            (body, frozenset(f.decode() for f in flags))
            for body, flags in account.remote_messages(name).values()
        )
        local = Counter(account.local_messages(name).items())
        out[name] = (remote, local)
    return out


def test_kill_after_every_commit_converges(dovecot, tmp_path):
    reference = Account(dovecot, dovecot.add_user(), tmp_path / "ref")
    reference.root.mkdir()
    prepare(reference)
    reference.sync()
    expected = outcome(reference)
    for name, (remote, local) in expected.items():
        assert sum(remote.values()) == sum(local.values()), name

    n = 1
    while True:
        acct = Account(dovecot, dovecot.add_user(), tmp_path / f"n{n}")
        acct.root.mkdir()
        prepare(acct)
        killed = acct.spawn("sync", env={"SYNCD_TEST_STOP_AFTER_COMMITS": str(n)})
        if killed.returncode != -signal.SIGKILL:
            assert killed.returncode == 0, killed.stderr
            break
        acct.sync()
        got = outcome(acct)
        for name in expected:
            # Message bodies and counts must match exactly; with a crash in the middle
            # the flags also converge to the same values.
            assert got[name] == expected[name], f"stop after {n} commits: folder {name}"
        for tmp in acct.maildir.rglob("tmp"):
            assert list(tmp.iterdir()) == [], f"stray files in {tmp} after stop at {n}"
        n += 1
        assert n < 200, "the sync never finished"
    assert n > 5  # the scenario really has many steps to cut
