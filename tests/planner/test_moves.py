"""``plan_moves``: a delete in one folder plus a copy into another becomes a move."""

from __future__ import annotations

from collections import Counter

from hypothesis import given
from hypothesis import strategies as st

from syncd.model import Flag, Policy, Side, Uid
from syncd.planner import Copy, Delete, Forget, Link, Move, Plan, SetFlags, plan_moves
from syncd.planner.actions import AccountPlan

from .model_world import AccountWorld, FolderWorld, fp_of

FOLDERS = ("INBOX", "Archive", "Lists/python")


def _account(*contents: tuple[str, str]) -> AccountWorld:
    """Folders holding the given (folder, content) messages, all synced, flags S."""
    acct = AccountWorld()
    for name in FOLDERS:
        acct.folder(name)
    for folder, content in contents:
        acct.add_synced(folder, content, Flag.S)
    return acct


def _copies(aplan: AccountPlan) -> int:
    return sum(p.count(Copy) for p in aplan.folders.values())


def _contents(acct: AccountWorld, side: Side) -> dict[str, Counter[str]]:
    return {n: f.contents(side) for n, f in acct.folders.items() if f.contents(side)}


def _assert_synced_again(acct: AccountWorld) -> None:
    acct.assert_converged()
    again = acct.plan()
    assert again.moves == ()
    assert not any(again.folders.values()), again


def test_local_move_keeping_the_key_moves_on_the_server() -> None:
    acct = _account(("INBOX", "x"), ("INBOX", "y"))
    uid, pair = next((u, p) for u, p in acct.folder("INBOX").base.items() if u == Uid(1))
    acct.user_moves("INBOX", "Archive", pair.key)

    aplan = acct.plan()
    assert aplan.moves == (Move(Side.REMOTE, "INBOX", "Archive", uid, pair.key, Flag.S),)
    assert aplan.folders["INBOX"] == Plan()  # the delete and the forget are gone
    assert aplan.folders["Archive"] == Plan()  # and so is the upload

    acct.apply(aplan)
    _assert_synced_again(acct)
    assert _contents(acct, Side.REMOTE) == {
        "INBOX": Counter(["y"]),
        "Archive": Counter(["x"]),
    }
    [new] = acct.folder("Archive").base.values()
    assert new.key == pair.key
    assert new.fp == fp_of("x")


def test_local_move_with_changed_flags_sets_them_on_the_moved_copy() -> None:
    acct = _account(("INBOX", "x"))
    [pair] = acct.folder("INBOX").base.values()
    key = acct.user_moves("INBOX", "Archive", pair.key)
    acct.folder("Archive").local[key] = (Flag.S | Flag.R, "x")

    aplan = acct.plan()
    [move] = aplan.moves
    assert move.flags == Flag.S | Flag.R
    acct.apply(aplan)
    _assert_synced_again(acct)
    [(flags, _)] = acct.folder("Archive").remote.values()
    assert flags == Flag.S | Flag.R


def test_local_move_with_a_renamed_file_is_found_by_fingerprint() -> None:
    acct = _account(("INBOX", "x"), ("INBOX", "y"))
    [pair] = [p for p in acct.folder("INBOX").base.values() if p.fp == fp_of("x")]
    new_key = acct.user_moves("INBOX", "Lists/python", pair.key, rename=True)
    assert new_key != pair.key

    aplan = acct.plan()
    assert aplan.moves == (Move(Side.REMOTE, "INBOX", "Lists/python", pair.uid, new_key, Flag.S),)
    acct.apply(aplan)
    _assert_synced_again(acct)
    assert _contents(acct, Side.LOCAL)["Lists/python"] == Counter(["x"])


def test_remote_move_is_found_by_fingerprint_and_renames_locally() -> None:
    acct = _account(("INBOX", "x"), ("INBOX", "y"))
    [pair] = [p for p in acct.folder("INBOX").base.values() if p.fp == fp_of("x")]
    new_uid = acct.server_moves("INBOX", "Archive", pair.uid)

    aplan = acct.plan()
    assert aplan.moves == (Move(Side.LOCAL, "INBOX", "Archive", new_uid, pair.key, Flag.S),)
    assert not aplan.folders["INBOX"]
    assert not aplan.folders["Archive"]
    acct.apply(aplan)
    _assert_synced_again(acct)
    assert pair.key in acct.folder("Archive").local, "the local file keeps its name"


