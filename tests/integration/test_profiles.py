"""The same scenarios on every server profile (issue 12): one suite, one Dovecot per profile.

``server_profile`` (tests/integration/conftest.py) is Dovecot advertising the extensions of
a kind of server (tests/servers/profiles.py), behind a guard that refuses whatever the
profile does not advertise and fails the test when syncd tries it. Where a profile changes
syncd's code path, the test says which capability is missing and what syncd does instead.
"""

from __future__ import annotations

import shutil
import signal
from collections import Counter
from pathlib import Path

import pytest
from imapclient import IMAPClient

from syncd.model import to_remote_bytes
from tests.integration.conftest import Account, msg
from tests.servers.dovecot import CertFiles, make_test_certs
from tests.servers.profiles import ProfileServer

pytestmark = pytest.mark.dovecot


def lf(raw: bytes) -> bytes:
    return raw.replace(b"\r\n", b"\n")


def set_letters(path: Path, letters: str) -> Path:
    new = path.parent.parent / "cur" / (path.name.split(":2,")[0] + ":2," + letters)
    path.rename(new)
    return new


def local_file(acct: Account, raw: bytes, folder: str = "INBOX") -> Path:
    (path,) = [p for p in acct.local_files(folder) if p.read_bytes() == lf(raw)]
    return path


def put_local(acct: Account, folder: str, name: str, raw: bytes, letters: str = "S") -> Path:
    box = acct.maildir / folder
    for sub in ("cur", "new", "tmp"):
        (box / sub).mkdir(parents=True, exist_ok=True)
    path = box / "cur" / f"{name}.M1P1.local:2,{letters}"
    path.write_bytes(lf(raw))
    return path


def remote_flags(acct: Account, folder: str = "INBOX") -> dict[bytes, set[bytes]]:
    return {body: flags for body, flags in acct.remote_messages(folder).values()}


def uid_of(acct: Account, raw: bytes, folder: str = "INBOX") -> int:
    return next(u for u, (b, _) in acct.remote_messages(folder).items() if b == lf(raw))


def server_of(acct: Account) -> ProfileServer:
    server = acct.server
    assert isinstance(server, ProfileServer)
    return server


def other_expunge(client: IMAPClient, uid: int) -> None:
    """Another client deletes one message: UID EXPUNGE, sent even where the profile does
    not advertise it (Dovecot has it), so that nothing else marked \\Deleted goes."""
    client.delete_messages([uid])
    client._imap.uid("EXPUNGE", str(uid))


def no_msgid(i: int) -> bytes:
    return f"From: a@example.org\r\nSubject: no id {i}\r\n\r\nbody {i}\r\n".encode()


# -- syncd check ------------------------------------------------------------------------------

# What `syncd check` must report as fallbacks on each profile: the table this suite mirrors.
FALLBACKS = {
    "dovecot": set(),
    "gmail": {"QRESYNC"},
    "exchange": {"CONDSTORE", "MULTIAPPEND"},
    "bare": {"CONDSTORE", "UIDPLUS", "MOVE", "IDLE", "MULTIAPPEND"},
}


def test_check_names_the_server_the_extensions_used_and_each_fallback(
    profile_account: Account,
) -> None:
    acct = profile_account
    profile = server_of(acct).profile
    r = acct.run("check")
    assert r.code == 0, r.out + r.err
    lines = [ln.strip() for ln in r.out.splitlines()]
    # The implementation: from ID where the server has it, else from its greeting.
    server_line = next(ln for ln in lines if ln.startswith("server: "))
    if profile.has("ID"):
        assert server_line == "server: Dovecot (ID)", r.out
    else:
        assert server_line == "server: Dovecot (Debian) ready. (greeting)", r.out
    (uses,) = [ln.removeprefix("uses: ").split() for ln in lines if ln.startswith("uses: ")]
    if profile.name == "bare":
        assert uses == ["nothing", "beyond", "IMAP4rev1"]
    else:
        assert all(profile.has(cap) for cap in uses), (uses, profile.caps)
        for cap in ("UIDPLUS", "MOVE", "IDLE", "CONDSTORE", "QRESYNC"):
            assert (cap in uses) == (
                profile.has(cap) and (cap != "QRESYNC" or profile.has("ENABLE"))
            )
    fallbacks = {
        ln.split(":")[1].strip().removeprefix("no ") for ln in lines if ln.startswith("fallback:")
    }
    assert fallbacks == FALLBACKS[profile.name], r.out
    if "CONDSTORE" in fallbacks:
        assert "each resync reads every message's flags, about 36 bytes each" in r.out
    if "IDLE" in fallbacks:
        assert "polling every 300 s" in r.out


