"""The remote store: an IMAP session through imapclient.

Only this module knows IMAP flag names, modified UTF-7 and the server's hierarchy
separator; it speaks the core's language (Maildir flag letters, folder names with "/")
to the engine. Every library exception is translated by :func:`map_errors`.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import functools
import imaplib
import logging
import os
import re
import socket
import ssl
import subprocess
import sys
import threading
import types
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Protocol

from syncd.drivers import tls
from syncd.drivers.auth import renewed
from syncd.errors import (
    AuthError,
    FolderError,
    StoreError,
    TLSError,
    TransientError,
)
from syncd.model import Fingerprint, Flag, Uid, fingerprint

if TYPE_CHECKING:
    from imapclient import IMAPClient

    from syncd.config import ImapConfig

log = logging.getLogger(__name__)

_caps_said: dict[str, frozenset[str]] = {}
"""Per server: the capability list last logged by this process."""
_caps_lock = threading.Lock()
_alerts_said: set[str] = set()

_TO_IMAP: dict[Flag, bytes] = {
    Flag.D: b"\\Draft",
    Flag.F: b"\\Flagged",
    Flag.P: b"$Forwarded",
    Flag.R: b"\\Answered",
    Flag.S: b"\\Seen",
    Flag.T: b"\\Deleted",
}
_FROM_IMAP: dict[bytes, Flag] = {v.lower(): k for k, v in _TO_IMAP.items()}

FETCH_BATCH_MESSAGES = 2000
FETCH_BATCH_BYTES = 8 * 1024 * 1024
APPEND_BATCH_BYTES = 8 * 1024 * 1024


def flags_from_imap(flags: Iterable[bytes | str]) -> Flag:
    out = Flag.NONE
    for f in flags:
        b = f.encode() if isinstance(f, str) else f
        out |= _FROM_IMAP.get(b.lower(), Flag.NONE)
    return out


def flags_to_imap(flags: Flag) -> list[bytes]:
    return [v for k, v in _TO_IMAP.items() if k in flags]


@contextlib.contextmanager
def map_errors(what: str, *, folder: str | None = None) -> Iterator[None]:
    """Translate imaplib/imapclient/socket/ssl errors into syncd's tree."""
    from imapclient import exceptions as ix

    where = f"{what} (folder {folder})" if folder else what
    try:
        yield
    except ix.LoginError as exc:
        # imapclient's login() turns every error into LoginError, a connection lost
        # during LOGIN too; that one is the network's fault, not a wrong password.
        if isinstance(exc.__context__, imaplib.IMAP4.abort | OSError):
            raise TransientError(
                f"{where}: connection lost during login: {_text(exc.__context__)}"
            ) from exc
        if "[UNAVAILABLE]" in _text(exc).upper():  # RFC 5530: the server's trouble, for now
            raise TransientError(f"{where}: login failed for now: {_text(exc)}") from exc
        raise AuthError(f"{where}: login refused: {_text(exc)}") from exc
    except (ssl.SSLEOFError, ssl.SSLZeroReturnError) as exc:
        raise TransientError(f"{where}: connection closed during TLS: {exc}") from exc
    except ssl.SSLError as exc:
        raise TLSError(f"{where}: TLS error: {exc.reason or exc}") from exc
    except imaplib.IMAP4.abort as exc:
        raise TransientError(f"{where}: connection lost: {_text(exc)}") from exc
    except TimeoutError as exc:
        raise TransientError(f"{where}: timed out") from exc
    except (ConnectionError, socket.gaierror, EOFError) as exc:
        raise TransientError(f"{where}: {exc}") from exc
    except OSError as exc:
        raise TransientError(f"{where}: {exc}") from exc
    except imaplib.IMAP4.readonly as exc:
        raise FolderError(f"{where}: folder is read-only: {_text(exc)}") from exc
    except (ix.CapabilityError, ix.IllegalStateError, ix.ProtocolError) as exc:
        raise StoreError(f"{where}: {_text(exc)}") from exc
    except imaplib.IMAP4.error as exc:
        if folder is not None:
            raise FolderError(f"{where}: server said: {_text(exc)}") from exc
        raise StoreError(f"{where}: server said: {_text(exc)}") from exc


def _text(exc: BaseException) -> str:
    s = str(exc)
    if s.startswith(("b'", 'b"')):
        s = s[2:-1]
    return s


class LiteralSource(Protocol):
    """A message sent as an IMAP literal a chunk at a time, never held whole in memory.

    ``size`` is the exact number of bytes :meth:`chunks` produces: a literal announces its
    length before its first byte. ``chunks`` may raise (the file changed) before the last
    chunk; the connection is then closed, so the server never stores a short message.
    """

    @property
    def size(self) -> int: ...

    def chunks(self) -> Iterator[bytes]: ...


_IMAPCLIENT_DIST = re.compile(r"imapclient-(\d+)\.(\d+)\.(\d+)\.dist-info", re.IGNORECASE)


def _preset_imapclient_version() -> None:
    """Spare every run the import of importlib.metadata that imapclient makes for its version.

    imapclient's package ``__init__`` reads its own version with
    ``importlib.metadata.version()``; importing importlib.metadata (email, zipfile, csv,
    pathlib, ...) costs 10-40 ms, a fifth of a no-op ``syncd sync``. The same number is in
    the name of the installed package's ``imapclient-X.Y.Z.dist-info`` directory next to
    it: found there, a module with what ``imapclient.version`` defines stands in for it.
    Anything unusual (no such directory, two of them, a version that is not X.Y.Z, as
    imapclient's own code would reject) leaves the real import to run.
    """
    if "imapclient" in sys.modules or "imapclient.version" in sys.modules:
        return
    for entry in sys.path:
        try:
            names = os.listdir(entry or ".")  # noqa: PTH208 (names only, before pathlib)
        except OSError:
            continue
        if "imapclient" not in names:
            continue
        found = [m for n in names if (m := _IMAPCLIENT_DIST.fullmatch(n))]
        if len(found) != 1:
            return
        major, minor, micro = (int(x) for x in found[0].groups())
        stub = types.ModuleType("imapclient.version", "imapclient's version, from its dist-info")
        stub.version = f"{major}.{minor}.{micro}"  # type: ignore[attr-defined]
        stub.version_info = (major, minor, micro, "final")  # type: ignore[attr-defined]
        sys.modules["imapclient.version"] = stub
        return


_preset_imapclient_version()


@functools.cache
def _client_classes() -> tuple[type[IMAPClient], type[bytes]]:
    """imapclient's client taught to stream a literal, and the argument that asks for it.

    imapclient builds commands in ``_raw_command`` (quoting, literals, LITERAL+) and hands
    each literal argument, a bytes subclass, to ``_send_literal``, which announces
    ``{n}``, waits for the server's continuation unless the server has LITERAL+, and sends
    the bytes. That last step is the only one a big message needs changed, so the
    subclass overrides only ``_send_literal``, for a ``StreamedLiteral``: an empty bytes
    object carrying a :class:`LiteralSource`. Everything else stays imapclient's.
    (Made on first use: importing imapclient is left until a session is needed.)
    """
    from imapclient import IMAPClient
    from imapclient.imapclient import _literal

    class StreamedLiteral(_literal):  # type: ignore[misc]
        source: LiteralSource

    class Client(IMAPClient):  # type: ignore[misc]
        def _send_literal(self, tag: bytes, item: bytes, *rest: bool) -> None:
            if not isinstance(item, StreamedLiteral):
                super()._send_literal(tag, item, *rest)
                return
            # Recent imapclient passes has_literal_plus (its PR 569); older releases looked
            # the capability up here, which is cached since connect() asked for it.
            literal_plus = rest[0] if rest else self.has_capability("LITERAL+")
            imap = self._imap
            size = item.source.size
            if literal_plus:
                imap.send(b" {%d+}\r\n" % size)
            else:
                imap.send(b" {%d}\r\n" % size)
                # imaplib returns None on the "+" continuation; a tagged reply instead
                # means the server refused the literal (too big, over quota).
                while imap._get_response():
                    if imap.tagged_commands.get(tag):
                        raise imaplib.IMAP4.abort(
                            f"server refused the message: {imap.tagged_commands[tag]!r}"
                        )
            log.debug("   (literal of %d bytes, streamed)", size)
            try:
                for chunk in item.source.chunks():
                    imap.send(chunk)
            except BaseException as exc:
                # Mid-literal: whatever is sent next (a LOGOUT) would become part of the
                # message. Closing the connection makes the server drop the APPEND.
                with contextlib.suppress(OSError):
                    imap.shutdown()
                if isinstance(exc, StoreError):
                    raise imaplib.IMAP4.abort(f"upload stopped: {exc}") from exc
                raise

    return Client, StreamedLiteral


