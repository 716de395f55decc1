"""The delta path: a folder unchanged locally is planned from the server's changes alone.

The proof that it is the same decision as a full sync: after each delta sync, a full
reconciliation (the folder's saved stamp and MODSEQ forgotten, so it is listed whole on
both sides) finds nothing left to do, and both sides hold the same messages and flags.
Random rounds of server changes (flags, keywords of another client, new mail, expunges),
seeded; a failure names the seed.
"""

from __future__ import annotations

import os
import random
import time
from collections import Counter
from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st

from syncd.config import AccountConfig, Config, load_config
from syncd.engine import sync_account
from syncd.engine.sync import LocalChanges, SyncReport
from syncd.model import Flag, LocalKey, Pair, Policy, Uid
from syncd.planner import plan_folder
from syncd.state import State
from tests.integration.conftest import Account, msg

pytestmark = [pytest.mark.dovecot]

FLAGS = [b"\\Seen", b"\\Flagged", b"\\Answered", b"\\Draft"]


def _settle(account: Account, folder: str = "INBOX") -> None:
    """Make the folder's directories look changed long ago (as they would be a few seconds
    later), so the stamp the next sync saves is trusted."""
    old = time.time() - 10
    for sub in ("new", "cur"):
        os.utime(account.maildir / folder / sub, (old, old))


def _sync(account: Account) -> SyncReport:
    cfg = load_config(account.write_config())
    password = account.user.password  # type: ignore[attr-defined]
    report = sync_account(cfg.accounts[0], cfg.state_dir, lambda: password)
    assert report.ok, report
    return report


def _forget_delta_basis(account: Account, folder: str) -> None:
    with State.for_account(account.state_dir, "acct") as state:
        state.update_folder(folder, local_stamp=None, highestmodseq=None)


def _sides(account: Account) -> tuple[dict[bytes, frozenset[str]], ...]:
    return _sides_of(account, "INBOX")


def test_delta_sync_decides_as_a_full_sync_would(account: Account) -> None:
    seed = int(os.environ.get("SYNCD_DELTA_SEED", "7"))
    rng = random.Random(seed)
    server, user = account.server, account.user
    server.fill(
        user, {"INBOX": [(msg(i), rng.sample(FLAGS, rng.randint(0, 2))) for i in range(40)]}
    )  # type: ignore[attr-defined]
    _sync(account)
    _settle(account)
    _sync(account)  # saves a trusted stamp
    n = 1000
    deltas = 0
    for rnd in range(12):
        why = f"seed {seed}, round {rnd} (rerun with SYNCD_DELTA_SEED={seed})"
        with server.imap(user) as c:  # type: ignore[attr-defined]
            c.select_folder("INBOX")
            uids = c.search("ALL")
            for uid in rng.sample(uids, min(len(uids), rng.randint(0, 6))):
                flag = rng.choice([*FLAGS, b"$label1"])
                (c.add_flags if rng.random() < 0.5 else c.remove_flags)([uid], [flag])
            for _ in range(rng.randint(0, 3)):
                n += 1
                c.append("INBOX", msg(n), flags=rng.sample(FLAGS, rng.randint(0, 1)))
            gone = rng.sample(uids, min(len(uids), rng.randint(0, 2)))
            if gone:
                c.add_flags(gone, [b"\\Deleted"])
                c.uid_expunge(gone)
        report = _sync(account)
        deltas += report.folders["INBOX"].from_delta
        local, remote = _sides(account)
        assert local == remote, why
        # The full reconciliation has nothing left to do.
        _forget_delta_basis(account, "INBOX")
        check = _sync(account)
        assert not check.folders["INBOX"].changed, f"{why}: {check.folders['INBOX'].summary()}"
        _settle(account)
        _sync(account)  # trusted stamp again for the next round
    assert deltas >= 10, f"the delta path was taken in only {deltas} of 12 rounds"


# -- the planner, fed whole or with the touched pairs only ----------------------------------

_flags = st.sampled_from([Flag.NONE, Flag.S, Flag.S | Flag.F, Flag.R | Flag.S, Flag.D, Flag.F])


