"""`syncd sync` against a real Dovecot: both directions, every kind of change."""

from __future__ import annotations

import datetime as dt
import os
import shutil
import time
from pathlib import Path

import pytest

from tests.integration.conftest import msg

pytestmark = pytest.mark.dovecot


def lf(raw: bytes) -> bytes:
    return raw.replace(b"\r\n", b"\n")


def rename_flags(path: Path, letters: str) -> Path:
    base = path.name.split(":", 1)[0]
    new = path.parent.parent / "cur" / f"{base}:2,{letters}"
    path.rename(new)
    return new


def test_initial_sync_downloads_everything_faithfully(account, dovecot, mail_user):
    date = dt.datetime(2025, 5, 17, 8, 30, tzinfo=dt.UTC)
    dovecot.append(mail_user, "INBOX", msg(1), flags=(b"\\Seen", b"\\Flagged"), date=date)
    dovecot.append(mail_user, "INBOX", msg(2))
    dovecot.append(mail_user, "INBOX", msg(3), flags=(b"\\Answered", b"\\Draft", b"\\Deleted"))
    dovecot.create_folder(mail_user, "Lists/python")
    dovecot.append(mail_user, "Lists/python", msg(4), flags=(b"\\Seen",))

    r = account.sync()
    assert "INBOX" in r.out and "3 downloaded" in r.out

    local = account.local_messages("INBOX")
    assert local == {lf(msg(1)): "FS", lf(msg(2)): "", lf(msg(3)): "DRT"}
    assert account.local_messages("Lists/python") == {lf(msg(4)): "S"}
    # Unseen mail lands in new/ so readers announce it; seen mail in cur/.
    subdirs = {p.read_bytes(): p.parent.name for p in account.local_files("INBOX")}
    assert subdirs[lf(msg(2))] == "new"
    assert subdirs[lf(msg(1))] == "cur"
    # The file's mtime is the server's INTERNALDATE.
    seen = next(p for p in account.local_files("INBOX") if p.read_bytes() == lf(msg(1)))
    assert abs(seen.stat().st_mtime - date.timestamp()) < 1
    # Downloading never marks mail read on the server.
    flags = {body: f for body, f in account.remote_messages("INBOX").values()}
    assert flags[lf(msg(2))] == set()


def test_second_sync_changes_nothing(account, dovecot, mail_user):
    for i in range(5):
        dovecot.append(mail_user, "INBOX", msg(i))
    account.sync()
    before = sorted(p.name for p in account.local_files())
    r = account.sync()
    assert r.out == ""
    assert sorted(p.name for p in account.local_files()) == before
    assert len(account.remote_messages()) == 5


def test_flags_both_ways(account, dovecot, mail_user):
    for i in range(3):
        dovecot.append(mail_user, "INBOX", msg(i))
    account.sync()
    files = {p.read_bytes(): p for p in account.local_files()}
    # Local: mark message 0 read and replied (a mail reader renames the file).
    rename_flags(files[lf(msg(0))], "RS")
    # Server: flag message 1.
    with dovecot.imap(mail_user) as c:
        c.select_folder("INBOX")
        uid = next(u for u, (b, _) in account.remote_messages().items() if b == lf(msg(1)))
        c.add_flags([uid], [b"\\Flagged"])
    r = account.sync()
    assert "1 flags pushed" in r.out and "1 flags pulled" in r.out
    remote = {b: f for b, f in account.remote_messages().values()}
    assert remote[lf(msg(0))] == {b"\\Seen", b"\\Answered"}
    assert account.local_messages()[lf(msg(1))] == "F"


def test_flag_conflict_merges_per_flag(account, dovecot, mail_user):
    dovecot.append(mail_user, "INBOX", msg(0), flags=(b"\\Seen",))
    account.sync()
    (path,) = account.local_files()
    rename_flags(path, "FS")  # local adds Flagged
    with dovecot.imap(mail_user) as c:  # server removes Seen, adds Answered
        c.select_folder("INBOX")
        c.remove_flags([1], [b"\\Seen"])
        c.add_flags([1], [b"\\Answered"])
    account.sync()
    assert account.local_messages() == {lf(msg(0)): "FR"}
    ((_, flags),) = account.remote_messages().values()
    assert flags == {b"\\Flagged", b"\\Answered"}


