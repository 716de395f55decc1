"""The remote side of a POP3 account: one session through poplib.

Theory of operation
-------------------
**Connection.** ``tls: implicit`` connects with TLS from the first byte (port 995);
``starttls`` connects in clear text and upgrades with STLS (RFC 2595) before anything else is
sent; a server that does not list STLS in CAPA is refused, never used in clear text;
``none`` is plain text, which the config allows only to loopback or with
``allow_plaintext``. Certificates are checked as for IMAP (:mod:`syncd.drivers.tls`).

**Login.** USER/PASS by default. APOP (RFC 1939 section 7) when asked for and the greeting
carries a timestamp; the config has no key for it yet, so :class:`Pop3Session` takes
``apop=True`` from its caller, or reads ``auth: apop`` once config.py knows that value. With
``auth: xoauth2`` (or ``oauthbearer``) the token goes through ``AUTH`` (RFC 5034), as an
initial response when the command fits the 255-octet line limit and after the server's
empty challenge otherwise.

**Which message is which.** POP3 numbers messages afresh in each session; syncd identifies
them by UIDL. A server without UIDL (it answers -ERR) gets a fallback: the message's header
block is fetched with ``TOP n 0`` and hashed (SHA-256, first 128 bits), leaving out the
fields some POP3 servers rewrite when a message is read (``Status``, ``X-Status``,
``X-UIDL``, ``X-Keywords``, ``X-Mozilla-Status``, ``X-Mozilla-Status2``,
``Content-Length``, ``Lines``). The id is ``hdr:<hex>``; the k-th message (k >= 2) in the
same session with the same hash gets ``hdr:<hex> <k>`` (a space never occurs in a real
UIDL). Limits, which is why UIDL is always preferred: two copies of one message with
byte-identical headers are told apart only by their order, so if the first copy leaves the
server the second one takes its id and is not downloaded (a duplicate of a message the
user already has); and a server that rewrites other header fields makes every poll look
new. A server with neither UIDL nor TOP is refused: syncd could not know what it already has.

**Reading messages.** RETR and TOP are read by this module, not by ``poplib.retr``: that
one refuses lines longer than 2048 octets (real mail has them) and gathers a message as a
list of lines. Here the reply is read in chunks of at most 64 KiB, the leading dot of
byte-stuffed lines is removed (only at the start of a line), the terminating ``.`` line
ends the reply, and CRLF becomes LF on the fly, also when a CR and its LF arrive in
different chunks. Nothing else is changed: a bare LF or a lone CR stays as it came. One
message is held in memory at a time.

**Deleting.** DELE only marks a message; the server removes marked messages when the
session ends with QUIT (UPDATE state). :meth:`Pop3Session.close` ends a session without
QUIT, so the marks are dropped: whatever goes wrong before :meth:`Pop3Session.quit`, the
server still holds every message.

**Errors** are translated by :func:`map_errors`, the only place that knows poplib, ssl and
socket exceptions.
"""

from __future__ import annotations

import base64
import binascii
import contextlib
import enum
import hashlib
import logging
import poplib
import re
import socket
import ssl
from collections import Counter
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import TYPE_CHECKING, Final

from syncd.drivers import tls
from syncd.drivers.auth import renewed
from syncd.errors import AuthError, MessageError, StoreError, TLSError, TransientError

if TYPE_CHECKING:
    from syncd.config import Pop3Config

__all__ = ["Pop3Message", "Pop3Session", "Stage", "header_digest", "map_errors"]

log = logging.getLogger(__name__)

_CHUNK: Final = 64 * 1024
_STATUS_MAX: Final = 8 * 1024
# RFC 5034 section 4: an AUTH command line, CRLF included, is at most 255 octets.
_AUTH_LINE_MAX: Final = 255
_APOP_TIMESTAMP: Final = re.compile(rb"<[^<>\s]+>")
_VOLATILE_FIELDS: Final = frozenset(
    {
        b"status",
        b"x-status",
        b"x-uidl",
        b"x-keywords",
        b"x-mozilla-status",
        b"x-mozilla-status2",
        b"content-length",
        b"lines",
    }
)
_EOF: Final = "-ERR EOF"  # what poplib raises when the server closes the connection