@given(
    base=st.dictionaries(st.integers(1, 60), _flags, max_size=40),
    changed=st.dictionaries(st.integers(1, 80), _flags, max_size=20),
    vanished=st.sets(st.integers(1, 60), max_size=10),
)
def test_planning_the_touched_pairs_equals_planning_the_folder(
    base: dict[int, Flag], changed: dict[int, Flag], vanished: set[int]
) -> None:
    """With the local side as the last sync left it (every file has its base flags), the
    plan from the server's delta and its pairs equals the plan from everything."""
    pairs = {Uid(u): Pair(Uid(u), LocalKey(f"k{u}"), f) for u, f in base.items()}
    vanished -= changed.keys()
    remote_all = {u: p.flags for u, p in pairs.items() if u not in vanished}
    remote_all.update({Uid(u): f for u, f in changed.items()})
    local = {p.key: p.flags for p in pairs.values()}
    full = plan_folder(remote_all, local, list(pairs.values()), Policy(), guard=False)

    touched = {Uid(u) for u in changed} | {Uid(u) for u in vanished}
    sub = {u: p for u, p in pairs.items() if u in touched}
    delta = plan_folder(
        {Uid(u): f for u, f in changed.items()},
        {p.key: p.flags for p in sub.values()},
        list(sub.values()),
        Policy(),
        guard=False,
    )
    assert sorted(map(repr, delta.actions)) == sorted(map(repr, full.actions))