# -- initial sync, flags, keywords -------------------------------------------------------------


def test_initial_sync_then_flags_and_keywords_both_ways(profile_account: Account) -> None:
    """Without CONDSTORE (exchange, bare) every resync lists every message's flags; with
    CONDSTORE but no QRESYNC (gmail) only the changes, plus the UID list when counts differ."""
    acct = profile_account
    server, user = acct.server, acct.user
    flags = [(b"\\Seen",), (b"$Forwarded",), (b"\\Flagged", b"\\Answered"), ()]
    for i, fl in enumerate(flags):
        server.append(user, "INBOX", msg(i), flags=fl)  # type: ignore[attr-defined]
    r = acct.sync()
    assert "4 downloaded" in r.out, r.out
    assert acct.local_messages() == {
        lf(msg(0)): "S",
        lf(msg(1)): "P",
        lf(msg(2)): "FR",
        lf(msg(3)): "",
    }

    # Another client changes flags and a keyword on the server; the user does locally.
    with server.imap(user) as c:  # type: ignore[attr-defined]
        c.select_folder("INBOX")
        c.add_flags([uid_of(acct, msg(3))], [b"\\Seen", b"$Forwarded"])
        c.remove_flags([uid_of(acct, msg(0))], [b"\\Seen"])
    set_letters(local_file(acct, msg(1)), "PS")
    set_letters(local_file(acct, msg(2)), "R")
    acct.sync()
    assert acct.local_messages() == {
        lf(msg(0)): "",
        lf(msg(1)): "PS",
        lf(msg(2)): "R",
        lf(msg(3)): "PS",
    }
    assert remote_flags(acct) == {
        lf(msg(0)): set(),
        lf(msg(1)): {b"$Forwarded", b"\\Seen"},
        lf(msg(2)): {b"\\Answered"},
        lf(msg(3)): {b"$Forwarded", b"\\Seen"},
    }
    assert acct.sync().out == ""


# -- uploads: finding the new UIDs -------------------------------------------------------------


def test_uploads_are_paired_at_once_with_or_without_appenduid(profile_account: Account) -> None:
    """Without UIDPLUS (bare) there is no APPENDUID: syncd finds each upload among the UIDs
    from UIDNEXT on, by UID SEARCH on its Message-ID or, without one, by its header alone;
    two identical messages get one UID each."""
    acct = profile_account
    put_local(acct, "INBOX", "1700000001", msg(1))
    put_local(acct, "INBOX", "1700000002", no_msgid(2))
    put_local(acct, "INBOX", "1700000003", no_msgid(3), "F")
    put_local(acct, "INBOX", "1700000004", no_msgid(3), "S")  # the same message twice
    r = acct.sync()
    assert "4 uploaded" in r.out, r.out
    assert acct.sync().out == "", "paired at once: the next sync has nothing to match"
    remote = acct.remote_messages()
    assert sorted(b for b, _ in remote.values()) == sorted(
        [lf(msg(1)), lf(no_msgid(2)), lf(no_msgid(3)), lf(no_msgid(3))]
    )
    twins = sorted(tuple(sorted(f)) for b, f in remote.values() if b == lf(no_msgid(3)))
    assert twins == [(b"\\Flagged",), (b"\\Seen",)]
    # Each twin is paired with its own file: a change to one reaches one server copy.
    (seen,) = [
        p for p in acct.local_files() if p.name.endswith(":2,S") and b"no id 3" in p.read_bytes()
    ]
    set_letters(seen, "RS")
    acct.sync()
    twins = sorted(
        tuple(sorted(f)) for b, f in acct.remote_messages().values() if b == lf(no_msgid(3))
    )
    assert twins == sorted([(b"\\Flagged",), (b"\\Answered", b"\\Seen")])


