"""Server profiles: Dovecot advertising the extensions of the servers people use.

A profile is one more entry in :data:`PROFILES`; the integration suite's ``server_profile``
fixture starts one Dovecot per profile per session, and every test that takes it runs on
each of them.

Dovecot's ``imap_capability`` only changes what it *advertises*: it still answers MOVE,
ENABLE and UID EXPUNGE and still sends APPENDUID and COPYUID. A client that used what it
was not told about would pass here and fail on the real server, so every profile's
connection goes through a :class:`CapabilityGuard`, a loopback relay that

- refuses (``BAD``, as a server without the extension would) every command that needs an
  extension the profile does not advertise, and records it: the test then fails;
- removes the response codes of extensions the profile lacks (APPENDUID and COPYUID
  without UIDPLUS), so the client sees what such a server sends.
"""

from __future__ import annotations

import contextlib
import re
import socket
import threading
from dataclasses import dataclass
from typing import Any

from tests.servers.dovecot import Dovecot

DOVECOT_CAPS = (
    "IMAP4rev1 SASL-IR LOGIN-REFERRALS ID ENABLE IDLE SORT SORT=DISPLAY THREAD=REFERENCES "
    "THREAD=REFS THREAD=ORDEREDSUBJECT MULTIAPPEND URL-PARTIAL CATENATE UNSELECT CHILDREN "
    "NAMESPACE UIDPLUS LIST-EXTENDED I18NLEVEL=1 CONDSTORE QRESYNC ESEARCH ESORT SEARCHRES "
    "WITHIN CONTEXT=SEARCH LIST-STATUS BINARY MOVE SNIPPET=FUZZY PREVIEW=FUZZY PREVIEW "
    "STATUS=SIZE SAVEDATE LITERAL+ NOTIFY"
)
"""What Dovecot 2.3 advertises after login when left alone."""


@dataclass(frozen=True)
class Profile:
    name: str
    capability: str | None
    """Dovecot's ``imap_capability`` (None: as it comes)."""
    about: str

    @property
    def caps(self) -> frozenset[str]:
        return frozenset((self.capability or DOVECOT_CAPS).upper().split())

    def has(self, cap: str) -> bool:
        return cap.upper() in self.caps

    def lacks(self, *caps: str) -> str:
        """The missing ones of ``caps``, for a test's message ("" when none is missing)."""
        return " ".join(c for c in caps if not self.has(c))


def _without(*drop: str, add: str = "") -> str:
    kept = [c for c in DOVECOT_CAPS.split() if c.upper() not in drop]
    return " ".join([*kept, *add.split()])


PROFILES: dict[str, Profile] = {
    p.name: p
    for p in (
        Profile("dovecot", None, "Dovecot 2.3, every extension"),
        Profile(
            "gmail",
            _without("QRESYNC", "NOTIFY", "LIST-STATUS", add="SPECIAL-USE"),
            "Gmail-like: CONDSTORE without QRESYNC",
        ),
        Profile(
            "exchange",
            "IMAP4rev1 IDLE NAMESPACE UIDPLUS MOVE CHILDREN LITERAL+ UNSELECT ID",
            "Exchange/Outlook-like: no CONDSTORE, QRESYNC or ENABLE",
        ),
        Profile("bare", "IMAP4rev1", "bare RFC 3501: no extension at all"),
    )
}

# Command lines (never literal data) that need an extension: (extension, pattern).
_NEEDS: list[tuple[str, re.Pattern[bytes]]] = [
    (cap, re.compile(pattern, re.IGNORECASE))
    for cap, pattern in (
        ("MOVE", rb"^\S+ (UID )?MOVE "),
        ("UIDPLUS", rb"^\S+ UID EXPUNGE"),
        ("ENABLE", rb"^\S+ ENABLE"),
        ("CONDSTORE", rb"CHANGEDSINCE|HIGHESTMODSEQ|\(CONDSTORE\)|\bMODSEQ\b"),
        ("QRESYNC", rb"QRESYNC|VANISHED"),
        ("IDLE", rb"^\S+ IDLE"),
        ("UNSELECT", rb"^\S+ UNSELECT"),
        ("NAMESPACE", rb"^\S+ NAMESPACE"),
        ("ID", rb"^\S+ ID "),
        ("ESEARCH", rb"^\S+ (UID )?SEARCH RETURN"),
        ("SPECIAL-USE", rb"^\S+ LIST .*SPECIAL-USE"),
        ("LIST-STATUS", rb"^\S+ LIST .*RETURN .*STATUS"),
        ("STATUS=SIZE", rb"^\S+ STATUS .*\bSIZE\b"),
        ("LITERAL+", rb"\{\d+\+\}\r\n$"),
    )
]
_LITERAL = re.compile(rb"\{(\d+)\+?\}\r\n$")
_FETCH_WITHOUT_UID = re.compile(rb"^\* \d+ FETCH \((?![^\r\n]*\bUID \d)[^\r\n]*\)\r\n$")
_UIDPLUS_CODE = re.compile(rb"\[(APPENDUID|COPYUID) [^\]]*\] ?")


class _Lines:
    """Splits one direction of an IMAP stream into lines, passing literals through whole."""

    def __init__(self) -> None:
        self.buf = b""
        self.skip = 0
        self.after_literal = False

    def feed(self, data: bytes) -> list[tuple[bytes, bool]]:
        """(bytes, is_line) pieces in order: complete lines, and literal data."""
        self.buf += data
        out: list[tuple[bytes, bool]] = []
        while self.buf:
            if self.skip:
                part, self.buf = self.buf[: self.skip], self.buf[self.skip :]
                self.skip -= len(part)
                out.append((part, False))
                continue
            i = self.buf.find(b"\r\n")
            if i < 0:
                break
            line, self.buf = self.buf[: i + 2], self.buf[i + 2 :]
            out.append((line, True))
            m = _LITERAL.search(line)
            if m:
                self.skip = int(m.group(1))
        return out


