"""Values shared by every layer: flags, identifiers, snapshots and base pairs.

Everything here is frozen and free of I/O. Flags are always the Maildir letters
``D F P R S T`` inside syncd; only the IMAP driver knows about ``\\Seen`` and friends.
"""

from __future__ import annotations

import enum
from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass
from typing import NewType

Uid = NewType("Uid", int)
UidValidity = NewType("UidValidity", int)
LocalKey = NewType("LocalKey", str)
"""A Maildir message's unique base name: the file name without ``:2,FLAGS``."""

Fingerprint = NewType("Fingerprint", str)
"""A digest of a message's header block, the same on both sides (see :func:`fingerprint`)."""


class Side(enum.Enum):
    REMOTE = "remote"
    LOCAL = "local"

    @property
    def other(self) -> Side:
        return Side.LOCAL if self is Side.REMOTE else Side.REMOTE


class Flag(enum.Flag):
    """Maildir flag letters, in the ASCII order the Maildir spec asks for."""

    NONE = 0
    D = enum.auto()  # draft
    F = enum.auto()  # flagged
    P = enum.auto()  # passed (forwarded)
    R = enum.auto()  # replied
    S = enum.auto()  # seen
    T = enum.auto()  # trashed (\Deleted)

    @classmethod
    def parse(cls, letters: str) -> Flag:
        """Flags from a Maildir info string; unknown letters (lowercase keywords) are ignored."""
        # enum.Flag arithmetic costs microseconds; a scan of 100 000 files meets only a
        # few dozen distinct info strings, so each is computed once.
        out = _PARSED.get(letters)
        if out is None:
            out = cls.NONE
            for ch in letters:
                member = _LETTERS.get(ch)
                if member is not None:
                    out |= member
            if len(_PARSED) < 4096:
                _PARSED[letters] = out
        return out

    @property
    def letters(self) -> str:
        out = _SPELLED.get(self)
        if out is None:
            out = _SPELLED[self] = "".join(ch for ch, m in _LETTERS.items() if m in self)
        return out


_PARSED: dict[str, Flag] = {}
_SPELLED: dict[Flag, str] = {}
_LETTERS: dict[str, Flag] = {
    "D": Flag.D,
    "F": Flag.F,
    "P": Flag.P,
    "R": Flag.R,
    "S": Flag.S,
    "T": Flag.T,
}


@dataclass(frozen=True, slots=True)
class Pair:
    """A remote UID linked to a local key, with the flags both sides agreed on last time."""

    uid: Uid
    key: LocalKey
    flags: Flag
    fp: Fingerprint | None = None


RemoteSnapshot = Mapping[Uid, Flag]
"""The listing of one folder on the remote side: UID -> flags."""
LocalSnapshot = Mapping[LocalKey, Flag]
"""The listing of one folder on the local side: key -> flags."""


@dataclass(frozen=True, slots=True)
class Policy:
    """What a sync may do to a folder."""

    max_delete_share: float = 0.5
    """Refuse to delete more than this share of a folder's messages on one side..."""
    guard_min_messages: int = 20
    """...when the folder holds more than this many."""
    force: bool = False
    """Lift the mass-deletion guard (``syncd sync --force``)."""


def fingerprint(raw: bytes) -> Fingerprint:
    """Digest of a message's header block, equal for the LF and the CRLF form of a message.

    Used to recognise the same message on both sides without a base (adopting an existing
    Maildir, after a UIDVALIDITY change, after a crash between an upload and its record).
    ``raw`` may hold the whole message or only its header. A field only the local copies of
    another sync tool carry (mbsync's ``X-TUID``) is left out, so such a Maildir is adopted.
    """
    # Only the header is converted and hashed: the body of a large message is never copied.
    # (CRLF first: a CRLF message has no "\n\n", and looking for one would read it all.)
    crlf = raw.find(b"\r\n\r\n")
    ends = [i for i in (crlf, raw.find(b"\n\n", 0, crlf if crlf >= 0 else len(raw))) if i >= 0]
    text = (raw[: min(ends) + 4] if ends else raw).replace(b"\r\n", b"\n")
    end = text.find(b"\n\n")
    header = text if end < 0 else text[: end + 1]
    header = header.rstrip(b"\n")
    lowered = header.lower()
    if any(field in lowered for field in _TOOL_FIELDS):
        header = _without_tool_fields(header)
    import hashlib  # here: loading OpenSSL costs `syncd sendmail` milliseconds at start

    return Fingerprint(hashlib.sha256(header).hexdigest()[:32])