def _shut(wake: socket.socket | subprocess.Popen[bytes] | None) -> None:
    """Break a connection under its owner's feet: safe from any thread, never blocks."""
    with contextlib.suppress(OSError):
        if isinstance(wake, socket.socket):
            wake.shutdown(socket.SHUT_RDWR)
        elif wake is not None:
            wake.terminate()  # the tunnel's end of the pipe closes: the owner reads EOF


def _preauthenticated(client: IMAPClient) -> bool:
    """Whether the server greeted with PREAUTH, also after other untagged lines.

    imaplib reads one line as the greeting and decides between PREAUTH and OK on it alone.
    Courier puts ``* OK [ALERT] ...`` lines before its ``* PREAUTH`` when something in its
    set-up failed, and imaplib then takes the session for a fresh one. The PREAUTH line is
    still read, as an untagged reply to the CAPABILITY command imaplib sends right after
    the greeting; finding it there, the session is logged in, and imaplib is told so.
    """
    imap = client._imap
    if imap.state != "AUTH" and "PREAUTH" in imap.untagged_responses:
        imap.state = "AUTH"
    # imaplib drops untagged OKs before each command: only the first line is left to show.
    welcome = imap.welcome or b""
    first = welcome.decode("utf-8", "replace") if isinstance(welcome, bytes) else str(welcome)
    if first.startswith("* OK [ALERT]"):
        text = first[len("* OK ") :].strip()
        if text not in _alerts_said:
            _alerts_said.add(text)  # once per process: a daemon reconnects often
            log.warning("the IMAP server says: %s", text)
    return bool(imap.state == "AUTH")


def _tunnel_client(command: str) -> IMAPClient:
    class TunnelClient(_client_classes()[0]):  # type: ignore[misc]
        # imapclient sets a socket read timeout even in stream mode, where there is no
        # socket; a tunnel's own transport (ssh) has to notice a dead peer instead.
        def _set_read_timeout(self) -> None:
            pass

    client: IMAPClient = TunnelClient(command, stream=True, ssl=False)
    return client


@dataclass(frozen=True, slots=True)
class FolderNames:
    """How local folder names ("Lists/python") and the server's names relate.

    The server's personal namespace ``prefix`` (RFC 2342: ``"INBOX."`` on Courier and
    Cyrus, ``""`` on Dovecot) is not part of a local name, and its hierarchy ``sep`` is
    "/" locally: Courier's ``INBOX.Lists.python`` is the local ``Lists/python``, as
    Dovecot's ``Lists/python`` is. INBOX is INBOX everywhere. Invariant:
    ``to_local(to_server(n)) == n`` for every name ``to_server`` accepts.
    """

    prefix: str = ""
    sep: str = "/"

    def to_local(self, name: str, sep: str | None = None) -> str | None:
        """The local name of the server's ``name`` (whose LIST row said ``sep``), or None
        when no local name can stand for it (a "/" inside a component, the namespace
        itself, a second INBOX)."""
        sep = sep or self.sep
        if name.upper() == "INBOX":
            return "INBOX"
        rest = name
        if self.prefix and name.startswith(self.prefix):
            rest = name[len(self.prefix) :]
        parts = rest.split(sep) if sep else [rest]
        if not rest or "" in parts:
            return None
        if sep != "/" and any("/" in p for p in parts):
            return None
        if rest is not name and parts[0].upper() == "INBOX":
            return None  # INBOX.INBOX would be a second local INBOX
        return "/".join(parts)

    def to_server(self, name: str) -> str:
        """The server's name for the local ``name``; ValueError when a component holds the
        server's separator (local "a.b" would be the server's folder "b" inside "a")."""
        if name.upper() == "INBOX":
            return "INBOX"
        parts = name.split("/")
        if self.sep != "/" and any(self.sep in p for p in parts):
            raise ValueError(
                f"the folder name {name!r} contains the server's hierarchy separator "
                f"{self.sep!r}, so the server would see nested folders"
            )
        return self.prefix + self.sep.join(parts)


@dataclass(frozen=True, slots=True)
class FolderStatus:
    uidvalidity: int
    uidnext: int
    messages: int
    highestmodseq: int | None


@dataclass(frozen=True, slots=True)
class Fetched:
    uid: Uid
    raw: bytes
    flags: Flag
    internaldate: dt.datetime | None


@dataclass(frozen=True, slots=True)
class Listing:
    """Flags of a selected folder: all of them, or only what changed since a MODSEQ."""

    flags: dict[Uid, Flag]
    sizes: dict[Uid, int]
    vanished: set[Uid] | None
    """UIDs expunged since the MODSEQ (QRESYNC), or None when ``flags`` is complete."""
    delta: bool
    modseq: int | None = None
    """The highest MODSEQ among the listed messages (CONDSTORE), if any was listed."""


@dataclass(frozen=True, slots=True)
class Strategy:
    """How a session does each job, chosen once from the capabilities the server advertises.

    The engine asks for what it needs ("a delta listing", "appends with UIDs", "a move"),
    never for an extension: what the server lacks is done another way here, and nothing
    the server did not advertise is ever sent (Dovecot, for one, answers MOVE, ENABLE and
    sends APPENDUID whatever it advertises; a server that does not advertise them may not).
    """

    delta_listing: bool
    """CONDSTORE: a resync fetches only the flags changed since the last one (CHANGEDSINCE)."""
    vanished: bool
    """QRESYNC: the delta also names the expunged UIDs (VANISHED)."""
    uidplus: bool
    """UIDPLUS: APPENDUID/COPYUID give new UIDs; UID EXPUNGE removes only ours."""
    move: bool
    """MOVE, else COPY + \\Deleted + a guarded EXPUNGE."""
    idle: bool
    """IDLE, else the daemon polls."""
    multiappend: bool
    unselect: bool
    enable: str | None
    """What to ENABLE after login (QRESYNC implies CONDSTORE)."""

    @classmethod
    def of(cls, caps: frozenset[str]) -> Strategy:
        condstore = "CONDSTORE" in caps or "QRESYNC" in caps
        qresync = "QRESYNC" in caps and "ENABLE" in caps
        enable = None
        if "ENABLE" in caps:
            enable = "QRESYNC" if qresync else "CONDSTORE" if "CONDSTORE" in caps else None
        return cls(
            delta_listing=condstore,
            vanished=qresync,
            uidplus="UIDPLUS" in caps,
            move="MOVE" in caps,
            idle="IDLE" in caps,
            multiappend="MULTIAPPEND" in caps,
            unselect="UNSELECT" in caps,
            enable=enable,
        )

    def uses(self) -> list[str]:
        """The extensions syncd uses on this server, in the server's words."""
        out = []
        if self.vanished:
            out.append("QRESYNC")
        if self.delta_listing:
            out.append("CONDSTORE")
        if self.enable:
            out.append("ENABLE")
        for name, on in (
            ("UIDPLUS", self.uidplus),
            ("MOVE", self.move),
            ("IDLE", self.idle),
            ("MULTIAPPEND", self.multiappend),
            ("UNSELECT", self.unselect),
        ):
            if on:
                out.append(name)
        return out

    def fallbacks(self, poll_interval: int) -> list[str]:
        """Every fallback in effect, with what it costs."""
        out = []
        if not self.delta_listing:
            out.append(
                "no CONDSTORE: each resync reads every message's flags, about 36 bytes each "
                "(360 kB per 10 000 messages)"
            )
        elif not self.vanished:
            out.append(
                "no QRESYNC: expunges are found by comparing counts; when they differ a resync "
                "reads the folder's UID list, about 6 bytes per message"
            )
        if not self.uidplus:
            out.append(
                "no UIDPLUS: each upload is found again by UID SEARCH on its Message-ID and a "
                "header fetch (one SEARCH per message, one FETCH per batch); each EXPUNGE first "
                "asks for other \\Deleted messages (UID SEARCH DELETED) and unmarks them for "
                "the EXPUNGE, marking them again after (two STOREs when there are any)"
            )
        if not self.move:
            out.append(
                "no MOVE: a move is COPY, then \\Deleted and EXPUNGE"
                + (
                    ""
                    if self.uidplus
                    else "; the copies are found by their headers (one STATUS, "
                    "one header FETCH on each side)"
                )
            )
        if not self.idle:
            out.append(
                f"no IDLE: new mail is noticed by polling every {poll_interval} s "
                "(poll_interval), one STATUS per folder"
            )
        if not self.multiappend:
            out.append("no MULTIAPPEND: one APPEND command, one round trip, per uploaded message")
        return out


