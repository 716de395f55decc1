"""Properties of ``plan_folder`` (STYLE.md section 6), checked with hypothesis.

The strategy builds a consistent (remote, local, base) triple the way one arises: a
synced history (every message on both sides and paired) followed by random edits on
each side (flag flips, deletions, new messages, some of them the same message on both
sides). Plans are applied to the in-memory world of :mod:`tests.planner.model_world`.
"""

from __future__ import annotations

from collections import Counter

from hypothesis import given
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, initialize, rule

from syncd.model import Flag, LocalKey, Pair, Policy, Side, Uid
from syncd.planner import Copy, Delete, Forget, Link, Plan, SetFlags, merge_flags
from syncd.planner.actions import Action

from .model_world import FORCE, FolderWorld, KeyFactory, fp_of, in_engine_order, key_of

ALL_FLAGS = [Flag(i) for i in range(64)]

flags_st = st.sampled_from(ALL_FLAGS)
mask_st = st.integers(1, 63)
# A small pool of contents so that equal messages (duplicates, the same message new on
# both sides, a new message equal to a synced one) come up often.
content_st = st.integers(0, 7).map(lambda i: f"c{i}")

KEEP, FLIP, DELETE = "keep", "flip", "delete"
edit_st = st.sampled_from([KEEP, KEEP, FLIP, DELETE])


@st.composite
def triples(draw: st.DrawFn, max_synced: int = 10, max_new: int = 4) -> FolderWorld:
    """A folder after a synced history and random edits on both sides."""
    synced = draw(st.lists(st.tuples(flags_st, content_st), max_size=max_synced))
    new_remote = draw(st.lists(st.tuples(flags_st, content_st), max_size=max_new))
    new_local = draw(st.lists(st.tuples(flags_st, content_st), max_size=max_new))
    # The same message arriving on both sides (possibly with different flags).
    new_both = draw(st.lists(st.tuples(flags_st, flags_st, content_st), max_size=max_new))
    n_remote = len(synced) + len(new_remote) + len(new_both)
    n_local = len(synced) + len(new_local) + len(new_both)
    # UIDs and keys from the same number range, in random order, so that the mirror of
    # a triple is again a triple (see ``mirror``) and pairs are not sorted alike.
    uids = draw(st.lists(st.integers(1, 999), min_size=n_remote, max_size=n_remote, unique=True))
    keys = draw(st.lists(st.integers(1, 999), min_size=n_local, max_size=n_local, unique=True))
    uid_it = iter(uids)
    key_it = iter(keys)

    w = FolderWorld(new_key=KeyFactory())
    for flags, content in synced:
        uid, key = Uid(next(uid_it)), key_of(next(key_it))
        w.remote[uid] = (flags, content)
        w.local[key] = (flags, content)
        w.base[uid] = Pair(uid, key, flags, fp_of(content))
    for pair in list(w.base.values()):
        same_mask = draw(st.booleans())
        mask_r = draw(mask_st)
        mask_l = mask_r if same_mask else draw(mask_st)
        for side, mask in ((Side.REMOTE, mask_r), (Side.LOCAL, mask_l)):
            edit = draw(edit_st)
            ident = pair.uid if side is Side.REMOTE else pair.key
            if edit == FLIP:
                w.flip(side, ident, mask)
            elif edit == DELETE:
                w.remove(side, ident)
    for flags, content in new_remote:
        w.remote[Uid(next(uid_it))] = (flags, content)
    for flags, content in new_local:
        w.local[key_of(next(key_it))] = (flags, content)
    for r_flags, l_flags, content in new_both:
        w.remote[Uid(next(uid_it))] = (r_flags, content)
        w.local[key_of(next(key_it))] = (l_flags, content)
    w.next_uid = 1000
    return w


def _changed(w: FolderWorld, pair: Pair) -> bool:
    r, lo = w.remote.get(pair.uid), w.local.get(pair.key)
    return (r is not None and r[0] != pair.flags) or (lo is not None and lo[0] != pair.flags)