def test_remote_move_without_fingerprints_is_a_delete_and_a_download() -> None:
    """The engine fetches remote fingerprints only for a few new messages; without them a
    remote move is not recognised, and nothing is lost either."""
    acct = _account(("INBOX", "x"))
    [pair] = acct.folder("INBOX").base.values()
    new_uid = acct.server_moves("INBOX", "Archive", pair.uid)
    names = sorted(acct.folders)
    plans = {n: acct.folders[n].plan() for n in names}
    aplan = plan_moves(
        plans,
        {n: acct.folders[n].base for n in names},
        local_fps={n: acct.folders[n].local_fps() for n in names},
    )
    assert aplan.moves == ()
    assert aplan.folders["INBOX"].count(Delete, Side.LOCAL) == 1
    assert aplan.folders["Archive"].actions == (Copy(Side.REMOTE, new_uid, Flag.S),)
    acct.apply(aplan)
    _assert_synced_again(acct)


def test_no_move_out_of_a_refused_folder() -> None:
    """Moving most of a big folder trips the mass-deletion guard there; the copies in the
    destination are then plain uploads and the source is left as it is."""
    acct = _account(*[("INBOX", f"m{i}") for i in range(25)])
    moved = sorted(acct.folder("INBOX").base.values(), key=lambda p: p.uid)[:20]
    for pair in moved:
        acct.user_moves("INBOX", "Archive", pair.key)
    aplan = acct.plan(Policy())
    assert aplan.moves == ()
    assert aplan.folders["INBOX"].refused is not None
    assert aplan.folders["INBOX"].actions == ()
    assert aplan.folders["Archive"].count(Copy, Side.REMOTE) == 20

    # With --force the same change is a set of moves.
    forced = acct.plan(Policy(force=True))
    assert len(forced.moves) == 20
    assert _copies(forced) == 0


def test_no_move_into_a_refused_folder() -> None:
    acct = _account(("INBOX", "x"), *[("Archive", f"a{i}") for i in range(22)])
    archive = acct.folder("Archive")
    for pair in list(archive.base.values())[:12]:
        del archive.remote[pair.uid]  # most of Archive vanished on the server
    [pair] = acct.folder("INBOX").base.values()
    acct.user_moves("INBOX", "Archive", pair.key)
    aplan = acct.plan(Policy())
    assert aplan.folders["Archive"].refused is not None
    assert aplan.moves == ()
    # INBOX still deletes its server copy, while the local file waits in Archive.
    assert aplan.folders["INBOX"].actions == (Delete(Side.REMOTE, pair.uid), Forget(pair.uid))


def test_restoring_copy_is_never_turned_into_a_move() -> None:
    """A copy with ``replaces`` brings back a changed message whose other side was
    deleted; it is not the other half of a move even when an equal message is deleted
    elsewhere."""
    acct = _account(("INBOX", "x"), ("Archive", "x"))
    inbox, archive = acct.folder("INBOX"), acct.folder("Archive")
    [a_pair] = archive.base.values()
    del archive.remote[a_pair.uid]  # expunged on the server ...
    archive.local[a_pair.key] = (Flag.S | Flag.F, "x")  # ... but flagged locally
    [i_pair] = inbox.base.values()
    del inbox.local[i_pair.key]  # the same message deleted locally in INBOX

    aplan = acct.plan()
    assert aplan.moves == ()
    assert aplan.folders["Archive"].actions == (
        Copy(Side.LOCAL, a_pair.key, Flag.S | Flag.F, replaces=a_pair.uid),
    )
    assert aplan.folders["INBOX"].actions == (Delete(Side.REMOTE, i_pair.uid), Forget(i_pair.uid))
    acct.apply(aplan)
    _assert_synced_again(acct)