_APPENDUID = re.compile(rb"APPENDUID (\d+) ([0-9:,]+)")


def _uid_set(text: bytes) -> list[int]:
    out: list[int] = []
    for part in text.split(b","):
        if b":" in part:
            a, b = (int(x) for x in part.split(b":"))
            step = 1 if b >= a else -1
            out.extend(range(a, b + step, step))
        elif part:
            out.append(int(part))
    return out


def _listing(rows: dict[int, dict[bytes, Any]], vanished: set[Uid] | None, delta: bool) -> Listing:
    flags: dict[Uid, Flag] = {}
    sizes: dict[Uid, int] = {}
    modseq: int | None = None
    for uid, data in rows.items():
        if b"FLAGS" not in data:
            continue
        flags[Uid(uid)] = flags_from_imap(data[b"FLAGS"])
        if b"RFC822.SIZE" in data:
            sizes[Uid(uid)] = int(data[b"RFC822.SIZE"])
        got = data.get(b"MODSEQ")
        if got is not None:
            value = int(got[0] if isinstance(got, tuple) else got)
            modseq = value if modseq is None else max(modseq, value)
    return Listing(flags, sizes, vanished, delta, modseq)


def _fetch_by_uid(data: list[Any]) -> dict[int, dict[bytes, Any]]:
    """FETCH responses keyed by UID; responses without a UID are left out.

    A server may send a FETCH of its own in the middle of ours, when another client
    changed a message's flags: ``* 2 FETCH (FLAGS (\\Seen))``, without UID unless QRESYNC
    is on. imapclient's parser keys such a response by its sequence number as if it were
    a UID, which gave a phantom message or another message's flags. Ours are all UID
    FETCHes, whose own responses always carry the UID; the flag change the stray one
    reports is seen by the next listing (its MODSEQ is newer than the one recorded).
    """
    from imapclient.datetime_util import parse_to_datetime
    from imapclient.response_parser import gen_parsed_response

    out: dict[int, dict[bytes, Any]] = {}
    if data == [None]:
        return out
    tokens = gen_parsed_response(data)
    for _seq in tokens:
        items = next(tokens)
        if not isinstance(items, tuple) or len(items) % 2:
            raise imaplib.IMAP4.error(f"malformed FETCH response: {items!r:.200}")
        row: dict[bytes, Any] = {}
        for i in range(0, len(items), 2):
            key, value = items[i], items[i + 1]
            word = key.upper() if isinstance(key, bytes) else str(key).upper().encode()
            if word == b"INTERNALDATE" and isinstance(value, bytes):
                value = parse_to_datetime(value, normalise=False)
            row[word] = value
        uid = row.pop(b"UID", None)
        if uid is None:
            continue
        out.setdefault(int(uid), {}).update(row)
    return out


# A flag listing's FETCH line as imaplib hands it over ("* " and "FETCH" taken off), in the
# order Dovecot and most servers answer: UID first, then the items in the order asked.
_FLAGS_LINE = re.compile(
    rb"\d+ \(UID (\d+) FLAGS \(([^()]*)\)(?: RFC822\.SIZE (\d+))?(?: MODSEQ \((\d+)\))?\)"
)
_ANY_LINE = re.compile(rb"\d+ \((.*)\)", re.DOTALL)
_ANY_ITEM = re.compile(rb"([A-Za-z0-9.]+) (\([^()]*\)|[^ ()]+)(?: |$)")
_LISTED = frozenset((b"UID", b"FLAGS", b"RFC822.SIZE", b"MODSEQ"))


@dataclass(slots=True)
class _FlagRows:
    """What a flag listing says: flags and sizes by UID, the highest MODSEQ seen."""

    flags: dict[Uid, Flag]
    sizes: dict[Uid, int]
    modseq: int | None = None

    def update(self, other: _FlagRows) -> None:
        self.flags.update(other.flags)
        self.sizes.update(other.sizes)
        if other.modseq is not None:
            self.modseq = max(self.modseq or 0, other.modseq)


def _line_items(line: bytes) -> tuple[bytes | None, bytes | None, bytes | None, bytes | None]:
    """UID, FLAGS (inside the parentheses), RFC822.SIZE and MODSEQ of a FETCH line in any
    order; ValueError when it has anything else (the generic parser takes over)."""
    m = _ANY_LINE.fullmatch(line)
    if m is None:
        raise ValueError(line)
    inner, pos, found = m.group(1), 0, {}
    while pos < len(inner):
        item = _ANY_ITEM.match(inner, pos)
        key = item.group(1).upper() if item is not None else b""
        if item is None or key not in _LISTED:
            raise ValueError(line)
        value = item.group(2)
        found[key] = value[1:-1] if value.startswith(b"(") else value
        pos = item.end()
    return found.get(b"UID"), found.get(b"FLAGS"), found.get(b"RFC822.SIZE"), found.get(b"MODSEQ")


def _lean_flag_rows(data: list[Any]) -> _FlagRows | None:
    """The FETCH responses of a flag listing (UID FLAGS [RFC822.SIZE] [MODSEQ]) read by
    regular expression, or None when one is not that plain (a literal, another item, a
    line that does not parse): then imapclient's generic parser reads them.

    imapclient lexes a response character by character: 0.2 s per 10 000 lines, the
    biggest cost of listing a folder. Here one match a line, and one Flag per distinct
    flag list. As in :func:`_fetch_by_uid`, a FETCH without UID (a flag change the server
    reports on its own) is left out.
    """
    rows = _FlagRows({}, {})
    if data == [None]:
        return rows
    flags, sizes = rows.flags, rows.sizes
    known: dict[bytes, Flag] = {}
    modseqs: list[bytes] = []
    match = _FLAGS_LINE.fullmatch
    for line in data:
        if not isinstance(line, bytes):
            return None
        m = match(line)
        if m is not None:
            uid, listed, size, modseq = m.groups()
        else:
            try:
                uid, listed, size, modseq = _line_items(line)
            except ValueError:
                return None
            if uid is None or listed is None:
                continue
        flag = known.get(listed)
        if flag is None:
            flag = known[listed] = flags_from_imap(listed.split())
        u = Uid(int(uid))
        flags[u] = flag
        if size is not None:
            sizes[u] = int(size)
        if modseq is not None:
            modseqs.append(modseq)
    if modseqs:
        rows.modseq = max(map(int, modseqs))
    return rows