def _must_survive(w: FolderWorld) -> set[str]:
    """Contents a plan may not lose: everything except the messages of pairs that are
    gone on one side and unchanged on the other (a deletion to propagate)."""
    dead = set()
    for pair in w.base.values():
        r, lo = w.remote.get(pair.uid), w.local.get(pair.key)
        if (r is None) != (lo is None) and not _changed(w, pair):
            dead.add((r or lo)[1])  # type: ignore[index]
    everything = set(w.contents(Side.REMOTE)) | set(w.contents(Side.LOCAL))
    return everything - dead


# -- idempotence, convergence, no loss -------------------------------------------------


@given(triples())
def test_idempotent(w: FolderWorld) -> None:
    plan = w.plan(FORCE)
    w.apply(plan)
    assert w.plan(FORCE) == Plan(), "planning again after applying must give nothing"


@given(triples())
def test_idempotent_in_plan_order(w: FolderWorld) -> None:
    w.apply(w.plan(FORCE), engine_order=False)
    assert not w.plan(FORCE)


@given(triples())
def test_converges(w: FolderWorld) -> None:
    w.apply(w.plan(FORCE))
    assert len(w.remote) == len(w.local)
    assert w.contents(Side.REMOTE) == w.contents(Side.LOCAL)
    w.assert_converged()


@given(triples())
def test_nothing_unsynced_or_changed_is_deleted(w: FolderWorld) -> None:
    plan = w.plan(FORCE)
    by_key = {p.key: p for p in w.base.values()}
    for action in plan.actions:
        if not isinstance(action, Delete):
            continue
        if action.side is Side.REMOTE:
            pair = w.base.get(Uid(int(action.ident)))
            assert pair is not None, f"{action}: never synced"
            assert pair.key not in w.local, f"{action}: still there locally"
        else:
            pair = by_key.get(LocalKey(str(action.ident)))
            assert pair is not None, f"{action}: never synced"
            assert pair.uid not in w.remote, f"{action}: still there remotely"
        assert not _changed(w, pair), f"{action}: changed since the base"


@given(triples())
def test_no_loss(w: FolderWorld) -> None:
    keep = _must_survive(w)
    w.apply(w.plan(FORCE))
    for side in Side:
        missing = keep - set(w.contents(side))
        assert not missing, f"lost on the {side.value} side: {sorted(missing)}"


@given(triples())
def test_guarded_plan_is_all_or_nothing(w: FolderWorld) -> None:
    policy = Policy(max_delete_share=0.2, guard_min_messages=2)
    plan = w.plan(policy)
    if plan.refused is not None:
        assert plan.actions == ()
        assert w.plan(FORCE).count(Delete) > 0
    else:
        assert plan == w.plan(FORCE)


# -- symmetry --------------------------------------------------------------------------


def _u2k(uid: int) -> LocalKey:
    return key_of(uid)


def _k2u(key: str) -> Uid:
    return Uid(int(key[1:]))


def mirror(w: FolderWorld) -> FolderWorld:
    """The same folder with remote and local swapped: UID n <-> key "k<n>"."""
    return FolderWorld(
        remote={_k2u(k): msg for k, msg in w.local.items()},
        local={_u2k(u): msg for u, msg in w.remote.items()},
        base={_k2u(p.key): Pair(_k2u(p.key), _u2k(p.uid), p.flags, p.fp) for p in w.base.values()},
    )


def mirror_action(action: Action, w: FolderWorld) -> Action:
    """``action`` of a plan for ``w``, as it reads in a plan for ``mirror(w)``."""

    def ident(i: object) -> Uid | LocalKey:
        return _u2k(i) if isinstance(i, int) else _k2u(str(i))

    def pair_uid(uid: Uid) -> Uid:
        return _k2u(w.base[uid].key)

    if isinstance(action, SetFlags):
        return SetFlags(action.side.other, ident(action.ident), action.old, action.new)
    if isinstance(action, Delete):
        return Delete(action.side.other, ident(action.ident))
    if isinstance(action, Link):
        return Link(_k2u(action.key), _u2k(action.uid), action.flags, action.fp)
    if isinstance(action, Forget):
        return Forget(pair_uid(action.uid))
    assert isinstance(action, Copy)
    replaces = None if action.replaces is None else pair_uid(action.replaces)
    return Copy(action.source.other, ident(action.ident), action.flags, replaces)