def test_restoring_download_is_never_turned_into_a_move() -> None:
    acct = _account(("INBOX", "x"), ("Archive", "x"))
    inbox, archive = acct.folder("INBOX"), acct.folder("Archive")
    [a_pair] = archive.base.values()
    del archive.local[a_pair.key]  # deleted locally ...
    archive.remote[a_pair.uid] = (Flag.S | Flag.F, "x")  # ... but flagged on the server
    [i_pair] = inbox.base.values()
    del inbox.remote[i_pair.uid]  # the same message expunged on the server in INBOX

    aplan = acct.plan()
    assert aplan.moves == ()
    assert aplan.folders["Archive"].actions == (
        Copy(Side.REMOTE, a_pair.uid, Flag.S | Flag.F, replaces=a_pair.uid),
    )
    acct.apply(aplan)
    _assert_synced_again(acct)


def test_move_within_one_folder_is_not_a_move() -> None:
    """A renamed file in the same folder is a delete plus an upload there."""
    acct = _account(("INBOX", "x"))
    [pair] = acct.folder("INBOX").base.values()
    acct.user_moves("INBOX", "INBOX", pair.key, rename=True)
    aplan = acct.plan()
    assert aplan.moves == ()
    acct.apply(aplan)
    _assert_synced_again(acct)


def test_moves_leave_other_actions_alone() -> None:
    acct = _account(("INBOX", "x"), ("INBOX", "y"), ("Archive", "z"))
    inbox = acct.folder("INBOX")
    pairs = sorted(inbox.base.values(), key=lambda p: p.uid)
    acct.user_moves("INBOX", "Archive", pairs[0].key)
    inbox.remote[pairs[1].uid] = (Flag.S | Flag.F, "y")
    acct.folder("Archive").add_remote("new")
    aplan = acct.plan()
    assert len(aplan.moves) == 1
    assert aplan.folders["INBOX"].actions == (
        SetFlags(Side.LOCAL, pairs[1].key, Flag.S, Flag.S | Flag.F),
        Link(pairs[1].uid, pairs[1].key, Flag.S | Flag.F, fp_of("y")),
    )
    assert aplan.folders["Archive"].count(Copy, Side.LOCAL) == 1
    acct.apply(aplan)
    _assert_synced_again(acct)


# -- moves at random -------------------------------------------------------------------


@st.composite
def moved_accounts(draw: st.DrawFn) -> tuple[AccountWorld, int]:
    """An account of synced folders in which messages then move around on either side
    (a local move keeps or changes the file name), some of them with new flags."""
    n = draw(st.integers(1, 8))
    acct = _account(*[(draw(st.sampled_from(FOLDERS)), f"m{i}") for i in range(n)])
    moves = 0
    for i in range(n):
        where = next(f for f, w in acct.folders.items() if f"m{i}" in w.contents(Side.REMOTE))
        dst = draw(st.sampled_from(FOLDERS))
        how = draw(st.sampled_from(["stay", "local", "local-renamed", "remote"]))
        if how == "stay" or dst == where:
            continue
        folder = acct.folder(where)
        pair = next(p for p in folder.base.values() if p.fp == fp_of(f"m{i}"))
        flags = Flag(draw(st.integers(0, 63)))
        if how == "remote":
            uid = acct.server_moves(where, dst, pair.uid)
            acct.folder(dst).remote[uid] = (flags, f"m{i}")
        else:
            key = acct.user_moves(where, dst, pair.key, rename=how == "local-renamed")
            acct.folder(dst).local[key] = (flags, f"m{i}")
        moves += 1
    return acct, moves


@given(moved_accounts())
def test_moves_converge_without_copying(case: tuple[AccountWorld, int]) -> None:
    acct, n_moves = case
    before = {side: _contents(acct, side) for side in Side}
    aplan = acct.plan()
    assert len(aplan.moves) == n_moves
    assert _copies(aplan) == 0, "a moved message was copied again"
    assert not any(p.count(Delete) for p in aplan.folders.values())
    acct.apply(aplan)
    _assert_synced_again(acct)
    # Every message ended where it was moved to, on both sides.
    remote, local = _contents(acct, Side.REMOTE), _contents(acct, Side.LOCAL)
    assert remote == local
    for side in Side:
        total = sum((c for c in before[side].values()), Counter[str]())
        assert sum(remote.values(), Counter[str]()) == total