def test_unchanged_local_folder_is_not_listed(
    account: Account, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Per change on the server, the folder's files are not read (no listing of cur/)."""
    server, user = account.server, account.user
    server.fill(user, {"INBOX": [(msg(i), [b"\\Seen"]) for i in range(30)]})  # type: ignore[attr-defined]
    _sync(account)
    _settle(account)
    _sync(account)
    listed: list[str] = []
    real = os.scandir

    def scandir(path: str | os.PathLike[str] = ".") -> object:
        listed.append(os.fspath(path))
        return real(path)

    with server.imap(user) as c:  # type: ignore[attr-defined]
        c.select_folder("INBOX")
        c.add_flags([3], [b"\\Flagged"])
    server.append(user, "INBOX", msg(99))  # type: ignore[attr-defined]
    monkeypatch.setattr("syncd.drivers.maildir.os.scandir", scandir)
    report = _sync(account)
    assert report.folders["INBOX"].from_delta
    assert report.folders["INBOX"].flags_local == 1 and report.folders["INBOX"].downloaded == 1
    assert not [p for p in listed if Path(p).name in ("cur", "new")], listed


# -- the daemon's path: the file watch's names in place of listings ------------------------


def _sides_of(account: Account, folder: str) -> tuple[dict[bytes, frozenset[str]], ...]:
    letters = {b"\\Draft": "D", b"\\Flagged": "F", b"\\Answered": "R", b"\\Seen": "S"}
    remote = {
        raw.replace(b"\r\n", b"\n"): frozenset(letters[f] for f in flags if f in letters)
        for raw, flags in account.server.messages(account.user, folder).values()  # type: ignore[attr-defined]
    }
    local = {}
    for path in account.local_files(folder):
        info = path.name.split(":2,", 1)[1] if ":2," in path.name else ""
        local[path.read_bytes()] = frozenset(info)
    return local, remote


class _Reader:
    """A mail reader's file operations, and the names a file watch would report for them."""

    def __init__(self, account: Account, rng: random.Random) -> None:
        self.account, self.rng = account, rng
        self.names: dict[str, set[str]] = {}
        self.made: set[bytes] = set()
        self.deleted: set[bytes] = set()

    def _saw(self, folder: str, path: Path) -> None:
        self.names.setdefault(folder, set()).add(f"{path.parent.name}/{path.name}")

    def act(self, folders: list[str], n: int) -> int:
        rng = self.rng
        for _ in range(rng.randint(1, 5)):
            folder = rng.choice(folders)
            files = self.account.local_files(folder)
            op = rng.choice(["flag", "flag", "delete", "new", "move"])
            if op == "new" or not files:
                n += 1
                base = self.account.maildir / folder
                tmp = base / "tmp" / f"{time.time_ns()}.R{n}.reader"
                tmp.write_bytes(msg(n).replace(b"\r\n", b"\n"))
                self.made.add(tmp.read_bytes())
                dest = base / "new" / tmp.name
                tmp.rename(dest)
                self._saw(folder, dest)
                continue
            path = rng.choice(files)
            key = path.name.split(":")[0]
            if op == "flag":
                flags = "".join(sorted(rng.sample("DFRS", rng.randint(0, 3))))
                dest = path.parent.parent / "cur" / f"{key}:2,{flags}"
                path.rename(dest)
                self._saw(folder, path)
                self._saw(folder, dest)
            elif op == "delete":
                self.deleted.add(path.read_bytes())
                path.unlink()
                self._saw(folder, path)
            else:
                other = rng.choice([f for f in folders if f != folder])
                dest = self.account.maildir / other / "cur" / path.name
                if ":2," not in dest.name:
                    dest = dest.with_name(dest.name + ":2,")
                path.rename(dest)
                self._saw(folder, path)
                self._saw(other, dest)
        return n

    def take(self) -> LocalChanges:
        names, self.names = self.names, {}
        return LocalChanges({f: frozenset(v) for f, v in names.items()})


def _full_check_finds_nothing(account: Account, folders: list[str], why: str) -> None:
    """A full reconciliation (stamps and MODSEQs forgotten: both sides listed whole) has
    nothing left to do in ``folders``."""
    for folder in folders:
        _forget_delta_basis(account, folder)
    check = _sync(account)
    for folder in folders:
        fr = check.folders[folder]
        assert not fr.changed, f"{why}: the full sync still did {folder}: {fr.summary()}"


def _two_folders_synced(account: Account, rng: random.Random) -> tuple[Config, AccountConfig, str]:
    """INBOX (25 messages) and Archive (10) with random flags, synced once: the config,
    the account and its password."""
    account.server.fill(  # type: ignore[attr-defined]
        account.user,
        {
            "INBOX": [(msg(i), rng.sample(FLAGS, rng.randint(0, 2))) for i in range(25)],
            "Archive": [(msg(100 + i), rng.sample(FLAGS, rng.randint(0, 2))) for i in range(10)],
        },
    )
    cfg = load_config(account.write_config())
    password: str = account.user.password  # type: ignore[attr-defined]
    assert _sync(account).ok
    return cfg, cfg.accounts[0], password


@pytest.mark.parametrize("seed", [int(os.environ.get("SYNCD_DELTA_SEED", "11")), 12, 13])
def test_watched_sync_decides_as_a_full_sync_would(account: Account, seed: int) -> None:
    """The daemon's syncs, fed the names a file watch reports and the server's changes, end
    where a full sync would: after each, a full reconciliation of both folders (nothing
    trusted: stamps and MODSEQs forgotten) has nothing left to do and the sides agree.
    Random rounds of a reader's renames, deletions, new files and moves between folders,
    and another client's flags, keywords, new mail and expunges, on one connection kept
    open as the daemon keeps it (the folder stays selected)."""
    from syncd.drivers.imap import ImapSession

    rng = random.Random(seed)
    server, user = account.server, account.user
    folders = ["INBOX", "Archive"]
    cfg, acct, password = _two_folders_synced(account, rng)
    reader = _Reader(account, rng)
    n = 1000
    session = ImapSession(acct.imap, lambda: password)  # type: ignore[arg-type]
    session.connect()
    tracked = 0
    try:
        for rnd in range(8):
            why = f"seed {seed}, round {rnd} (rerun with SYNCD_DELTA_SEED={seed})"
            n = reader.act(folders, n)
            with server.imap(user) as c:  # type: ignore[attr-defined]
                for folder in folders:
                    c.select_folder(folder)
                    uids = c.search("ALL")
                    for uid in rng.sample(uids, min(len(uids), rng.randint(0, 3))):
                        flag = rng.choice([*FLAGS, b"$label1"])
                        (c.add_flags if rng.random() < 0.5 else c.remove_flags)([uid], [flag])
                    if rng.random() < 0.5:
                        n += 1
                        c.append(folder, msg(n), flags=rng.sample(FLAGS, rng.randint(0, 1)))
                    gone = rng.sample(uids, min(len(uids), rng.randint(0, 1)))
                    if gone:
                        c.add_flags(gone, [b"\\Deleted"])
                        c.uid_expunge(gone)
            watched = reader.take()
            report = sync_account(
                acct, cfg.state_dir, lambda: password, session=session, watched=watched
            )
            assert report.ok, f"{why}: {report}"
            tracked += sum(f.from_delta for f in report.folders.values())
            for folder in folders:
                local, remote = _sides_of(account, folder)
                assert local == remote, f"{why}: {folder}"
            _full_check_finds_nothing(account, folders, why)
            # The check saved no MODSEQ the watched path could start from mid-way: the next
            # round's sync lists the server side once, then goes on from changes again.
    finally:
        session.close()
    assert tracked >= 8, f"the watched path planned only {tracked} folder syncs of 16"


class _BusyReader(_Reader):
    """A reader that also works while a sync runs, as users do: what it does then reaches
    the next sync's names, and the file watch's fence (``settled``) says so."""

    def __init__(self, account: Account, rng: random.Random) -> None:
        super().__init__(account, rng)
        self.log: list[str] = []
        self.relist: set[str] = set()

    def _saw(self, folder: str, path: Path) -> None:
        super()._saw(folder, path)
        self.log.append(f"{path.parent.name}/{path.name}")

    def take(self) -> LocalChanges:
        names, self.names = self.names, {}
        relist, self.relist = frozenset(self.relist), set()
        taken = len(self.log)
        return LocalChanges(
            {f: frozenset(v) for f, v in names.items()},
            relist,
            since=lambda: self.log[taken:],
        )


@pytest.mark.parametrize("seed", [int(os.environ.get("SYNCD_BUSY_SEED", "21")), 22, 23, 24])
def test_watched_syncs_converge_while_a_reader_works(
    account: Account, seed: int, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The reader renames, deletes, adds and moves files, and another client changes flags,
    *while* the daemon's syncs look at the folders and apply their plans. Each sync gets
    what the daemon would give it: the names reported since the last one, the folders the
    last one asked to list (FolderReport.relist), and the files that changed while it
    looked. Once everyone stops, two more such syncs must bring the sides together, with
    every message kept that the reader did not delete and none twice; and a full
    reconciliation must then find nothing left: nothing may wait for the full check that
    runs only every few hours."""
    from syncd.drivers.imap import ImapSession
    from syncd.engine.sync import AccountSync

    rng = random.Random(seed)
    server, user = account.server, account.user
    folders = ["INBOX", "Archive"]
    cfg, acct, password = _two_folders_synced(account, rng)
    start = {path.read_bytes() for f in folders for path in account.local_files(f)}
    reader = _BusyReader(account, rng)
    n = 1000
    other = server.imap(user)  # type: ignore[attr-defined]

    def server_acts() -> None:
        folder = rng.choice(folders)
        other.select_folder(folder)
        uids = other.search("ALL")
        for uid in rng.sample(uids, min(len(uids), rng.randint(1, 3))):
            flag = rng.choice([*FLAGS, b"$label1"])
            (other.add_flags if rng.random() < 0.5 else other.remove_flags)([uid], [flag])

    busy = True

    def meanwhile() -> None:
        nonlocal n
        if busy and rng.random() < 0.6:
            n = reader.act(folders, n)
        if busy and rng.random() < 0.4:
            server_acts()

    real_untear, real_apply = AccountSync._untear, AccountSync._apply

    def untear(self: AccountSync, snaps: dict[str, object]) -> None:
        meanwhile()  # after the folders were looked at, before it is asked if that held
        real_untear(self, snaps)  # type: ignore[arg-type]

    def apply(self: AccountSync, snap: object, fr: object) -> None:
        meanwhile()  # between the plan and its execution
        real_apply(self, snap, fr)  # type: ignore[arg-type]

    monkeypatch.setattr(AccountSync, "_untear", untear)
    monkeypatch.setattr(AccountSync, "_apply", apply)
    session = ImapSession(acct.imap, lambda: password)  # type: ignore[arg-type]
    session.connect()

    def files() -> dict[str, set[str]]:
        return {f: {f"{p.parent.name}/{p.name}" for p in account.local_files(f)} for f in folders}

    def watched_sync(why: str) -> None:
        before = files()
        report = sync_account(
            acct, cfg.state_dir, lambda: password, session=session, watched=reader.take()
        )
        assert report.ok, f"{why}: {report}"
        reader.relist |= {f for f, fr in report.folders.items() if fr.relist}
        # The watch reports syncd's own downloads and renames to the next sync too.
        for folder, names in files().items():
            reader.names.setdefault(folder, set()).update(names ^ before[folder])

    try:
        for rnd in range(12):
            why = f"seed {seed}, round {rnd} (rerun with SYNCD_BUSY_SEED={seed})"
            n = reader.act(folders, n)
            server_acts()
            watched_sync(why)
        busy = False
        why = f"seed {seed}, once quiet (rerun with SYNCD_BUSY_SEED={seed})"
        for _ in range(2):
            watched_sync(why)
        for folder in folders:
            local, remote = _sides_of(account, folder)
            assert local == remote, f"{why}: {folder} differs"
    finally:
        session.close()
        other.logout()
    held = Counter(path.read_bytes() for folder in folders for path in account.local_files(folder))
    assert not [m for m, k in held.items() if k > 1], f"{why}: duplicated"
    kept = (start | reader.made) - reader.deleted
    assert kept <= held.keys() <= start | reader.made, f"{why}: lost {kept - held.keys()}"
    monkeypatch.undo()
    _full_check_finds_nothing(account, folders, why)