def _flag_rows(data: list[Any]) -> _FlagRows:
    rows = _lean_flag_rows(data)
    if rows is None:
        generic = _listing(_fetch_by_uid(data), None, False)
        rows = _FlagRows(generic.flags, generic.sizes, generic.modseq)
    return rows


_BODY_ITEMS = ("UID", "FLAGS", "INTERNALDATE", "BODY.PEEK[]")
# The head of a whole-message FETCH line, up to its literal, in the order servers answer.
_BODY_HEAD = re.compile(
    rb'\d+ \(UID (\d+) FLAGS \(([^()]*)\) INTERNALDATE "([^"]*)" BODY\[\] \{\d+\}'
)


def _lean_bodies(data: list[Any]) -> dict[int, dict[bytes, Any]] | None:
    """The responses of ``UID FETCH (UID FLAGS INTERNALDATE BODY.PEEK[])`` as
    :func:`_fetch_by_uid` gives them, or None when one is not in the usual shape (then
    imapclient's parser reads them all). Each message is imaplib's literal itself, never
    copied; imapclient's lexer would look at each of the ~27 tokens of every head.
    A FETCH without UID between them (the server's news) is left out, as there.
    """
    from imapclient.datetime_util import parse_to_datetime

    out: dict[int, dict[bytes, Any]] = {}
    i, n = 0, len(data)
    while i < n:
        item = data[i]
        if isinstance(item, tuple) and len(item) == 2 and i + 1 < n and data[i + 1] == b")":
            m = _BODY_HEAD.fullmatch(item[0])
            if m is None:
                return None
            uid, listed, date = m.groups()
            out[int(uid)] = {
                b"FLAGS": tuple(listed.split()),
                b"INTERNALDATE": parse_to_datetime(date, normalise=False),
                b"BODY[]": item[1],
            }
            i += 2
            continue
        if not isinstance(item, bytes):
            return None
        try:
            uid_item = _line_items(item)[0]
        except ValueError:
            return None
        if uid_item is not None:
            return None  # a flag update of one of ours: the generic parser merges it
        i += 1
    return out


_MESSAGE_ID = re.compile(rb"(?im)^Message-ID:[ \t]*(?:\r?\n[ \t]+)?(<[!-;=?-~]+>)[ \t]*\r?$")


def _message_id(header: bytes) -> str | None:
    """The Message-ID of a header block, if it is plain enough to SEARCH for."""
    end = header.find(b"\n\r\n")
    end2 = header.find(b"\n\n")
    cut = min(x for x in (end, end2, len(header)) if x >= 0)
    m = _MESSAGE_ID.search(header[: cut + 1])
    return m.group(1).decode("ascii") if m else None


