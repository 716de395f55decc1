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
import threading
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Protocol

from syncd.drivers import tls
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


def _tunnel_client(command: str) -> IMAPClient:
    class TunnelClient(_client_classes()[0]):  # type: ignore[misc]
        # imapclient sets a socket read timeout even in stream mode, where there is no
        # socket; a tunnel's own transport (ssh) has to notice a dead peer instead.
        def _set_read_timeout(self) -> None:
            pass

    client: IMAPClient = TunnelClient(command, stream=True, ssl=False)
    return client


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


class ImapSession:
    """One logged-in IMAP connection. Not thread-safe; one per worker."""

    def __init__(self, cfg: ImapConfig, secret: Callable[[], str]) -> None:
        self.cfg = cfg
        self._secret = secret
        self._client: IMAPClient | None = None
        self.caps: frozenset[str] = frozenset()
        self.delimiter = "/"
        self.selected: str | None = None
        self.selected_uidvalidity: int | None = None
        self._server_names: dict[str, str] = {}
        self._skipped_all: set[str] = set()
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
        from syncd.config import AuthMethod, TlsMode

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
                preauth = client._imap.state == "AUTH"
                secret = "" if preauth else self._secret()
                if preauth:
                    pass  # PREAUTH greeting: the tunnel is already logged in
                elif cfg.auth is AuthMethod.XOAUTH2:
                    client.oauth2_login(cfg.username, secret)
                elif cfg.auth is AuthMethod.OAUTHBEARER:
                    client.oauthbearer_login(cfg.username, secret)
                else:
                    client.login(cfg.username, secret)
                self.caps = frozenset(c.decode().upper() for c in client.capabilities())
                if "QRESYNC" in self.caps:
                    client.enable("QRESYNC")
                elif "CONDSTORE" in self.caps:
                    client.enable("CONDSTORE")
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

    def noop(self) -> None:
        with map_errors("NOOP"):
            self.client.noop()

    # -- folders ---------------------------------------------------------------------

    def list_folders(self) -> dict[str, str]:
        """Selectable folders: our name (components joined by "/") -> the server's name.

        Special-use folders (RFC 6154) get the local names of ``special_folders``, so the
        server's ``[Gmail]/Sent Mail`` is the folder ``Sent``; ``\\All`` (Gmail's "All
        Mail", which holds every message a second time) is left out. Names whose
        components contain "/" while the server separates with something else cannot be
        told apart locally; they are skipped with a warning.
        """
        with map_errors("LIST"):
            rows = self.client.list_folders()
        special = dict(self.cfg.special_folders or ())
        out: dict[str, str] = {}
        aliases: list[tuple[str, str]] = []
        for flags, delim, name in rows:
            if isinstance(name, bytes):
                name = name.decode("utf-8", "replace")
            sep = delim.decode() if isinstance(delim, bytes) else (delim or "/")
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
            parts = name.split(sep) if sep else [name]
            if sep != "/" and any("/" in p for p in parts):
                log.warning("folder %r has a '/' inside a name component; not synced", name)
                continue
            role = next((r for r in special if b"\\" + r.encode() in lowered), None)
            if role is not None:
                aliases.append((special[role], name))
            out["/".join(parts)] = name
        for alias, name in aliases:
            canonical = "/".join(name.split(self.delimiter))
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
        self._server_names = out
        return out

    def server_name(self, name: str) -> str:
        got = self._server_names.get(name)
        if got is not None:
            return got
        if name.upper() == "INBOX":
            return "INBOX"
        return self.delimiter.join(name.split("/"))

    def status(self, name: str) -> FolderStatus:
        what = ["MESSAGES", "UIDNEXT", "UIDVALIDITY"]
        if self.has("CONDSTORE"):
            what.append("HIGHESTMODSEQ")
        if self.selected == name:
            # STATUS of the selected folder may answer from this session's own view,
            # which moves on only at the next NOOP or SELECT (Dovecot does so): the mail
            # an IDLE connection just reported would look absent and the folder unchanged.
            self.unselect()
        with map_errors("STATUS", folder=name):
            st = self.client.folder_status(self.server_name(name), what)
        return FolderStatus(
            int(st[b"UIDVALIDITY"]),
            int(st[b"UIDNEXT"]),
            int(st[b"MESSAGES"]),
            int(st[b"HIGHESTMODSEQ"]) if b"HIGHESTMODSEQ" in st else None,
        )

    def create_folder(self, name: str) -> None:
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

    def _uid_fetch(
        self, uids: str, items: Sequence[str], modifiers: Sequence[str] = ()
    ) -> dict[int, dict[bytes, Any]]:
        # imapclient's fetch() cannot take a "1:*" range; this is the same call without
        # its post-filter, still using its command plumbing and response parser.
        from imapclient.response_parser import parse_fetch_response

        client = self.client
        args: list[str] = ["FETCH", uids, "(" + " ".join(items) + ")"]
        if modifiers:
            args.append("(" + " ".join(modifiers) + ")")
        imap = client._imap
        tag = imap._command("UID", *args)
        typ, data = imap._command_complete("FETCH", tag)
        client._checkok("fetch", typ, data)
        typ, data = imap._untagged_response(typ, data, "FETCH")
        parsed: dict[int, dict[bytes, Any]] = parse_fetch_response(data, False, True)
        return parsed

    def listing(self, since_modseq: int | None = None) -> Listing:
        """Flags (and sizes) of the selected folder, or only what changed since a MODSEQ."""
        name = self.selected
        items = ["UID", "FLAGS", "RFC822.SIZE"]
        with map_errors("FETCH FLAGS", folder=name):
            imap = self.client._imap
            imap.untagged_responses.pop("VANISHED", None)
            if since_modseq is not None and self.has("CONDSTORE"):
                mods = [f"CHANGEDSINCE {since_modseq}"]
                qresync = self.has("QRESYNC")
                if qresync:
                    mods.append("VANISHED")
                rows = self._uid_fetch("1:*", items, mods)
                vanished: set[Uid] | None = None
                if qresync:
                    vanished = set()
                    for line in imap.untagged_responses.pop("VANISHED", []):
                        text = line.replace(b"(EARLIER)", b"").strip()
                        vanished.update(Uid(u) for u in _uid_set(text))
                delta = True
            else:
                rows = self._uid_fetch("1:*", items)
                vanished = None
                delta = False
        flags: dict[Uid, Flag] = {}
        sizes: dict[Uid, int] = {}
        for uid, data in rows.items():
            if b"FLAGS" not in data:
                continue
            flags[Uid(uid)] = flags_from_imap(data[b"FLAGS"])
            if b"RFC822.SIZE" in data:
                sizes[Uid(uid)] = int(data[b"RFC822.SIZE"])
        return Listing(flags, sizes, vanished, delta)

    def listing_of(self, uids: Iterable[Uid]) -> Listing:
        """Flags and sizes of just these messages of the selected folder."""
        todo = sorted(uids)
        flags: dict[Uid, Flag] = {}
        sizes: dict[Uid, int] = {}
        for i in range(0, len(todo), 1000):
            chunk = ",".join(str(u) for u in todo[i : i + 1000])
            with map_errors("FETCH FLAGS", folder=self.selected):
                rows = self._uid_fetch(chunk, ["UID", "FLAGS", "RFC822.SIZE"])
            for uid, data in rows.items():
                if b"FLAGS" in data:
                    flags[Uid(uid)] = flags_from_imap(data[b"FLAGS"])
                    if b"RFC822.SIZE" in data:
                        sizes[Uid(uid)] = int(data[b"RFC822.SIZE"])
        return Listing(flags, sizes, None, True)

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
        batch: list[Uid] = []
        nbytes = 0
        for uid in sorted(uids):
            size = sizes.get(uid, 0)
            if batch and (len(batch) >= FETCH_BATCH_MESSAGES or nbytes + size > FETCH_BATCH_BYTES):
                yield self._fetch_batch(batch)
                batch, nbytes = [], 0
            batch.append(uid)
            nbytes += size
        if batch:
            yield self._fetch_batch(batch)

    def _fetch_batch(self, uids: list[Uid]) -> list[Fetched]:
        seq = ",".join(str(u) for u in uids)
        with map_errors("FETCH", folder=self.selected):
            rows = self._uid_fetch(seq, ["UID", "FLAGS", "INTERNALDATE", "BODY.PEEK[]"])
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
        return out

    def _appenduids(self, data: Sequence[Any], n: int) -> list[Uid | None]:
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
            if self.has("UIDPLUS"):
                self.client.uid_expunge(list(uids))
            else:
                log.warning(
                    "folder %s: server lacks UIDPLUS; EXPUNGE also removes other messages "
                    "marked deleted",
                    self.selected,
                )
                self.client.expunge()

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
        with map_errors("MOVE", folder=self.selected):
            imap.untagged_responses.pop("COPYUID", None)
            if self.has("MOVE"):
                self.client.move(list(uids), self.server_name(dst))
                lines = imap.untagged_responses.pop("COPYUID", [])
            else:
                resp = self.client.copy(list(uids), self.server_name(dst))
                lines = [m.group(1) for m in [re.search(rb"COPYUID ([^\]]+)", resp or b"")] if m]
                lines += imap.untagged_responses.pop("COPYUID", [])
                self.expunge(uids, uidvalidity=uidvalidity)
        mapping: dict[Uid, Uid] = {}
        dst_validity: int | None = None
        for line in lines:
            parts = line.split()
            if len(parts) == 3:
                dst_validity = int(parts[0])
                src, new = _uid_set(parts[1]), _uid_set(parts[2])
                mapping.update({Uid(a): Uid(b) for a, b in zip(src, new, strict=False)})
        return mapping, dst_validity