def test_a_crash_between_append_and_recording_the_pair_makes_no_duplicate(
    profile_account: Account,
) -> None:
    """The state a kill leaves after an APPEND whose pair was never recorded: the message on
    both sides, unpaired. The next sync pairs them by header (with or without UIDPLUS)."""
    acct = profile_account
    server, user = acct.server, acct.user
    server.append(user, "INBOX", msg(1))  # type: ignore[attr-defined]
    acct.sync()
    for raw, name in ((msg(2), "1700000002"), (no_msgid(3), "1700000003")):
        put_local(acct, "INBOX", name, raw)
        server.append(user, "INBOX", to_remote_bytes(lf(raw)), flags=(b"\\Seen",))  # type: ignore[attr-defined]
    r = acct.sync()
    assert "uploaded" not in r.out and "downloaded" not in r.out, r.out
    assert len(acct.remote_messages()) == 3 and len(acct.local_files()) == 3
    assert acct.sync().out == ""


# -- deletions ---------------------------------------------------------------------------------


def test_deletions_both_ways_never_expunge_what_others_marked_deleted(
    profile_account: Account,
) -> None:
    """A message kept locally with the T flag is \\Deleted on the server and must survive
    syncd's expunges, as must one another client marked. Without UIDPLUS (bare) there is
    no UID EXPUNGE: syncd unmarks the others, expunges, and marks them again."""
    acct = profile_account
    server, user = acct.server, acct.user
    for i in range(5):
        server.append(user, "INBOX", msg(i))  # type: ignore[attr-defined]
    acct.sync()
    set_letters(local_file(acct, msg(0)), "T")  # trashed in the reader, not yet purged
    acct.sync()
    assert remote_flags(acct)[lf(msg(0))] == {b"\\Deleted"}
    with server.imap(user) as c:  # type: ignore[attr-defined]
        c.select_folder("INBOX")
        c.add_flags([uid_of(acct, msg(3))], [b"\\Deleted"])  # someone else's mark
        other_expunge(c, uid_of(acct, msg(2)))
    local_file(acct, msg(1)).unlink()
    r = acct.sync()
    assert "deleted" in r.out, r.out
    remote = remote_flags(acct)
    assert set(remote) == {lf(msg(0)), lf(msg(3)), lf(msg(4))}
    assert remote[lf(msg(0))] == {b"\\Deleted"} and remote[lf(msg(3))] == {b"\\Deleted"}
    assert acct.local_messages() == {lf(msg(0)): "T", lf(msg(3)): "T", lf(msg(4)): ""}
    assert acct.sync().out == ""


# -- moves -------------------------------------------------------------------------------------


def test_moves_both_ways(profile_account: Account) -> None:
    """A local move between folders becomes a server MOVE, or without MOVE (bare) COPY,
    \\Deleted and the guarded EXPUNGE; without UIDPLUS the copy is paired by its header at
    the next sync instead of by COPYUID. A server move becomes a local rename."""
    acct = profile_account
    profile = server_of(acct).profile
    server, user = acct.server, acct.user
    for i in range(4):
        server.append(user, "INBOX", msg(i))  # type: ignore[attr-defined]
    server.create_folder(user, "Archive")  # type: ignore[attr-defined]
    acct.sync()
    with server.imap(user) as c:  # type: ignore[attr-defined]
        c.select_folder("INBOX")
        c.add_flags([uid_of(acct, msg(3))], [b"\\Deleted"])  # another client's, kept
    acct.sync()
    path = local_file(acct, msg(1))
    path.rename(acct.maildir / "Archive" / "cur" / (path.name.split(":2,")[0] + ":2,S"))
    r = acct.sync()
    assert "1 moved" in r.out and "uploaded" not in r.out, r.out
    assert set(remote_flags(acct)) == {lf(msg(0)), lf(msg(2)), lf(msg(3))}
    assert remote_flags(acct)[lf(msg(3))] == {b"\\Deleted"}
    assert remote_flags(acct, "Archive") == {lf(msg(1)): {b"\\Seen"}}
    r = acct.sync()
    assert "uploaded" not in r.out and "downloaded" not in r.out, r.out
    # Paired at once: by COPYUID, or without UIDPLUS by its header right after the COPY.
    assert r.out == "", r.out

    key = local_file(acct, msg(2)).name.split(":2,")[0]
    with server.imap(user) as c:  # type: ignore[attr-defined]
        c.select_folder("INBOX")
        uid = uid_of(acct, msg(2))
        if profile.has("MOVE"):
            c.move([uid], "Archive")
        else:  # what another client does without MOVE
            c.copy([uid], "Archive")
            other_expunge(c, uid)
    r = acct.sync()
    assert "1 moved" in r.out and "downloaded" not in r.out, r.out
    assert local_file(acct, msg(2), "Archive").name.split(":2,")[0] == key
    assert set(acct.local_messages()) == {lf(msg(0)), lf(msg(3))}
    assert acct.sync().out == ""


