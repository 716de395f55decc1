"""What to do with queued mail: reply classes, per-message outcomes, backoff, recovery.

Theory of operation
-------------------
The engine (:mod:`syncd.engine.send`) keeps one journal row per outbox message it has
touched. A row moves through four phases::

    QUEUED --(commit before DATA)--> SENDING --(commit after 250)--> SENT
    SENT --(Sent copy made)--> COPIED --(outbox file removed)--> row deleted

:func:`plan_drain` reads the journal and the files in the outbox and says, for each key,
what a drain has to do next. The only phase that cannot be resolved from our side is
SENDING: the process died between handing the message to the server and recording the
server's answer. The server may or may not have the message; the rule is to send it
again (with the same Message-ID, which receivers and mail readers use to de-duplicate),
because a duplicate can be deleted and a lost message cannot be recovered.

A reply is classified by :func:`classify`: 2xx/3xx accepted, 4xx temporary, 5xx permanent,
no reply at all (connection lost, timeout) temporary. One historical exception from RFC
5321 section 4.5.3.1.10: a 552 to RCPT means "too many recipients" and is temporary.

:func:`decide` folds the replies of one SMTP transaction into an :class:`Outcome`: who got
the message, who must be tried again later and who was refused for good. From that the
engine moves the message on (DONE), keeps it queued (RETRY) or moves it to ``failed/``
(FAIL). :func:`next_attempt` is the backoff between tries of a message the server
answered with a temporary failure.

Everything here is pure: no I/O, no clock (``now`` is an argument), no logging.
"""

from __future__ import annotations

import enum
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field

__all__ = [
    "BACKOFF_BASE",
    "BACKOFF_CAP",
    "Action",
    "Attempt",
    "DrainPlan",
    "JournalRow",
    "Outcome",
    "Phase",
    "Reply",
    "Stage",
    "Verdict",
    "classify",
    "decide",
    "next_attempt",
    "plan_drain",
]

BACKOFF_BASE = 60.0
"""Seconds before the first retry of a message that got a temporary failure."""
BACKOFF_CAP = 3600.0
"""The longest wait between two tries of the same message."""


class Verdict(enum.Enum):
    ACCEPTED = "accepted"
    TEMPORARY = "temporary"
    PERMANENT = "permanent"


class Stage(enum.Enum):
    """Which command of the transaction a reply answers."""

    MAIL = "MAIL FROM"
    RCPT = "RCPT TO"
    DATA = "DATA"


class Phase(enum.Enum):
    """A journal row's phase; see the module docstring for the transitions."""

    QUEUED = "queued"
    SENDING = "sending"
    SENT = "sent"
    COPIED = "copied"


class Action(enum.Enum):
    DONE = "done"
    """At least one recipient has the message and none is left to try: make the Sent copy."""
    RETRY = "retry"
    """Some recipients got a temporary failure: keep the message queued for them."""
    FAIL = "fail"
    """Nobody got it and nobody can: move it to ``failed/``."""


@dataclass(frozen=True, slots=True)
class Reply:
    """One SMTP reply: the code and its text (continuation lines joined by newlines)."""

    code: int
    text: str

    def __str__(self) -> str:
        return f"{self.code} {self.text}".strip()


def classify(reply: Reply | None, stage: Stage = Stage.DATA) -> Verdict:
    """Whether ``reply`` (None: no reply, the connection broke) accepts, defers or refuses.

    A reply outside 2xx-5xx is not SMTP; it is treated as temporary so that a confused or
    half-broken server can never make syncd drop mail.
    """
    if reply is None:
        return Verdict.TEMPORARY
    code = reply.code
    if 200 <= code < 400:
        return Verdict.ACCEPTED
    if 400 <= code < 500:
        return Verdict.TEMPORARY
    if 500 <= code < 600:
        if code == 552 and stage is Stage.RCPT:
            return Verdict.TEMPORARY
        return Verdict.PERMANENT
    return Verdict.TEMPORARY


def next_attempt(attempts: int, now: float) -> float:
    """When to try a message again after its ``attempts``-th temporary failure (1 or more).

    Doubles from :data:`BACKOFF_BASE` and never waits longer than :data:`BACKOFF_CAP`;
    never earlier than ``now``, and not earlier for more attempts.
    """
    exponent = min(max(attempts, 1) - 1, 32)  # 2**32 minutes is far past the cap already
    return now + min(BACKOFF_CAP, BACKOFF_BASE * 2.0**exponent)


@dataclass(frozen=True, slots=True)
class Attempt:
    """What the server answered to one transaction for one message.

    ``recipients`` are those this transaction was for. A reply that is missing was never
    received: the command was not reached, or the connection broke (``lost`` says how).
    """

    recipients: tuple[str, ...]
    mail: Reply | None = None
    rcpt: Mapping[str, Reply] = field(default_factory=dict)
    data: Reply | None = None
    lost: str | None = None


