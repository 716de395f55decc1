"""``plan_pop3``: table cases, properties of one plan, and a simulation of many polls.

The simulation plays the engine's write order (syncd/engine/fetch.py) against a model
server and Maildir: PENDING records, a delivery, DELIVERED records, DELE marks, QUIT, with
crashes at every step, mail arriving and vanishing, server hiccups that hide mail for one
poll, and time passing. It checks that no UIDL is ever stored twice and that nothing is
marked for deletion unless it is recorded as delivered and stored.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass, field

import pytest
from hypothesis import given
from hypothesis import strategies as st

from syncd.planner.pop3 import (
    DAY,
    FORGET_AFTER,
    Pop3Plan,
    Pop3Policy,
    RemoteMessage,
    Seen,
    SeenState,
    plan_pop3,
)

NOW = 1_800_000_000.0
D, P = SeenState.DELIVERED, SeenState.PENDING


def listing(*uidls: str | tuple[str, int]) -> list[RemoteMessage]:
    """Messages numbered from 1; a uidl alone has size 100."""
    out = []
    for n, item in enumerate(uidls, start=1):
        uidl, size = item if isinstance(item, tuple) else (item, 100)
        out.append(RemoteMessage(n, uidl, size))
    return out


def seen(*records: tuple[str, SeenState, float] | tuple[str, SeenState, float, float]) -> dict:
    out = {}
    for rec in records:
        uidl, state, age = rec[0], rec[1], rec[2]
        gone = NOW - rec[3] if len(rec) == 4 else None
        out[uidl] = Seen(uidl, state, NOW - age, gone)
    return out


@dataclass(frozen=True)
class Case:
    name: str
    listed: list[RemoteMessage]
    seen: dict
    policy: Pop3Policy
    download: list[tuple[str, bool]] = field(default_factory=list)
    delete: list[str] = field(default_factory=list)
    too_big: list[str] = field(default_factory=list)
    gone: list[str] = field(default_factory=list)
    back: list[str] = field(default_factory=list)
    forget: list[str] = field(default_factory=list)
    now: float = NOW


KEEP = Pop3Policy(leave_on_server=True)
DROP = Pop3Policy(leave_on_server=False)


def days(n: int, max_size: int | None = None) -> Pop3Policy:
    return Pop3Policy(leave_on_server=n, max_size=max_size)


CASES = [
    Case("nothing anywhere", [], {}, KEEP),
    Case("new mail, keep", listing("a", "b"), {}, KEEP, download=[("a", False), ("b", False)]),
    Case("new mail, delete", listing("a", "b"), {}, DROP, download=[("a", True), ("b", True)]),
    Case("new mail, 0 days is at once", listing("a"), {}, days(0), download=[("a", True)]),
    Case("new mail, 7 days keeps it now", listing("a"), {}, days(7), download=[("a", False)]),
    Case("delivered, keep", listing("a"), seen(("a", D, 99 * DAY)), KEEP),
    Case("delivered, delete", listing("a"), seen(("a", D, 0)), DROP, delete=["a"]),
    Case(
        "days: older goes, younger stays, the boundary goes",
        listing("old", "young", "edge"),
        seen(("old", D, 8 * DAY), ("young", D, 6 * DAY), ("edge", D, 7 * DAY)),
        days(7),
        delete=["old", "edge"],
    ),
    Case(
        "days: a clock that went back deletes nothing",
        listing("a"),
        seen(("a", D, -DAY)),
        days(0),
    ),
    Case(
        "pending is not delivered: download again, do not delete",
        listing("a"),
        seen(("a", P, DAY)),
        KEEP,
        download=[("a", False)],
    ),
    Case(
        "pending under delete: download, then delete in the same session",
        listing("a"),
        seen(("a", P, DAY)),
        DROP,
        download=[("a", True)],
    ),
    Case(
        "renumbered: nothing new, delete by today's number",
        [RemoteMessage(1, "c", 1), RemoteMessage(2, "a", 1)],
        seen(("a", D, 0)),
        DROP,
        download=[("c", True)],
        delete=["a"],
    ),
    Case(
        "max_size: too big is left alone",
        listing(("small", 10), ("big", 1000)),
        {},
        Pop3Policy(leave_on_server=False, max_size=500),
        download=[("small", True)],
        too_big=["big"],
    ),
    Case(
        "max_size: exactly the limit is downloaded",
        listing(("edge", 500)),
        {},
        Pop3Policy(max_size=500),
        download=[("edge", False)],
    ),
    Case(
        "max_size: delivered under an earlier, larger limit may be deleted",
        listing(("big", 1000)),
        seen(("big", D, 0)),
        Pop3Policy(leave_on_server=False, max_size=500),
        delete=["big"],
    ),
    Case(
        "gone: first missing is stamped, not forgotten",
        listing("a"),
        seen(("a", D, 0), ("x", D, 0)),
        KEEP,
        gone=["x"],
    ),
    Case(
        "gone: missing for less than forget_after is kept",
        [],
        seen(("x", D, 30 * DAY, FORGET_AFTER - 1)),
        KEEP,
    ),
    Case(
        "gone: missing for forget_after is forgotten",
        [],
        seen(("x", D, 30 * DAY, FORGET_AFTER)),
        KEEP,
        forget=["x"],
    ),
    Case(
        "back: listed again after a hiccup, not downloaded",
        listing("x"),
        seen(("x", D, DAY, DAY)),
        KEEP,
        back=["x"],
    ),
    Case(
        "an empty maildrop (hiccup) only stamps",
        [],
        seen(("a", D, 0), ("b", D, 0)),
        DROP,
        gone=["a", "b"],
    ),
    Case(
        "a uidl listed twice: downloaded once, never deleted",
        listing("dup", "dup", "z"),
        {},
        DROP,
        download=[("dup", False), ("z", True)],
    ),
    Case(
        "a delivered uidl listed twice is not deleted",
        listing("dup", "dup"),
        seen(("dup", D, 0)),
        DROP,
    ),
]


def summary(plan: Pop3Plan) -> dict[str, list]:
    return {
        "download": [(d.message.uidl, d.delete) for d in plan.download],
        "delete": [m.uidl for m in plan.delete],
        "too_big": [m.uidl for m in plan.too_big],
        "gone": list(plan.gone),
        "back": list(plan.back),
        "forget": list(plan.forget),
    }


@pytest.mark.parametrize("case", CASES, ids=[c.name for c in CASES])
def test_table(case: Case) -> None:
    plan = plan_pop3(case.listed, case.seen, case.policy, case.now)
    assert summary(plan) == {
        "download": case.download,
        "delete": case.delete,
        "too_big": case.too_big,
        "gone": case.gone,
        "back": case.back,
        "forget": case.forget,
    }
    # Messages are acted on by this session's numbers.
    numbers = {m.uidl: m.number for m in reversed(case.listed)}
    assert all(d.message.number == numbers[d.message.uidl] for d in plan.download)
    assert all(m.number == numbers[m.uidl] for m in plan.delete)


def test_notes_name_the_skipped_and_the_repeated() -> None:
    plan = plan_pop3(
        listing(("big", 3 * 1024 * 1024), "dup", "dup"), {}, Pop3Policy(max_size=1024 * 1024), NOW
    )
    assert plan.notes[0] == (
        "1 message larger than max_size (1.0 MiB) left on the server, not downloaded "
        "(the largest has 3.0 MiB)"
    )
    assert "'dup'" in plan.notes[1]


def test_plan_is_deterministic() -> None:
    args = (listing("a", "b", "c"), seen(("b", D, 9 * DAY), ("q", D, 0)), days(3), NOW)
    assert plan_pop3(*args) == plan_pop3(*args)


# -- properties of one plan ------------------------------------------------------------------

uidl_st = st.sampled_from([f"u{i}" for i in range(12)])
time_st = st.floats(NOW - 60 * DAY, NOW + DAY, allow_nan=False)
policy_st = st.builds(
    Pop3Policy,
    leave_on_server=st.one_of(st.booleans(), st.integers(0, 30)),
    max_size=st.one_of(st.none(), st.integers(1, 2000)),
)


@st.composite
def inputs(draw: st.DrawFn) -> tuple[list[RemoteMessage], dict[str, Seen], Pop3Policy, float]:
    items = draw(st.lists(st.tuples(uidl_st, st.integers(1, 3000)), max_size=15))
    listed = [RemoteMessage(n, u, s) for n, (u, s) in enumerate(items, start=1)]
    records = draw(
        st.dictionaries(
            uidl_st,
            st.tuples(st.sampled_from(SeenState), time_st, st.one_of(st.none(), time_st)),
        )
    )
    seen_map = {u: Seen(u, state, t, g) for u, (state, t, g) in records.items()}
    return listed, seen_map, draw(policy_st), draw(time_st)


@given(inputs())
def test_one_plan_keeps_the_invariants(args) -> None:
    listed, seen_map, policy, now = args
    plan = plan_pop3(listed, seen_map, policy, now)
    counts = Counter(m.uidl for m in listed)
    downloads = [d.message.uidl for d in plan.download]
    delivered = {u for u, r in seen_map.items() if r.state is SeenState.DELIVERED}

    assert len(downloads) == len(set(downloads)), "a UIDL downloaded twice in one session"
    assert not set(downloads) & delivered, "a delivered UIDL downloaded again"
    for m in plan.delete:
        assert m.uidl in delivered, "deleting a message not recorded as delivered"
        assert counts[m.uidl] == 1
    for d in plan.download:
        if d.delete:
            assert counts[d.message.uidl] == 1
        if policy.max_size is not None:
            assert d.message.size <= policy.max_size
    if policy.leave_on_server is True:
        assert not plan.delete
        assert not any(d.delete for d in plan.download)
    if not isinstance(policy.leave_on_server, bool):
        for m in plan.delete:
            assert now - seen_map[m.uidl].first_seen >= policy.leave_on_server * DAY
    # Every listed message is handled exactly one way.
    for uidl in counts:
        ways = (uidl in downloads) + (uidl in {m.uidl for m in plan.too_big})
        assert ways <= 1
        if uidl not in delivered:
            assert ways == 1
    assert not set(plan.gone) & set(counts)
    assert not set(plan.forget) & set(counts)
    assert set(plan.back) <= set(counts)
    for uidl in plan.forget:
        gone = seen_map[uidl].gone_since
        assert gone is not None
        assert now - gone >= policy.forget_after


# -- many polls against a model server, with crashes ----------------------------------------


@dataclass
class World:
    """A model maildrop, Maildir and state database, driven like engine/fetch.py."""

    policy: Pop3Policy
    now: float = NOW
    server: list[tuple[str, int]] = field(default_factory=list)
    hidden: set[str] = field(default_factory=set)
    hidden_until: float = 0.0
    seen: dict[str, Seen] = field(default_factory=dict)
    stored: Counter[str] = field(default_factory=Counter)
    next_id: int = 0
    deleted_by_us: set[str] = field(default_factory=set)

    def arrive(self, sizes: Sequence[int]) -> None:
        for size in sizes:
            self.next_id += 1
            self.server.append((f"m{self.next_id}", size))

    def recover(self) -> None:
        """The engine's recovery: a PENDING record with a stored copy becomes DELIVERED."""
        for uidl, rec in list(self.seen.items()):
            if rec.state is SeenState.PENDING:
                if self.stored[uidl]:
                    self.seen[uidl] = Seen(uidl, SeenState.DELIVERED, rec.first_seen, None)
                else:
                    del self.seen[uidl]

    def poll(self, batch: int, crash_at: int | None) -> bool:
        """One poll; True when it ran to QUIT. ``crash_at`` counts steps before a kill."""
        steps = 0

        def step() -> bool:
            nonlocal steps
            steps += 1
            return crash_at is not None and steps > crash_at

        self.recover()
        if self.now >= self.hidden_until:
            self.hidden = set()
        listed = [
            RemoteMessage(n, u, s)
            for n, (u, s) in enumerate(((u, s) for u, s in self.server if u not in self.hidden), 1)
        ]
        plan = plan_pop3(listed, self.seen, self.policy, self.now)
        if step():
            return False
        for uidl in plan.gone:
            self.seen[uidl] = Seen(
                uidl, self.seen[uidl].state, self.seen[uidl].first_seen, self.now
            )
        for uidl in plan.back:
            self.seen[uidl] = Seen(uidl, self.seen[uidl].state, self.seen[uidl].first_seen, None)
        for uidl in plan.forget:
            del self.seen[uidl]
        marked: set[str] = set()

        def mark(uidl: str) -> None:
            rec = self.seen.get(uidl)
            assert rec is not None and rec.state is SeenState.DELIVERED, f"DELE {uidl} unrecorded"
            assert self.stored[uidl] == 1, f"DELE {uidl} without a stored copy"
            marked.add(uidl)

        todo = list(plan.download)
        for start in range(0, len(todo), batch):
            chunk = todo[start : start + batch]
            if step():
                return False
            for d in chunk:  # (a) PENDING
                self.seen[d.message.uidl] = Seen(d.message.uidl, SeenState.PENDING, self.now)
            for d in chunk:  # (b) delivery, one file at a time as the renames go
                if step():
                    return False
                assert self.stored[d.message.uidl] == 0, f"{d.message.uidl} stored twice"
                self.stored[d.message.uidl] += 1
            if step():
                return False
            for d in chunk:  # (c) DELIVERED
                self.seen[d.message.uidl] = Seen(d.message.uidl, SeenState.DELIVERED, self.now)
            for d in chunk:  # (d)
                if d.delete:
                    mark(d.message.uidl)
        for m in plan.delete:
            mark(m.uidl)
        if step():
            return False  # killed before QUIT: the server forgets the marks
        for uidl in marked:
            first = self.seen[uidl].first_seen
            if not isinstance(self.policy.leave_on_server, bool):
                assert self.now - first >= self.policy.leave_on_server * DAY
        assert not (marked and self.policy.leave_on_server is True)
        self.server = [(u, s) for u, s in self.server if u not in marked]
        self.deleted_by_us |= marked
        return True