# -- folders -----------------------------------------------------------------------------------


def server_folders(acct: Account) -> set[str]:
    with acct.server.imap(acct.user) as c:  # type: ignore[attr-defined]
        return {name for _, _, name in c.list_folders()}


def test_folders_created_deleted_and_renamed_on_either_side(profile_account: Account) -> None:
    acct = profile_account
    server, user = acct.server, acct.user
    server.append(user, "Lists/python", msg(1))  # type: ignore[attr-defined]
    server.append(user, "Ärger", msg(2))  # type: ignore[attr-defined]
    server.append(user, "Gone", msg(6))  # type: ignore[attr-defined]
    put_local(acct, "Projects/2026", "1700000003", msg(3))
    put_local(acct, "Füße", "1700000004", msg(4))
    put_local(acct, "Old", "1700000005", msg(5))
    acct.sync()
    for folder, i in (("Lists/python", 1), ("Ärger", 2), ("Projects/2026", 3), ("Füße", 4)):
        assert set(acct.local_messages(folder)) == {lf(msg(i))}, folder
        assert set(remote_flags(acct, folder)) == {lf(msg(i))}, folder

    with server.imap(user) as c:  # type: ignore[attr-defined]
        c.delete_folder("Gone")
        c.rename_folder("Ärger", "Ärgernis")
    shutil.rmtree(acct.maildir / "Old")
    (acct.maildir / "Füße").rename(acct.maildir / "Füße-alt")
    acct.sync()
    acct.sync()
    on_server = server_folders(acct)
    for folder, i in (("Ärgernis", 2), ("Füße-alt", 4), ("Lists/python", 1)):
        assert folder in on_server
        assert set(acct.local_messages(folder)) == {lf(msg(i))}, folder
        assert set(remote_flags(acct, folder)) == {lf(msg(i))}, folder
    for gone in ("Gone", "Old", "Ärger", "Füße"):
        assert gone not in on_server, gone
        assert not (acct.maildir / gone).exists(), gone
    assert acct.sync().out == ""


# -- UIDVALIDITY, adoption ---------------------------------------------------------------------


def test_a_uidvalidity_change_rematches_without_duplicates(profile_account: Account) -> None:
    acct = profile_account
    server, user = acct.server, acct.user
    for i in range(4):
        server.append(user, "INBOX", msg(i), flags=(b"\\Seen",) if i % 2 else ())  # type: ignore[attr-defined]
    acct.sync()
    names = sorted(p.name for p in acct.local_files())
    server.set_uidvalidity(user, "INBOX", 4242)  # type: ignore[attr-defined]
    put_local(acct, "INBOX", "1700000099", msg(99))
    r = acct.sync()
    assert "UIDVALIDITY" in r.out and "downloaded" not in r.out and "1 uploaded" in r.out, r.out
    assert len(acct.remote_messages()) == 5 and len(acct.local_files()) == 5
    assert set(names) <= {p.name for p in acct.local_files()}
    assert acct.sync().out == ""


def test_adopting_an_existing_maildir_copies_nothing(profile_account: Account) -> None:
    acct = profile_account
    server, user = acct.server, acct.user
    for i in range(6):
        server.append(user, "INBOX", msg(i), flags=(b"\\Seen",) if i % 2 else ())  # type: ignore[attr-defined]
    acct.sync()
    shutil.rmtree(acct.state_dir)  # as if the Maildir was filled by mbsync
    (acct.maildir / ".syncd-id").unlink()
    set_letters(local_file(acct, msg(0)), "FS")
    r = acct.sync()
    assert "downloaded" not in r.out and "uploaded" not in r.out and "6 matched" in r.out, r.out
    assert remote_flags(acct)[lf(msg(0))] == {b"\\Flagged", b"\\Seen"}
    assert len(acct.remote_messages()) == 6 and len(acct.local_files()) == 6