class ImapSession:
    """One logged-in IMAP connection. Not thread-safe; one per worker."""

    def __init__(self, cfg: ImapConfig, secret: Callable[[], str]) -> None:
        self.cfg = cfg
        self._secret = secret
        self._client: IMAPClient | None = None
        self.caps: frozenset[str] = frozenset()
        self.strategy = Strategy.of(self.caps)
        self.delimiter = "/"
        self.selected: str | None = None
        self.selected_uidvalidity: int | None = None
        self._server_names: dict[str, str] = {}
        self._skipped_all: set[str] = set()
        self._skipped_names: set[str] = set()
        self.names = FolderNames()
        """How local names map to the server's; set by connect() from the config or
        NAMESPACE, and completed by list_folders() with the separator LIST shows."""
        self.namespace_from = "none"
        """Where ``names.prefix`` came from: "config", "NAMESPACE" or "none"."""
        self._sep_known = False
        self.legacy_names = False
        """Keep the namespace prefix in local names ("INBOX/Archive"), as syncd did before
        it knew namespaces: set by the engine for an account synced that way."""
        # The one thing another thread may do to a session is interrupt() it: a handle on
        # the connection that stays valid until close() releases it (see interrupt()).
        self._wake_lock = threading.Lock()
        self._wake: socket.socket | subprocess.Popen[bytes] | None = None
        self._interrupted = False

    # -- connection ------------------------------------------------------------------

    @property
    def client(self) -> IMAPClient:
        if self._client is None:
            raise StoreError("IMAP session is not connected")
        return self._client

    def connect(self) -> None:
        from syncd.config import TlsMode

        cfg = self.cfg
        where = f"IMAP {cfg.host}:{cfg.port}"
        ctx = tls.make_context(cfg) if cfg.tls is not TlsMode.NONE else None
        tunnel = getattr(cfg, "tunnel", None)
        if tunnel:
            where = "IMAP tunnel"
        try:
            with map_errors(where):
                if tunnel:
                    # imaplib's IMAP4_stream runs the command through the shell, as
                    # mbsync's Tunnel does (users write ssh command lines there).
                    client = _tunnel_client(tunnel)
                else:
                    client = _client_classes()[0](
                        cfg.host,
                        port=cfg.port,
                        ssl=cfg.tls is TlsMode.IMPLICIT,
                        ssl_context=ctx,
                        timeout=cfg.timeout,
                    )
        except TLSError as exc:
            cause = exc.__cause__
            if isinstance(cause, ssl.SSLError):
                raise TLSError(tls.describe(cause, cfg)) from cause
            raise
        # imapclient sets imaplib's debug level so it can log protocol lines; imaplib then
        # formats the repr of every literal and FETCH batch even when nothing is logged,
        # a third of an initial sync's time. Keep it only for -vv protocol logging.
        if not logging.getLogger("imapclient").isEnabledFor(logging.DEBUG):
            client._imap.debug = 0
        self._client = client
        self._arm_interrupt(client)
        try:
            with map_errors(where):
                if cfg.tls is TlsMode.STARTTLS:
                    if b"STARTTLS" not in client.capabilities():
                        raise TLSError(
                            f"{where} does not offer STARTTLS; refusing to log in without TLS "
                            "(use tls: implicit on port 993 if the server has it)"
                        )
                    try:
                        client.starttls(ctx)
                    except ssl.SSLError as exc:
                        raise TLSError(tls.describe(exc, cfg)) from exc
                if cfg.tls is not TlsMode.NONE:
                    tls.check_pin(client.socket(), cfg)
                preauth = _preauthenticated(client)
                secret = "" if preauth else self._secret()
                if preauth:
                    pass  # PREAUTH greeting: the tunnel is already logged in
                else:
                    try:
                        with map_errors(where):
                            self._login(client, secret)
                    except AuthError:
                        if not renewed(self._secret, secret):
                            raise
                        self._login(client, self._secret())
                self.caps = frozenset(c.decode().upper() for c in client.capabilities())
                self.strategy = Strategy.of(self.caps)
                if self.strategy.enable:
                    client.enable(self.strategy.enable)
                self._learn_namespace(client)
        except BaseException:
            self.close()
            raise
        with _caps_lock:
            # A daemon connects many times (worker, IDLE, reconnects): the list once per
            # server, and again only if it changed.
            news = _caps_said.get(where) != self.caps
            _caps_said[where] = self.caps
        if news:
            log.debug("connected to %s, capabilities: %s", where, " ".join(sorted(self.caps)))
        else:
            log.debug("connected to %s", where)

    def _login(self, client: IMAPClient, secret: str) -> None:
        from syncd.config import AuthMethod

        cfg = self.cfg
        if cfg.auth is AuthMethod.XOAUTH2:
            client.oauth2_login(cfg.username, secret)
        elif cfg.auth is AuthMethod.OAUTHBEARER:
            client.oauthbearer_login(cfg.username, secret)
        else:
            client.login(cfg.username, secret)

    def _learn_namespace(self, client: IMAPClient) -> None:
        """The personal namespace: from the config, else from NAMESPACE (RFC 2342)."""
        prefix, sep = self.cfg.namespace, self.cfg.separator
        self.namespace_from = "config" if prefix is not None else "none"
        if prefix is None and "NAMESPACE" in self.caps:
            with map_errors("NAMESPACE"):
                personal = client.namespace().personal or ()
            if personal:
                got_prefix, got_sep = personal[0]
                prefix = got_prefix.decode() if isinstance(got_prefix, bytes) else got_prefix
                if sep is None and got_sep:
                    sep = got_sep.decode() if isinstance(got_sep, bytes) else got_sep
                self.namespace_from = "NAMESPACE"
        self._sep_known = sep is not None
        if sep is not None:
            self.delimiter = sep
        self.names = FolderNames(prefix or "", sep or self.delimiter)

    def close(self) -> None:
        client, self._client = self._client, None
        self.selected = self.selected_uidvalidity = None
        if client is None:
            self._disarm_interrupt()
            return
        try:
            client.logout()
        except Exception:
            with contextlib.suppress(Exception):
                client.shutdown()
        finally:
            self._disarm_interrupt()

    def interrupt(self) -> None:
        """Make the owner's blocking read or write on this connection return now.

        The only method another thread may call (a session belongs to the thread that
        reads it): it shuts the socket down, or ends a tunnel's command, and does nothing
        else: no LOGOUT, no close, no protocol bytes, no waiting. The owner's command in
        flight, or its next one, fails with a TransientError; the owner then closes the
        session itself and makes a new one. Sticky: an interrupt that comes while the
        owner is still connecting takes effect as soon as there is a connection.
        """
        with self._wake_lock:
            self._interrupted = True
            _shut(self._wake)

    def _arm_interrupt(self, client: IMAPClient) -> None:
        # A duplicate of the socket's descriptor, so interrupt() never acts on a number
        # that close() freed and another connection reused; shutdown() works on the
        # connection behind every descriptor of it, TLS or not.
        imap = client._imap
        wake: socket.socket | subprocess.Popen[bytes] | None = getattr(imap, "process", None)
        if wake is None:
            with contextlib.suppress(OSError, AttributeError):
                wake = socket.socket(fileno=os.dup(client.socket().fileno()))
        with self._wake_lock:
            self._wake = wake
            if self._interrupted:
                _shut(wake)

    def _disarm_interrupt(self) -> None:
        with self._wake_lock:
            wake, self._wake = self._wake, None
        if isinstance(wake, socket.socket):
            wake.close()

    def __enter__(self) -> ImapSession:
        self.connect()
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def has(self, cap: str) -> bool:
        return cap in self.caps

    def implementation(self) -> str:
        """What the server says it is: its ID (RFC 2971) if it has ID, else its greeting."""
        client = self.client
        if "ID" in self.caps:
            with contextlib.suppress(Exception), map_errors("ID"):
                got = client.id_()
                # imapclient returns the parsed list: ((k1, v1, k2, v2, ...),)
                flat = got[0] if got and isinstance(got[0], tuple) else ()
                fields = {
                    (k.decode() if isinstance(k, bytes) else str(k)).lower(): (
                        v.decode("utf-8", "replace") if isinstance(v, bytes) else str(v)
                    )
                    for k, v in zip(flat[::2], flat[1::2], strict=False)
                    if v is not None
                }
                text = " ".join(fields[k] for k in ("name", "version") if k in fields)
                if text:
                    return f"{text} (ID)"
        raw = client.welcome
        text = raw.decode("utf-8", "replace") if isinstance(raw, bytes) else str(raw or "")
        text = re.sub(r"^\* (OK|PREAUTH) (\[[^\]]*\] ?)?", "", text).strip()
        return f"{text or 'unknown'} (greeting)"

    def describe(self) -> list[str]:
        """What ``syncd check`` says: the server, the extensions used, each fallback."""
        uses = self.strategy.uses()
        lines = [
            f"server: {self.implementation()}",
            "uses: " + (" ".join(uses) if uses else "nothing beyond IMAP4rev1"),
        ]
        for text in self.strategy.fallbacks(self.cfg.poll_interval):
            lines.append(f"fallback: {text}")
        lines.append(self._describe_names())
        return lines

    def _describe_names(self) -> str:
        names = self.names
        where = {"config": "from the config", "NAMESPACE": "from NAMESPACE"}.get(
            self.namespace_from, "the server offers no NAMESPACE"
        )
        if not names.prefix:
            return f"folders: no namespace prefix ({where}), separator {names.sep!r}"
        example = names.to_server("Lists/python")
        return (
            f"folders: namespace {names.prefix!r} ({where}), separator {names.sep!r}: "
            f"the server's {example} is the local Lists/python (unless the account was "
            "synced with the prefix in local names: then they keep it)"
        )

    def noop(self) -> None:
        with map_errors("NOOP"):
            self.client.noop()

    # -- folders ---------------------------------------------------------------------

    def list_folders(self) -> dict[str, str]:
        """Selectable folders: our name (components joined by "/") -> the server's name.

        Special-use folders (RFC 6154) get the local names of ``special_folders``, so the
        server's ``[Gmail]/Sent Mail`` is the folder ``Sent``; ``\\All`` (Gmail's "All
        Mail", which holds every message a second time) is left out. The personal
        namespace prefix is not part of local names (:class:`FolderNames`): Courier's
        ``INBOX.Archive`` is ``Archive``. Names that no local name can stand for (a "/"
        inside a component while the server separates with something else, a second
        INBOX, two server names for one local name) are skipped with a warning that says
        how to stop it; the other folders sync.
        """
        with map_errors("LIST"):
            rows = self.client.list_folders()
        special = dict(self.cfg.special_folders or ())
        out: dict[str, str] = {}
        aliases: list[tuple[str, str]] = []
        names = self.names
        if self.legacy_names:
            names = FolderNames("", names.sep)
        local_of: dict[str, str] = {}

        def outside(row: tuple[Any, Any, Any]) -> bool:
            name = row[2].decode("utf-8", "replace") if isinstance(row[2], bytes) else row[2]
            return not (names.prefix and str(name).startswith(names.prefix))

        # A folder in the personal namespace keeps its local name against one outside it
        # that would get the same name (INBOX.Archive and Archive on the same server).
        for flags, delim, name in sorted(rows, key=outside):
            if isinstance(name, bytes):
                name = name.decode("utf-8", "replace")
            sep = delim.decode() if isinstance(delim, bytes) else (delim or "/")
            if self.cfg.separator is None:
                self.delimiter = sep
            lowered = {f.lower() if isinstance(f, bytes) else f.lower().encode() for f in flags}
            if lowered & {b"\\noselect", b"\\nonexistent"}:
                continue
            if b"\\all" in lowered and name.upper() != "INBOX":
                if name not in self._skipped_all:
                    self._skipped_all.add(name)
                    log.info(
                        "folder %r holds all mail (\\All) and is not synced, so that every "
                        "message is not stored twice",
                        name,
                    )
                continue
            if name.upper() == "INBOX":
                out["INBOX"] = name
                continue
            if self.cfg.separator is not None:
                sep = self.cfg.separator
            local = names.to_local(name, sep)
            if local is None or local in out:
                self._skip_name(name, local, sep)
                continue
            role = next((r for r in special if b"\\" + r.encode() in lowered), None)
            if role is not None:
                aliases.append((special[role], name))
            out[local] = name
            local_of[name] = local
        for alias, name in aliases:
            canonical = local_of[name]
            if alias == canonical:
                continue
            if alias in out:
                log.warning(
                    "folder %r is the server's %s folder, but another folder is named %r; "
                    "keeping the server's name",
                    name,
                    alias,
                    alias,
                )
                continue
            del out[canonical]
            out[alias] = name
        if not self._sep_known and rows:
            self.names = FolderNames(self.names.prefix, self.delimiter)
        self._server_names = out
        return out

    def _skip_name(self, name: str, local: str | None, sep: str) -> None:
        """Warn, once per session, about a server folder no local name can stand for."""
        if name in self._skipped_names or f"!{name}" in self.cfg.folders:
            return
        self._skipped_names.add(name)
        if local is None:
            why = (
                f"a '/' inside a name component (the server separates with {sep!r})"
                if "/" in name
                else "its local name would be INBOX or empty"
            )
        else:
            why = f"another server folder is the local {local!r} already"
        log.warning(
            "server folder %r is not synced: %s; rename it on the server to sync it, or "
            'add "!%s" to the account\'s folders: to silence this',
            name,
            why,
            name,
        )

    def server_name(self, name: str) -> str:
        got = self._server_names.get(name)
        if got is not None:
            return got
        names = FolderNames("", self.names.sep) if self.legacy_names else self.names
        try:
            return names.to_server(name)
        except ValueError as exc:
            raise FolderError(str(exc)) from exc

    def status(self, name: str) -> FolderStatus:
        if self.selected == name:
            # STATUS of the selected folder may answer from this session's own view,
            # which moves on only at the next NOOP or SELECT (Dovecot does so): the mail
            # an IDLE connection just reported would look absent and the folder unchanged.
            self.unselect()
        return self._status_of(name)

    def _status_of(self, name: str) -> FolderStatus:
        what = ["MESSAGES", "UIDNEXT", "UIDVALIDITY"]
        if self.strategy.delta_listing:
            what.append("HIGHESTMODSEQ")
        with map_errors("STATUS", folder=name):
            st = self.client.folder_status(self.server_name(name), what)
        return FolderStatus(
            int(st[b"UIDVALIDITY"]),
            int(st[b"UIDNEXT"]),
            int(st[b"MESSAGES"]),
            int(st[b"HIGHESTMODSEQ"]) if b"HIGHESTMODSEQ" in st else None,
        )

    def create_folder(self, name: str) -> None:
        """Create ``name`` on the server; a refusal (FolderError) says how to stop asking."""
        try:
            self._create(name)
        except FolderError as exc:
            try:
                server = self.server_name(name)
            except FolderError:
                server = name
            shown = name if server == name else f"{name} ({server} on the server)"
            raise FolderError(
                f"{exc}; folder {shown} cannot be made on the server: rename the local folder, "
                f'or add "!{name}" to the account\'s folders: to keep it local only'
            ) from exc

    def _create(self, name: str) -> None:
        with map_errors("CREATE", folder=name):
            self.client.create_folder(self.server_name(name))
            with contextlib.suppress(Exception):
                self.client.subscribe_folder(self.server_name(name))

    def unselect(self) -> None:
        """Leave the selected folder without expunging anything (CLOSE would)."""
        if self.selected is None:
            return
        with map_errors("UNSELECT", folder=self.selected):
            if self.has("UNSELECT"):
                self.client.unselect_folder()
            else:
                # Selecting a folder read-only and leaving it implicitly expunges nothing.
                self.client.select_folder("INBOX", readonly=True)
        self.selected = self.selected_uidvalidity = None

    def delete_folder(self, name: str) -> None:
        with map_errors("DELETE", folder=name):
            if self.selected == name:
                self.client.unselect_folder() if self.has(
                    "UNSELECT"
                ) else self.client.close_folder()
                self.selected = self.selected_uidvalidity = None
            self.client.delete_folder(self.server_name(name))

    def select(self, name: str) -> FolderStatus:
        self.selected = self.selected_uidvalidity = None
        with map_errors("SELECT", folder=name):
            r = self.client.select_folder(self.server_name(name))
        self.selected = name
        self.selected_uidvalidity = int(r[b"UIDVALIDITY"])
        return FolderStatus(
            self.selected_uidvalidity,
            int(r.get(b"UIDNEXT", 0)),
            int(r[b"EXISTS"]),
            int(r[b"HIGHESTMODSEQ"]) if b"HIGHESTMODSEQ" in r else None,
        )

    def refresh_selected(self) -> FolderStatus:
        """The selected folder's state now, without selecting it again.

        A NOOP lets the server bring this session's view up to date; a STATUS then
        answers from that view. A SELECT would make a server reopen the folder, which for
        one of 100 000 messages costs Dovecot about 0.3 s against 30 ms for the NOOP.
        """
        name = self.selected
        assert name is not None and self.selected_uidvalidity is not None
        with map_errors("NOOP", folder=name):
            self.client.noop()
        return self._status_of(name)

    def select_checked(self, name: str, uidvalidity: int) -> None:
        """Select ``name`` (unless it is selected) and make sure its UIDs still mean what
        they meant when the caller planned with ``uidvalidity``.

        FolderError when the folder was recreated or reset meanwhile (RFC 3501 2.3.1.1):
        a UID from the plan could now name another message, so nothing may be stored,
        expunged or moved by it. The next sync re-plans from a fresh listing.
        """
        if self.selected != name:
            self.select(name)
        if self.selected_uidvalidity != uidvalidity:
            raise FolderError(
                f"folder {name} was reset on the server while syncing (UIDVALIDITY "
                f"{uidvalidity} -> {self.selected_uidvalidity}); nothing was changed there, "
                "the next sync matches its messages again"
            )

    # -- reading ---------------------------------------------------------------------

    def _uid_fetch_raw(
        self, uids: str, items: Sequence[str], modifiers: Sequence[str] = ()
    ) -> list[Any]:
        return self._uid_fetch_receive(self._uid_fetch_send(uids, items, modifiers))

    def _uid_fetch_send(
        self, uids: str, items: Sequence[str], modifiers: Sequence[str] = ()
    ) -> bytes:
        # imapclient's fetch() cannot take a "1:*" range; this is the same call without
        # its post-filter, still using its command plumbing and response parser.
        args: list[str] = ["FETCH", uids, "(" + " ".join(items) + ")"]
        if modifiers:
            args.append("(" + " ".join(modifiers) + ")")
        tag: bytes = self.client._imap._command("UID", *args)
        return tag

    def _uid_fetch_receive(self, tag: bytes) -> list[Any]:
        """The FETCH responses of the command ``tag``, read up to its completion.

        Never with another FETCH outstanding: Dovecot answers pipelined FETCHes in
        parallel, and imaplib files every FETCH response under one key.
        """
        client = self.client
        imap = client._imap
        typ, data = imap._command_complete("FETCH", tag)
        client._checkok("fetch", typ, data)
        typ, data = imap._untagged_response(typ, data, "FETCH")
        lines: list[Any] = data
        return lines

    def _uid_fetch(
        self, uids: str, items: Sequence[str], modifiers: Sequence[str] = ()
    ) -> dict[int, dict[bytes, Any]]:
        return _fetch_by_uid(self._uid_fetch_raw(uids, items, modifiers))

    def _flag_fetch(
        self, uids: str, items: Sequence[str], modifiers: Sequence[str] = ()
    ) -> _FlagRows:
        return _flag_rows(self._uid_fetch_raw(uids, items, modifiers))

    def listing(self, since_modseq: int | None = None, sizes_from: int | None = None) -> Listing:
        """Flags (and sizes) of the selected folder, or only what changed since a MODSEQ.

        ``sizes_from`` (a full listing only): sizes only for UIDs from there on, the ones the
        last sync had not seen; a size is only needed to batch a download, and without
        CONDSTORE every resync lists every message, where ``RFC822.SIZE nnn`` would add
        about 40% to the bytes of a flags-only line.
        """
        name = self.selected
        items = ["UID", "FLAGS", "RFC822.SIZE"]
        if since_modseq is None and sizes_from is not None and sizes_from > 1:
            with map_errors("FETCH FLAGS", folder=name):
                rows = self._flag_fetch(f"1:{sizes_from - 1}", ["UID", "FLAGS"])
                # n:* is *:n when n is past the last UID: at worst the last message again.
                rows.update(self._flag_fetch(f"{sizes_from}:*", items))
            return Listing(rows.flags, rows.sizes, None, False, rows.modseq)
        with map_errors("FETCH FLAGS", folder=name):
            imap = self.client._imap
            imap.untagged_responses.pop("VANISHED", None)
            if since_modseq is not None and self.strategy.delta_listing:
                mods = [f"CHANGEDSINCE {since_modseq}"]
                qresync = self.strategy.vanished
                if qresync:
                    mods.append("VANISHED")
                rows = self._flag_fetch("1:*", items, mods)
                vanished: set[Uid] | None = None
                if qresync:
                    vanished = set()
                    for line in imap.untagged_responses.pop("VANISHED", []):
                        text = line.replace(b"(EARLIER)", b"").strip()
                        vanished.update(Uid(u) for u in _uid_set(text))
                delta = True
            else:
                rows = self._flag_fetch("1:*", items)
                vanished = None
                delta = False
        return Listing(rows.flags, rows.sizes, vanished, delta, rows.modseq)

    def listing_of(self, uids: Iterable[Uid]) -> Listing:
        """Flags and sizes of just these messages of the selected folder."""
        todo = sorted(uids)
        rows = _FlagRows({}, {})
        for i in range(0, len(todo), 1000):
            chunk = ",".join(str(u) for u in todo[i : i + 1000])
            with map_errors("FETCH FLAGS", folder=self.selected):
                rows.update(self._flag_fetch(chunk, ["UID", "FLAGS", "RFC822.SIZE"]))
        return Listing(rows.flags, rows.sizes, None, True)

    def all_uids(self) -> set[Uid]:
        with map_errors("UID SEARCH", folder=self.selected):
            return {Uid(u) for u in self.client.search("ALL")}

    def fingerprints(self, uids: Iterable[Uid]) -> dict[Uid, Fingerprint]:
        out: dict[Uid, Fingerprint] = {}
        todo = sorted(uids)
        for i in range(0, len(todo), 1000):
            chunk = ",".join(str(u) for u in todo[i : i + 1000])
            with map_errors("FETCH HEADER", folder=self.selected):
                rows = self._uid_fetch(chunk, ["UID", "BODY.PEEK[HEADER]"])
            for uid, data in rows.items():
                raw = data.get(b"BODY[HEADER]")
                if isinstance(raw, bytes):
                    out[Uid(uid)] = fingerprint(raw)
        return out

    def fetch(self, uids: Sequence[Uid], sizes: Mapping[Uid, int]) -> Iterator[list[Fetched]]:
        """Whole messages in batches capped by count and bytes, never marking them seen.

        A message bigger than the byte cap is a batch of its own (the batch before it is
        sent first, the next starts after it), so only one big message is ever in memory,
        as long as the caller lets each batch go before asking for the next.
        """
        batches: list[list[Uid]] = []
        batch: list[Uid] = []
        nbytes = 0
        for uid in sorted(uids):
            size = sizes.get(uid, 0)
            if batch and (len(batch) >= FETCH_BATCH_MESSAGES or nbytes + size > FETCH_BATCH_BYTES):
                batches.append(batch)
                batch, nbytes = [], 0
            batch.append(uid)
            nbytes += size
        if batch:
            batches.append(batch)
        # One command at a time: Dovecot runs pipelined FETCHes in parallel, so a FETCH
        # sent ahead interleaves its responses with the one being read (about 5% of the
        # messages were lost that way). Each batch is let go before the next is asked for.
        for batch in batches:
            yield self._fetch_batch(batch)

    def _fetch_batch(self, uids: list[Uid]) -> list[Fetched]:
        with map_errors("FETCH", folder=self.selected):
            lines = self._uid_fetch_raw(",".join(map(str, uids)), _BODY_ITEMS)
            rows = _lean_bodies(lines)
            if rows is None:
                rows = _fetch_by_uid(lines)
            del lines
        out: list[Fetched] = []
        for uid in uids:
            data = rows.get(uid)
            if data is None or not isinstance(data.get(b"BODY[]"), bytes):
                # Expunged by someone else between listing and fetch: next sync sees it gone.
                log.info(
                    "folder %s: UID %d vanished before it could be fetched", self.selected, uid
                )
                continue
            date = data.get(b"INTERNALDATE")
            out.append(
                Fetched(
                    uid,
                    data[b"BODY[]"],
                    flags_from_imap(data.get(b"FLAGS", ())),
                    date if isinstance(date, dt.datetime) else None,
                )
            )
        return out

    # -- writing ---------------------------------------------------------------------

    def append(
        self,
        name: str,
        messages: Sequence[tuple[bytes | LiteralSource, Flag, dt.datetime | None]],
    ) -> list[Uid | None]:
        """Upload messages; returns their new UIDs where the server says them.

        Each message is its CRLF form (:func:`~syncd.model.to_remote_bytes`), as bytes or
        as a :class:`LiteralSource` streamed a chunk at a time, and reaches the server
        byte for byte: imaplib's ``append`` is never used, as it rewrites line endings with
        a regex over a copy of the whole message (a bare CR became CRLF, so the server's
        header no longer matched the local one) and holds the GIL while doing so. With
        MULTIAPPEND several messages go in one command, else one command each; both are
        imapclient's ``_raw_command``, which handles LITERAL+ and the continuation.
        """
        if not messages:
            return []
        from imapclient.datetime_util import datetime_to_INTERNALDATE
        from imapclient.imapclient import _literal, seq_to_parenstr

        streamed = _client_classes()[1]
        client = self.client
        folder = client._normalise_folder(self.server_name(name))
        multi = self.has("MULTIAPPEND")
        out: list[Uid | None] = []
        # Without UIDPLUS the new messages are found afterwards among the UIDs from here on.
        before = None if self.strategy.uidplus else self.status(name)
        start = 0
        while start < len(messages):
            end, nbytes = start, 0
            while end < len(messages) and (end == start or (multi and nbytes < APPEND_BATCH_BYTES)):
                body = messages[end][0]
                nbytes += len(body) if isinstance(body, bytes) else body.size
                end += 1
            args: list[bytes] = [folder]
            for body, flags, date in messages[start:end]:
                args.append(seq_to_parenstr(flags_to_imap(flags)).encode("ascii"))
                if date is not None:
                    args.append(b'"%s"' % datetime_to_INTERNALDATE(date).encode("ascii"))
                if isinstance(body, bytes):
                    args.append(_literal(body))
                else:
                    arg = streamed()
                    arg.source = body  # type: ignore[attr-defined]
                    args.append(arg)
            with map_errors("APPEND", folder=name):
                typ, data = client._raw_command(b"APPEND", args, uid=False)
            if typ != "OK":
                raise FolderError(f"APPEND (folder {name}): server said: {data!r}")
            out.extend(self._appenduids(data, end - start))
            start = end
        if before is not None:
            return self._find_appended(name, [m[0] for m in messages], before)
        return out

    def _find_appended(
        self, name: str, bodies: Sequence[bytes | LiteralSource], before: FolderStatus
    ) -> list[Uid | None]:
        """The UIDs of messages just appended, on a server without APPENDUID.

        Only UIDs from the folder's UIDNEXT before the APPEND on can be ours. A message
        with a Message-ID is looked up by it (UID SEARCH HEADER), one without among all
        those new UIDs; either way a candidate counts only when its header is byte for
        byte ours (the fingerprint), and each UID is given to one message only. None where
        nothing matched: the next sync pairs the two copies by their headers, so a crash
        between the APPEND and recording the pair never makes a duplicate either.
        """
        self.select(name)
        if self.selected_uidvalidity != before.uidvalidity:
            return [None] * len(bodies)
        low = before.uidnext
        heads = [b if isinstance(b, bytes) else getattr(b, "head", b"") for b in bodies]
        candidates: list[set[Uid] | None] = []
        with map_errors("UID SEARCH", folder=name):
            for head in heads:
                mid = _message_id(head)
                if mid is None:
                    candidates.append(None)
                    continue
                found = self.client.search(["UID", f"{low}:*", "HEADER", "Message-ID", mid])
                candidates.append({Uid(u) for u in found if u >= low})
            pool: set[Uid] = set().union(*(c for c in candidates if c is not None))
            if any(c is None for c in candidates):
                pool |= {Uid(u) for u in self.client.search(["UID", f"{low}:*"]) if u >= low}
        got = self.fingerprints(pool) if pool else {}
        taken: set[Uid] = set()
        out: list[Uid | None] = []
        for head, cands in zip(heads, candidates, strict=True):
            fp = fingerprint(head) if head else None
            mine = sorted(
                u for u in (pool if cands is None else cands) if got.get(u) == fp and u not in taken
            )
            out.append(mine[0] if mine and fp is not None else None)
            if mine and fp is not None:
                taken.add(mine[0])
        missing = sum(1 for u in out if u is None)
        if missing:
            log.info(
                "folder %s: %d uploaded message(s) not found again yet (no UIDPLUS); the next "
                "sync pairs them by their headers",
                name,
                missing,
            )
        return out

    def _appenduids(self, data: Sequence[Any], n: int) -> list[Uid | None]:
        if not self.strategy.uidplus:
            return [None] * n  # a code the server did not advertise may not mean that
        for line in data:
            if isinstance(line, bytes):
                m = _APPENDUID.search(line)
                if m:
                    uids = _uid_set(m.group(2))
                    if len(uids) == n:
                        return [Uid(u) for u in uids]
        return [None] * n

    def set_flags(self, changes: Iterable[tuple[Uid, Flag, Flag]], *, uidvalidity: int) -> None:
        """Apply (uid, old, new) flag changes with few STORE commands (grouped by delta).

        Only in the selected folder and only while it has ``uidvalidity`` (FolderError
        otherwise, before anything is sent).
        """
        self._require_uidvalidity(uidvalidity)
        add: dict[Flag, list[Uid]] = {}
        remove: dict[Flag, list[Uid]] = {}
        for uid, old, new in changes:
            if new & ~old:
                add.setdefault(new & ~old, []).append(uid)
            if old & ~new:
                remove.setdefault(old & ~new, []).append(uid)
        with map_errors("STORE", folder=self.selected):
            for flags, uids in add.items():
                self.client.add_flags(uids, flags_to_imap(flags), silent=True)
            for flags, uids in remove.items():
                self.client.remove_flags(uids, flags_to_imap(flags), silent=True)

    def _require_uidvalidity(self, uidvalidity: int) -> None:
        if self.selected is None:
            raise FolderError("no folder is selected")
        self.select_checked(self.selected, uidvalidity)

    def expunge(self, uids: Sequence[Uid], *, uidvalidity: int) -> None:
        """Expunge exactly these UIDs (UID EXPUNGE), never other \\Deleted messages.

        Only in the selected folder and only while it has ``uidvalidity``.
        """
        if not uids:
            return
        self._require_uidvalidity(uidvalidity)
        with map_errors("EXPUNGE", folder=self.selected):
            self.client.add_flags(list(uids), [b"\\Deleted"], silent=True)
            if self.strategy.uidplus:
                self.client.uid_expunge(list(uids))
            else:
                self._guarded_expunge(set(uids))

    def _guarded_expunge(self, uids: set[Uid]) -> None:
        """EXPUNGE on a server without UID EXPUNGE, removing only ``uids``.

        A plain EXPUNGE removes every message marked \\Deleted, also those another client
        (or syncd itself, for a local message with the T flag) marked and keeps. So the
        others are unmarked first and marked again right after: UID SEARCH DELETED, STORE
        -FLAGS, EXPUNGE, STORE +FLAGS. If the connection drops in between, those messages
        stay on the server without \\Deleted: a flag is lost, never a message (the next
        sync takes the flag change like any other). A message another client marks in the
        moment between the SEARCH and the EXPUNGE is still removed; nothing on a server
        without UIDPLUS can prevent that.
        """
        client = self.client
        others = [u for u in client.search(["DELETED"]) if Uid(u) not in uids]
        if others:
            log.debug(
                "folder %s: no UIDPLUS: %d other message(s) marked deleted are unmarked "
                "during the EXPUNGE",
                self.selected,
                len(others),
            )
            client.remove_flags(others, [b"\\Deleted"], silent=True)
        try:
            client.expunge()
        finally:
            if others:
                # The same UIDs: a UID survives the EXPUNGE of other messages.
                client.add_flags(others, [b"\\Deleted"], silent=True)

    def move(
        self, uids: Sequence[Uid], dst: str, *, uidvalidity: int
    ) -> tuple[dict[Uid, Uid], int | None]:
        """Move messages of the selected folder (which must have ``uidvalidity``) to ``dst``.

        Returns old UID -> new UID where COPYUID says it, and the UIDVALIDITY of ``dst``
        those new UIDs belong to.
        """
        if not uids:
            return {}, None
        self._require_uidvalidity(uidvalidity)
        imap = self.client._imap
        src_name = self.selected
        before: FolderStatus | None = None
        heads: dict[int, dict[bytes, Any]] = {}
        if not self.strategy.uidplus:
            # No COPYUID: the copies are found in ``dst`` afterwards by their headers.
            before = self.status(dst)
            with map_errors("FETCH HEADER", folder=src_name):
                heads = self._uid_fetch(
                    ",".join(str(u) for u in uids), ["UID", "BODY.PEEK[HEADER]"]
                )
        with map_errors("MOVE", folder=self.selected):
            imap.untagged_responses.pop("COPYUID", None)
            if self.strategy.move:
                self.client.move(list(uids), self.server_name(dst))
                lines = imap.untagged_responses.pop("COPYUID", [])
            else:
                resp = self.client.copy(list(uids), self.server_name(dst))
                lines = [m.group(1) for m in [re.search(rb"COPYUID ([^\]]+)", resp or b"")] if m]
                lines += imap.untagged_responses.pop("COPYUID", [])
                self.expunge(uids, uidvalidity=uidvalidity)
        mapping: dict[Uid, Uid] = {}
        dst_validity: int | None = None
        if before is not None:
            # A COPYUID code the server did not advertise may not mean that: not read.
            raw = [heads.get(u, {}).get(b"BODY[HEADER]") for u in uids]
            found = self._find_appended(
                dst, [h if isinstance(h, bytes) else b"" for h in raw], before
            )
            mapping = {u: f for u, f in zip(uids, found, strict=True) if f is not None}
            return mapping, before.uidvalidity
        for line in lines:
            parts = line.split()
            if len(parts) == 3:
                dst_validity = int(parts[0])
                src, new = _uid_set(parts[1]), _uid_set(parts[2])
                mapping.update({Uid(a): Uid(b) for a, b in zip(src, new, strict=False)})
        return mapping, dst_validity