@given(moved_accounts(), st.data())
def test_moves_with_other_edits_lose_nothing(
    case: tuple[AccountWorld, int], data: st.DataObject
) -> None:
    """Moves mixed with flag changes and new messages: whatever is planned converges and
    loses nothing."""
    acct, _ = case
    for name in FOLDERS:
        f = acct.folder(name)
        if data.draw(st.booleans()):
            f.add_local(f"new-local-{name}")
        if data.draw(st.booleans()):
            f.add_remote(f"new-remote-{name}")
        # Flag changes, some of them on the other side of a moved message.
        for side in Side:
            for ident in f.idents(side):
                if data.draw(st.booleans()):
                    f.flip(side, ident, data.draw(st.integers(1, 63)))
    keep = set()
    for f in acct.folders.values():
        keep |= set(f.contents(Side.REMOTE)) | set(f.contents(Side.LOCAL))
    aplan = acct.plan()
    acct.apply(aplan)
    _assert_synced_again(acct)
    after = set()
    for f in acct.folders.values():
        after |= set(f.contents(Side.REMOTE))
    assert keep <= after


def test_plan_moves_is_pure_on_empty_input() -> None:
    assert plan_moves({}, {}) == AccountPlan({}, ())
    w = FolderWorld.synced([(Flag.S, "x")])
    plan = w.plan()
    assert plan_moves({"INBOX": plan}, {"INBOX": w.base}).folders == {"INBOX": plan}


def test_archiving_most_of_a_folder_is_moves_not_a_refused_mass_deletion():
    from syncd.model import Fingerprint, Flag, LocalKey, Pair, Policy, Uid
    from syncd.planner import Move, plan_folder, plan_moves

    n = 30
    inbox_base = {
        Uid(i): Pair(Uid(i), LocalKey(f"k{i}"), Flag.S, Fingerprint(f"fp{i}")) for i in range(n)
    }
    moved = {LocalKey(f"k{i}") for i in range(25)}
    inbox_local = {p.key: p.flags for p in inbox_base.values() if p.key not in moved}
    inbox_remote = {u: p.flags for u, p in inbox_base.items()}
    archive_local = {k: Flag.S for k in moved}
    policy = Policy()
    plans = {
        "INBOX": plan_folder(
            inbox_remote, inbox_local, list(inbox_base.values()), policy, guard=False
        ),
        "Archive": plan_folder({}, archive_local, [], policy, guard=False),
    }
    # Guarded on its own, the source folder would be refused (25 of 30 vanished)...
    assert plan_folder(inbox_remote, inbox_local, list(inbox_base.values()), policy).refused
    # ...but as moves it is fine.
    out = plan_moves(
        plans,
        {"INBOX": inbox_base, "Archive": {}},
        policy=policy,
        sizes={"INBOX": (n, n - 25), "Archive": (0, 25)},
    )
    assert out.folders["INBOX"].refused is None
    assert len(out.moves) == 25 and all(isinstance(m, Move) for m in out.moves)
    assert out.folders["INBOX"].actions == () and out.folders["Archive"].actions == ()
    # A real mass deletion next to the moves is still refused, and takes its moves along.
    inbox_local2 = {}
    plans2 = {
        "INBOX": plan_folder(
            inbox_remote, inbox_local2, list(inbox_base.values()), policy, guard=False
        ),
        "Archive": plan_folder({}, {LocalKey("k0"): Flag.S}, [], policy, guard=False),
    }
    out2 = plan_moves(
        plans2,
        {"INBOX": inbox_base, "Archive": {}},
        policy=policy,
        sizes={"INBOX": (n, 0), "Archive": (0, 1)},
    )
    assert out2.folders["INBOX"].refused
    assert out2.moves == ()


def test_local_move_of_a_message_changed_on_the_server_is_still_a_move() -> None:
    """mutt saves a message to another folder while the phone flags it: one MOVE that
    keeps both changes, not a download back plus an upload (a copy in each folder)."""
    acct = _account(("INBOX", "x"))
    [pair] = acct.folder("INBOX").base.values()
    key = acct.user_moves("INBOX", "Archive", pair.key)
    acct.folder("Archive").local[key] = (Flag.S | Flag.R, "x")  # replied, locally
    acct.folder("INBOX").remote[pair.uid] = (Flag.S | Flag.F, "x")  # flagged, remotely

    aplan = acct.plan()
    assert aplan.moves == (Move(Side.REMOTE, "INBOX", "Archive", pair.uid, key, Flag.S | Flag.R),)
    assert _copies(aplan) == 0
    assert aplan.folders["INBOX"] == Plan((), aplan.folders["INBOX"].notes)