# -- unsolicited FETCH -------------------------------------------------------------------------


def test_flags_changed_by_another_client_during_a_listing_are_not_misread(
    profile_account: Account,
) -> None:
    """Dovecot tells a session about another client's STORE with an unsolicited FETCH,
    without UID unless QRESYNC is on: ``* 3 FETCH (FLAGS (\\Flagged))``. Keyed by its
    sequence number it named the wrong message (UID 3 instead of UID 4 here)."""
    from syncd.config import load_config
    from syncd.drivers.imap import ImapSession
    from syncd.model import Flag

    acct = profile_account
    server, user = acct.server, acct.user
    guard = server_of(acct).guard
    for i in range(5):
        server.append(user, "INBOX", msg(i))  # type: ignore[attr-defined]
    with server.imap(user) as c:  # type: ignore[attr-defined]
        c.select_folder("INBOX")
        c.delete_messages([1])
        c.expunge()  # sequence numbers are now UID - 1
    seen_before = guard.fetches_without_uid
    cfg = load_config(acct.write_config()).accounts[0].imap
    assert cfg is not None
    with ImapSession(cfg, lambda: user.password) as session:  # type: ignore[attr-defined]
        session.list_folders()
        session.select("INBOX")
        for round_ in range(2):
            with server.imap(user) as other:  # type: ignore[attr-defined]
                other.select_folder("INBOX")
                other.add_flags([4], [b"\\Flagged"] if round_ == 0 else [b"\\Seen"])
            listing = session.listing()
            assert set(listing.flags) == {2, 3, 4, 5}, listing.flags
            assert listing.flags[3] == Flag.NONE, f"UID 3 got UID 4's flags: {listing.flags}"
            assert listing.flags[2] == listing.flags[5] == Flag.NONE
        session.noop()
        assert session.listing().flags[4] == Flag.F | Flag.S
    if not server_of(acct).profile.has("QRESYNC"):
        # The case this test is about really happened (with QRESYNC on, Dovecot adds UIDs).
        assert guard.fetches_without_uid > seen_before


def test_a_full_listing_sizes_only_new_uids_and_a_restore_still_comes_down(
    profile_account: Account,
) -> None:
    """Without CONDSTORE every resync lists every message's flags. A size is only needed to
    batch a download, so the listing asks for sizes of the UIDs new since the last sync
    alone (``RFC822.SIZE nnn`` was 40% of each line); a known message that must come down
    again (deleted locally while another client flagged it) is sized when it does."""
    from syncd.config import load_config
    from syncd.drivers.imap import ImapSession

    acct = profile_account
    server, user = acct.server, acct.user
    for i in range(4):
        server.append(user, "INBOX", msg(i))  # type: ignore[attr-defined]
    acct.sync()
    cfg = load_config(acct.write_config()).accounts[0].imap
    assert cfg is not None
    with ImapSession(cfg, lambda: user.password) as session:  # type: ignore[attr-defined]
        session.list_folders()
        session.select("INBOX")
        listing = session.listing(sizes_from=3)
        assert set(listing.flags) == {1, 2, 3, 4}
        assert set(listing.sizes) == {3, 4}, listing.sizes
        assert set(session.listing(sizes_from=9).sizes) <= {4}  # 9:* is 4:9 on the server

    local_file(acct, msg(0)).unlink()
    with server.imap(user) as c:  # type: ignore[attr-defined]
        c.select_folder("INBOX")
        c.add_flags([uid_of(acct, msg(0))], [b"\\Flagged"])
    server.append(user, "INBOX", msg(9))  # type: ignore[attr-defined]
    acct.sync()
    local = {p.read_bytes(): p for p in acct.local_files()}
    assert lf(msg(9)) in local
    assert lf(msg(0)) in local, "the flagged message came back"
    assert len(local) == 5