# Header fields a program writes into its own copy of a message, which the server's copy
# lacks or has otherwise. mbsync writes an X-TUID line into every message it downloads:
# left in, no message of a Maildir filled by mbsync would match its server copy. mutt's
# save (`s`, a move to another folder) writes the copy with a Content-Length (and Lines)
# of its own and rewrites Status/X-Status: left in, the copy would not be known for the
# message it is, and the move would become an upload and an expunge.
_TOOL_FIELDS = (b"x-tuid:", b"content-length:", b"lines:", b"status:", b"x-status:")


def _without_tool_fields(header: bytes) -> bytes:
    kept: list[bytes] = []
    skipping = False
    for line in header.split(b"\n"):
        if line[:1] in (b" ", b"\t"):  # a folded continuation of the field above
            if not skipping:
                kept.append(line)
            continue
        skipping = line.lower().startswith(_TOOL_FIELDS)
        if not skipping:
            kept.append(line)
    return b"\n".join(kept)


def to_local_bytes(raw: bytes) -> bytes:
    """The server's CRLF form of a message -> the Unix LF form stored in Maildir."""
    return raw.replace(b"\r\n", b"\n")


def to_remote_bytes(raw: bytes) -> bytes:
    """The Maildir LF form -> the CRLF form IMAP wants. A fixed point with to_local_bytes."""
    return raw.replace(b"\r\n", b"\n").replace(b"\n", b"\r\n")


CHUNK_BYTES = 1024 * 1024
"""How much of a message the streaming conversions below hold at a time."""


def chunks_of(data: bytes, size: int = CHUNK_BYTES) -> Iterator[bytes]:
    """``data`` in slices of ``size`` bytes: only one slice is alive at a time."""
    for i in range(0, len(data), size):
        yield data[i : i + size]


def to_local_chunks(chunks: Iterable[bytes]) -> Iterator[bytes]:
    """:func:`to_local_bytes`, one chunk at a time, for messages too big to copy whole.

    Invariant (a property test): ``b"".join(to_local_chunks(cs)) ==
    to_local_bytes(b"".join(cs))`` however the bytes are cut. A CR that ends a chunk is
    held back until the next chunk tells whether an LF follows it; a bare CR stays.
    Between chunks other threads get the GIL, unlike one ``replace`` over 200 MB.
    """
    held = b""
    for chunk in chunks:
        if held:
            chunk = held + chunk
        held = b""
        if chunk.endswith(b"\r"):
            chunk, held = chunk[:-1], b"\r"
        if chunk:
            yield chunk.replace(b"\r\n", b"\n")
    if held:
        yield held


def to_remote_chunks(chunks: Iterable[bytes]) -> Iterator[bytes]:
    """:func:`to_remote_bytes`, one chunk at a time (same invariant as to_local_chunks)."""
    for chunk in to_local_chunks(chunks):
        yield chunk.replace(b"\n", b"\r\n")


def remote_size(chunks: Iterable[bytes]) -> int:
    """``len(to_remote_bytes(b"".join(chunks)))`` without building either copy.

    Every LF becomes CRLF and every CRLF stays: the length grows by one per LF that has no
    CR before it, also when the CR ends one chunk and the LF starts the next.
    """
    size = 0
    cr_before = False
    for chunk in chunks:
        if not chunk:
            continue
        size += len(chunk) + chunk.count(b"\n") - chunk.count(b"\r\n")
        if cr_before and chunk.startswith(b"\n"):
            size -= 1
        cr_before = chunk.endswith(b"\r")
    return size
