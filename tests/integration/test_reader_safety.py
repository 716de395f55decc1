"""A mail reader and other clients change things while syncd works: nothing may be lost.

Each test here pins one defect found in review (issue 11) at the exact moment it bites:
between planning a folder and applying its plan (syncd's progress callback runs while an
earlier folder downloads), or in the middle of a directory listing. Every test failed
before its fix.
"""

from __future__ import annotations

import os
import sqlite3
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from syncd.config import load_config
from syncd.drivers.maildir import MaildirStore
from syncd.engine import sync_account
from syncd.engine.sync import SyncReport
from syncd.model import Flag
from tests.integration.conftest import Account, msg

pytestmark = [pytest.mark.dovecot]


def lf(raw: bytes) -> bytes:
    return raw.replace(b"\r\n", b"\n")


def file_of(account: Account, folder: str, raw: bytes) -> Path:
    (path,) = [p for p in account.local_files(folder) if p.read_bytes() == lf(raw)]
    return path


def sync_with_hook(account: Account, hook: Callable[[], None]) -> SyncReport:
    """One sync in which ``hook`` runs once, after every folder was planned and while the
    first one (INBOX) downloads: the moment a reader or another client can change a
    later folder under syncd's feet."""
    cfg = load_config(account.write_config())
    acct = cfg.accounts[0]
    fired: list[bool] = []

    def progress(folder: str, done: int, total: int) -> None:
        if not fired:
            fired.append(True)
            hook()

    password = account.user.password  # type: ignore[attr-defined]
    report = sync_account(acct, cfg.state_dir, lambda: password, progress=progress)
    assert fired, "the hook never ran: INBOX had nothing to download"
    return report


def server_bodies(account: Account, folder: str) -> dict[bytes, set[bytes]]:
    return {lf(raw): flags for raw, flags in account.server.messages(account.user, folder).values()}  # type: ignore[attr-defined]


def test_folder_recreated_between_planning_and_applying_is_left_alone(account: Account) -> None:
    server, user = account.server, account.user
    for i in (1, 2, 3):
        server.append(user, "Work", msg(i))  # type: ignore[attr-defined]
    account.sync()
    # Planned for Work: expunge UID 2 (deleted locally) and flag UID 3 (flagged locally).
    file_of(account, "Work", msg(2)).unlink()
    three = file_of(account, "Work", msg(3))
    three.rename(three.with_name(three.name.split(":")[0] + ":2,F"))
    server.append(user, "INBOX", msg(10))  # type: ignore[attr-defined]
    old_validity = _uidvalidity(account, "Work")

    def recreate() -> None:
        with server.imap(user) as c:  # type: ignore[attr-defined]
            c.delete_folder("Work")
            c.create_folder("Work")
            for i in (20, 21, 22):  # the same UIDs 1, 2, 3, now other messages
                c.append("Work", msg(i))
        server.set_uidvalidity(user, "Work", old_validity + 1000)  # type: ignore[attr-defined]

    report = sync_with_hook(account, recreate)

    err = report.folders["Work"].error or ""
    assert "UIDVALIDITY" in err, report.folders["Work"]
    # Neither the expunge nor the STORE reached the new messages that took those UIDs.
    assert server_bodies(account, "Work") == {lf(msg(i)): set() for i in (20, 21, 22)}
    account.sync()
    account.sync()
    # Converged with nothing lost: the new messages came down, the old ones went back up.
    assert set(server_bodies(account, "Work")) == {lf(msg(i)) for i in (1, 3, 20, 21, 22)}
    assert set(account.local_messages("Work")) == {lf(msg(i)) for i in (1, 3, 20, 21, 22)}
    assert account.sync().out == ""  # converged: a further sync has nothing to do


def test_local_flag_set_while_syncd_changes_flags_is_merged(account: Account) -> None:
    server, user = account.server, account.user
    server.append(user, "Work", msg(1), flags=(b"\\Seen",))  # type: ignore[attr-defined]
    account.sync()
    with server.imap(user) as c:  # type: ignore[attr-defined]
        c.select_folder("Work")
        c.add_flags(c.search("ALL"), [b"\\Answered"])  # syncd will rename the file to RS
    server.append(user, "INBOX", msg(10))  # type: ignore[attr-defined]
    path = file_of(account, "Work", msg(1))

    def reader_flags_it() -> None:  # mutt's "F" then "$" on the same message
        path.rename(path.with_name(path.name.split(":")[0] + ":2,FS"))

    sync_with_hook(account, reader_flags_it)
    (now,) = account.local_files("Work")
    assert now.name.endswith(":2,FRS"), now.name  # both changes, none overwritten
    account.sync()
    assert server_bodies(account, "Work") == {lf(msg(1)): {b"\\Seen", b"\\Answered", b"\\Flagged"}}