def test_deletions_both_ways(account, dovecot, mail_user):
    for i in range(4):
        dovecot.append(mail_user, "INBOX", msg(i))
    account.sync()
    files = {p.read_bytes(): p for p in account.local_files()}
    files[lf(msg(0))].unlink()
    with dovecot.imap(mail_user) as c:
        c.select_folder("INBOX")
        uid = next(u for u, (b, _) in account.remote_messages().items() if b == lf(msg(1)))
        c.delete_messages([uid])
        # Another client marked message 2 deleted but did not expunge: syncd must not
        # expunge it (UID EXPUNGE only touches what syncd deletes).
        uid2 = next(u for u, (b, _) in account.remote_messages().items() if b == lf(msg(2)))
        c.add_flags([uid2], [b"\\Deleted"])
        c.uid_expunge([uid])
    r = account.sync()
    assert "1 deleted on server" in r.out and "1 deleted locally" in r.out
    remote = {b for b, _ in account.remote_messages().values()}
    assert remote == {lf(msg(2)), lf(msg(3))}
    assert set(account.local_messages()) == {lf(msg(2)), lf(msg(3))}
    assert account.local_messages()[lf(msg(2))] == "T"


def test_delete_versus_change_keeps_the_message(account, dovecot, mail_user):
    dovecot.append(mail_user, "INBOX", msg(0))
    account.sync()
    (path,) = account.local_files()
    path.unlink()
    with dovecot.imap(mail_user) as c:
        c.select_folder("INBOX")
        c.add_flags([1], [b"\\Flagged"])
    r = account.sync()
    assert "keeping it" in r.out
    assert account.local_messages() == {lf(msg(0)): "F"}
    assert len(account.remote_messages()) == 1


def test_new_local_messages_are_uploaded_once(account, dovecot, mail_user):
    account.sync()  # creates INBOX locally
    cur = account.maildir / "INBOX" / "cur"
    (cur / "1700000000.M1P1.host:2,S").write_bytes(lf(msg(7)))
    (cur / "1700000000.M2P1.host:2,DS").write_bytes(lf(msg(8, subject="draft")))
    os.utime(cur / "1700000000.M1P1.host:2,S", (1700000000, 1700000000))
    r = account.sync()
    assert "2 uploaded" in r.out
    remote = {b: f for b, f in account.remote_messages().values()}
    assert remote == {lf(msg(7)): {b"\\Seen"}, lf(msg(8, subject="draft")): {b"\\Seen", b"\\Draft"}}
    with dovecot.imap(mail_user) as c:
        c.select_folder("INBOX")
        dates = c.fetch(c.search("ALL"), ["INTERNALDATE"])
    stamps = [d[b"INTERNALDATE"].timestamp() for d in dates.values()]
    assert 1700000000 in [round(s) for s in stamps]
    r = account.sync()
    assert len(account.remote_messages()) == 2
    assert len(account.local_files()) == 2


def test_local_move_becomes_server_move(account, dovecot, mail_user):
    for i in range(3):
        dovecot.append(mail_user, "INBOX", msg(i))
    dovecot.create_folder(mail_user, "Archive")
    account.sync()
    path = next(p for p in account.local_files() if p.read_bytes() == lf(msg(1)))
    target = account.maildir / "Archive" / "cur" / (path.name.split(":")[0] + ":2,S")
    path.rename(target)
    r = account.sync()
    assert "1 moved" in r.out
    assert "uploaded" not in r.out
    assert {b for b, _ in account.remote_messages("INBOX").values()} == {lf(msg(0)), lf(msg(2))}
    assert {b: f for b, f in account.remote_messages("Archive").values()} == {
        lf(msg(1)): {b"\\Seen"}
    }
    r = account.sync()
    assert "downloaded" not in r.out and "uploaded" not in r.out
    assert set(account.local_messages("Archive")) == {lf(msg(1))}


def test_server_move_becomes_local_rename(account, dovecot, mail_user):
    for i in range(3):
        dovecot.append(mail_user, "INBOX", msg(i))
    dovecot.create_folder(mail_user, "Archive")
    account.sync()
    key = next(p for p in account.local_files() if p.read_bytes() == lf(msg(2))).name.split(":")[0]
    with dovecot.imap(mail_user) as c:
        c.select_folder("INBOX")
        uid = next(u for u, (b, _) in account.remote_messages().items() if b == lf(msg(2)))
        c.move([uid], "Archive")
    r = account.sync()
    assert "1 moved" in r.out and "downloaded" not in r.out
    (moved,) = account.local_files("Archive")
    assert moved.name.split(":")[0] == key
    assert moved.read_bytes() == lf(msg(2))


def test_odd_folder_names_both_ways(account, dovecot, mail_user):
    names = ["Ärger", "A&B", "Lists/python", "[Gmail]/Sent Mail"]
    for i, name in enumerate(names):
        dovecot.create_folder(mail_user, name)
        dovecot.append(mail_user, name, msg(i))
    account.sync()
    for i, name in enumerate(names):
        assert set(account.local_messages(name)) == {lf(msg(i))}, name
    assert (account.maildir / "Ärger" / "new").is_dir()
    assert (account.maildir / "[Gmail]" / "Sent Mail" / "new").is_dir()
    # A folder made locally reaches the server under its Unicode name.
    local = account.maildir / "Café" / "Über"
    for sub in ("cur", "new", "tmp"):
        (local / sub).mkdir(parents=True)
    (local / "cur" / "1.M1.h:2,S").write_bytes(lf(msg(9)))
    r = account.sync()
    assert "Café/Über" in r.out
    with dovecot.imap(mail_user) as c:
        listed = {name for _, _, name in c.list_folders()}
    assert "Café/Über" in listed
    assert set(account.remote_messages("Café/Über")) and {
        b for b, _ in account.remote_messages("Café/Über").values()
    } == {lf(msg(9))}