def test_the_guard_holds_dovecot_to_the_profile(profile_account: Account) -> None:
    """What the profiles rest on: through the guard, Dovecot refuses what the profile does
    not advertise and sends no APPENDUID without UIDPLUS, as such a server would."""
    import imaplib

    acct = profile_account
    server = server_of(acct)
    profile, guard = server.profile, server.guard
    imap = imaplib.IMAP4("127.0.0.1", server.imap_port)
    try:
        imap.login(acct.user.name, acct.user.password)  # type: ignore[attr-defined]
        typ, data = imap.append("INBOX", "", None, to_remote_bytes(lf(msg(1))))
        assert typ == "OK"
        assert (b"APPENDUID" in data[0]) == profile.has("UIDPLUS"), data
        for cap, args in (
            ("ENABLE", ("ENABLE", "CONDSTORE")),  # before SELECT: imaplib allows it only then
            ("MOVE", ("UID", "MOVE", "1", "Archive")),
            ("UIDPLUS", ("UID", "EXPUNGE", "1")),
        ):
            if cap == "MOVE":
                imap.create("Archive")
                imap.select("INBOX")
            try:
                imap._simple_command(*args)
                refused = False
            except imaplib.IMAP4.error as exc:
                refused = "not advertised" in str(exc)
            assert refused == (not profile.has(cap)), (cap, profile.name)
    finally:
        imap.logout()
    assert len(guard.violations) == sum(not profile.has(c) for c in ("MOVE", "UIDPLUS", "ENABLE"))
    guard.violations.clear()  # deliberate


# -- a kill after every state commit -----------------------------------------------------------


def _prepare(acct: Account) -> None:
    server, user = acct.server, acct.user
    for i in range(5):
        server.append(user, "INBOX", msg(i), flags=(b"\\Seen",) if i % 2 else ())  # type: ignore[attr-defined]
    server.append(user, "Archive", msg(10))  # type: ignore[attr-defined]
    acct.sync()
    server.append(user, "INBOX", msg(20))  # type: ignore[attr-defined]
    with server.imap(user) as c:  # type: ignore[attr-defined]
        c.select_folder("INBOX")
        uids = sorted(c.search("ALL"))
        c.add_flags([uids[1]], [b"\\Flagged"])
        other_expunge(c, uids[2])
    put_local(acct, "INBOX", "1700000030", msg(30))
    put_local(acct, "INBOX", "1700000031", no_msgid(31))
    set_letters(local_file(acct, msg(3)), "RS")
    local_file(acct, msg(4)).unlink()
    path = local_file(acct, msg(0))
    path.rename(acct.maildir / "Archive" / "cur" / (path.name.split(":2,")[0] + ":2,S"))


def _outcome(acct: Account) -> dict[str, tuple[Counter, Counter]]:
    out = {}
    for name in ("INBOX", "Archive"):
        remote = Counter(
            (body, frozenset(f.decode() for f in flags))
            for body, flags in acct.remote_messages(name).values()
        )
        out[name] = (remote, Counter(acct.local_messages(name).items()))
    return out


@pytest.mark.crash
def test_a_kill_after_every_state_commit_converges(
    server_profile: ProfileServer, tmp_path: Path
) -> None:
    server = server_profile
    server.guard.violations.clear()
    reference = Account(server, server.add_user(), tmp_path / "ref")
    reference.root.mkdir()
    _prepare(reference)
    reference.sync()
    expected = _outcome(reference)
    n = 1
    while True:
        acct = Account(server, server.add_user(), tmp_path / f"n{n}")
        acct.root.mkdir()
        _prepare(acct)
        killed = acct.spawn("sync", env={"SYNCD_TEST_STOP_AFTER_COMMITS": str(n)})
        if killed.returncode != -signal.SIGKILL:
            assert killed.returncode == 0, killed.stderr
            break
        acct.sync()
        got = _outcome(acct)
        for name in expected:
            assert got[name] == expected[name], f"stop after {n} commits: folder {name}"
        n += 1
        assert n < 60, "the sync never finished"
    assert n > 3
    assert not server.guard.violations, server.guard.violations


# -- the daemon's new-mail path ----------------------------------------------------------------


