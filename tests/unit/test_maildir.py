"""The Maildir driver against real files in tmp_path."""

from __future__ import annotations

import errno
import logging
import os
import re
import resource
import signal
import stat
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from syncd.drivers import maildir as md
from syncd.drivers.maildir import LocalEntry, MaildirFolder, MaildirStore
from syncd.errors import FolderError, MessageError, StateError, StoreError
from syncd.model import Flag, LocalKey, fingerprint

MSG = b"From: a@example.org\nSubject: hi\n\nbody\n"
UNIQUE = re.compile(r"^\d+\.M\d+P\d+Q\d+\.[^/:]+$")


@pytest.fixture
def store(tmp_path: Path) -> MaildirStore:
    return MaildirStore(tmp_path / "mail")


@pytest.fixture
def inbox(store: MaildirStore) -> MaildirFolder:
    return store.create_folder("INBOX")


def put(folder: MaildirFolder, subdir: str, name: str, data: bytes = MSG) -> Path:
    path = folder.path / subdir / name
    path.write_bytes(data)
    return path


def names(folder: MaildirFolder, subdir: str) -> list[str]:
    return sorted(os.listdir(folder.path / subdir))


def backdate(folder: MaildirFolder, seconds: float = 60) -> None:
    then = time.time() - seconds
    for sub in ("new", "cur"):
        os.utime(folder.path / sub, (then, then))


# -- delivery ------------------------------------------------------------------------------


def test_deliver_round_trips_bytes_exactly(inbox: MaildirFolder) -> None:
    bodies = [
        MSG,
        b"Subject: crlf inside\r\n\r\nkept as is\r\n",
        b"Subject: binary\n\n" + bytes(range(256)) * 3,
        b"Subject: no final newline\n\nend",
        b"x" * 300_000,
    ]
    entries = inbox.deliver([(b, Flag.NONE, None) for b in bodies])
    assert [inbox.read(e) for e in entries] == bodies
    scanned = inbox.scan()
    assert set(scanned) == {e.key for e in entries}
    for entry, body in zip(entries, bodies, strict=True):
        assert scanned[entry.key] == entry
        if len(body) < 256 * 1024:  # beyond that read_header() is capped
            assert fingerprint(inbox.read_header(entry)) == fingerprint(body)


def test_deliver_places_by_seen_and_sorts_letters(inbox: MaildirFolder) -> None:
    flags = [Flag.NONE, Flag.F, Flag.S, Flag.T | Flag.S | Flag.D | Flag.P, Flag.R | Flag.F]
    entries = inbox.deliver([(MSG, f, None) for f in flags])
    got = [(e.subdir, e.name.partition(":")[2], e.flags) for e in entries]
    assert got == [
        ("new", "", Flag.NONE),
        ("new", "2,F", Flag.F),
        ("cur", "2,S", Flag.S),
        ("cur", "2,DPST", Flag.T | Flag.S | Flag.D | Flag.P),
        ("new", "2,FR", Flag.R | Flag.F),
    ]
    for e in entries:
        assert UNIQUE.match(e.key), e.key
        assert e.name.startswith(e.key)
        assert inbox.path_of(e).is_file()
    assert len({e.key for e in entries}) == len(entries)
    assert names(inbox, "tmp") == []


def test_deliver_sets_mode_and_mtime(inbox: MaildirFolder) -> None:
    old_umask = os.umask(0)
    try:
        when = 1_000_000_000.0
        dated, undated = inbox.deliver([(MSG, Flag.NONE, when), (MSG, Flag.S, None)])
    finally:
        os.umask(old_umask)
    for e in (dated, undated):
        assert stat.S_IMODE(inbox.path_of(e).stat().st_mode) == 0o600
    assert inbox.mtime(dated) == when
    assert abs(inbox.mtime(undated) - time.time()) < 60


def test_deliver_escapes_hostname(inbox: MaildirFolder, monkeypatch: pytest.MonkeyPatch) -> None:
    # The host name comes from uname (socket.gethostname() returns the same node name).
    real = os.uname()
    fake = os.uname_result((real.sysname, "a/b:c", real.release, real.version, real.machine))
    monkeypatch.setattr(os, "uname", lambda: fake)
    (entry,) = inbox.deliver([(MSG, Flag.S, None)])
    assert entry.key.endswith(".a\\057b\\072c")
    assert entry.name == entry.key + ":2,S"
    assert inbox.scan()[entry.key] == entry


