"""isync-style table tests for ``plan_folder``: (remote, base, local) -> expected plan.

Each row is one case. Messages are written compactly: remote ``{uid: "FLAGS"}``, local
``{key: "FLAGS"}``, base ``[(uid, key, "FLAGS")]``. A value may be ``("FLAGS", content)``
to choose the message; by default a paired message holds ``m<uid>`` on both sides, an
unpaired remote one ``r<uid>`` and an unpaired local one ``l-<key>``.

Like isync's ``run-tests.pl``, every row is then applied to the in-memory world: it must
converge, a second plan must be empty, and a sync stopped at any step (and its recovery
stopped at any step again) must end exactly like the uninterrupted one.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field

import pytest

from syncd.model import Flag, LocalKey, Pair, Policy, Side, Uid
from syncd.planner import Copy, Delete, Forget, Link, Plan, SetFlags, plan_folder
from syncd.planner.actions import Action

from .model_world import FolderWorld, fp_of, in_engine_order

Spec = str | tuple[str, str]


def F(letters: str) -> Flag:
    return Flag.parse(letters)


def _split(spec: Spec, default: str) -> tuple[Flag, str]:
    if isinstance(spec, tuple):
        return F(spec[0]), spec[1]
    return F(spec), default


def world_of(
    remote: Mapping[int, Spec],
    base: Sequence[tuple[int, str, str]],
    local: Mapping[str, Spec],
) -> FolderWorld:
    paired_key = {key: uid for uid, key, _ in base}
    return FolderWorld(
        remote={
            Uid(u): _split(s, f"m{u}" if any(b[0] == u for b in base) else f"r{u}")
            for u, s in remote.items()
        },
        local={
            LocalKey(k): _split(s, f"m{paired_key[k]}" if k in paired_key else f"l-{k}")
            for k, s in local.items()
        },
        base={Uid(u): Pair(Uid(u), LocalKey(k), F(f), fp_of(f"m{u}")) for u, k, f in base},
    )


# Short constructors for the expected actions. Paired messages hold "m<uid>".
def set_r(uid: int, old: str, new: str) -> Action:
    return SetFlags(Side.REMOTE, Uid(uid), F(old), F(new))


def set_l(key: str, old: str, new: str) -> Action:
    return SetFlags(Side.LOCAL, LocalKey(key), F(old), F(new))


def link(uid: int, key: str, flags: str, content: str | None = None) -> Action:
    return Link(Uid(uid), LocalKey(key), F(flags), fp_of(content or f"m{uid}"))


def down(uid: int, flags: str, replaces: int | None = None) -> Action:
    return Copy(Side.REMOTE, Uid(uid), F(flags), None if replaces is None else Uid(replaces))


def up(key: str, flags: str, replaces: int | None = None) -> Action:
    return Copy(Side.LOCAL, LocalKey(key), F(flags), None if replaces is None else Uid(replaces))


def del_r(uid: int) -> Action:
    return Delete(Side.REMOTE, Uid(uid))


def del_l(key: str) -> Action:
    return Delete(Side.LOCAL, LocalKey(key))


def forget(uid: int) -> Action:
    return Forget(Uid(uid))


@dataclass(frozen=True)
class Row:
    id: str
    remote: dict[int, Spec]
    base: list[tuple[int, str, str]]
    local: dict[str, Spec]
    expect: list[Action]
    notes: int = 0
    after: dict[str, int] = field(default_factory=dict)
    """Optional: message counts on each side after applying ({"remote": n, "local": n})."""


# fmt: off
ROWS = [
    # -- new messages ------------------------------------------------------------------
    Row("new-remote", {1: "S"}, [], {}, [down(1, "S")]),
    Row("new-local", {}, [], {"a": "F"}, [up("a", "F")]),
    Row("new-both-different", {1: ""}, [], {"a": "S"}, [down(1, ""), up("a", "S")]),
    Row("in-sync", {1: "S"}, [(1, "a", "S")], {"a": "S"}, []),
    # -- flags: a change on one side propagates; changes on both merge per flag --------
    Row("flag-remote", {1: "S"}, [(1, "a", "")], {"a": ""},
        [set_l("a", "", "S"), link(1, "a", "S")]),
    Row("flag-local", {1: ""}, [(1, "a", "")], {"a": "F"},
        [set_r(1, "", "F"), link(1, "a", "F")]),
    Row("unflag-remote", {1: "S"}, [(1, "a", "FS")], {"a": "FS"},
        [set_l("a", "FS", "S"), link(1, "a", "S")]),
    Row("same-change-both", {1: "RS"}, [(1, "a", "S")], {"a": "RS"}, [link(1, "a", "RS")]),
    Row("opposite-flags", {1: "S"}, [(1, "a", "")], {"a": "F"},
        [set_r(1, "S", "FS"), set_l("a", "F", "FS"), link(1, "a", "FS")]),
    Row("add-vs-remove", {1: "S"}, [(1, "a", "FS")], {"a": "FRS"},
        [set_r(1, "S", "RS"), set_l("a", "FRS", "RS"), link(1, "a", "RS")]),
    # -- T (trashed) is a flag like any other ----------------------------------------
    Row("trash-flag-remote", {1: "T"}, [(1, "a", "")], {"a": ""},
        [set_l("a", "", "T"), link(1, "a", "T")]),
    Row("trash-flag-vs-seen", {1: "ST"}, [(1, "a", "S")], {"a": ""},
        [set_r(1, "ST", "T"), set_l("a", "", "T"), link(1, "a", "T")]),
    Row("untrash-local", {1: "T"}, [(1, "a", "T")], {"a": ""},
        [set_r(1, "T", ""), link(1, "a", "")]),
    # -- deletions; changes win over deletions ---------------------------------------
    Row("deleted-remote", {}, [(1, "a", "S")], {"a": "S"}, [del_l("a"), forget(1)]),
    Row("deleted-local", {1: "S"}, [(1, "a", "S")], {}, [del_r(1), forget(1)]),
    Row("trashed-then-deleted-local", {1: "T"}, [(1, "a", "T")], {}, [del_r(1), forget(1)]),
    Row("deleted-both", {}, [(1, "a", "S")], {}, [forget(1)]),
    Row("deleted-local-changed-remote", {1: "FS"}, [(1, "a", "S")], {},
        [down(1, "FS", replaces=1)], notes=1, after={"remote": 1, "local": 1}),
    Row("deleted-remote-changed-local", {}, [(1, "a", "S")], {"a": "RS"},
        [up("a", "RS", replaces=1)], notes=1, after={"remote": 1, "local": 1}),
    Row("deleted-local-trashed-remote", {1: "ST"}, [(1, "a", "S")], {},
        [down(1, "ST", replaces=1)], notes=1),
    # -- adoption and duplicates: equal fingerprints pair up, one to one -------------
    Row("adopt-equal", {1: ("S", "x")}, [], {"a": ("S", "x")},
        [link(1, "a", "S", "x")], notes=1, after={"remote": 1, "local": 1}),
    Row("adopt-union-flags", {1: ("S", "x")}, [], {"a": ("F", "x")},
        [set_r(1, "S", "FS"), set_l("a", "F", "FS"), link(1, "a", "FS", "x")], notes=1),
    Row("adopt-next-to-new", {1: ("", "x"), 2: ("", "y")}, [], {"a": ("", "x"), "b": ("", "z")},
        [link(1, "a", "", "x"), down(2, ""), up("b", "")], notes=1),
    Row("duplicates-2-2", {1: ("", "x"), 2: ("S", "x")}, [], {"a": ("", "x"), "b": ("S", "x")},
        [link(1, "a", "", "x"), link(2, "b", "S", "x")],
        notes=1, after={"remote": 2, "local": 2}),
    Row("duplicates-3-2", {1: ("", "x"), 2: ("", "x"), 3: ("", "x")}, [],
        {"a": ("", "x"), "b": ("", "x")},
        [link(1, "a", "", "x"), link(2, "b", "", "x"), down(3, "")],
        notes=1, after={"remote": 3, "local": 3}),
    Row("duplicates-1-3", {1: ("", "x")}, [], {"a": ("", "x"), "b": ("", "x"), "c": ("", "x")},
        [link(1, "a", "", "x"), up("b", ""), up("c", "")],
        notes=1, after={"remote": 3, "local": 3}),
    # -- UIDVALIDITY reset: the engine passes an empty base ----------------------------
    Row("uidvalidity-reset", {101: ("S", "m1"), 102: ("", "m2"), 103: ("", "new")}, [],
        {"a": ("S", "m1"), "b": ("F", "m2")},
        [link(101, "a", "S", "m1"), set_r(102, "", "F"), link(102, "b", "F", "m2"),
         down(103, "")],
        notes=1, after={"remote": 3, "local": 3}),
    Row("uidvalidity-reset-deleted-locally-comes-back", {101: ("S", "m1"), 102: ("", "m2")},
        [], {"a": ("S", "m1")}, [link(101, "a", "S", "m1"), down(102, "")], notes=1),
    # -- resuming after a crash ---------------------------------------------------------
    # The restoring download was written but its pair never recorded.
    Row("resume-restoring-download", {1: "FS"}, [(1, "a", "S")], {"b": ("FS", "m1")},
        [link(1, "b", "FS")], notes=1, after={"remote": 1, "local": 1}),
    # The restoring upload got UID 2 but its pair was never recorded.
    Row("resume-restoring-upload", {2: ("RS", "m1")}, [(1, "a", "S")], {"a": "RS"},
        [forget(1), link(2, "a", "RS", "m1")], notes=1, after={"remote": 1, "local": 1}),
    # ... and the re-pairing above was cut between its link and its forget.
    Row("resume-repairing", {2: "RS"}, [(1, "a", "S"), (2, "a", "RS")], {"a": "RS"},
        [forget(1)], after={"remote": 1, "local": 1}),
    # ... and meanwhile the new copy was expunged on the server: the newer pair decides.
    Row("resume-repairing-then-expunged", {}, [(1, "a", "S"), (2, "a", "RS")], {"a": "RS"},
        [forget(1), del_l("a"), forget(2)]),
    Row("resume-repairing-then-expunged-changed", {}, [(1, "a", "S"), (2, "a", "RS")],
        {"a": "FRS"}, [forget(1), up("a", "FRS", replaces=2)], notes=1),
]
# fmt: on


@pytest.mark.parametrize("row", ROWS, ids=[r.id for r in ROWS])
def test_table(row: Row) -> None:
    w = world_of(row.remote, row.base, row.local)
    plan = w.plan(Policy())
    assert plan.refused is None
    assert sorted(map(repr, plan.actions)) == sorted(map(repr, row.expect))
    assert len(plan.notes) == row.notes, plan.notes
    # The same inputs give the same plan, in the same order.
    assert w.plan(Policy()) == plan

    w.apply(plan)
    w.assert_converged()
    assert not w.plan(Policy()), "second run must do nothing"
    if row.after:
        assert len(w.remote) == row.after["remote"]
        assert len(w.local) == row.after["local"]


@pytest.mark.parametrize("row", ROWS, ids=[r.id for r in ROWS])
def test_table_applied_in_plan_order(row: Row) -> None:
    """The engine groups actions by kind; the plan must not depend on that."""
    w = world_of(row.remote, row.base, row.local)
    w.apply(w.plan(), engine_order=False)
    w.assert_converged()
    assert not w.plan()


def _outcome(w: FolderWorld) -> tuple[list[tuple[str, str]], list[tuple[str, str]]]:
    return (
        sorted((c, f.letters) for f, c in w.remote.values()),
        sorted((c, f.letters) for f, c in w.local.values()),
    )


def _crashes(w: FolderWorld) -> list[FolderWorld]:
    """Every way a sync of ``w`` can stop: after each action, and in the middle of each
    copy (the message is written, its pair is not recorded), in the plan's order and in
    the engine's."""
    plan = w.plan()
    out = []
    for actions in (plan.actions, in_engine_order(plan.actions)):
        for n in range(len(actions)):
            for torn in (False, True):
                crashed = w.copy()
                crashed.apply_prefix(actions, n, torn=torn)
                out.append(crashed)
    return out


