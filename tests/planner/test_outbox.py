"""The outbox planner: reply classes, per-message outcomes, backoff, crash recovery table."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from syncd.planner.outbox import (
    BACKOFF_BASE,
    BACKOFF_CAP,
    Action,
    Attempt,
    DrainPlan,
    JournalRow,
    Phase,
    Reply,
    Stage,
    Verdict,
    classify,
    decide,
    next_attempt,
    plan_drain,
)

A, T, P = Verdict.ACCEPTED, Verdict.TEMPORARY, Verdict.PERMANENT
OK = Reply(250, "2.0.0 OK")


@pytest.mark.parametrize(
    ("code", "stage", "verdict"),
    [
        (250, Stage.DATA, A),
        (251, Stage.RCPT, A),  # user not local; will forward
        (252, Stage.RCPT, A),
        (354, Stage.DATA, A),
        (421, Stage.MAIL, T),  # service closing
        (450, Stage.RCPT, T),  # mailbox busy / greylisted
        (451, Stage.DATA, T),
        (452, Stage.RCPT, T),  # too many recipients / no storage
        (454, Stage.MAIL, T),
        (500, Stage.MAIL, P),
        (530, Stage.MAIL, P),
        (550, Stage.RCPT, P),
        (551, Stage.RCPT, P),
        (552, Stage.DATA, P),  # message too big
        (552, Stage.RCPT, T),  # RFC 5321 4.5.3.1.10: "too many recipients"
        (553, Stage.MAIL, P),
        (554, Stage.DATA, P),
        (555, Stage.MAIL, P),
        (-1, Stage.DATA, T),  # smtplib's "could not read a code"
        (199, Stage.DATA, T),
        (600, Stage.DATA, T),
    ],
)
def test_classify_table(code: int, stage: Stage, verdict: Verdict) -> None:
    assert classify(Reply(code, "text"), stage) is verdict


def test_no_reply_is_temporary() -> None:
    for stage in Stage:
        assert classify(None, stage) is Verdict.TEMPORARY


@given(st.integers(min_value=-1000, max_value=1000), st.sampled_from(list(Stage)))
def test_classify_never_drops_on_unknown_codes(code: int, stage: Stage) -> None:
    verdict = classify(Reply(code, ""), stage)
    if verdict is Verdict.PERMANENT:
        assert 500 <= code < 600


# -- decide ------------------------------------------------------------------------------------


def test_all_accepted_is_done() -> None:
    out = decide(Attempt(("a@x", "b@y"), mail=OK, rcpt={"a@x": OK, "b@y": OK}, data=OK))
    assert out.action is Action.DONE
    assert out.accepted == ("a@x", "b@y")
    assert out.pending == () and out.refused == ()


def test_451_on_data_retries_everybody() -> None:
    out = decide(
        Attempt(("a@x", "b@y"), mail=OK, rcpt={"a@x": OK, "b@y": OK}, data=Reply(451, "later"))
    )
    assert out.action is Action.RETRY
    assert out.pending == ("a@x", "b@y")
    assert out.accepted == ()
    assert out.error == "message deferred: 451 later"


def test_550_for_everyone_fails_with_the_servers_answer() -> None:
    no = Reply(550, "5.1.1 no such user")
    out = decide(Attempt(("a@x", "b@y"), mail=OK, rcpt={"a@x": no, "b@y": no}))
    assert out.action is Action.FAIL
    assert out.refused == (("a@x", "550 5.1.1 no such user"), ("b@y", "550 5.1.1 no such user"))
    assert out.error is not None and "550 5.1.1 no such user" in out.error


def test_partial_refusal_is_done_and_reports_the_refused() -> None:
    out = decide(
        Attempt(("a@x", "b@y"), mail=OK, rcpt={"a@x": OK, "b@y": Reply(550, "nope")}, data=OK)
    )
    assert out.action is Action.DONE
    assert out.accepted == ("a@x",)
    assert out.refused == (("b@y", "550 nope"),)


def test_partial_temporary_delivers_to_some_and_retries_the_rest() -> None:
    out = decide(
        Attempt(("a@x", "b@y"), mail=OK, rcpt={"a@x": OK, "b@y": Reply(452, "later")}, data=OK)
    )
    assert out.action is Action.RETRY
    assert out.accepted == ("a@x",)
    assert out.pending == ("b@y",)
    assert out.error == "b@y: 452 later"


def test_refusal_of_the_rest_after_earlier_delivery_is_done_not_failed() -> None:
    out = decide(Attempt(("b@y",), mail=OK, rcpt={"b@y": Reply(550, "gone")}), delivered=("a@x",))
    assert out.action is Action.DONE
    assert out.refused == (("b@y", "550 gone"),)


def test_sender_refused_fails_every_recipient() -> None:
    out = decide(Attempt(("a@x",), mail=Reply(553, "5.7.1 not your address")))
    assert out.action is Action.FAIL
    assert out.refused == (("a@x", "sender refused: 553 5.7.1 not your address"),)


def test_sender_deferred_retries() -> None:
    out = decide(Attempt(("a@x",), mail=Reply(421, "closing")))
    assert out.action is Action.RETRY
    assert out.error == "sender deferred: 421 closing"


def test_connection_lost_after_data_retries_with_the_reason() -> None:
    out = decide(Attempt(("a@x",), mail=OK, rcpt={"a@x": OK}, lost="timed out"))
    assert out.action is Action.RETRY
    assert out.pending == ("a@x",)
    assert out.error == "timed out"


def test_connection_lost_before_anything() -> None:
    out = decide(Attempt(("a@x", "b@y"), lost="connection refused"))
    assert out.action is Action.RETRY
    assert out.pending == ("a@x", "b@y")
    assert out.error == "connection refused"


def test_permanent_data_refusal_after_some_rcpt_refusals() -> None:
    out = decide(
        Attempt(
            ("a@x", "b@y"),
            mail=OK,
            rcpt={"a@x": OK, "b@y": Reply(550, "no")},
            data=Reply(552, "5.3.4 too big"),
        )
    )
    assert out.action is Action.FAIL
    assert dict(out.refused) == {"b@y": "550 no", "a@x": "message refused: 552 5.3.4 too big"}


addresses = st.lists(st.sampled_from(["a@x", "b@y", "c@z", "d@w"]), min_size=1, unique=True)
replies = st.one_of(st.none(), st.sampled_from([250, 251, 421, 450, 451, 452, 550, 552, 554]))


@given(addresses, st.data())
def test_decide_accounts_for_every_recipient_once(rcpts: list[str], data: st.DataObject) -> None:
    rcpt = {}
    for r in rcpts:
        code = data.draw(replies)
        if code is not None:
            rcpt[r] = Reply(code, "x")
    mail_code = data.draw(st.sampled_from([250, 250, 421, 553]))
    data_code = data.draw(replies)
    attempt = Attempt(
        tuple(rcpts),
        mail=Reply(mail_code, "m"),
        rcpt=rcpt,
        data=None if data_code is None else Reply(data_code, "d"),
    )
    out = decide(attempt)
    refused = [r for r, _ in out.refused]
    assert sorted([*out.accepted, *out.pending, *refused]) == sorted(rcpts)
    assert (out.action is Action.RETRY) == bool(out.pending)
    assert (out.action is Action.DONE) == (not out.pending and bool(out.accepted))
    if out.action is not Action.DONE:
        assert out.error


# -- backoff ------------------------------------------------------------------------------------


def test_backoff_values() -> None:
    assert next_attempt(1, 1000.0) == 1000.0 + BACKOFF_BASE
    assert next_attempt(2, 1000.0) == 1000.0 + 2 * BACKOFF_BASE
    assert next_attempt(3, 1000.0) == 1000.0 + 4 * BACKOFF_BASE
    assert next_attempt(100, 0.0) == BACKOFF_CAP
    assert next_attempt(0, 0.0) == BACKOFF_BASE  # a zero count is treated as the first


@given(
    st.integers(min_value=0, max_value=10_000),
    st.integers(min_value=0, max_value=10_000),
    st.floats(min_value=0, max_value=4e9, allow_nan=False),
)
def test_backoff_is_monotone_and_capped(a: int, b: int, now: float) -> None:
    lo, hi = sorted((a, b))
    assert now < next_attempt(lo, now) <= next_attempt(hi, now)
    assert next_attempt(hi, now) - now <= BACKOFF_CAP + 1e-6 * max(1.0, now)


# -- recovery table ---------------------------------------------------------------------------


def row(key: str, phase: Phase, attempts: int = 0, nxt: float | None = None) -> JournalRow:
    return JournalRow(key, phase, attempts, nxt)


@pytest.mark.parametrize(
    ("queued", "journal", "force", "expected"),
    [
        # a fresh message is sent
        (["m1"], [], False, DrainPlan(send=("m1",))),
        # queued with no backoff (a connection failure) is due
        (["m1"], [row("m1", Phase.QUEUED, 3)], False, DrainPlan(send=("m1",))),
        # backoff not expired: waits, unless forced
        (["m1"], [row("m1", Phase.QUEUED, 1, 200.0)], False, DrainPlan(waiting=("m1",))),
        (["m1"], [row("m1", Phase.QUEUED, 1, 200.0)], True, DrainPlan(send=("m1",))),
        (["m1"], [row("m1", Phase.QUEUED, 1, 100.0)], False, DrainPlan(send=("m1",))),
        # died in the window: sent again, flagged
        (["m1"], [row("m1", Phase.SENDING)], False, DrainPlan(send=("m1",), resend=("m1",))),
        # accepted: never sent again, only bookkeeping is finished
        (["m1"], [row("m1", Phase.SENT, 0, 500.0)], True, DrainPlan(copy=("m1",))),
        (["m1"], [row("m1", Phase.COPIED)], False, DrainPlan(finish=("m1",))),
        # a row without its file is forgotten, whatever its phase
        (
            [],
            [row("m1", Phase.SENDING), row("m0", Phase.COPIED)],
            False,
            DrainPlan(forget=("m0", "m1")),
        ),
        # queue order is kept
        (
            ["m3", "m1", "m2"],
            [row("m1", Phase.SENT), row("m2", Phase.QUEUED, 1, 999.0)],
            False,
            DrainPlan(send=("m3",), copy=("m1",), waiting=("m2",)),
        ),
    ],
)
def test_plan_drain_table(
    queued: list[str], journal: list[JournalRow], force: bool, expected: DrainPlan
) -> None:
    assert plan_drain(queued, {r.key: r for r in journal}, 150.0, force=force) == expected


@given(
    st.lists(st.sampled_from([f"m{i}" for i in range(8)]), unique=True),
    st.dictionaries(
        st.sampled_from([f"m{i}" for i in range(8)]),
        st.tuples(st.sampled_from(list(Phase)), st.one_of(st.none(), st.floats(0, 300))),
    ),
    st.booleans(),
)
def test_plan_drain_never_resends_accepted_mail_and_places_every_file(
    queued: list[str], rows: dict[str, tuple[Phase, float | None]], force: bool
) -> None:
    journal = {k: JournalRow(k, phase, 1, nxt) for k, (phase, nxt) in rows.items()}
    plan = plan_drain(queued, journal, 150.0, force=force)
    placed = [*plan.send, *plan.waiting, *plan.copy, *plan.finish]
    assert sorted(placed) == sorted(queued)
    for key in plan.send:
        assert key not in journal or journal[key].phase in (Phase.QUEUED, Phase.SENDING)
    assert set(plan.resend) <= set(plan.send)
    assert set(plan.forget) == set(journal) - set(queued)
    if force:
        assert plan.waiting == ()