class Stage(enum.Enum):
    """What a command was for, which decides what a plain -ERR means."""

    CONNECT = "connect"
    LOGIN = "login"
    SESSION = "session"
    MESSAGE = "message"


@dataclass(frozen=True, slots=True)
class Pop3Message:
    """One message of the maildrop as listed in this session."""

    number: int
    uidl: str
    size: int


def _text(exc: BaseException) -> str:
    raw = exc.args[0] if exc.args else str(exc)
    if isinstance(raw, bytes):
        raw = raw.decode("utf-8", "replace")
    return str(raw).strip()


def _response_error(where: str, text: str, stage: Stage) -> StoreError:
    """The syncd error for a POP3 -ERR reply (RFC 2449/3206 response codes first)."""
    upper = text.upper()
    if text == _EOF:
        return TransientError(f"{where}: the server closed the connection")
    if "[IN-USE]" in upper:
        return TransientError(
            f"{where}: the mailbox is in use by another POP3 session (another mail program, "
            f"or one that did not log out cleanly); syncd will try again later. "
            f"The server said: {text}"
        )
    if "[SYS/TEMP]" in upper:
        return TransientError(f"{where}: temporary server problem; will retry. Server: {text}")
    if "[AUTH]" in upper:
        return AuthError(
            f"{where}: login refused: {text}; check the username and the password (or token)"
        )
    if "[SYS/PERM]" in upper:
        return StoreError(f"{where}: the server reports a permanent problem: {text}")
    if stage is Stage.CONNECT:
        # A -ERR greeting (or STLS refused after CAPA offered it): servers say this when
        # they are overloaded or shutting down, so it is worth another try later.
        return TransientError(f"{where}: the server refused the session: {text}")
    if stage is Stage.LOGIN:
        return AuthError(f"{where}: login refused: {text}")
    if stage is Stage.MESSAGE:
        return MessageError(f"{where}: {text}")
    return StoreError(f"{where}: the server said: {text}")


@contextlib.contextmanager
def map_errors(where: str, server: Pop3Config, stage: Stage = Stage.SESSION) -> Iterator[None]:
    """Translate poplib, ssl and socket errors into syncd's tree (see errors.py).

    ``-ERR [IN-USE]`` and ``[SYS/TEMP]`` are TransientError, as is a -ERR greeting;
    ``[AUTH]`` and any -ERR during login are AuthError; any other -ERR is MessageError for
    a command about one message and StoreError otherwise. Certificate and handshake
    failures are TLSError, worded by :func:`syncd.drivers.tls.describe`; timeouts and lost
    connections are TransientError.
    """
    try:
        yield
    except poplib.error_proto as exc:
        raise _response_error(where, _text(exc), stage) from exc
    except (ssl.SSLEOFError, ssl.SSLZeroReturnError) as exc:
        raise TransientError(f"{where}: the connection was closed during TLS: {exc}") from exc
    except ssl.SSLError as exc:
        raise TLSError(tls.describe(exc, server)) from exc
    except TimeoutError as exc:
        raise TransientError(
            f"{where}: no answer within {server.timeout:g} seconds (timeout)"
        ) from exc
    except socket.gaierror as exc:
        raise TransientError(f"{where}: cannot resolve {server.host}: {exc.strerror}") from exc
    except (ConnectionError, EOFError) as exc:
        raise TransientError(f"{where}: connection lost: {exc}") from exc
    except OSError as exc:
        raise TransientError(f"{where}: {exc.strerror or exc}") from exc