@pytest.mark.slow
def test_the_daemon_hears_new_mail_by_idle_or_by_polling(
    profile_account: Account, tmp_path: Path
) -> None:
    """Where IDLE is advertised new mail arrives within seconds though the poll interval is
    300 s; without IDLE (bare) no IDLE is sent, the daemon polls at poll_interval and
    ``syncd status`` says so."""
    from tests.integration.test_daemon import Daemon, wait_for

    acct = profile_account
    profile = server_of(acct).profile
    poll = 300 if profile.has("IDLE") else 2
    acct.extra = f"      poll_interval: {poll}\n"
    daemon = Daemon(acct, tmp_path)
    try:
        daemon.wait_message("READY=1", timeout=20)
        acct.server.deliver(acct.user, msg(1))  # type: ignore[attr-defined]
        arrived = wait_for(
            lambda: [p for p in acct.local_files() if b"body 1" in p.read_bytes()], timeout=20
        )
        assert arrived, f"no new mail in the Maildir\n{daemon.text()}"
        want = (
            "IDLE on 1/1 folders"
            if profile.has("IDLE")
            else ("no IDLE on the server: polling every 2 s (INBOX)")
        )
        status = wait_for(lambda: want in (r := acct.run("status")).out and r, timeout=10)
        assert status, acct.run("status").out
        if not profile.has("IDLE"):
            assert "does not offer IDLE" in daemon.text()
    finally:
        assert daemon.stop() == 0, daemon.text()


# -- the outbox's Sent copy --------------------------------------------------------------------


@pytest.fixture(scope="module")
def smtp_certs(tmp_path_factory: pytest.TempPathFactory) -> CertFiles:
    return make_test_certs(tmp_path_factory.mktemp("profile-smtp-certs"))


@pytest.mark.smtp
def test_the_sent_copy_is_stored_once_and_paired(
    profile_account: Account, smtp_certs: CertFiles
) -> None:
    """The Sent copy goes up by APPEND; without UIDPLUS (bare) syncd finds its UID by its
    Message-ID, so the copy is paired at once and never downloaded or uploaded again."""
    from tests.integration.test_send import _smtp_section, message, run_cli
    from tests.servers.smtpd import Smtpd

    acct = profile_account
    with Smtpd(tls="starttls", certs=smtp_certs) as smtpd:
        acct.extra = _smtp_section(smtpd, smtp_certs)
        acct.sync()
        raw = message(1)
        assert run_cli(["sendmail", "-c", str(acct.config)], raw).code == 0
        r = acct.run("send")
        assert r.code == 0, r.out + r.err
        assert len(smtpd.messages()) == 1
    assert acct.local_messages("Sent") == {raw: "S"}
    ((body, flags),) = acct.remote_messages("Sent").values()
    assert body == raw and b"\\Seen" in flags
    r = acct.sync()
    assert "downloaded" not in r.out and "uploaded" not in r.out, r.out
    assert len(acct.local_files("Sent")) == 1 and len(acct.remote_messages("Sent")) == 1


def test_fetch_batches_are_complete_and_a_caller_may_stop_early(
    profile_account: Account, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Every batch holds all of its messages, also when the batches are big enough for a
    server to answer two commands at once (Dovecot runs pipelined FETCHes in parallel,
    so their responses interleave: a FETCH sent ahead lost about 5% of the messages).
    A caller that stops after the first batch leaves no command unanswered behind it."""
    from syncd.config import load_config
    from syncd.drivers import imap

    acct = profile_account
    server, user = acct.server, acct.user
    bodies = [msg(i, body="x" * 60_000) for i in range(40)]
    for raw in bodies:
        server.append(user, "INBOX", raw)  # type: ignore[attr-defined]
    monkeypatch.setattr(imap, "FETCH_BATCH_MESSAGES", 4)
    cfg = load_config(acct.write_config()).accounts[0].imap
    assert cfg is not None
    with imap.ImapSession(cfg, lambda: user.password) as session:  # type: ignore[attr-defined]
        session.list_folders()
        session.select("INBOX")
        uids = sorted(session.listing().flags)
        assert len(uids) == 40
        for _ in range(3):
            batches = list(session.fetch(uids, {}))
            assert [[f.uid for f in b] for b in batches] == [
                uids[i : i + 4] for i in range(0, 40, 4)
            ]
            assert [f.raw for b in batches for f in b] == bodies
        first = session.fetch(uids, {})
        assert [f.uid for f in next(first)] == uids[:4]
        first.close()
        assert not session.client._imap.tagged_commands
        assert sorted(session.listing().flags) == uids