def test_message_changed_locally_while_expunged_on_server_is_kept(account: Account) -> None:
    server, user = account.server, account.user
    server.append(user, "Work", msg(1), flags=(b"\\Seen",))  # type: ignore[attr-defined]
    server.append(user, "Work", msg(2), flags=(b"\\Seen",))  # type: ignore[attr-defined]
    account.sync()
    with server.imap(user) as c:  # type: ignore[attr-defined]
        c.select_folder("Work")
        c.delete_messages(c.search("ALL"))
        c.expunge()
    server.append(user, "INBOX", msg(10))  # type: ignore[attr-defined]
    path = file_of(account, "Work", msg(1))

    def reader_flags_it() -> None:
        path.rename(path.with_name(path.name.split(":")[0] + ":2,FS"))

    sync_with_hook(account, reader_flags_it)
    # The unchanged message followed the server's deletion; the changed one survived.
    assert set(account.local_messages("Work")) == {lf(msg(1))}
    account.sync()
    assert server_bodies(account, "Work") == {lf(msg(1)): {b"\\Seen", b"\\Flagged"}}


def test_file_deleted_by_reader_mid_sync_skips_that_message_only(account: Account) -> None:
    server, user = account.server, account.user
    server.append(user, "Work", msg(1))  # type: ignore[attr-defined]
    account.sync()
    with server.imap(user) as c:  # type: ignore[attr-defined]
        c.select_folder("Work")
        c.add_flags(c.search("ALL"), [b"\\Flagged"])  # planned: rename the local file
    server.append(user, "Work", msg(2))  # type: ignore[attr-defined]
    server.append(user, "INBOX", msg(10))  # type: ignore[attr-defined]
    path = file_of(account, "Work", msg(1))

    report = sync_with_hook(account, path.unlink)

    assert report.folders["Work"].error is None, report.folders["Work"].error
    assert lf(msg(2)) in account.local_messages("Work")  # the rest of the folder was synced
    account.sync()
    # Flagged on the server after the reader deleted it: a change wins over a deletion.
    assert set(account.local_messages("Work")) == {lf(msg(1)), lf(msg(2))}
    assert set(server_bodies(account, "Work")) == {lf(msg(1)), lf(msg(2))}


# -- a directory listing that races a rename burst ------------------------------------------


def race_listings(monkeypatch: pytest.MonkeyPatch) -> list[str]:
    """From now on, every listing of a cur/ directory renames its first file (a real
    rename, as mutt's flag toggle does) and misses that file under both names, as
    readdir(3) may when a rename moves an entry behind its read position. Returns the list
    the missed keys are appended to."""
    real = os.scandir
    missed: list[str] = []

    class Listing:
        def __init__(self, path: str) -> None:
            entries = sorted(real(path), key=lambda e: e.name)
            self.entries = entries
            if entries and os.path.basename(path) == "cur":
                victim = entries[0]
                key, _, info = victim.name.partition(":")
                letters = info[2:]
                letters = letters.replace("F", "") if "F" in letters else letters + "F"
                os.rename(victim.path, os.path.join(path, f"{key}:2,{''.join(sorted(letters))}"))
                self.entries = entries[1:]
                missed.append(key)

        def __enter__(self) -> Iterator[os.DirEntry[str]]:
            return iter(self.entries)

        def __exit__(self, *exc: object) -> None:
            pass

        def __iter__(self) -> Iterator[os.DirEntry[str]]:
            return iter(self.entries)

    def scandir(path: str | os.PathLike[str] = ".") -> Listing:
        return Listing(os.fspath(path))

    monkeypatch.setattr("syncd.drivers.maildir.os.scandir", scandir)
    return missed


def test_scan_racing_a_rename_burst_expunges_nothing(
    account: Account, monkeypatch: pytest.MonkeyPatch
) -> None:
    server, user = account.server, account.user
    for i in range(5):
        server.append(user, "INBOX", msg(i), flags=(b"\\Seen",))  # type: ignore[attr-defined]
    account.sync()
    before = server_bodies(account, "INBOX")
    missed = race_listings(monkeypatch)
    account.sync()
    assert missed, "the racing listing never ran"
    # Nothing was expunged: the file was only being renamed.
    assert set(server_bodies(account, "INBOX")) == set(before)
    monkeypatch.undo()
    account.sync()
    assert set(server_bodies(account, "INBOX")) == set(before)
    assert len(account.local_files("INBOX")) == 5
    assert set(account.local_messages("INBOX")) == set(before)


