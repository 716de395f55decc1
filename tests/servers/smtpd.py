"""A real SMTP submission server for tests: aiosmtpd in a thread, on a free loopback port.

``Smtpd(tls="starttls", certs=...)`` offers STARTTLS and AUTH PLAIN/LOGIN (and XOAUTH2 when
a token is given) and refuses MAIL before AUTH (``offer_auth=False``: no AUTH at all, like a
relay); ``tls="implicit"`` wraps the socket before the greeting (the port 465 style);
``tls="none"`` is plain. Every accepted message is kept in :attr:`Smtpd.received` (envelope
and bytes, as the server got them). Failures are programmable: :meth:`fail_next` (451,
552... for the next N messages), :meth:`refuse` (one recipient), :meth:`stall` (no answer to
DATA for a while). :meth:`restart` stops and starts on the same port; :meth:`start` returns
only after the server sent its greeting.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import socket
import ssl
import threading
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from types import TracebackType
from typing import Any

from aiosmtpd.controller import Controller
from aiosmtpd.smtp import SMTP, AuthResult, Envelope, LoginPassword, Session

from tests.servers.dovecot import CertFiles

HOST = "127.0.0.1"
USER = "sender@example.org"
PASSWORD = "s3cret-smtp-pw"


@dataclass(frozen=True)
class Received:
    mail_from: str
    rcpt_tos: tuple[str, ...]
    data: bytes
    """The message as the server got it: CRLF line ends, dot-stuffing undone."""

    @property
    def lf(self) -> bytes:
        return self.data.replace(b"\r\n", b"\n")


@dataclass
class _Failure:
    code: int
    text: str
    count: int


@dataclass
class _Program:
    """What the handler should do; changed by the test thread, read by the server's."""

    data_failures: list[_Failure] = field(default_factory=list)
    mail_failures: list[_Failure] = field(default_factory=list)
    refused: dict[str, tuple[int, str]] = field(default_factory=dict)
    stall: float = 0.0
    stall_count: int = 0


class _Handler:
    def __init__(self, server: Smtpd) -> None:
        self.server = server

    async def handle_EHLO(
        self,
        server: SMTP,
        session: Session,
        envelope: Envelope,
        hostname: str,
        responses: list[str],
    ) -> list[str]:
        # offer_auth=False: a relay that takes mail without login (no AUTH line at all).
        session.host_name = hostname
        if self.server.offer_auth:
            return responses
        return [r for r in responses if not r[4:].upper().startswith("AUTH")]

    async def handle_MAIL(
        self, server: SMTP, session: Session, envelope: Envelope, address: str, options: list[str]
    ) -> str:
        if self.server.require_auth and not session.authenticated:
            return "530 5.7.0 Authentication required"
        with self.server.lock:
            failure = _take(self.server.program.mail_failures)
        if failure is not None:
            return f"{failure.code} {failure.text}"
        envelope.mail_from = address
        envelope.mail_options.extend(options)
        return "250 OK"

    async def handle_RCPT(
        self, server: SMTP, session: Session, envelope: Envelope, address: str, options: list[str]
    ) -> str:
        with self.server.lock:
            refused = self.server.program.refused.get(address.lower())
        if refused is not None:
            return f"{refused[0]} {refused[1]}"
        envelope.rcpt_tos.append(address)
        return "250 OK"

    async def handle_DATA(self, server: SMTP, session: Session, envelope: Envelope) -> str:
        with self.server.lock:
            program = self.server.program
            stall = program.stall if program.stall_count > 0 else 0.0
            if stall:
                program.stall_count -= 1
            failure = None if stall else _take(program.data_failures)
        if stall:
            await asyncio.sleep(stall)
            return "451 4.4.2 stalled on purpose"
        if failure is not None:
            return f"{failure.code} {failure.text}"
        content = envelope.content
        assert isinstance(content, bytes)
        with self.server.lock:
            self.server.received.append(
                Received(str(envelope.mail_from), tuple(envelope.rcpt_tos), content)
            )
        return "250 2.0.0 OK: queued"

    async def auth_XOAUTH2(self, server: SMTP, args: list[str]) -> AuthResult:
        if len(args) > 1:
            blob = args[1].encode()
        else:
            answer = await server.challenge_auth("", encode_to_b64=False)
            if not isinstance(answer, bytes):
                return AuthResult(success=False, handled=True)
            blob = base64.b64encode(answer)
        try:
            text = base64.b64decode(blob).decode()
        except ValueError:
            return AuthResult(success=False, handled=False)
        expected = f"user={self.server.user}\x01auth=Bearer {self.server.token}\x01\x01"
        if self.server.token is not None and text == expected:
            return AuthResult(success=True, auth_data=self.server.user)
        check = self.server.token_check
        if check is not None:
            # A token from an authorization server (tests/servers/authserver.py): valid
            # when that server says it belongs to the user named in the blob.
            user, _, rest = text.removeprefix("user=").partition("\x01auth=Bearer ")
            token = rest.removesuffix("\x01\x01")
            if token and check(token) == user:
                with self.server.lock:
                    self.server.logins.append("XOAUTH2")
                return AuthResult(success=True, auth_data=user)
        # RFC 7628 style: an error challenge, then the client's empty answer, then 535.
        await server.challenge_auth('{"status":"401"}')
        return AuthResult(success=False, handled=False)


def _take(failures: list[_Failure]) -> _Failure | None:
    if not failures:
        return None
    failure = failures[0]
    failure.count -= 1
    if failure.count <= 0:
        failures.pop(0)
    return failure


def _free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind((HOST, 0))
        return int(s.getsockname()[1])