@dataclass(frozen=True, slots=True)
class Outcome:
    action: Action
    accepted: tuple[str, ...] = ()
    """Recipients that have the message now (the server answered 250 to DATA for them)."""
    pending: tuple[str, ...] = ()
    """Recipients to try again later."""
    refused: tuple[tuple[str, str], ...] = ()
    """(recipient, the server's answer) for each one refused for good in this attempt."""
    error: str | None = None
    """The reason to record: the temporary failure for RETRY, the refusal for FAIL."""


def decide(attempt: Attempt, delivered: Sequence[str] = ()) -> Outcome:
    """Fold one transaction's replies into what happens to the message.

    ``delivered`` are the recipients earlier attempts already delivered to; with them, a
    message whose remaining recipients are all refused counts as DONE (partly refused),
    not FAIL.
    """
    recipients = attempt.recipients
    why_lost = attempt.lost or "no reply from the server"

    def outcome(
        accepted: Sequence[str], pending: Sequence[str], refused: Sequence[tuple[str, str]]
    ) -> Outcome:
        error: str | None = None
        if pending:
            action = Action.RETRY
            error = temporary[0] if temporary else why_lost
        elif accepted or delivered:
            action = Action.DONE
        else:
            action = Action.FAIL
            error = "; ".join(f"{rcpt}: {why}" for rcpt, why in refused) or why_lost
        return Outcome(action, tuple(accepted), tuple(pending), tuple(refused), error)

    temporary: list[str] = []
    mail = classify(attempt.mail, Stage.MAIL) if attempt.mail is not None else None
    if mail is not Verdict.ACCEPTED:
        if mail is Verdict.PERMANENT:
            assert attempt.mail is not None
            why = f"sender refused: {attempt.mail}"
            return outcome((), (), [(r, why) for r in recipients])
        if attempt.mail is not None:
            temporary.append(f"sender deferred: {attempt.mail}")
        return outcome((), recipients, ())

    accepted_rcpt: list[str] = []
    pending: list[str] = []
    refused: list[tuple[str, str]] = []
    for rcpt in recipients:
        reply = attempt.rcpt.get(rcpt)
        verdict = classify(reply, Stage.RCPT)
        if verdict is Verdict.ACCEPTED:
            accepted_rcpt.append(rcpt)
        elif verdict is Verdict.PERMANENT:
            refused.append((rcpt, str(reply)))
        else:
            pending.append(rcpt)
            if reply is not None:
                temporary.append(f"{rcpt}: {reply}")
    if not accepted_rcpt:
        return outcome((), pending, refused)

    data = classify(attempt.data, Stage.DATA)
    if data is Verdict.ACCEPTED:
        return outcome(accepted_rcpt, pending, refused)
    if data is Verdict.PERMANENT:
        why = f"message refused: {attempt.data}"
        return outcome((), pending, [*refused, *((r, why) for r in accepted_rcpt)])
    temporary.insert(0, f"message deferred: {attempt.data}" if attempt.data else why_lost)
    return outcome((), [*accepted_rcpt, *pending], refused)


@dataclass(frozen=True, slots=True)
class JournalRow:
    """The journal's record of one outbox message (see :class:`Phase`)."""

    key: str
    phase: Phase
    attempts: int = 0
    next_attempt: float | None = None
    """Earliest time to try again after a temporary failure; None: whenever asked."""


@dataclass(frozen=True, slots=True)
class DrainPlan:
    """What one drain does, each tuple in queue order."""

    send: tuple[str, ...] = ()
    """Keys to submit now."""
    resend: tuple[str, ...] = ()
    """The subset of ``send`` that the journal says may have reached the server already
    (the process died in SENDING). Sent again, never dropped; the engine warns."""
    waiting: tuple[str, ...] = ()
    """Queued, but their backoff has not expired (only when not forced)."""
    copy: tuple[str, ...] = ()
    """Accepted by the server; the Sent copy is still to be made. Never submitted again."""
    finish: tuple[str, ...] = ()
    """Accepted and copied; only the outbox file is left to take away."""
    forget: tuple[str, ...] = ()
    """Journal rows whose outbox file is gone (removed by the user, or by a run that died
    before it could delete the row): the rows go."""


def plan_drain(
    queued: Sequence[str], journal: Mapping[str, JournalRow], now: float, *, force: bool = False
) -> DrainPlan:
    """Decide what a drain does with the files ``queued`` in the outbox (their keys).

    ``force`` ignores the backoff, for a user who asked to send now. A key that is SENT or
    COPIED is never in ``send``: once the server accepted a message, nothing sends it again.
    """
    present = set(queued)
    send: list[str] = []
    resend: list[str] = []
    waiting: list[str] = []
    copy: list[str] = []
    finish: list[str] = []
    for key in queued:
        row = journal.get(key)
        if row is None:
            send.append(key)
        elif row.phase is Phase.SENT:
            copy.append(key)
        elif row.phase is Phase.COPIED:
            finish.append(key)
        elif row.phase is Phase.SENDING:
            send.append(key)
            resend.append(key)
        elif force or row.next_attempt is None or row.next_attempt <= now:
            send.append(key)
        else:
            waiting.append(key)
    forget = tuple(sorted(k for k in journal if k not in present))
    return DrainPlan(tuple(send), tuple(resend), tuple(waiting), tuple(copy), tuple(finish), forget)
