"""The planner's output: frozen actions and the plan that orders them.

An action names what to do on which side; the engine does it. Identifiers are typed:
a remote message is a ``Uid``, a local one a ``LocalKey``, so a mix-up is a type error.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from syncd.model import Fingerprint, Flag, LocalKey, Side, Uid

MessageId = Uid | LocalKey


@dataclass(frozen=True, slots=True)
class Copy:
    """Copy a message from ``source`` to the other side and pair the two copies.

    Downloading (source REMOTE, ``ident`` a Uid) or uploading (source LOCAL, ``ident`` a
    LocalKey). The new pair's base flags are ``flags``. ``replaces`` names a base pair
    (by UID) that this copy supersedes, when a changed message is restored after the
    other side deleted it.
    """

    source: Side
    ident: MessageId
    flags: Flag
    replaces: Uid | None = None


@dataclass(frozen=True, slots=True)
class SetFlags:
    """Change a message's flags on ``side`` from ``old`` to ``new``."""

    side: Side
    ident: MessageId
    old: Flag
    new: Flag


@dataclass(frozen=True, slots=True)
class Delete:
    """Delete a message on ``side`` (remote: UID EXPUNGE; local: unlink)."""

    side: Side
    ident: MessageId


@dataclass(frozen=True, slots=True)
class Link:
    """Record (or update) the base pair ``uid`` <-> ``key`` with the agreed ``flags``."""

    uid: Uid
    key: LocalKey
    flags: Flag
    fp: Fingerprint | None = None


@dataclass(frozen=True, slots=True)
class Forget:
    """Drop the base pair of ``uid``: the message is gone on both sides."""

    uid: Uid


@dataclass(frozen=True, slots=True)
class Move:
    """Move a message between folders on ``side`` instead of deleting and copying it.

    ``side`` REMOTE: the user moved a local file from ``src`` to ``dst``; the server moves
    UID ``uid`` of ``src`` and the new remote copy is paired with local ``key`` in ``dst``.
    ``side`` LOCAL: the message moved on the server; local ``key`` in ``src`` is renamed
    into ``dst`` and paired with remote ``uid`` of ``dst``. Either way the old base pair of
    ``src`` is forgotten and the moved copy ends with ``flags`` on both sides.
    """

    side: Side
    src: str
    dst: str
    uid: Uid
    key: LocalKey
    flags: Flag


Action = Copy | SetFlags | Delete | Link | Forget


@dataclass(frozen=True, slots=True)
class Plan:
    """What to do to one folder. ``refused`` is set when the plan was withheld."""

    actions: tuple[Action, ...] = ()
    notes: tuple[str, ...] = ()
    refused: str | None = None

    def __bool__(self) -> bool:
        return bool(self.actions)

    def count(self, kind: type, side: Side | None = None) -> int:
        """How many actions of ``kind`` (optionally acting on ``side``) the plan holds."""
        n = 0
        for action in self.actions:
            if not isinstance(action, kind):
                continue
            acts_on = None
            if isinstance(action, Copy):
                acts_on = action.source.other
            elif isinstance(action, SetFlags | Delete):
                acts_on = action.side
            if side is None or acts_on is side:
                n += 1
        return n


@dataclass(frozen=True, slots=True)
class AccountPlan:
    """Per-folder plans plus the cross-folder moves found among them."""

    folders: dict[str, Plan] = field(default_factory=dict)
    moves: tuple[Move, ...] = ()