def test_malformed_messages_round_trip_byte_exact(account, dovecot, mail_user):
    bodies = [
        b"Subject: bare LF\nX-Odd: yes\n\nline one\nline two\n",
        "Subject: 8-bit hëader ünïcode\r\nFrom: Jörg <j@example.org>\r\n\r\nkörper\r\n".encode(),
        b"Subject: no final newline\r\n\r\nno newline at end",
        b"Subject: long line\r\n\r\n" + b"x" * 100_000 + b"\r\n",
        b"Subject: big\r\nContent-Type: application/octet-stream\r\n\r\n"
        + (b"A" * 76 + b"\r\n") * (25 * 1024 * 1024 // 78),
        b"Subject: NUL \x00 inside\r\n\r\nbody with \x00 nul\r\n",
    ]
    stored = []
    for raw in bodies:
        try:
            dovecot.append(mail_user, "INBOX", raw)
            stored.append(raw)
        except Exception:  # the server may refuse NUL; then it is not ours to sync
            pass
    assert len(stored) >= 5
    server_before = {b for b, _ in account.remote_messages().values()}
    account.sync()
    local = set(account.local_messages())
    assert local == server_before  # exactly what the server serves, CRLF -> LF
    # Upload everything again into a new folder: download -> upload -> download is a fixed point.
    dst = account.maildir / "Copy"
    for sub in ("cur", "new", "tmp"):
        (dst / sub).mkdir(parents=True)
    for i, p in enumerate(account.local_files()):
        shutil.copy(p, dst / "cur" / f"copy{i}.M1.h:2,S")
    account.sync()
    assert {b for b, _ in account.remote_messages("Copy").values()} == server_before


def test_uidvalidity_change_rematches_without_duplicates(account, dovecot, mail_user):
    for i in range(5):
        dovecot.append(mail_user, "INBOX", msg(i))
    account.sync()
    names = sorted(p.name for p in account.local_files())
    dovecot.set_uidvalidity(mail_user, "INBOX", 4242)
    cur = account.maildir / "INBOX" / "cur"
    (cur / "9.M9.h:2,S").write_bytes(lf(msg(99)))  # really new local message
    r = account.sync()
    assert "UIDVALIDITY" in r.out
    assert "downloaded" not in r.out
    assert "1 uploaded" in r.out
    assert len(account.remote_messages()) == 6
    assert len(account.local_files()) == 6
    assert set(names) <= {p.name for p in account.local_files()}


def test_adopts_existing_maildir_without_copying(account, dovecot, mail_user, tmp_path):
    for i in range(10):
        dovecot.append(mail_user, "INBOX", msg(i), flags=(b"\\Seen",) if i % 2 else ())
    account.sync()
    # A migrating user: same Maildir content, no state (like one filled by mbsync).
    shutil.rmtree(account.state_dir)
    (account.maildir / ".syncd-id").unlink()
    first = account.local_files()[0]
    rename_flags(first, "FS")
    r = account.sync()
    assert "downloaded" not in r.out and "uploaded" not in r.out
    assert "10 matched" in r.out
    assert len(account.remote_messages()) == 10
    assert len(account.local_files()) == 10
    flagged = [f for _, f in account.remote_messages().values() if b"\\Flagged" in f]
    assert len(flagged) == 1


def test_mass_deletion_guard(account, dovecot, mail_user):
    for i in range(30):
        dovecot.append(mail_user, "INBOX", msg(i))
    account.sync()
    with dovecot.imap(mail_user) as c:
        c.select_folder("INBOX")
        c.delete_messages(c.search("ALL"))
        c.expunge()
    r = account.sync(expect=1)
    assert "refusing to delete 30 of 30" in r.err
    assert len(account.local_files()) == 30
    account.sync("--force")
    assert account.local_files() == []


def test_unmounted_maildir_is_refused(account, dovecot, mail_user):
    for i in range(3):
        dovecot.append(mail_user, "INBOX", msg(i))
    account.sync()
    shutil.rmtree(account.maildir)
    r = account.sync(expect=1)
    assert "mounted" in r.err
    assert len(account.remote_messages()) == 3


def test_dry_run_changes_nothing(account, dovecot, mail_user):
    for i in range(3):
        dovecot.append(mail_user, "INBOX", msg(i))
    r = account.sync("--dry-run")
    assert "would download: 3" in r.out
    assert not account.maildir.exists() or account.local_files() == []
    account.sync()
    (account.local_files()[0]).unlink()
    r = account.sync("--dry-run")
    assert "would delete on server: 1" in r.out
    assert len(account.remote_messages()) == 3


def test_maildirpp_layout(account, dovecot, mail_user):
    account.layout = "maildir++"
    dovecot.create_folder(mail_user, "Lists/python")
    dovecot.append(mail_user, "Lists/python", msg(1))
    dovecot.append(mail_user, "INBOX", msg(2))
    account.sync()
    assert (account.maildir / ".Lists.python" / "new").is_dir()
    assert (account.maildir / "new").is_dir()
    assert set(account.local_messages("Lists/python")) == {lf(msg(1))}
    assert set(account.local_messages("INBOX")) == {lf(msg(2))}


def test_folder_patterns_and_single_folder(account, dovecot, mail_user):
    for name in ("Keep", "Spam"):
        dovecot.create_folder(mail_user, name)
        dovecot.append(mail_user, name, msg(len(name)))
    account.folders = ["*", "!Spam"]
    account.sync()
    assert (account.maildir / "Keep").is_dir()
    assert not (account.maildir / "Spam").exists()
    dovecot.append(mail_user, "INBOX", msg(50))
    dovecot.append(mail_user, "Keep", msg(51))
    r = account.sync("-a", "acct", "-f", "Keep")
    assert "Keep" in r.out and "INBOX" not in r.out


def test_local_folder_deleted_removes_synced_remote_folder(account, dovecot, mail_user):
    dovecot.create_folder(mail_user, "Old")
    dovecot.append(mail_user, "Old", msg(1))
    dovecot.create_folder(mail_user, "Busy")
    dovecot.append(mail_user, "Busy", msg(2))
    account.sync()
    shutil.rmtree(account.maildir / "Old")
    shutil.rmtree(account.maildir / "Busy")
    dovecot.append(mail_user, "Busy", msg(3))  # not yet synced: Busy must survive
    r = account.sync(expect=1)
    with dovecot.imap(mail_user) as c:
        listed = {name for _, _, name in c.list_folders()}
    assert "Old" not in listed
    assert "Busy" in listed
    assert "never synced" in r.err


def test_wrong_password_is_an_auth_error(account, dovecot, mail_user):
    account.user = type(mail_user)(mail_user.name, "wrong", mail_user.maildir)
    r = account.sync(expect=1)
    assert "login refused" in r.err
    assert "wrong" not in r.err


def test_status_and_check(account, dovecot, mail_user):
    import json

    for i in range(2):
        dovecot.append(mail_user, "INBOX", msg(i))
    account.sync()
    r = account.run("status", "--json")
    assert r.code == 0
    data = json.loads(r.out)
    assert data["accounts"]["acct"]["folders"]["INBOX"]["messages"] == 2
    assert data["accounts"]["acct"]["last_error"] is None
    r = account.run("status")
    assert "INBOX" in r.out and "2 messages" in r.out
    r = account.run("check")
    assert r.code == 0, r.out + r.err
    assert "acct/imap" in r.out and "OK" in r.out
    account.user = type(mail_user)(mail_user.name, "nope", mail_user.maildir)
    r = account.run("check")
    assert r.code == 1 and "FAILED" in r.out


def test_server_changes_are_fetched_incrementally(account, dovecot, mail_user):
    for i in range(20):
        dovecot.append(mail_user, "INBOX", msg(i))
    account.sync()
    time.sleep(0.01)
    for i in range(20, 23):
        dovecot.deliver(mail_user, msg(i))
    with dovecot.imap(mail_user) as c:
        c.select_folder("INBOX")
        c.add_flags([1, 2], [b"\\Seen"])
        c.delete_messages([3])
        c.uid_expunge([3])
    r = account.sync()
    assert "3 downloaded" in r.out and "2 flags pulled" in r.out and "1 deleted locally" in r.out
    assert len(account.local_files()) == 22


def test_archiving_most_of_inbox_moves_instead_of_refusing(account, dovecot, mail_user):
    for i in range(30):
        dovecot.append(mail_user, "INBOX", msg(i))
    dovecot.create_folder(mail_user, "Archive")
    account.sync()
    archive = account.maildir / "Archive" / "cur"
    for p in account.local_files()[:25]:
        p.rename(archive / (p.name.split(":")[0] + ":2,S"))
    r = account.sync()
    assert "25 moved" in r.out and "uploaded" not in r.out
    assert len(account.remote_messages("INBOX")) == 5
    assert len(account.remote_messages("Archive")) == 25
