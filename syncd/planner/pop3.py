"""Plan one POP3 poll: what to download, what to delete on the server, what to forget.

Theory of operation
-------------------
POP3 numbers the messages of a maildrop afresh in every session, so a message is known by
its unique id (the UIDL; see :mod:`syncd.drivers.pop3` for servers without one). For every
UIDL it has downloaded, syncd keeps a *seen* record in the state database: ``PENDING`` from
just before the Maildir delivery, ``DELIVERED`` once the file is durable and recorded. The
planner compares the remote snapshot of this session (number, UIDL, size) with those
records:

* **download** a listed message that has no DELIVERED record (no record, or a PENDING one
  the engine could not resolve after a crash), unless it is larger than ``max_size``: those
  are reported in ``too_big`` and left alone;
* **delete** a listed message that has a DELIVERED record once ``leave_on_server`` says so:
  ``True`` never, ``False`` always, a number N when the message was first seen N days ago
  or more (``now - first_seen >= N * 86400``). A message downloaded in this poll counts as
  first seen ``now``, so with ``False`` (or 0 days) it is deleted in the same session, after
  its delivery was recorded (the engine's order);
* **gone / back / forget**: a record whose UIDL is missing from the listing is marked gone
  (``gone``, stamped ``now``); if it shows up again it is ``back``; it is only dropped
  (``forget``) once it has been missing for ``forget_after`` seconds. A server that lists
  an empty maildrop for a while (a storage hiccup) therefore never makes syncd forget what
  it has, and download everything again when the mail comes back.

A UIDL listed twice in one session (a broken server; the driver already numbers the repeats
of its header-hash fallback) is downloaded once and not deleted while it is listed twice:
syncd cannot tell which copy its record is about.

The function is pure and total: no I/O, no clock, no logging; the same inputs give the same
plan. Invariants, checked in ``tests/planner/test_pop3.py``:

* no UIDL with a DELIVERED record is ever in ``download``, and no UIDL is in it twice;
* every message in ``delete`` has a DELIVERED record, or is in ``download`` with
  ``delete=True`` (deleted only after its delivery is recorded);
* nothing larger than ``max_size`` is downloaded, and so never deleted unless delivered
  by an earlier poll under a larger limit;
* with ``leave_on_server: true`` nothing is deleted.
"""

from __future__ import annotations

import enum
from collections import Counter
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Final

__all__ = [
    "DAY",
    "FORGET_AFTER",
    "Download",
    "Pop3Plan",
    "Pop3Policy",
    "RemoteMessage",
    "Seen",
    "SeenState",
    "plan_pop3",
]

DAY: Final = 86400.0
FORGET_AFTER: Final = 14 * DAY
"""How long a record outlives its message on the server (see the module docstring)."""


class SeenState(enum.Enum):
    PENDING = "pending"
    """Committed before the Maildir delivery; the message may or may not be stored."""
    DELIVERED = "delivered"
    """Durable in the Maildir and recorded with its key."""


@dataclass(frozen=True, slots=True)
class RemoteMessage:
    """One line of the server's listing in this session."""

    number: int
    """The message number, valid for this session only."""
    uidl: str
    size: int
    """Octets, as LIST reports them (the CRLF form)."""


@dataclass(frozen=True, slots=True)
class Seen:
    """The state database's record of a downloaded UIDL."""

    uidl: str
    state: SeenState
    first_seen: float
    gone_since: float | None = None


@dataclass(frozen=True, slots=True)
class Pop3Policy:
    leave_on_server: bool | int = True
    """True (keep), False (delete once stored) or a number of days."""
    max_size: int | None = None
    """Octets; larger messages are not downloaded. None: no limit."""
    forget_after: float = FORGET_AFTER
    """Seconds a record is kept after its UIDL left the listing."""


@dataclass(frozen=True, slots=True)
class Download:
    """RETR ``message``; ``delete``: DELE it in this session once its delivery is recorded."""

    message: RemoteMessage
    delete: bool


@dataclass(frozen=True, slots=True)
class Pop3Plan:
    download: tuple[Download, ...] = ()
    """In listing order."""
    delete: tuple[RemoteMessage, ...] = ()
    """Delivered by an earlier poll and due for deletion now."""
    too_big: tuple[RemoteMessage, ...] = ()
    gone: tuple[str, ...] = ()
    """UIDLs that left the listing: set ``gone_since`` to ``now``."""
    back: tuple[str, ...] = ()
    """UIDLs listed again: clear ``gone_since``."""
    forget: tuple[str, ...] = ()
    """Records to drop: missing for ``forget_after`` seconds."""
    notes: tuple[str, ...] = ()

    def __bool__(self) -> bool:
        return bool(self.download or self.delete or self.gone or self.back or self.forget)


def is_due(first_seen: float, policy: Pop3Policy, now: float) -> bool:
    """Whether a message first seen at ``first_seen`` is to be deleted from the server."""
    leave = policy.leave_on_server
    if leave is True:
        return False
    if leave is False:
        return True
    return now - first_seen >= leave * DAY


def plan_pop3(
    listing: Iterable[RemoteMessage],
    seen: Mapping[str, Seen],
    policy: Pop3Policy,
    now: float,
) -> Pop3Plan:
    """The plan for one session; see the module docstring for the rules and invariants."""
    listed = list(listing)
    counts = Counter(m.uidl for m in listed)
    download: list[Download] = []
    delete: list[RemoteMessage] = []
    too_big: list[RemoteMessage] = []
    handled: set[str] = set()
    for message in listed:
        uidl = message.uidl
        if uidl in handled:
            continue
        handled.add(uidl)
        unique = counts[uidl] == 1
        record = seen.get(uidl)
        if record is not None and record.state is SeenState.DELIVERED:
            if unique and is_due(record.first_seen, policy, now):
                delete.append(message)
            continue
        if policy.max_size is not None and message.size > policy.max_size:
            too_big.append(message)
            continue
        download.append(Download(message, unique and is_due(now, policy, now)))

    gone: list[str] = []
    back: list[str] = []
    forget: list[str] = []
    for uidl, record in sorted(seen.items()):
        if uidl in counts:
            if record.gone_since is not None:
                back.append(uidl)
        elif record.gone_since is None:
            gone.append(uidl)
        elif now - record.gone_since >= policy.forget_after:
            forget.append(uidl)

    notes: list[str] = []
    if too_big:
        assert policy.max_size is not None
        largest = max(m.size for m in too_big)
        notes.append(
            f"{len(too_big)} message{_s(len(too_big))} larger than max_size "
            f"({_human(policy.max_size)}) left on the server, not downloaded "
            f"(the largest has {_human(largest)})"
        )
    repeated = sorted(u for u, n in counts.items() if n > 1)
    if repeated:
        notes.append(
            f"the server lists {len(repeated)} unique id{_s(len(repeated))} more than once "
            f"(e.g. {repeated[0]!r}); those messages are downloaded once and never deleted"
        )
    return Pop3Plan(
        download=tuple(download),
        delete=tuple(delete),
        too_big=tuple(too_big),
        gone=tuple(gone),
        back=tuple(back),
        forget=tuple(forget),
        notes=tuple(notes),
    )


def _s(n: int) -> str:
    return "" if n == 1 else "s"


def _human(size: int) -> str:
    value = float(size)
    for unit in ("bytes", "KiB", "MiB"):
        if value < 1024:
            return f"{size} bytes" if unit == "bytes" else f"{value:.1f} {unit}"
        value /= 1024
    return f"{value:.1f} GiB"