@pytest.mark.parametrize("row", ROWS, ids=[r.id for r in ROWS])
def test_table_interrupted_at_every_step(row: Row) -> None:
    """isync's ``-Ts<n>``: stop the sync at every step, then stop the recovering sync at
    every step too, then sync to the end: the result is the uninterrupted one, with no
    duplicate and nothing lost."""
    clean = world_of(row.remote, row.base, row.local)
    clean.apply(clean.plan())
    expected = _outcome(clean)
    for first in _crashes(world_of(row.remote, row.base, row.local)):
        for second in [first, *_crashes(first)]:
            second.apply(second.plan())
            second.assert_converged()
            assert not second.plan()
            assert _outcome(second) == expected


def test_conflict_keeps_the_changed_copy_and_says_so() -> None:
    w = world_of({1: "FS"}, [(1, "a", "S")], {})
    plan = w.plan()
    assert "UID 1" in plan.notes[0]
    w.apply(plan)
    [(flags, content)] = w.local.values()
    assert (flags, content) == (F("FS"), "m1")
    assert w.base[Uid(1)].flags == F("FS")

    w = world_of({}, [(1, "a", "S")], {"a": "RS"})
    plan = w.plan()
    assert "a" in plan.notes[0]
    w.apply(plan)
    [(flags, content)] = w.remote.values()
    assert (flags, content) == (F("RS"), "m1")
    assert Uid(1) not in w.base, "the replaced pair is dropped"