def header_digest(header: bytes) -> str:
    """The fallback id of a message without UIDL: a hash of its stable header fields.

    Equal for the LF and the CRLF form; the fields in ``_VOLATILE_FIELDS`` are left out.
    """
    text = header.replace(b"\r\n", b"\n")
    end = text.find(b"\n\n")
    if end >= 0:
        text = text[: end + 1]
    fields: list[bytes] = []
    for line in text.split(b"\n"):
        if line[:1] in (b" ", b"\t") and fields:
            fields[-1] += b"\n" + line
        elif line:
            fields.append(line)
    kept = [f for f in fields if f.split(b":", 1)[0].strip().lower() not in _VOLATILE_FIELDS]
    return hashlib.sha256(b"\n".join(kept)).hexdigest()[:32]


def _wants_apop(cfg: Pop3Config) -> bool:
    # config.AuthMethod has no APOP member yet; this starts working when it gets one.
    return str(cfg.auth.value) == "apop"


class Pop3Session:
    """One POP3 session: connect and log in, list, retrieve, mark for deletion, QUIT.

    Use as a context manager (connects; leaves *without* QUIT unless :meth:`quit` was
    called, so deletion marks of a failed run are dropped). Not thread-safe.
    """

    def __init__(
        self, cfg: Pop3Config, secret: Callable[[], str], *, apop: bool | None = None
    ) -> None:
        self.cfg = cfg
        self._secret = secret
        self.apop = _wants_apop(cfg) if apop is None else apop
        self.where = f"POP3 {cfg.host}:{cfg.port}"
        self._pop: poplib.POP3 | None = None
        self.uses_uidl = True
        """False after :meth:`listing` fell back to header hashes."""
        self.mechanism = ""
        """How the session logged in: USER, APOP, XOAUTH2 or OAUTHBEARER."""

    # -- connection ------------------------------------------------------------------

    @property
    def pop(self) -> poplib.POP3:
        if self._pop is None:
            raise StoreError(f"{self.where}: the POP3 session is not connected")
        return self._pop

    def _map(self, stage: Stage = Stage.SESSION) -> contextlib.AbstractContextManager[None]:
        return map_errors(self.where, self.cfg, stage)

    def connect(self) -> None:
        """Connect, secure the connection as configured and log in."""
        from syncd.config import TlsMode

        cfg = self.cfg
        ctx = tls.make_context(cfg) if cfg.tls is not TlsMode.NONE else None
        timeout = cfg.timeout  # per socket operation; the config keeps it above 0
        with self._map(Stage.CONNECT):
            if cfg.tls is TlsMode.IMPLICIT:
                self._pop = poplib.POP3_SSL(cfg.host, cfg.port, context=ctx, timeout=timeout)
            else:
                self._pop = poplib.POP3(cfg.host, cfg.port, timeout=timeout)
        try:
            with self._map(Stage.CONNECT):
                if cfg.tls is TlsMode.STARTTLS:
                    if "STLS" not in self._capa():
                        raise TLSError(
                            f"{self.where} does not offer STLS; refusing to log in without TLS "
                            "(use tls: implicit on port 995 if the server has it)"
                        )
                    self.pop.stls(ctx)
                if cfg.tls is not TlsMode.NONE:
                    tls.check_pin(self.pop.sock, cfg)
            self._login()
        except BaseException:
            self.close()
            raise
        log.debug("%s: logged in as %s (%s)", self.where, cfg.username, self.mechanism)

    def _capa(self) -> dict[str, list[str]]:
        """CAPA (RFC 2449), or {} when the server does not know the command."""
        try:
            return self.pop.capa()
        except poplib.error_proto as exc:
            if _text(exc) == _EOF:
                raise
            return {}

    def _login(self) -> None:
        from syncd.config import AuthMethod

        cfg = self.cfg
        if cfg.auth in (AuthMethod.XOAUTH2, AuthMethod.OAUTHBEARER):
            token = self._secret()
            try:
                self._sasl(cfg.auth.value.upper(), token)
            except AuthError:
                if not renewed(self._secret, token):
                    raise
                self._sasl(cfg.auth.value.upper(), self._secret())
            return
        with self._map(Stage.LOGIN):
            if self.apop:
                if _APOP_TIMESTAMP.search(self.pop.welcome) is None:
                    raise AuthError(
                        f"{self.where}: APOP was asked for, but the server's greeting offers "
                        "no APOP timestamp; use password login (over TLS) instead"
                    )
                self.pop.apop(cfg.username, self._secret())
                self.mechanism = "APOP"
            else:
                self.pop.user(cfg.username)
                self.pop.pass_(self._secret())
                self.mechanism = "USER"

    def _sasl(self, mechanism: str, token: str) -> None:
        cfg = self.cfg
        with self._map(Stage.LOGIN):
            offered = self._capa().get("SASL")
            if offered is not None and mechanism not in (m.upper() for m in offered):
                raise AuthError(
                    f"{self.where}: auth: {mechanism.lower()} is configured, but the server "
                    f"offers only: {' '.join(offered) or 'no SASL mechanism'}"
                )
            if mechanism == "XOAUTH2":
                raw = f"user={cfg.username}\x01auth=Bearer {token}\x01\x01"
                abort = b""
            else:  # RFC 7628; "," and "=" in the name are escaped in the GS2 header
                name = cfg.username.replace("=", "=3D").replace(",", "=2C")
                raw = f"n,a={name},\x01auth=Bearer {token}\x01\x01"
                abort = b"AQ=="  # base64 of the single %x01 that aborts after an error
            blob = base64.b64encode(raw.encode("utf-8"))
            command = b"AUTH " + mechanism.encode("ascii")
            if len(command) + 1 + len(blob) + 2 <= _AUTH_LINE_MAX:
                reply = self._command(command + b" " + blob)
            else:
                reply = self._command(command)
                if not reply.startswith(b"+") or reply.startswith(b"+OK"):
                    raise AuthError(f"{self.where}: unexpected answer to AUTH: {reply!r}")
                reply = self._command(blob)
            if reply.startswith(b"+") and not reply.startswith(b"+OK"):
                # A challenge after the token carries the error details (RFC 7628 3.2.2);
                # the client must still answer it, and the server then ends with -ERR.
                detail = _challenge_text(reply[1:].strip())
                log.debug("%s: AUTH %s refused: %s", self.where, mechanism, detail)
                with contextlib.suppress(poplib.error_proto):
                    self._command(abort)
                raise AuthError(f"{self.where}: {mechanism} token refused: {detail}")
        self.mechanism = mechanism

    # -- commands --------------------------------------------------------------------

    def _send(self, line: bytes) -> None:
        self.pop.sock.sendall(line + b"\r\n")

    def _status(self) -> bytes:
        line = self.pop.file.readline(_STATUS_MAX)
        if not line:
            raise poplib.error_proto(_EOF)
        line = line.rstrip(b"\r\n")
        if line.startswith(b"+"):
            return line
        raise poplib.error_proto(line)

    def _command(self, line: bytes) -> bytes:
        """Send one command line; its status line (``+OK ...`` or a ``+`` challenge)."""
        self._send(line)
        return self._status()

    def _multiline(self) -> bytes:
        """The rest of a multi-line reply, un-byte-stuffed, with CRLF turned into LF."""
        read = self.pop.file.readline
        out = bytearray()
        at_start = True
        held_cr = False  # a chunk ended in CR: whether it is a line end depends on the next
        while True:
            chunk = read(_CHUNK)
            if not chunk:
                raise poplib.error_proto(_EOF)
            if at_start:
                if chunk in (b".\r\n", b".\n"):
                    return bytes(out)
                if chunk[:1] == b".":
                    chunk = chunk[1:]
            if held_cr:
                if chunk[:1] != b"\n":
                    out += b"\r"
                held_cr = False
            if chunk[-1:] == b"\n":
                at_start = True
                if chunk[-2:] == b"\r\n":
                    out += memoryview(chunk)[:-2]
                    out += b"\n"
                else:
                    out += chunk
            else:
                at_start = False
                if chunk[-1:] == b"\r":
                    out += memoryview(chunk)[:-1]
                    held_cr = True
                else:
                    out += chunk

    def stat(self) -> tuple[int, int]:
        """How many messages the maildrop holds, and their octets (STAT)."""
        with self._map():
            return self.pop.stat()

    def listing(self) -> list[Pop3Message]:
        """Every message in the maildrop, in number order, with its id and size."""
        with self._map():
            _, lines, _ = self.pop.list()
        sizes: dict[int, int] = {}
        for line in lines:
            number, size = _two_fields(line, "LIST", self.where)
            sizes[int(number)] = int(size)
        try:
            with self._map():
                _, lines, _ = self.pop.uidl()
        except StoreError as exc:
            # Only a plain -ERR means "no UIDL here"; timeouts, [IN-USE] and friends do not.
            if type(exc) is not StoreError:
                raise
            log.info(
                "%s: the server has no UIDL (%s); identifying messages by a hash of their headers",
                self.where,
                exc,
            )
            self.uses_uidl = False
            return self._hashed(sizes)
        out: list[Pop3Message] = []
        for line in lines:
            number, uidl = _two_fields(line, "UIDL", self.where)
            n = int(number)
            if n in sizes:
                # latin-1: every byte maps to one character, so any id round-trips.
                out.append(Pop3Message(n, uidl.decode("latin-1"), sizes[n]))
        out.sort(key=lambda m: m.number)
        return out

    def _hashed(self, sizes: dict[int, int]) -> list[Pop3Message]:
        seen: Counter[str] = Counter()
        out: list[Pop3Message] = []
        for number in sorted(sizes):
            try:
                header = self.header(number)
            except MessageError as exc:
                raise StoreError(
                    f"{self.where}: the server supports neither UIDL nor TOP, so syncd cannot "
                    f"tell which messages it has downloaded already ({exc})"
                ) from exc
            digest = header_digest(header)
            seen[digest] += 1
            k = seen[digest]
            uidl = f"hdr:{digest}" if k == 1 else f"hdr:{digest} {k}"
            out.append(Pop3Message(number, uidl, sizes[number]))
        return out

    def retrieve(self, number: int) -> bytes:
        """Message ``number`` in its LF form (see the module docstring)."""
        with self._map(Stage.MESSAGE):
            self._command(b"RETR %d" % number)
        with self._map():
            return self._multiline()

    def header(self, number: int) -> bytes:
        """The header block of message ``number`` (TOP n 0), LF form."""
        with self._map(Stage.MESSAGE):
            self._command(b"TOP %d 0" % number)
        with self._map():
            return self._multiline()

    def delete(self, number: int) -> None:
        """Mark message ``number`` for deletion; only :meth:`quit` makes it happen."""
        with self._map(Stage.MESSAGE):
            self.pop.dele(number)

    def quit(self) -> None:
        """End the session with QUIT: the server now removes the marked messages."""
        try:
            with self._map():
                self.pop.quit()
        finally:
            self.close()

    def close(self) -> None:
        """Drop the connection without QUIT; deletion marks are discarded by the server."""
        pop, self._pop = self._pop, None
        if pop is not None:
            with contextlib.suppress(OSError):
                pop.close()

    def __enter__(self) -> Pop3Session:
        self.connect()
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def _two_fields(line: bytes, command: str, where: str) -> tuple[bytes, bytes]:
    parts = line.split()
    if len(parts) < 2 or not parts[0].isdigit():
        raise StoreError(f"{where}: cannot read the {command} line {line[:80]!r}")
    if command == "LIST" and not parts[1].isdigit():
        raise StoreError(f"{where}: cannot read the {command} line {line[:80]!r}")
    return parts[0], parts[1]


def _challenge_text(data: bytes) -> str:
    try:
        return base64.b64decode(data, validate=True).decode("utf-8", "replace")
    except (binascii.Error, ValueError):
        return data.decode("utf-8", "replace")