class Smtpd:
    """The test SMTP server; use as a context manager or call start() and stop()."""

    def __init__(
        self,
        *,
        tls: str = "starttls",
        certs: CertFiles | None = None,
        user: str = USER,
        password: str = PASSWORD,
        token: str | None = None,
        token_check: Callable[[str], str | None] | None = None,
        mechanisms: Iterable[str] = ("PLAIN", "LOGIN"),
        require_auth: bool = True,
        offer_auth: bool = True,
    ) -> None:
        if tls not in ("starttls", "implicit", "none"):
            raise ValueError(f"tls must be starttls, implicit or none, not {tls!r}")
        if tls != "none" and certs is None:
            raise ValueError("TLS needs certs (tests.servers.dovecot.make_test_certs)")
        self.tls = tls
        self.certs = certs
        self.user = user
        self.password = password
        self.token = token
        self.token_check = token_check
        """XOAUTH2 with any token this returns the blob's user name for (an AuthServer's
        ``check``), besides ``token``."""
        self.mechanisms = tuple(m.upper() for m in mechanisms)
        self.require_auth = require_auth and offer_auth
        self.offer_auth = offer_auth
        self.host = HOST
        self.port = _free_port()
        self.received: list[Received] = []
        self.program = _Program()
        self.lock = threading.Lock()
        self.logins: list[str] = []
        self._controller: Controller | None = None

    # -- life cycle ---------------------------------------------------------------------------

    def _server_context(self) -> ssl.SSLContext:
        assert self.certs is not None
        ctx = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
        ctx.load_cert_chain(str(self.certs.cert_pem), str(self.certs.key_pem))
        return ctx

    def _authenticate(
        self, server: SMTP, session: Session, envelope: Envelope, mechanism: str, data: Any
    ) -> AuthResult:
        if not isinstance(data, LoginPassword):
            return AuthResult(success=False, handled=False)
        ok = data.login.decode() == self.user and data.password.decode() == self.password
        if ok:
            with self.lock:
                self.logins.append(mechanism)
        return AuthResult(success=ok, handled=False)

    def start(self) -> Smtpd:
        kwargs: dict[str, Any] = {
            "hostname": self.host,
            "port": self.port,
            "server_hostname": "smtp.test",
            "authenticator": self._authenticate,
            "auth_exclude_mechanism": [
                m for m in ("PLAIN", "LOGIN", "XOAUTH2") if m not in self.mechanisms
            ],
            # Enforced by handle_MAIL instead: aiosmtpd's own flag warns without TLS.
            "auth_required": False,
            "auth_require_tls": self.tls == "starttls",
            "ready_timeout": 10,
        }
        if self.tls == "starttls":
            kwargs["tls_context"] = self._server_context()
            kwargs["require_starttls"] = True
        elif self.tls == "implicit":
            kwargs["ssl_context"] = self._server_context()
        controller = Controller(_Handler(self), **kwargs)
        controller.start()
        self._controller = controller
        self._wait_greeting()
        return self

    def _wait_greeting(self, timeout: float = 10.0) -> None:
        deadline = time.monotonic() + timeout
        while True:
            try:
                with contextlib.ExitStack() as stack:
                    sock = stack.enter_context(
                        socket.create_connection((self.host, self.port), timeout=2)
                    )
                    if self.tls == "implicit":
                        ctx = ssl.create_default_context()
                        ctx.check_hostname = False
                        ctx.verify_mode = ssl.CERT_NONE
                        sock = stack.enter_context(ctx.wrap_socket(sock))
                    greeting = sock.recv(512)
                    if greeting.startswith(b"220"):
                        sock.sendall(b"QUIT\r\n")
                        sock.recv(512)
                        return
            except OSError:
                pass
            if time.monotonic() > deadline:
                raise RuntimeError(f"the test SMTP server on port {self.port} sent no greeting")
            time.sleep(0.02)

    def stop(self) -> None:
        controller, self._controller = self._controller, None
        if controller is not None:
            controller.stop()

    def restart(self) -> Smtpd:
        """Stop, then start again on the same port with the same program and messages."""
        self.stop()
        return self.start()

    @property
    def running(self) -> bool:
        return self._controller is not None

    def __enter__(self) -> Smtpd:
        return self.start()

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()

    # -- programming failures ---------------------------------------------------------------

    def fail_next(
        self, n: int = 1, code: int = 451, text: str = "4.3.0 try again later", *, at: str = "DATA"
    ) -> None:
        """Answer the end of DATA (or MAIL FROM, ``at="MAIL"``) of the next ``n`` messages
        with ``code text``; the message is not kept."""
        failures = self.program.mail_failures if at == "MAIL" else self.program.data_failures
        with self.lock:
            failures.append(_Failure(code, text, n))

    def refuse(self, recipient: str, code: int = 550, text: str = "5.1.1 no such user") -> None:
        """Answer RCPT TO for ``recipient`` with ``code text`` until unrefuse()."""
        with self.lock:
            self.program.refused[recipient.lower()] = (code, text)

    def unrefuse(self, recipient: str) -> None:
        with self.lock:
            self.program.refused.pop(recipient.lower(), None)

    def stall(self, seconds: float, n: int = 1) -> None:
        """Wait ``seconds`` before answering the end of DATA of the next ``n`` messages, then
        answer 451 (the message is not kept)."""
        with self.lock:
            self.program.stall = seconds
            self.program.stall_count = n

    def clear(self) -> None:
        with self.lock:
            self.received.clear()
            self.program = _Program()
            self.logins.clear()

    def messages(self) -> list[Received]:
        with self.lock:
            return list(self.received)