def test_mirror_is_an_involution() -> None:
    w = FolderWorld.synced([(Flag.S, "a"), (Flag.NONE, "b")])
    w.add_local("c")
    m = mirror(mirror(w))
    assert (m.remote, m.local, m.base) == (w.remote, w.local, w.base)


def explicit(plan: Plan, w: FolderWorld) -> list[Action]:
    """The plan's actions with the one implicit step spelled out.

    The base is keyed by UID, so a Link that re-pairs an existing UID with another key
    drops the old pair by itself, while re-pairing a key with another UID needs a Forget.
    That is the only place where the data model is not symmetric.
    """
    out = list(plan.actions)
    for a in plan.actions:
        if isinstance(a, Link) and a.uid in w.base and w.base[a.uid].key != a.key:
            out.append(Forget(a.uid))
    return out


@given(triples(), st.sampled_from([Policy(), Policy(max_delete_share=0.2, guard_min_messages=2)]))
def test_symmetric(w: FolderWorld, policy: Policy) -> None:
    plan = w.plan(policy)
    m = mirror(w)
    mplan = m.plan(policy)
    assert (plan.refused is None) == (mplan.refused is None)
    assert len(plan.notes) == len(mplan.notes)
    mirrored = Counter(mirror_action(a, w) for a in explicit(plan, w))
    assert mirrored == Counter(explicit(mplan, m))


# -- flags -----------------------------------------------------------------------------


def _oracle(base: int, remote: int, local: int) -> int:
    """Per bit: the side that changed it wins; unchanged on both, it stays."""
    out = 0
    for bit in (1 << i for i in range(6)):
        out |= (remote if (remote & bit) != (base & bit) else local) & bit
    return out


def test_merge_flags_is_a_bitwise_three_way_merge() -> None:
    """All 64 x 64 x 64 combinations, plus the no-base union."""
    for b in range(64):
        fb = ALL_FLAGS[b]
        for r in range(64):
            fr = ALL_FLAGS[r]
            for lo in range(64):
                got = merge_flags(fb, fr, ALL_FLAGS[lo]).value
                assert got == _oracle(b, r, lo), (b, r, lo)
    for r in range(64):
        for lo in range(64):
            assert merge_flags(None, ALL_FLAGS[r], ALL_FLAGS[lo]).value == r | lo


@given(flags_st, flags_st, flags_st)
def test_merge_flags_laws(b: Flag, r: Flag, lo: Flag) -> None:
    assert merge_flags(b, b, lo) == lo  # only local changed
    assert merge_flags(b, r, b) == r  # only remote changed
    assert merge_flags(b, r, r) == r  # the same change on both sides
    assert merge_flags(b, r, lo) == merge_flags(b, lo, r)  # symmetric


# -- the state machine: edits, syncs and crashes ---------------------------------------