def test_interrupted_first_sync_records_uidvalidity(account: Account) -> None:
    server, user = account.server, account.user
    for i in range(6):
        server.append(user, "Work", msg(i))  # type: ignore[attr-defined]
    for n in range(1, 12):  # the first commit after which Work has pairs
        killed = account.spawn("sync", env={"SYNCD_TEST_STOP_AFTER_COMMITS": str(n)})
        assert killed.returncode == -9, killed.stderr
        if _pairs(account, "Work"):
            break
    else:
        pytest.fail("no interrupted run recorded a pair")
    downloaded = set(account.local_messages("Work"))
    assert downloaded
    old = _uidvalidity(account, "Work")
    with server.imap(user) as c:  # type: ignore[attr-defined]
        c.delete_folder("Work")
        c.create_folder("Work")
        for i in range(30, 36):  # the same UIDs, other messages
            c.append("Work", msg(i))
    server.set_uidvalidity(user, "Work", old + 1000)  # type: ignore[attr-defined]
    account.sync()
    account.sync()
    local = account.local_messages("Work")
    # Every new server message came down (none was taken for an old one by its UID),
    # the old downloads went up again, and nothing is there twice.
    assert {lf(msg(i)) for i in range(30, 36)} | downloaded == set(local)
    assert len(account.local_files("Work")) == len(local)
    assert set(server_bodies(account, "Work")) == set(local)
    assert len(server.messages(user, "Work")) == len(local)  # type: ignore[attr-defined]


def _pairs(account: Account, folder: str) -> int:
    db = account.state_dir / "acct.sqlite3"
    if not db.exists():
        return 0
    con = sqlite3.connect(db)
    try:
        return int(
            con.execute("SELECT count(*) FROM pairs WHERE folder = ?", (folder,)).fetchone()[0]
        )
    except sqlite3.OperationalError:
        return 0
    finally:
        con.close()


def _uidvalidity(account: Account, folder: str) -> int:
    with account.server.imap(account.user) as c:  # type: ignore[attr-defined]
        return int(c.folder_status(folder, ["UIDVALIDITY"])[b"UIDVALIDITY"])


def test_delta_listing_finds_a_message_the_base_lacks(account: Account) -> None:
    """A UID missing from the base whose MODSEQ is older than the last sync (a download
    that was skipped) is found by the CONDSTORE path too, and paired, not duplicated."""
    server, user = account.server, account.user
    for i in range(3):
        server.append(user, "Work", msg(i))  # type: ignore[attr-defined]
    account.sync()
    con = sqlite3.connect(account.state_dir / "acct.sqlite3")
    with con:
        con.execute("DELETE FROM pairs WHERE folder = 'Work' AND uid = 2")
    con.close()
    server.append(user, "Work", msg(3))  # type: ignore[attr-defined]
    account.sync()
    account.sync()
    assert len(server.messages(user, "Work")) == 4  # type: ignore[attr-defined]
    assert len(account.local_files("Work")) == 4
    assert _pairs(account, "Work") == 4


def test_confirm_gone_believes_only_a_listing_no_rename_overlapped(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The re-check right before an expunge: a key missing from a listing that a rename
    overlapped is not confirmed gone; a really deleted one is, once the folder is quiet."""
    store = MaildirStore(tmp_path / "Mail")
    inbox = store.create_folder("INBOX")
    entries = inbox.deliver([(lf(msg(i)), Flag.S, None) for i in range(4)])
    doomed = entries[-1]
    inbox.path_of(doomed).unlink()
    keys = {e.key for e in entries}
    missed = race_listings(monkeypatch)
    assert inbox.confirm_gone(keys) == set()
    assert missed
    monkeypatch.undo()
    assert inbox.confirm_gone(keys) == {doomed.key}


def test_move_between_two_folder_listings_is_not_a_deletion_or_a_restore(
    account: Account, monkeypatch: pytest.MonkeyPatch
) -> None:
    """notmuch moves a file from Work (not listed yet) into INBOX (listed already) while
    syncd lists folder after folder, and the phone flags it meanwhile: neither listing
    shows it. It must be neither expunged nor brought back into Work: one copy, moved."""
    server, user = account.server, account.user
    server.append(user, "INBOX", msg(1), flags=(b"\\Seen",))  # type: ignore[attr-defined]
    server.append(user, "Work", msg(2), flags=(b"\\Seen",))  # type: ignore[attr-defined]
    account.sync()
    with server.imap(user) as c:  # type: ignore[attr-defined]
        c.select_folder("Work")
        c.add_flags(c.search("ALL"), [b"\\Flagged"])
    moving = file_of(account, "Work", msg(2))
    real = os.scandir
    fired: list[str] = []

    def scandir(path: str | os.PathLike[str] = ".") -> object:
        where = Path(os.fspath(path))
        if not fired and where.name == "new" and where.parent.name == "Work":
            fired.append(str(where))
            os.rename(moving, account.maildir / "INBOX" / "cur" / moving.name)
        return real(path)

    monkeypatch.setattr("syncd.drivers.maildir.os.scandir", scandir)
    account.sync()
    monkeypatch.undo()
    assert fired
    assert lf(msg(2)) in server_bodies(account, "Work")  # not expunged behind its back
    account.sync()
    account.sync()
    assert set(account.local_messages("INBOX")) == {lf(msg(1)), lf(msg(2))}
    assert account.local_messages("Work") == {}
    assert server_bodies(account, "Work") == {}
    assert server_bodies(account, "INBOX")[lf(msg(2))] == {b"\\Seen", b"\\Flagged"}