event_st = st.one_of(
    st.tuples(st.just("arrive"), st.lists(st.integers(1, 1500), min_size=1, max_size=4)),
    st.tuples(st.just("vanish"), st.integers(0, 10)),
    st.tuples(st.just("hiccup"), st.booleans(), st.floats(0, 10 * DAY)),
    st.tuples(st.just("wait"), st.floats(0, 3 * DAY)),
    st.tuples(st.just("poll"), st.integers(1, 3), st.one_of(st.none(), st.integers(0, 12))),
)


@given(policy=policy_st, events=st.lists(event_st, max_size=30))
def test_many_polls_never_duplicate_or_lose(policy: Pop3Policy, events: list) -> None:
    w = World(policy)
    for event in events:
        kind = event[0]
        if kind == "arrive":
            w.arrive(event[1])
        elif kind == "vanish" and w.server:
            # Another client deletes a message (it may or may not have been downloaded).
            w.server.pop(event[1] % len(w.server))
        elif kind == "hiccup" and not w.hidden:
            # The server hides everything, or half, for a while (less than forget_after).
            w.hidden = {u for i, (u, _) in enumerate(w.server) if event[1] or i % 2}
            w.hidden_until = w.now + event[2]
        elif kind == "wait":
            w.now += event[1]
        elif kind == "poll":
            completed = w.poll(event[1], event[2])
            if completed and not w.hidden:
                # A full poll leaves every message that fits stored, and, under
                # leave_on_server: false, nothing stored on the server.
                for uidl, size in w.server:
                    if policy.max_size is None or size <= policy.max_size:
                        assert w.stored[uidl] == 1
                        if policy.leave_on_server is False:
                            raise AssertionError(f"{uidl} still on the server")
    assert all(n <= 1 for n in w.stored.values())
    # What we deleted on the server we have.
    assert all(w.stored[u] == 1 for u in w.deleted_by_us)