def test_without_fingerprints_equal_messages_are_copied_both_ways() -> None:
    """Fingerprints are what adoption rests on: without them nothing is matched."""
    w = world_of({1: ("S", "x")}, [], {"a": ("S", "x")})
    plan = plan_folder(w.remote_snapshot(), w.local_snapshot(), [])
    assert sorted(map(repr, plan.actions)) == sorted(map(repr, [down(1, "S"), up("a", "S")]))


def test_fingerprint_missing_for_one_message_does_not_match_it() -> None:
    w = world_of({1: ("", "x"), 2: ("", "y")}, [], {"a": ("", "x"), "b": ("", "y")})
    plan = plan_folder(
        w.remote_snapshot(),
        w.local_snapshot(),
        [],
        remote_fps={Uid(1): fp_of("x")},
        local_fps=w.local_fps(),
    )
    assert sorted(map(repr, plan.actions)) == sorted(
        map(repr, [link(1, "a", "", "x"), down(2, ""), up("b", "")])
    )


# -- the mass-deletion guard -----------------------------------------------------------


def _synced(n: int) -> FolderWorld:
    return FolderWorld.synced((F("S"), f"m{i}") for i in range(n))


def _delete(w: FolderWorld, side: Side, n: int) -> None:
    """``n`` messages vanish on ``side`` (so the plan deletes them on the other one)."""
    for pair in list(w.base.values())[:n]:
        if side is Side.LOCAL:
            del w.local[pair.key]
        else:
            del w.remote[pair.uid]