class CapabilityGuard:
    """A loopback relay in front of ``server`` that holds the client to ``profile``."""

    def __init__(self, server: Dovecot, profile: Profile) -> None:
        self.server = server
        self.profile = profile
        self.violations: list[str] = []
        self.bytes_to_client = 0
        self.fetches_without_uid = 0
        """Untagged FETCH responses without a UID the server sent (another client's STORE)."""
        """Bytes the server sent through the guard, all connections (for the bench)."""
        self._listener = socket.create_server(("127.0.0.1", 0))
        self.port: int = self._listener.getsockname()[1]
        self._socks: list[socket.socket] = []
        self._half_closed: set[tuple[int, int]] = set()
        self._lock = threading.Lock()
        self._closed = False
        threading.Thread(target=self._accept, name="capguard", daemon=True).start()

    def close(self) -> None:
        self._closed = True
        # shutdown() wakes the thread blocked in accept(); a bare close() would leave the
        # socket listening (the blocked accept() holds it) for a later test to reach.
        with contextlib.suppress(OSError):
            self._listener.shutdown(socket.SHUT_RDWR)
        self._listener.close()
        with self._lock:
            for s in self._socks:
                with contextlib.suppress(OSError):
                    s.shutdown(socket.SHUT_RDWR)
                s.close()

    def _accept(self) -> None:
        while not self._closed:
            try:
                client, _ = self._listener.accept()
            except OSError:
                return
            try:
                upstream = socket.create_connection((self.server.host, self.server.imap_port))
            except OSError:
                client.close()
                continue
            with self._lock:
                self._socks += [client, upstream]
            send_lock = threading.Lock()
            threading.Thread(
                target=self._client_side, args=(client, upstream, send_lock), daemon=True
            ).start()
            threading.Thread(
                target=self._server_side, args=(upstream, client, send_lock), daemon=True
            ).start()

    def _client_side(self, src: socket.socket, dst: socket.socket, lock: threading.Lock) -> None:
        lines = _Lines()
        command = b""
        try:
            while data := src.recv(65536):
                out = b""
                for piece, is_line in lines.feed(data):
                    if not is_line:
                        out += piece
                        continue
                    continuing = lines.after_literal
                    lines.after_literal = bool(_LITERAL.search(piece))
                    if not continuing:
                        command = piece
                    missing = self._missing(piece, command, continuing)
                    if missing and not continuing and not lines.after_literal:
                        # Refused as a server without the extension would.
                        self.violations.append(f"{missing}: {piece.strip()[:120]!r}")
                        tag = piece.split(b" ", 1)[0]
                        with lock:
                            src.sendall(tag + b" BAD " + missing.encode() + b" not advertised\r\n")
                        continue
                    if missing:
                        self.violations.append(f"{missing}: {piece.strip()[:120]!r}")
                    out += piece
                if out:
                    dst.sendall(out)
        except OSError:
            pass
        finally:
            self._done(src, dst)

    def _missing(self, line: bytes, command: bytes, continuing: bool) -> str | None:
        text = line if not continuing else command.split(b" ", 1)[0] + b" " + line
        for cap, pattern in _NEEDS:
            if not self.profile.has(cap) and pattern.search(text):
                return cap
        if (
            continuing
            and not self.profile.has("MULTIAPPEND")
            and re.match(rb"^\S+ APPEND ", command, re.IGNORECASE)
            and _LITERAL.search(line)
        ):
            return "MULTIAPPEND"
        return None

    def _server_side(self, src: socket.socket, dst: socket.socket, lock: threading.Lock) -> None:
        lines = _Lines()
        strip = not self.profile.has("UIDPLUS")
        try:
            while data := src.recv(65536):
                pieces = lines.feed(data)
                self.fetches_without_uid += sum(
                    1 for piece, is_line in pieces if is_line and _FETCH_WITHOUT_UID.match(piece)
                )
                out = b"".join(
                    _UIDPLUS_CODE.sub(b"", piece) if is_line and strip else piece
                    for piece, is_line in pieces
                )
                if out:
                    with lock:
                        dst.sendall(out)
                    self.bytes_to_client += len(out)
        except OSError:
            pass
        finally:
            self._done(src, dst)

    def _done(self, src: socket.socket, dst: socket.socket) -> None:
        """One direction ended: pass the EOF on; the second to end closes both sockets
        (a session leaves no descriptor behind, however many a test makes)."""
        with contextlib.suppress(OSError):
            dst.shutdown(socket.SHUT_WR)
        with self._lock:
            key = (id(src), id(dst)) if id(src) < id(dst) else (id(dst), id(src))
            if key not in self._half_closed:
                self._half_closed.add(key)
                return
            self._half_closed.discard(key)
            for s in (src, dst):
                if s in self._socks:
                    self._socks.remove(s)
                s.close()


class ProfileServer:
    """A Dovecot playing ``profile``: ``imap_port`` is the guard's, everything else the
    server's own (helpers such as ``imap()``, ``append()`` and ``deliver()`` talk to Dovecot
    directly, as another client would)."""

    def __init__(self, dovecot: Dovecot, profile: Profile) -> None:
        self.dovecot = dovecot
        self.profile = profile
        self.guard = CapabilityGuard(dovecot, profile)
        self.imap_port = self.guard.port

    def __getattr__(self, name: str) -> Any:
        return getattr(self.dovecot, name)

    def close(self) -> None:
        self.guard.close()