def test_a_crash_at_every_step_of_a_poll_converges() -> None:
    """The simulation, exhaustively over one scenario: kill at step k, then a clean poll."""
    for k in range(20):
        w = World(Pop3Policy(leave_on_server=False))
        w.arrive([10, 20, 30, 40, 50])
        w.poll(batch=2, crash_at=k)
        assert w.poll(batch=2, crash_at=None)
        assert w.server == []
        assert sorted(w.stored.elements()) == [f"m{i}" for i in range(1, 6)]


@pytest.mark.parametrize("leave", [True, 30])
def test_mail_hidden_for_a_while_is_not_downloaded_again(leave: bool | int) -> None:
    """A server that shows an empty maildrop for several polls (storage trouble) must not
    make syncd forget what it has: when the mail is back, nothing is downloaded again."""
    w = World(Pop3Policy(leave_on_server=leave))
    w.arrive([10, 20])
    assert w.poll(batch=5, crash_at=None)
    w.hidden, w.hidden_until = {"m1", "m2"}, w.now + FORGET_AFTER - DAY
    for _ in range(5):
        assert w.poll(batch=5, crash_at=None)
        w.now += 2 * DAY
    assert w.seen["m1"].gone_since is not None
    w.now = w.hidden_until
    assert w.poll(batch=5, crash_at=None)  # would raise "stored twice"
    assert w.seen["m1"].gone_since is None
    assert w.stored == Counter({"m1": 1, "m2": 1})


def test_records_of_deleted_mail_are_forgotten_after_the_grace_period() -> None:
    w = World(Pop3Policy(leave_on_server=False))
    w.arrive([10])
    assert w.poll(batch=1, crash_at=None)
    assert w.server == []
    assert w.poll(batch=1, crash_at=None)
    assert w.seen["m1"].gone_since == w.now
    w.now += FORGET_AFTER
    assert w.poll(batch=1, crash_at=None)
    assert w.seen == {}
