"""The outbox: a Maildir of messages waiting to be sent, and their envelopes.

Layout (CONTRACT.md, "On disk")::

    OUTBOX/tmp/  new/  cur/        a plain Maildir; each file is one RFC 5322 message
    OUTBOX/.envelope/KEY.json      the envelope ``syncd sendmail`` was given (optional)
    OUTBOX/failed/KEY              a message that cannot be sent ...
    OUTBOX/failed/KEY.error        ... and why, in words

The message file stays exactly what the writer gave, so a user can open the outbox in a
mail reader, edit a queued message or delete it. ``KEY`` is the file name up to the first
``:`` (the Maildir unique name), the same whether a reader moved the file to ``cur/`` or
not. The envelope lives beside the message, not inside it: a mail reader passes Bcc
recipients only as arguments to sendmail, and they must not be lost, nor guessed later.

Writing (:meth:`Outbox.enqueue`) is durable before it returns, in this order: the
envelope (tmp file, fsync, rename, fsync of ``.envelope/``), then the message (``tmp/``,
fsync, rename into ``new/``, fsync of ``new/``). A crash leaves either nothing visible, an
envelope without its message (ignored, and cleaned up after a week), or both. A message
never appears in ``new/`` without its envelope.

Nothing here deletes a message the server has not accepted: the engine calls
:meth:`Outbox.remove` only for accepted mail; everything else goes to ``failed/``.

Writing a message and reading its header live in :mod:`syncd.drivers.enqueue`, which
``syncd sendmail`` imports alone (it starts once per message); this module adds the rest.
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import re
import socket
import time
from collections.abc import Sequence
from dataclasses import dataclass
from email.errors import HeaderParseError
from email.header import decode_header, make_header
from email.utils import formatdate
from pathlib import Path

from syncd.drivers import enqueue as _writer
from syncd.drivers.enqueue import ENVELOPE_DIR, Malformed, header_addresses
from syncd.drivers.enqueue import ENVELOPE_SUFFIX as _ENVELOPE_SUFFIX
from syncd.drivers.enqueue import ENVELOPE_VERSION as _ENVELOPE_VERSION
from syncd.drivers.enqueue import TMP_SUFFIX as _TMP_SUFFIX
from syncd.drivers.enqueue import field_name as _name
from syncd.drivers.enqueue import field_values as _values
from syncd.drivers.enqueue import oserror_text as _oserror
from syncd.drivers.enqueue import split_header as _split
from syncd.drivers.enqueue import unique_addresses as _addresses
from syncd.drivers.enqueue import write_durably as _write_durably
from syncd.drivers.files import fsync_dir
from syncd.errors import MessageError, StoreError
from syncd.model import to_local_bytes, to_remote_bytes

__all__ = [
    "Envelope",
    "FailedEntry",
    "Malformed",
    "Outbox",
    "Prepared",
    "QueueEntry",
    "header_addresses",
    "prepare",
    "readable",
]

log = logging.getLogger(__name__)

FAILED_DIR = "failed"
ERROR_SUFFIX = ".error"
# The Maildir convention: a file in tmp/ untouched for 36 hours is a dead writer's.
_STALE_TMP = 36 * 3600
_STALE_ENVELOPE = 7 * 24 * 3600
_DIR_MODE = _writer.DIR_MODE
# Anything that could end or split an SMTP command line, or is not an address at all.
_BAD_ADDRESS = re.compile(r"[\x00-\x20\x7f<>]|^$")
_STRIPPED = frozenset({b"bcc", b"resent-bcc"})


# -- the envelope ------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Envelope:
    """What ``syncd sendmail`` was told besides the message.

    ``recipients`` None means "from the To, Cc and Bcc headers"; an empty tuple means the
    caller gave none and the headers had none (the message fails as having no recipient).
    """

    sender: str | None = None
    recipients: tuple[str, ...] | None = None
    queued: float | None = None
    """When it was queued (seconds since the epoch); a missing Date header gets this."""

    def to_json(self) -> bytes:
        return _writer.envelope_json(self.sender, self.recipients, self.queued)

    @classmethod
    def from_json(cls, raw: bytes) -> Envelope:
        """Parse a sidecar; ValueError saying what is wrong."""
        data = json.loads(raw.decode("utf-8"))
        if not isinstance(data, dict) or data.get("version") != _ENVELOPE_VERSION:
            raise ValueError(f"not a version {_ENVELOPE_VERSION} syncd envelope")
        sender = data.get("sender")
        recipients = data.get("recipients")
        queued = data.get("queued")
        if sender is not None and not isinstance(sender, str):
            raise ValueError("sender is not text")
        if recipients is not None and not (
            isinstance(recipients, list) and all(isinstance(r, str) for r in recipients)
        ):
            raise ValueError("recipients is not a list of addresses")
        if queued is not None and not isinstance(queued, int | float):
            raise ValueError("queued is not a time")
        return cls(
            sender,
            tuple(recipients) if recipients is not None else None,
            float(queued) if queued is not None else None,
        )


# -- reading a message's header ------------------------------------------------------------


def readable(value: str) -> str:
    """A header value as people read it: RFC 2047 encoded words (``=?utf-8?B?...?=``)
    decoded, control characters (a decoded line break too) turned into spaces, so it is
    safe in one log line. A value that does not decode is returned as it is."""
    try:
        text = str(make_header(decode_header(value)))
    except (ValueError, LookupError, HeaderParseError):
        text = value
    return re.sub(r"[\x00-\x1f\x7f]+", " ", text).strip()


# -- preparing a queued message for submission -----------------------------------------------


@dataclass(frozen=True, slots=True)
class Prepared:
    """A queued message, ready to submit; the same input always gives the same value."""

    sender: str
    recipients: tuple[str, ...]
    wire: bytes
    """What the server gets: CRLF, Bcc removed, Date/Message-ID added where missing."""
    copy: bytes
    """What the Sent folder gets: LF, Bcc kept, the same added Date/Message-ID."""
    message_id: str
    subject: str
    """For people (logs, reports): RFC 2047 decoded, on one line."""


def _domain(address: str) -> str:
    domain = address.rpartition("@")[2].strip().strip("[]")
    if domain and re.fullmatch(r"[A-Za-z0-9.-]+", domain):
        return domain
    host = socket.gethostname()
    return host if re.fullmatch(r"[A-Za-z0-9.-]+", host) else "localhost.localdomain"


def prepare(raw: bytes, envelope: Envelope | None, *, key: str, queued_at: float) -> Prepared:
    """The envelope and the bytes to send for one queued message; Malformed says why not.

    The envelope comes from ``envelope`` where it says; otherwise the sender is the Sender
    or the first From address and the recipients are To, Cc and Bcc. A missing Date is
    ``queued_at`` (envelope time, else the file's mtime) and a missing Message-ID is
    derived from ``key``, so a message sent again after a crash carries the same ones.
    """
    fields, rest = _split(raw)
    senders = _addresses(_values(fields, b"from"))
    if not senders:
        raise Malformed("the message has no From header (or no address in it)")
    sender = envelope.sender if envelope is not None and envelope.sender else None
    if sender is None:
        sender = next(iter(_addresses(_values(fields, b"sender"))), senders[0])
    # Checked even when the envelope names the recipients: a To with a line break inside
    # is what a header injection looks like, and receivers would read it differently.
    header_rcpts = _addresses([v for n in (b"to", b"cc", b"bcc") for v in _values(fields, n)])
    if envelope is not None and envelope.recipients is not None:
        recipients = _addresses(envelope.recipients)
    else:
        recipients = header_rcpts
    if not recipients:
        raise Malformed("the message has no recipients (no To, Cc or Bcc address)")
    for address in (sender, *recipients):
        local, _, domain = address.rpartition("@")
        # A bare "bob" would be completed with the server's own domain, which is hardly
        # ever what was meant (it is what "To: bob smith" without an address comes to).
        if _BAD_ADDRESS.search(address) or not local or not domain:
            raise Malformed(f"{address!r} is not a valid e-mail address (local@domain)")

    newline = b"\r\n" if fields[0].endswith(b"\r\n") else b"\n"
    added: list[bytes] = []
    names = {_name(f) for f in fields}
    if b"date" not in names:
        added.append(b"Date: " + formatdate(queued_at, localtime=True).encode() + newline)
    ids = _values(fields, b"message-id")
    if ids and ids[0].strip():
        message_id = ids[0].strip()
    else:
        import hashlib  # not at start-up: `syncd sendmail` never gets here

        digest = hashlib.sha256(key.encode("utf-8", "surrogateescape")).hexdigest()[:32]
        message_id = f"<{digest}.syncd@{_domain(sender)}>"
        added.append(b"Message-ID: " + message_id.encode() + newline)
    if not fields[-1].endswith(b"\n"):
        fields[-1] += newline  # a header with no body and no final line end
    kept = b"".join(f for f in fields if _name(f) not in _STRIPPED)
    extra = b"".join(added)
    wire = to_remote_bytes(kept + extra + rest)
    copy = to_local_bytes(b"".join(fields) + extra + rest)
    subjects = _values(fields, b"subject")
    return Prepared(
        sender, tuple(recipients), wire, copy, message_id, readable(subjects[0]) if subjects else ""
    )


# -- the queue on disk -------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class QueueEntry:
    key: str
    path: Path
    mtime: float
    size: int


@dataclass(frozen=True, slots=True)
class FailedEntry:
    name: str
    path: Path
    reason: str
    """The first line of the ``.error`` file."""
    mtime: float


class Outbox:
    """One account's outbox directory."""

    def __init__(self, path: Path) -> None:
        self.path = Path(path)
        self.tmp = self.path / "tmp"
        self.new = self.path / "new"
        self.cur = self.path / "cur"
        self.envelopes = self.path / ENVELOPE_DIR
        self.failed_dir = self.path / FAILED_DIR

    def __repr__(self) -> str:
        return f"Outbox({str(self.path)!r})"

    def ensure(self) -> None:
        """Create the Maildir and the envelope directory if missing; StoreError if not."""
        _writer.ensure(str(self.path))

    # -- writing ----------------------------------------------------------------------------

    def enqueue(self, raw: bytes, envelope: Envelope) -> QueueEntry:
        """Queue one message durably (see the module docstring); StoreError if impossible.

        On failure nothing is left in ``new/``, so the caller may report "not queued".
        """
        key, target = _writer.enqueue(str(self.path), raw, envelope.to_json())
        return QueueEntry(key, Path(target), time.time(), len(raw))

    def _write_envelope(self, key: str, envelope: Envelope) -> None:
        tmp = self.envelopes / f"{key}{_TMP_SUFFIX}"
        with contextlib.suppress(FileNotFoundError):
            tmp.unlink()
        _write_durably(tmp, envelope.to_json())
        tmp.replace(self.envelopes / f"{key}{_ENVELOPE_SUFFIX}")

    # -- reading ----------------------------------------------------------------------------

    def entries(self) -> list[QueueEntry]:
        """The queued messages in ``new/`` and ``cur/``, oldest first. A missing outbox is
        empty."""
        found: dict[str, QueueEntry] = {}
        for sub in (self.new, self.cur):
            try:
                with os.scandir(sub) as it:
                    listed = [e for e in it if not e.name.startswith(".")]
            except FileNotFoundError:
                continue
            except OSError as exc:
                raise StoreError(f"cannot list the outbox {sub}: {_oserror(exc)}") from exc
            for e in listed:
                try:
                    if not e.is_file(follow_symlinks=False):
                        continue
                    st = e.stat(follow_symlinks=False)
                except FileNotFoundError:
                    continue  # sent or moved by a reader while we looked
                key = e.name.partition(":")[0]
                if key in found:
                    log.warning(
                        "outbox %s: %s and %s are the same message key; sending only the first",
                        self.path,
                        found[key].path,
                        e.path,
                    )
                    continue
                found[key] = QueueEntry(key, Path(e.path), st.st_mtime, st.st_size)
        return sorted(found.values(), key=lambda q: (q.mtime, q.key))

    def find(self, key: str) -> QueueEntry | None:
        """The queued message with ``key`` as it is now (a reader may have renamed it)."""
        for entry in self.entries():
            if entry.key == key:
                return entry
        return None

    def read(self, entry: QueueEntry) -> bytes:
        """The message's bytes; MessageError if it is gone or unreadable."""
        try:
            return entry.path.read_bytes()
        except FileNotFoundError:
            current = self.find(entry.key)
            if current is not None:
                with contextlib.suppress(OSError):
                    return current.path.read_bytes()
            raise MessageError(f"outbox message {entry.key} vanished while being read") from None
        except OSError as exc:
            raise MessageError(f"cannot read {entry.path}: {_oserror(exc)}") from exc

    def envelope(self, key: str) -> Envelope | None:
        """The stored envelope of ``key``; None if there is none; Malformed if unreadable."""
        path = self.envelopes / f"{key}{_ENVELOPE_SUFFIX}"
        try:
            raw = path.read_bytes()
        except FileNotFoundError:
            return None
        except OSError as exc:
            raise Malformed(f"its envelope {path} cannot be read: {_oserror(exc)}") from exc
        try:
            return Envelope.from_json(raw)
        except (ValueError, UnicodeDecodeError) as exc:
            raise Malformed(f"its envelope {path} is damaged: {exc}") from exc

    # -- taking messages out ------------------------------------------------------------------

    def remove(self, entries: Sequence[QueueEntry]) -> None:
        """Delete accepted messages and their envelopes; durable when it returns.

        Only for mail the server accepted. A message a reader renamed meanwhile is found
        again by its key; one already gone is fine.
        """
        if not entries:
            return
        dirs: set[Path] = set()
        try:
            for entry in entries:
                path: Path | None = entry.path
                for _ in range(2):
                    assert path is not None
                    try:
                        path.unlink()
                        dirs.add(path.parent)
                        break
                    except FileNotFoundError:
                        current = self.find(entry.key)
                        path = current.path if current is not None else None
                        if path is None:
                            break
                env = self.envelopes / f"{entry.key}{_ENVELOPE_SUFFIX}"
                with contextlib.suppress(FileNotFoundError):
                    env.unlink()
                    dirs.add(self.envelopes)
            # The journal forgets these messages next; were an unlink lost to a power
            # failure after that, the message would come back and be sent twice.
            for d in dirs:
                fsync_dir(d)
        except OSError as exc:
            raise StoreError(
                f"cannot remove sent messages from the outbox {self.path}: {_oserror(exc)}"
            ) from exc

    def fail(
        self, entry: QueueEntry, report: str, *, recipients: Sequence[str] | None = None
    ) -> Path:
        """Move the message to ``failed/`` beside ``KEY.error`` holding ``report``.

        With ``recipients``, its envelope is rewritten to just them, so moving the file
        back into ``new/`` sends it to those recipients only (used after a partial
        refusal). Returns the message's new path. Durable when it returns.
        """
        try:
            self.failed_dir.mkdir(mode=_DIR_MODE, parents=True, exist_ok=True)
            target = self.failed_dir / entry.key
            n = 0
            while target.exists() or target.with_name(target.name + ERROR_SUFFIX).exists():
                n += 1
                target = self.failed_dir / f"{entry.key}.{n}"
            error_tmp = self.failed_dir / f".{target.name}{_TMP_SUFFIX}"
            with contextlib.suppress(FileNotFoundError):
                error_tmp.unlink()
            _write_durably(error_tmp, report.encode("utf-8"))
            error_tmp.rename(target.with_name(target.name + ERROR_SUFFIX))
            if recipients is not None:
                old = self.envelope_or_none(entry.key)
                self._write_envelope(
                    entry.key,
                    Envelope(
                        old.sender if old else None,
                        tuple(recipients),
                        old.queued if old else entry.mtime,
                    ),
                )
            source = entry.path
            try:
                source.rename(target)
            except FileNotFoundError:
                current = self.find(entry.key)
                if current is None:
                    raise
                source = current.path
                source.rename(target)
            fsync_dir(self.failed_dir)
            fsync_dir(source.parent)
        except OSError as exc:
            raise StoreError(
                f"cannot move {entry.path} to {self.failed_dir}: {_oserror(exc)}"
            ) from exc
        return target

    def envelope_or_none(self, key: str) -> Envelope | None:
        try:
            return self.envelope(key)
        except Malformed:
            return None

    def failed(self) -> list[FailedEntry]:
        """The messages in ``failed/`` with the first line of their reason, oldest first."""
        try:
            with os.scandir(self.failed_dir) as it:
                names = {e.name: e for e in it if not e.name.startswith(".")}
        except FileNotFoundError:
            return []
        except OSError as exc:
            raise StoreError(f"cannot list {self.failed_dir}: {_oserror(exc)}") from exc
        out: list[FailedEntry] = []
        for name, e in names.items():
            if name.endswith(ERROR_SUFFIX):
                continue
            reason = ""
            with contextlib.suppress(OSError, UnicodeDecodeError):
                text = (self.failed_dir / (name + ERROR_SUFFIX)).read_text("utf-8")
                reason = next((ln for ln in text.splitlines() if ln.strip()), "")
            try:
                mtime = e.stat(follow_symlinks=False).st_mtime
            except OSError:
                continue
            out.append(FailedEntry(name, Path(e.path), reason, mtime))
        return sorted(out, key=lambda f: (f.mtime, f.name))

    def clean(self, now: float) -> None:
        """Remove what dead writers left: old ``tmp/`` files and orphaned envelopes.

        Never a message in ``new/``, ``cur/`` or ``failed/``.
        """
        for path in self._older(self.tmp, now - _STALE_TMP):
            log.info("outbox %s: removing %s, left by a writer that died", self.path, path)
            with contextlib.suppress(OSError):
                path.unlink()
        keys = {e.key for e in self.entries()}
        with contextlib.suppress(OSError):
            keys.update(p.name for p in self.failed_dir.iterdir())
        for path in self._older(self.envelopes, now - _STALE_ENVELOPE):
            if path.name.removesuffix(_ENVELOPE_SUFFIX).removesuffix(_TMP_SUFFIX) not in keys:
                log.debug("outbox %s: removing orphaned envelope %s", self.path, path)
                with contextlib.suppress(OSError):
                    path.unlink()

    @staticmethod
    def _older(directory: Path, limit: float) -> list[Path]:
        try:
            with os.scandir(directory) as it:
                return [
                    Path(e.path)
                    for e in it
                    if e.is_file(follow_symlinks=False)
                    and e.stat(follow_symlinks=False).st_mtime < limit
                ]
        except OSError:
            return []