class SyncMachine(RuleBasedStateMachine):
    """Users edit both sides, syncs run, some of them crash part-way.

    ``alive`` holds the contents that must be on both sides (exactly once) after the next
    full sync. A user deletion moves a content to ``deleted``; when a full sync starts, a
    deleted content whose other copy is unsynced or changed since the base goes back to
    ``alive`` (changes win over deletions); the others may vanish.
    """

    def __init__(self) -> None:
        super().__init__()
        self.w = FolderWorld()
        self.n = 0
        self.alive: set[str] = set()
        self.deleted: set[str] = set()

    @initialize(n=st.integers(0, 6))
    def start_synced(self, n: int) -> None:
        for _ in range(n):
            self.new_message(Side.REMOTE, Flag.NONE)
        self.sync()

    # -- edits -------------------------------------------------------------------------

    def _pick(self, side: Side, index: int) -> Uid | LocalKey | None:
        idents = self.w.idents(side)
        return idents[index % len(idents)] if idents else None

    @rule(side=st.sampled_from(Side), flags=flags_st)
    def new_message(self, side: Side, flags: Flag) -> None:
        self.n += 1
        content = f"m{self.n}"
        if side is Side.REMOTE:
            self.w.add_remote(content, flags)
        else:
            self.w.add_local(content, flags)
        self.alive.add(content)

    @rule(r_flags=flags_st, l_flags=flags_st)
    def same_new_message_on_both_sides(self, r_flags: Flag, l_flags: Flag) -> None:
        self.n += 1
        content = f"m{self.n}"
        self.w.add_remote(content, r_flags)
        self.w.add_local(content, l_flags)
        self.alive.add(content)

    @rule(side=st.sampled_from(Side), index=st.integers(0, 100), mask=mask_st)
    def flip_flags(self, side: Side, index: int, mask: int) -> None:
        ident = self._pick(side, index)
        if ident is not None:
            self.w.flip(side, ident, mask)

    @rule(side=st.sampled_from(Side), index=st.integers(0, 100))
    def delete(self, side: Side, index: int) -> None:
        ident = self._pick(side, index)
        if ident is not None:
            self._deleted(self.w.remove(side, ident))

    def _deleted(self, content: str) -> None:
        self.alive.discard(content)
        self.deleted.add(content)

    @rule(side=st.sampled_from(Side), index=st.integers(0, 100), mask=mask_st)
    def conflicting_edits(self, side: Side, index: int, mask: int) -> None:
        """A message is deleted on ``side`` while its flags change on the other side:
        the one real conflict, made common here."""
        if not self.w.base:
            return
        pair = sorted(self.w.base.values(), key=lambda p: p.uid)[index % len(self.w.base)]
        ident = pair.uid if side is Side.REMOTE else pair.key
        other = pair.key if side is Side.REMOTE else pair.uid
        if ident in self.w.idents(side) and other in self.w.idents(side.other):
            self.w.flip(side.other, other, mask)
            self._deleted(self.w.remove(side, ident))

    @rule()
    def uidvalidity_reset(self) -> None:
        self.w.reset_uidvalidity()

    # -- syncs -------------------------------------------------------------------------

    def _protect(self) -> None:
        """Deleted contents that the planner must keep: a copy that was never synced, or
        whose flags differ from its pair's (the newest pair of its key)."""
        w = self.w
        by_key = {p.key: p for p in sorted(w.base.values(), key=lambda p: p.uid)}
        for content in sorted(self.deleted):
            for uid, (flags, c) in w.remote.items():
                pair = w.base.get(uid)
                if c == content and (pair is None or pair.flags != flags):
                    self.alive.add(content)
            for key, (flags, c) in w.local.items():
                pair = by_key.get(key)
                if c == content and (pair is None or pair.flags != flags):
                    self.alive.add(content)
        self.deleted -= self.alive

    @rule(
        cut=st.integers(0, 40),
        torn=st.booleans(),
        engine_order=st.booleans(),
    )
    def crash_sync(self, cut: int, torn: bool, engine_order: bool) -> None:
        plan = self.w.plan(FORCE)
        actions = in_engine_order(plan.actions) if engine_order else plan.actions
        if actions:
            self.w.apply_prefix(actions, cut % len(actions), torn=torn)
        # A deleted message that is on both sides again was restored (changes win over
        # deletions) and is an ordinary message from now on. One that is not may still
        # vanish: the user can undo the change that protected it before the next sync.
        both = set(self.w.contents(Side.REMOTE)) & set(self.w.contents(Side.LOCAL))
        self.alive |= self.deleted & both
        self.deleted -= both

    @rule()
    def sync(self) -> None:
        self._protect()
        w = self.w
        plan = w.plan(FORCE)
        assert plan.refused is None
        w.apply(plan)
        w.assert_converged()
        again = w.plan(FORCE)
        assert not again, f"second plan not empty: {again}"
        remote, local = w.contents(Side.REMOTE), w.contents(Side.LOCAL)
        for content in sorted(self.alive):
            assert remote[content] == 1, f"{content!r} is {remote[content]} times on the server"
            assert local[content] == 1, f"{content!r} is {local[content]} times locally"
        invented = set(remote) - self.alive - self.deleted
        assert not invented, f"contents from nowhere: {invented}"
        self.alive = set(remote)
        self.deleted = set()


TestSyncMachine = SyncMachine.TestCase