GUARD_CASES = [
    # (messages, vanished, policy, refused)
    pytest.param(21, 11, Policy(), True, id="21-msgs-11-gone-refused"),
    pytest.param(21, 21, Policy(), True, id="21-msgs-all-gone-refused"),
    pytest.param(21, 10, Policy(), False, id="21-msgs-10-gone-allowed"),
    pytest.param(22, 11, Policy(), False, id="exactly-half-allowed"),
    pytest.param(22, 12, Policy(), True, id="just-over-half-refused"),
    pytest.param(20, 20, Policy(), False, id="20-msgs-all-gone-allowed"),
    pytest.param(21, 21, Policy(force=True), False, id="force-lifts-it"),
    pytest.param(
        10, 6, Policy(max_delete_share=0.5, guard_min_messages=5), True, id="custom-limits"
    ),
]


@pytest.mark.parametrize("vanished_on", [Side.LOCAL, Side.REMOTE], ids=["local", "remote"])
@pytest.mark.parametrize(("size", "gone", "policy", "refused"), GUARD_CASES)
def test_mass_deletion_guard(
    vanished_on: Side, size: int, gone: int, policy: Policy, refused: bool
) -> None:
    w = _synced(size)
    _delete(w, vanished_on, gone)
    # A new message on the side where mail vanished: the plan holds more than deletions.
    if vanished_on is Side.LOCAL:
        w.add_local("unrelated new message")
    else:
        w.add_remote("unrelated new message")
    plan = w.plan(policy)
    if refused:
        assert plan.refused is not None
        assert "--force" in plan.refused
        assert plan.actions == (), "a refused plan holds no action at all"
        assert not plan
    else:
        assert plan.refused is None
        assert plan.count(Delete, vanished_on.other) == gone
        w.apply(plan)
        w.assert_converged()
        assert len(w.remote) == len(w.local) == size - gone + 1


def test_guard_ignores_conflicts_and_counts_each_side_alone() -> None:
    """Restored conflicts are not deletions; the limit applies to each side separately."""
    w = _synced(30)
    pairs = list(w.base.values())
    for p in pairs[:10]:  # gone locally, unchanged on the server: 10 remote deletions
        del w.local[p.key]
    for p in pairs[10:20]:  # gone on the server, unchanged locally: 10 local deletions
        del w.remote[p.uid]
    for p in pairs[20:28]:  # gone locally but flagged on the server: restored
        del w.local[p.key]
        w.remote[p.uid] = (F("FS"), w.remote[p.uid][1])
    plan = w.plan(Policy())
    assert plan.refused is None
    assert plan.count(Delete, Side.REMOTE) == 10
    assert plan.count(Delete, Side.LOCAL) == 10
    assert plan.count(Copy, Side.LOCAL) == 8


def test_refused_plan_keeps_its_notes() -> None:
    w = _synced(25)
    _delete(w, Side.LOCAL, 25)
    w.remote[Uid(1)] = (F("F"), w.remote[Uid(1)][1])  # one conflict, with a note
    plan = w.plan(Policy())
    assert plan.refused is not None
    assert plan == Plan((), plan.notes, plan.refused)
    assert len(plan.notes) == 1