def test_restore_of_a_message_that_lives_on_in_another_folder_is_a_delete() -> None:
    """The local file left INBOX for Archive between two syncs, and was uploaded there
    already; its old server copy in INBOX changed meanwhile. Bringing that copy back would
    leave the message in both folders: it is deleted instead."""
    acct = _account(("INBOX", "x"), ("Archive", "x"))
    inbox = acct.folder("INBOX")
    [pair] = inbox.base.values()
    del inbox.local[pair.key]
    inbox.remote[pair.uid] = (Flag.S | Flag.F, "x")

    aplan = acct.plan()
    assert aplan.folders["INBOX"].actions == (
        Delete(Side.REMOTE, pair.uid),
        Forget(pair.uid),
    )
    # The same with the other copy in the same folder (mutt's save whose copy was synced
    # before the original was deleted, moved back by notmuch meanwhile).
    twice = _account(("INBOX", "x"), ("INBOX", "x"))
    first = min(twice.folder("INBOX").base.values(), key=lambda p: p.uid)
    del twice.folder("INBOX").local[first.key]
    twice.folder("INBOX").remote[first.uid] = (Flag.S | Flag.F, "x")
    assert twice.plan().folders["INBOX"].actions == (
        Delete(Side.REMOTE, first.uid),
        Forget(first.uid),
    )
    # Without the other copy it is restored, as changes win over deletions.
    alone = _account(("INBOX", "x"))
    [pair] = alone.folder("INBOX").base.values()
    del alone.folder("INBOX").local[pair.key]
    alone.folder("INBOX").remote[pair.uid] = (Flag.S | Flag.F, "x")
    assert alone.plan().folders["INBOX"].actions == (
        Copy(Side.REMOTE, pair.uid, Flag.S | Flag.F, replaces=pair.uid),
    )


def test_restore_of_a_message_living_on_in_a_folder_not_synced_now_is_a_delete() -> None:
    """The daemon syncs only the folders it heard of: the state tells where else a
    message is paired (``elsewhere``), and that counts like a folder in the plan."""
    acct = _account(("INBOX", "x"))
    inbox = acct.folder("INBOX")
    [pair] = inbox.base.values()
    del inbox.local[pair.key]
    inbox.remote[pair.uid] = (Flag.S | Flag.F, "x")
    plans = {"INBOX": inbox.plan()}
    bases = {"INBOX": inbox.base}
    assert plan_moves(plans, bases).folders["INBOX"].actions == (
        Copy(Side.REMOTE, pair.uid, Flag.S | Flag.F, replaces=pair.uid),
    )
    elsewhere = {fp_of("x"): {("Archive", Uid(7)), ("INBOX", pair.uid)}}
    assert plan_moves(plans, bases, elsewhere=elsewhere).folders["INBOX"].actions == (
        Delete(Side.REMOTE, pair.uid),
        Forget(pair.uid),
    )


def test_restore_of_a_message_moved_back_ends_with_one_copy() -> None:
    """mutt saved x from INBOX to Archive (the copy was synced there), the server flagged
    the original meanwhile, and notmuch moved the copy back into INBOX: one x in INBOX."""
    acct = _account(("INBOX", "x"), ("Archive", "x"))
    inbox, archive = acct.folder("INBOX"), acct.folder("Archive")
    [original] = inbox.base.values()
    del inbox.local[original.key]
    inbox.remote[original.uid] = (Flag.S | Flag.F, "x")
    [copy] = archive.base.values()
    acct.user_moves("Archive", "INBOX", copy.key)

    acct.apply(acct.plan())
    _assert_synced_again(acct)
    assert _contents(acct, Side.REMOTE) == {"INBOX": Counter(["x"])}
    assert _contents(acct, Side.LOCAL) == {"INBOX": Counter(["x"])}