def test_deliver_empty_batch_is_a_no_op(inbox: MaildirFolder) -> None:
    assert inbox.deliver([]) == []


def test_deliver_without_syncfs_falls_back_to_fsync(
    inbox: MaildirFolder, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(md, "_syncfs", None)
    synced: list[int] = []
    real_fsync = os.fsync

    def counting_fsync(fd: int) -> None:
        synced.append(fd)
        real_fsync(fd)

    monkeypatch.setattr(os, "fsync", counting_fsync)
    entries = inbox.deliver([(MSG, Flag.NONE, None)] * 3)
    assert [inbox.read(e) for e in entries] == [MSG] * 3
    assert len(synced) == 3 + 1  # each file, then new/


def test_deliver_into_missing_folder_is_a_folder_error(store: MaildirStore) -> None:
    with pytest.raises(FolderError, match="does not exist"):
        store.folder("Nope").deliver([(MSG, Flag.NONE, None)])


def test_missing_tmp_is_recreated_with_a_warning(
    inbox: MaildirFolder, caplog: pytest.LogCaptureFixture
) -> None:
    (inbox.path / "tmp").rmdir()
    with caplog.at_level(logging.WARNING, logger="syncd.drivers.maildir"):
        (entry,) = inbox.deliver([(MSG, Flag.NONE, None)])
    assert (inbox.path / "tmp").is_dir()
    assert inbox.read(entry) == MSG
    assert "missing" in caplog.text


def _assert_nothing_delivered(folder: MaildirFolder) -> None:
    assert names(folder, "new") == []
    assert names(folder, "cur") == []
    if (folder.path / "tmp").is_dir():
        assert [n for n in names(folder, "tmp") if n.endswith(md.TMP_SUFFIX)] == []


def test_deliver_write_error_leaves_nothing(inbox: MaildirFolder) -> None:
    # A real failing write(2) without root tricks: RLIMIT_FSIZE makes the kernel refuse to
    # grow a file past the limit (EFBIG, as ENOSPC would) once SIGXFSZ is ignored.
    batch = [(MSG, Flag.NONE, None), (MSG, Flag.S, None), (b"x" * 200_000, Flag.NONE, None)]
    batch.append((MSG, Flag.NONE, None))
    soft, hard = resource.getrlimit(resource.RLIMIT_FSIZE)
    old_handler = signal.signal(signal.SIGXFSZ, signal.SIG_IGN)
    resource.setrlimit(resource.RLIMIT_FSIZE, (64 * 1024, hard))
    try:
        with pytest.raises(StoreError, match="cannot deliver 4 messages") as info:
            inbox.deliver(batch)
    finally:
        resource.setrlimit(resource.RLIMIT_FSIZE, (soft, hard))
        signal.signal(signal.SIGXFSZ, old_handler)
    assert isinstance(info.value.__cause__, OSError)
    assert info.value.__cause__.errno == errno.EFBIG
    _assert_nothing_delivered(inbox)
    assert inbox.scan() == {}


@pytest.mark.parametrize("breakage", ["file", "dangling-symlink"])
def test_deliver_with_unusable_tmp_raises_store_error(
    inbox: MaildirFolder, tmp_path: Path, breakage: str
) -> None:
    tmp = inbox.path / "tmp"
    tmp.rmdir()
    if breakage == "file":
        tmp.write_bytes(b"")
    else:
        tmp.symlink_to(tmp_path / "nowhere")
    with pytest.raises(StoreError):
        inbox.deliver([(MSG, Flag.NONE, None), (MSG, Flag.S, None)])
    _assert_nothing_delivered(inbox)


def test_deliver_rename_error_rolls_back_the_whole_batch(
    inbox: MaildirFolder, monkeypatch: pytest.MonkeyPatch
) -> None:
    real_rename = os.rename
    calls = 0

    def flaky_rename(*args: Any, **kwargs: Any) -> None:
        nonlocal calls
        calls += 1
        if calls == 3:
            raise OSError(errno.ENOSPC, "No space left on device")
        return real_rename(*args, **kwargs)

    monkeypatch.setattr(os, "rename", flaky_rename)
    with pytest.raises(StoreError, match="No space left on device"):
        inbox.deliver([(MSG, Flag.NONE, None), (MSG, Flag.S, None), (MSG, Flag.NONE, None)])
    monkeypatch.undo()
    _assert_nothing_delivered(inbox)


def test_clean_tmp_removes_only_syncd_leftovers(inbox: MaildirFolder) -> None:
    put(inbox, "tmp", "1.M1P1Q1.host" + md.TMP_SUFFIX)
    put(inbox, "tmp", "2.M1P1Q1.host" + md.TMP_SUFFIX)
    put(inbox, "tmp", "other-mda-writing-now")
    assert inbox.clean_tmp() == 2
    assert names(inbox, "tmp") == ["other-mda-writing-now"]
    assert inbox.clean_tmp() == 0
    (inbox.path / "tmp" / "other-mda-writing-now").unlink()
    (inbox.path / "tmp").rmdir()
    assert inbox.clean_tmp() == 0


# -- scanning ------------------------------------------------------------------------------


def test_scan_parses_info_and_keeps_unknown_letters(inbox: MaildirFolder) -> None:
    put(inbox, "new", "plain")
    put(inbox, "new", "flagged:2,F")
    put(inbox, "cur", "seen:2,RS")
    put(inbox, "cur", "kw:2,Sab")
    put(inbox, "cur", "noinfo")
    put(inbox, "cur", "experimental:1,whatever")
    put(inbox, "cur", "empty:2,")
    got = {k: (e.subdir, e.flags) for k, e in inbox.scan().items()}
    assert got == {
        "plain": ("new", Flag.NONE),
        "flagged": ("new", Flag.F),
        "seen": ("cur", Flag.R | Flag.S),
        "kw": ("cur", Flag.S),
        "noinfo": ("cur", Flag.NONE),
        "experimental": ("cur", Flag.NONE),
        "empty": ("cur", Flag.NONE),
    }


def test_scan_skips_junk_with_warnings_and_never_crashes(
    inbox: MaildirFolder, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    put(inbox, "cur", "good:2,S")
    put(inbox, "cur", "empty:2,S", b"")
    (inbox.path / "cur" / "adir").mkdir()
    outside = tmp_path / "outside-file"
    outside.write_bytes(MSG)
    (inbox.path / "cur" / "link:2,S").symlink_to(outside)
    (inbox.path / "new" / "dangling").symlink_to(tmp_path / "nowhere")
    put(inbox, "cur", ".hidden:2,S")
    put(inbox, "new", "dup")
    put(inbox, "cur", "dup:2,S")
    put(inbox, "cur", ":2,S")
    with caplog.at_level(logging.WARNING, logger="syncd.drivers.maildir"):
        found = inbox.scan()
    assert set(found) == {"good", "dup"}
    assert found[LocalKey("dup")] == LocalEntry(LocalKey("dup"), "cur", "dup:2,S", Flag.S)
    assert inbox.damaged == {"empty"}
    text = caplog.text
    for what in ("empty file", "adir", "symlink", "dangling", ".hidden", "same key", ":2,S"):
        assert what in text, what
    caplog.clear()
    with caplog.at_level(logging.WARNING, logger="syncd.drivers.maildir"):
        assert inbox.scan() == found
    assert caplog.text == ""  # each junk file is reported once


def test_scan_duplicate_in_one_dir_keeps_first_name(
    inbox: MaildirFolder, caplog: pytest.LogCaptureFixture
) -> None:
    put(inbox, "cur", "k:2,S")
    put(inbox, "cur", "k:2,RS")
    with caplog.at_level(logging.WARNING, logger="syncd.drivers.maildir"):
        assert inbox.scan()[LocalKey("k")].name == "k:2,RS"
    assert "same key" in caplog.text


def test_scan_skips_unreadable_file(
    inbox: MaildirFolder, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    path = put(inbox, "cur", "secret:2,S")
    path.chmod(0)
    if os.geteuid() == 0:  # root reads anything: make the permission check say no
        real_access = os.access

        def access(p: str, mode: int) -> bool:
            return Path(p) != path and real_access(p, mode)

        monkeypatch.setattr(os, "access", access)
    with caplog.at_level(logging.WARNING, logger="syncd.drivers.maildir"):
        assert inbox.scan() == {}
    assert "unreadable" in caplog.text
    assert inbox.damaged == {"secret"}


def test_steady_state_scan_checks_no_file(
    inbox: MaildirFolder, monkeypatch: pytest.MonkeyPatch
) -> None:
    inbox.deliver([(MSG, Flag.NONE, None)] * 5)
    put(inbox, "cur", "foreign:2,S")
    checked: list[str] = []
    real_access = os.access

    def counting_access(path: str, mode: int) -> bool:
        checked.append(path)
        return real_access(path, mode)

    monkeypatch.setattr(os, "access", counting_access)
    inbox.scan()
    assert [Path(p).name for p in checked] == ["foreign:2,S"]
    inbox.scan()
    assert len(checked) == 1


def test_scan_of_missing_folder_is_a_folder_error(store: MaildirStore) -> None:
    with pytest.raises(FolderError):
        store.folder("Nope").scan()


def test_read_header_stops_at_blank_line(inbox: MaildirFolder) -> None:
    cases = {
        "lf": (b"A: 1\nB: 2\n\nbody\n\nmore\n", b"A: 1\nB: 2\n\n"),
        "crlf": (b"A: 1\r\nB: 2\r\n\r\nbody\r\n", b"A: 1\r\nB: 2\r\n\r\n"),
        "mixed": (b"A: 1\n\r\nbody", b"A: 1\n\r\n"),
        "no body": (b"A: 1\nB: 2\n", b"A: 1\nB: 2\n"),
    }
    # The blank line straddles the 8 KiB chunk boundary.
    long = b"X: " + b"y" * (8 * 1024 - 5) + b"\n"
    cases["straddle"] = (long + b"\nbody" * 10_000, long + b"\n")
    for label, (data, _header) in cases.items():
        put(inbox, "cur", f"{label.replace(' ', '_')}:2,S", data)
    found = inbox.scan()
    for label, (data, header) in cases.items():
        entry = found[LocalKey(label.replace(" ", "_"))]
        assert inbox.read_header(entry) == header, label
        assert fingerprint(inbox.read_header(entry)) == fingerprint(data), label


def test_read_header_is_capped(inbox: MaildirFolder) -> None:
    put(inbox, "cur", "huge:2,S", b"X: " + b"y" * 600_000 + b"\n\nbody")
    entry = inbox.scan()[LocalKey("huge")]
    assert len(inbox.read_header(entry)) == 256 * 1024


def test_read_follows_a_concurrent_rename(inbox: MaildirFolder) -> None:
    (entry,) = inbox.deliver([(MSG, Flag.NONE, None)])
    os.rename(inbox.path_of(entry), inbox.path / "cur" / f"{entry.key}:2,S")
    assert inbox.read(entry) == MSG
    assert inbox.read_header(entry) == b"From: a@example.org\nSubject: hi\n\n"
    assert inbox.mtime(entry) > 0
    os.unlink(inbox.path / "cur" / f"{entry.key}:2,S")
    with pytest.raises(MessageError, match="deleted"):
        inbox.read(entry)


# -- flags ---------------------------------------------------------------------------------


def test_set_flags_renames_in_ascii_order_and_keeps_keywords(inbox: MaildirFolder) -> None:
    put(inbox, "cur", "k:2,Sba")
    entry = inbox.scan()[LocalKey("k")]
    new = inbox.set_flags(entry, Flag.T | Flag.F | Flag.S)
    assert new == LocalEntry(LocalKey("k"), "cur", "k:2,FSTab", Flag.F | Flag.S | Flag.T)
    assert names(inbox, "cur") == ["k:2,FSTab"]
    cleared = inbox.set_flags(new, Flag.NONE)
    assert cleared.name == "k:2,ab"
    assert cleared.subdir == "cur"  # never back to new/
    assert inbox.set_flags(cleared, Flag.NONE) is cleared  # unchanged: no rename
    inbox.flush()
    assert inbox.scan() == {LocalKey("k"): cleared}


def test_set_flags_moves_new_to_cur(inbox: MaildirFolder) -> None:
    unseen, flagged = inbox.deliver([(MSG, Flag.NONE, None), (MSG, Flag.F, None)])
    seen = inbox.set_flags(unseen, Flag.S)
    assert (seen.subdir, seen.name) == ("cur", unseen.key + ":2,S")
    replied = inbox.set_flags(flagged, Flag.F | Flag.R)
    assert (replied.subdir, replied.name) == ("cur", flagged.key + ":2,FR")
    assert names(inbox, "new") == []
    # a file in new/ with only a keyword letter that loses its flags stays in new/
    put(inbox, "new", "kw:2,Fa")
    kw = inbox.set_flags(inbox.scan()[LocalKey("kw")], Flag.NONE)
    assert (kw.subdir, kw.name) == ("new", "kw:2,a")


def test_set_flags_follows_a_concurrent_rename(inbox: MaildirFolder) -> None:
    (entry,) = inbox.deliver([(MSG, Flag.NONE, None)])
    # mutt marks it read between our scan and our flag change
    os.rename(inbox.path_of(entry), inbox.path / "cur" / f"{entry.key}:2,Sx")
    new = inbox.set_flags(entry, Flag.S | Flag.F)
    assert new.name == f"{entry.key}:2,FSx"
    assert inbox.set_flags(entry, Flag.S | Flag.F) == new  # stale entry, already right
    os.unlink(inbox.path_of(new))
    with pytest.raises(MessageError):
        inbox.set_flags(new, Flag.NONE)


def test_remove_and_adopt(store: MaildirStore) -> None:
    a = store.create_folder("A")
    b = store.create_folder("B")
    one, two, three, four = a.deliver(
        [(MSG, Flag.NONE, None), (MSG, Flag.S, None), (MSG, Flag.F, 1.0), (MSG, Flag.NONE, None)]
    )
    assert a.remove(one)
    assert a.remove(one)  # already gone: fine
    # A reader moved it from new/ to cur/ without changing a flag: still the same message.
    os.rename(a.path_of(four), a.path / "cur" / f"{four.key}:2,")
    assert a.remove(four)
    # A reader flagged it as replied meanwhile: a changed message survives a deletion.
    os.rename(a.path_of(two), a.path / "cur" / f"{two.key}:2,RS")
    assert not a.remove(two)
    moved = b.adopt(three, a)
    assert moved == LocalEntry(three.key, "new", three.name, Flag.F)
    assert b.read(moved) == MSG and b.mtime(moved) == 1.0
    a.flush()
    b.flush()
    assert a.scan() == {two.key: LocalEntry(two.key, "cur", f"{two.key}:2,RS", Flag.R | Flag.S)}
    assert b.scan() == {three.key: moved}
    with pytest.raises(MessageError):
        b.adopt(three, a)


# -- folders and layouts -------------------------------------------------------------------


def test_layout_is_validated(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="maildir\\+\\+"):
        MaildirStore(tmp_path, "mbox")


def test_verbatim_naming_nesting_and_listing(tmp_path: Path) -> None:
    root = tmp_path / "mail"
    store = MaildirStore(root, "verbatim", exclude=[root / "Queue"])
    for name in ("INBOX", "Lists", "Lists/python", "Ärger", "[Gmail]/Sent Mail", "a.b"):
        folder = store.create_folder(name)
        assert folder.path == root.joinpath(*name.split("/"))
        assert folder.exists()
        assert all((folder.path / s).is_dir() for s in ("cur", "new", "tmp"))
        assert stat.S_IMODE(folder.path.stat().st_mode) == 0o700
    assert not (root / "[Gmail]" / "cur").exists()  # a parent only, not a folder
    # junk the walk must skip
    (root / ".notmuch" / "xapian").mkdir(parents=True)
    for hidden in (".notmuch", ".outbox", "Queue", "Lists/.hidden"):
        for sub in ("cur", "new", "tmp"):
            (root / hidden / sub).mkdir(parents=True, exist_ok=True)
    (root / "INBOX" / "cur" / "sub" / "cur").mkdir(parents=True)
    (root / "INBOX" / "cur" / "sub" / "new").mkdir()
    (root / "plain-dir" / "deeper").mkdir(parents=True)
    outside = tmp_path / "elsewhere"
    for sub in ("cur", "new", "tmp"):
        (outside / sub).mkdir(parents=True)
    (root / "Linked").symlink_to(outside)
    (root / "AliasOfInbox").symlink_to(root / "INBOX")
    (root / "a-file").write_bytes(b"")
    assert store.list_folders() == sorted(
        ["INBOX", "Lists", "Lists/python", "Ärger", "[Gmail]/Sent Mail", "a.b"]
    )


def test_maildirpp_naming_and_listing(tmp_path: Path) -> None:
    root = tmp_path / "mail"
    store = MaildirStore(root, "maildir++")
    inbox = store.create_folder("INBOX")
    assert inbox.path == root
    sub = store.create_folder("Lists/python")
    assert sub.path == root / ".Lists.python"
    assert (sub.path / "maildirfolder").is_file()
    assert store.create_folder("Ärger").path == root / ".Ärger"
    assert store.create_folder("INBOX/Sub").path == root / ".INBOX.Sub"
    (root / ".notmuch").mkdir()
    for junk in (".outbox", "..bad", ".INBOX"):
        for s in ("cur", "new", "tmp"):
            (root / junk / s).mkdir(parents=True)
    assert store.list_folders() == ["INBOX", "INBOX/Sub", "Lists/python", "Ärger"]
    assert MaildirStore(tmp_path / "empty", "maildir++").list_folders() == []


@pytest.mark.parametrize(
    ("layout", "name"),
    [
        ("verbatim", ""),
        ("verbatim", "/abs"),
        ("verbatim", "trailing/"),
        ("verbatim", "a//b"),
        ("verbatim", "."),
        ("verbatim", "a/.."),
        ("verbatim", ".hidden"),
        ("verbatim", "A/.dot"),
        ("verbatim", "cur"),
        ("verbatim", "A/new"),
        ("verbatim", "tmp"),
        ("verbatim", "nul\0byte"),
        ("verbatim", "x" * 256),
        ("verbatim", "bad\udcffsurrogate"),
        ("maildir++", "a.b"),
        ("maildir++", "Lists/py.thon"),
        ("maildir++", ""),
        ("maildir++", "a//b"),
        ("maildir++", "nul\0byte"),
        ("maildir++", "outbox"),  # would be root/.outbox
        ("maildir++", "/".join(["x" * 100] * 3)),
    ],
)
def test_unrepresentable_names_raise_folder_error(tmp_path: Path, layout: str, name: str) -> None:
    store = MaildirStore(tmp_path / "mail", layout)
    with pytest.raises(FolderError, match=r"\S"):
        store.folder(name)
    with pytest.raises(FolderError):
        store.create_folder(name)
    assert not (tmp_path / "mail").exists() or store.list_folders() == []


def test_folder_in_excluded_dir_is_refused(tmp_path: Path) -> None:
    store = MaildirStore(tmp_path, "verbatim", exclude=[tmp_path / "Outbox"])
    with pytest.raises(FolderError, match="outbox"):
        store.folder("Outbox")
    with pytest.raises(FolderError):
        store.folder("Outbox/Sub")


def test_local_name(tmp_path: Path) -> None:
    verbatim = MaildirStore(tmp_path, "verbatim")
    pp = MaildirStore(tmp_path, "maildir++")
    assert verbatim.local_name(["INBOX"]) == "INBOX"
    assert verbatim.local_name(["[Gmail]", "Sent Mail"]) == "[Gmail]/Sent Mail"
    assert verbatim.local_name(["a.b", "c"]) == "a.b/c"
    assert pp.local_name(["Lists", "python"]) == "Lists/python"
    for store, parts in [
        (verbatim, ["a/b"]),
        (verbatim, []),
        (verbatim, [""]),
        (pp, ["a.b"]),
        (pp, ["x", "a/b"]),
    ]:
        with pytest.raises(FolderError):
            store.local_name(parts)


def test_delete_folder(tmp_path: Path) -> None:
    store = MaildirStore(tmp_path, "verbatim")
    parent = store.create_folder("A")
    child = store.create_folder("A/B")
    parent.deliver([(MSG, Flag.NONE, None), (MSG, Flag.S, None)])
    store.delete_folder("A")
    assert not parent.exists()
    assert (tmp_path / "A").is_dir()  # kept: it still holds A/B
    assert store.list_folders() == ["A/B"]
    store.delete_folder("A/B")
    assert not child.path.exists()
    store.delete_folder("A/B")  # already gone: fine
    assert store.list_folders() == []


def test_delete_maildirpp_folders(tmp_path: Path) -> None:
    store = MaildirStore(tmp_path, "maildir++")
    store.create_folder("INBOX").deliver([(MSG, Flag.NONE, None)])
    store.create_folder("X").deliver([(MSG, Flag.NONE, None)])
    store.delete_folder("X")
    assert not (tmp_path / ".X").exists()
    store.delete_folder("INBOX")
    assert tmp_path.is_dir()
    assert store.list_folders() == []


# -- stamp ---------------------------------------------------------------------------------


def test_stamp_is_none_right_after_a_change(inbox: MaildirFolder) -> None:
    backdate(inbox)
    assert inbox.stamp() is not None
    inbox.deliver([(MSG, Flag.NONE, None)])
    assert inbox.stamp() is None


def test_stamp_of_missing_folder_is_none(store: MaildirStore) -> None:
    assert store.folder("Nope").stamp() is None


def test_stamp_changes_on_every_name_change(
    inbox: MaildirFolder, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Trust even fresh timestamps here, so a change shows up as a new stamp, not as None.
    monkeypatch.setattr(md, "_SETTLE_NS", 0)
    (entry,) = inbox.deliver([(MSG, Flag.NONE, None)])
    put(inbox, "cur", "other:2,S")
    seen: list[str] = []

    def changes(action: Callable[[], object]) -> None:
        backdate(inbox)
        before = inbox.stamp()
        assert before is not None and before == inbox.stamp()
        action()
        after = inbox.stamp()
        assert after is not None and after != before
        seen.append(after)

    changes(lambda: put(inbox, "new", "added"))  # add to new/
    changes(lambda: put(inbox, "cur", "added2:2,S"))  # add to cur/
    moved = inbox.set_flags(entry, Flag.S)
    entry = moved
    changes(lambda: inbox.set_flags(entry, Flag.S | Flag.R))  # rename within cur/
    changes(lambda: os.rename(inbox.path / "new" / "added", inbox.path / "cur" / "added:2,S"))
    changes(lambda: os.unlink(inbox.path / "cur" / "other:2,S"))  # delete
    assert len(set(seen)) == len(seen)


# -- bind ----------------------------------------------------------------------------------


def test_bind_fresh_creates_root_and_marker(tmp_path: Path) -> None:
    root = tmp_path / "deep" / "mail"
    store = MaildirStore(root)
    ident = store.bind(None)
    assert re.fullmatch(r"[0-9a-f]{32}", ident)
    assert stat.S_IMODE(root.stat().st_mode) == 0o700
    marker = root / ".syncd-id"
    assert marker.read_text() == ident + "\n"
    assert stat.S_IMODE(marker.stat().st_mode) == 0o600
    assert [p.name for p in root.iterdir()] == [".syncd-id"]
    assert store.bind(ident) == ident
    assert store.bind(None) == ident  # lost state: the existing marker is reused


def test_bind_refuses_missing_or_foreign_maildir(tmp_path: Path) -> None:
    root = tmp_path / "mail"
    store = MaildirStore(root)
    with pytest.raises(StateError, match="is it mounted"):
        store.bind("0" * 32)
    assert not root.exists()  # never created behind the user's back
    root.mkdir()
    with pytest.raises(StateError, match=r"no \.syncd-id marker: is it mounted"):
        store.bind("0" * 32)
    ident = store.bind(None)
    with pytest.raises(StateError) as info:
        store.bind("1" * 32)
    assert ident in str(info.value) and "1" * 32 in str(info.value)
    (root / ".syncd-id").write_text("garbage\n")
    with pytest.raises(StateError, match="does not hold a syncd id"):
        store.bind(None)
    with pytest.raises(StateError, match="does not hold a syncd id"):
        store.bind(ident)


def test_bind_marker_is_not_a_folder(tmp_path: Path) -> None:
    store = MaildirStore(tmp_path, "maildir++")
    store.bind(None)
    store.create_folder("INBOX")
    assert store.list_folders() == ["INBOX"]


# -- properties ----------------------------------------------------------------------------

flag_sets = st.sets(st.sampled_from("DFPRST")).map(
    lambda s: Flag.parse("".join(s)) if s else Flag.NONE
)
keywords = st.sets(st.sampled_from("abcxyzX")).map(lambda s: "".join(sorted(s)))


@settings(deadline=None, max_examples=200)
@given(
    start=flag_sets,
    extra=keywords,
    subdir=st.sampled_from(["new", "cur"]),
    changes=st.lists(flag_sets, min_size=1, max_size=4),
)
def test_flags_round_trip_through_set_flags_and_scan(
    start: Flag, extra: str, subdir: str, changes: list[Flag]
) -> None:
    with tempfile.TemporaryDirectory() as d:
        folder = MaildirStore(Path(d)).create_folder("F")
        letters = "".join(sorted(start.letters + extra))
        name = f"k:2,{letters}" if letters or subdir == "cur" else "k"
        put(folder, subdir, name)
        entry = folder.scan()[LocalKey("k")]
        assert entry.flags == start
        for flags in changes:
            before = entry
            entry = folder.set_flags(entry, flags)
            assert folder.scan() == {LocalKey("k"): entry}
            assert entry.flags == flags
            info = entry.name.partition(":")[2]
            assert info.removeprefix("2,") == "".join(sorted(flags.letters + extra))
            if flags == before.flags:
                assert entry == before  # no rename at all
            elif flags or before.subdir == "cur":
                assert entry.subdir == "cur"
            else:
                assert entry.subdir == "new"
            assert folder.read(entry) == MSG


def test_delete_folder_keeps_mail_that_arrived_after_the_check(store: MaildirStore) -> None:
    work = store.create_folder("Work")
    (old,) = work.deliver([(MSG, Flag.S, None)])
    checked = {old.name}
    # Delivered by another program after syncd decided the folder could go.
    (late,) = work.deliver([(MSG + b"late\n", Flag.NONE, None)])
    with pytest.raises(FolderError, match="arrived or changed"):
        store.delete_folder("Work", checked)
    assert work.exists()
    assert set(work.scan()) == {old.key, late.key}
    # A delivery in progress in tmp/ keeps it too.
    (work.path / "tmp" / "123.M1P1.other").write_bytes(b"partial")
    with pytest.raises(FolderError):
        store.delete_folder("Work", {old.name, late.name})
    assert (work.path / "tmp" / "123.M1P1.other").read_bytes() == b"partial"
    (work.path / "tmp" / "123.M1P1.other").unlink()
    store.delete_folder("Work", {old.name, late.name})
    assert not work.path.exists()


def test_set_flags_merges_a_concurrent_reader_change(inbox: MaildirFolder) -> None:
    (entry,) = inbox.deliver([(MSG, Flag.S, None)])
    # The reader flags it (mutt's F, then $) after syncd read the folder...
    os.rename(inbox.path_of(entry), inbox.path / "cur" / f"{entry.key}:2,FS")
    # ...and syncd applies the server's change (replied) it planned from the old name.
    now = inbox.set_flags(entry, Flag.S | Flag.R)
    assert now.name == f"{entry.key}:2,FRS"
    # A removal planned from a stale name merges the same way: the reader's T stays.
    os.rename(inbox.path_of(now), inbox.path / "cur" / f"{entry.key}:2,FRST")
    assert inbox.set_flags(now, Flag.F | Flag.S).name == f"{entry.key}:2,FST"


@pytest.mark.parametrize(
    "flags", [Flag.NONE, Flag.F, Flag.F | Flag.R, Flag.S, Flag.S | Flag.F], ids=repr
)
def test_assumed_entry_finds_what_deliver_and_set_flags_made(
    inbox: MaildirFolder, flags: Flag
) -> None:
    # An unread message keeps its other flags in new/ when delivered, and moves to cur/
    # when syncd changes its flags: either way its name is found without a listing.
    (delivered,) = inbox.deliver([(MSG, flags, None)])
    assert inbox.assumed_entry(delivered.key, flags) == delivered
    (other,) = inbox.deliver([(MSG, Flag.NONE, None)])
    renamed = inbox.set_flags(other, flags)
    assert inbox.assumed_entry(other.key, flags) == renamed
    assert inbox.path_of(renamed).exists()
