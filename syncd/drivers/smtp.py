"""SMTP submission through smtplib: one connection for a whole queue.

Security follows RFC 8314 and the other drivers: ``tls: implicit`` wraps the socket before
the greeting (port 465); ``tls: starttls`` refuses to go on when the server does not offer
STARTTLS, so a stripped capability list can never downgrade the connection to clear text;
certificates are checked with :mod:`syncd.drivers.tls` (system store, ``ca_file`` or a
pinned ``fingerprint``) before any secret is sent.

Speed: a message goes to the socket in one ``sendall`` (smtplib's ``data`` appends the
final dot to the same buffer), and ``TCP_NODELAY`` is set, so neither Nagle's algorithm nor
the server's delayed ACK holds back the last segment (the stall that costs msmtp ~40 ms per
message against aiosmtpd, see FIELD-NOTES.md).

Every library exception is translated into :mod:`syncd.errors` by :func:`map_error`, the one
place that knows smtplib's, ssl's and socket's exception classes. Replies that belong to a
message (a refused recipient, a 451 to DATA) are not exceptions: :meth:`SmtpSession.submit`
returns them for the planner to judge.
"""

from __future__ import annotations

import contextlib
import logging
import re
import smtplib
import socket
import ssl
import threading
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from syncd.drivers import tls
from syncd.drivers.auth import renewed
from syncd.errors import AuthError, StoreError, SyncdError, TLSError, TransientError

if TYPE_CHECKING:
    from syncd.config import SmtpConfig

__all__ = ["SmtpReply", "SmtpSession", "Submission", "map_error"]

log = logging.getLogger(__name__)

_HOSTNAME_OK = re.compile(r"[A-Za-z0-9](?:[A-Za-z0-9.-]*[A-Za-z0-9])?")


@dataclass(frozen=True, slots=True)
class SmtpReply:
    code: int
    text: str

    def __str__(self) -> str:
        return f"{self.code} {self.text}".strip()


@dataclass(frozen=True, slots=True)
class Submission:
    """The server's replies to one transaction; a missing reply was never received.

    ``data_sent`` is True once the whole message was written to the socket: from then on,
    until ``data`` arrives, the server may have accepted the message without us knowing.
    """

    mail: SmtpReply | None = None
    rcpt: dict[str, SmtpReply] = field(default_factory=dict)
    data: SmtpReply | None = None
    data_sent: bool = False
    lost: str | None = None
    """Why the transaction ended without all replies (connection lost, timeout)."""


def _reply(code: int, text: bytes | str) -> SmtpReply:
    if isinstance(text, bytes):
        text = text.decode("utf-8", "replace")
    return SmtpReply(code, text)


def map_error(exc: BaseException, cfg: SmtpConfig, what: str) -> SyncdError:
    """The syncd error for an exception smtplib, ssl or the socket layer raised."""
    where = f"SMTP {cfg.host}:{cfg.port}: {what}"
    if isinstance(exc, SyncdError):
        return exc
    if isinstance(exc, ssl.SSLError):
        # Only errors raised by OpenSSL itself carry .reason, which tls.describe reads.
        reason = getattr(exc, "reason", None) or str(exc) or type(exc).__name__
        if isinstance(exc, ssl.SSLEOFError | ssl.SSLZeroReturnError):
            return TransientError(f"{where}: connection closed during TLS: {reason}")
        if hasattr(exc, "reason"):
            return TLSError(tls.describe(exc, cfg))
        return TLSError(f"{where}: TLS failed: {reason}")
    if isinstance(exc, smtplib.SMTPAuthenticationError):
        return AuthError(
            f"{where}: login as {cfg.username} refused: {_reply(exc.smtp_code, exc.smtp_error)}; "
            "check the password (or token) and the username"
        )
    if isinstance(exc, smtplib.SMTPServerDisconnected):
        text = str(exc) or "connection closed"
        return TransientError(f"{where}: {text}")
    if isinstance(exc, smtplib.SMTPNotSupportedError):
        return StoreError(f"{where}: the server does not support it: {exc}")
    if isinstance(exc, smtplib.SMTPRecipientsRefused):
        refused = "; ".join(f"{r}: {_reply(*v)}" for r, v in exc.recipients.items())
        return StoreError(f"{where}: recipients refused: {refused}")
    if isinstance(exc, smtplib.SMTPResponseException):
        # SMTPConnectError, SMTPHeloError, SMTPSenderRefused, SMTPDataError and friends
        reply = _reply(exc.smtp_code, exc.smtp_error)
        if 400 <= exc.smtp_code < 500:
            return TransientError(f"{where}: server busy: {reply}")
        return StoreError(f"{where}: server said: {reply}")
    if isinstance(exc, smtplib.SMTPException):
        return StoreError(f"{where}: {exc}")
    if isinstance(exc, TimeoutError):
        return TransientError(f"{where}: timed out after {cfg.timeout:g} s")
    if isinstance(exc, socket.gaierror):
        return TransientError(f"{where}: cannot resolve {cfg.host}: {exc.strerror or exc}")
    if isinstance(exc, OSError):
        return TransientError(f"{where}: {exc.strerror or exc}")
    return StoreError(f"{where}: {type(exc).__name__}: {exc}")


@contextlib.contextmanager
def _mapped(cfg: SmtpConfig, what: str) -> Iterator[None]:
    try:
        yield
    except SyncdError:
        raise
    except (smtplib.SMTPException, ssl.SSLError, OSError) as exc:
        raise map_error(exc, cfg, what) from exc


_said: set[tuple[object, ...]] = set()
_said_lock = threading.Lock()


def _first_time(key: tuple[object, ...]) -> bool:
    """True once per process for ``key``: a daemon connects often and says things once."""
    with _said_lock:
        if key in _said:
            return False
        _said.add(key)
        return True


def _log_once(key: tuple[object, ...], msg: str, *args: object) -> None:
    """``msg`` at INFO the first time in this process, at DEBUG after that."""
    log.log(logging.INFO if _first_time(key) else logging.DEBUG, msg, *args)


def _local_hostname() -> str:
    # Explicit, because smtplib's default (socket.getfqdn) asks DNS, which can hang for
    # seconds on a machine that is offline or on a captive portal.
    name = socket.gethostname()
    return name if _HOSTNAME_OK.fullmatch(name) else "localhost"


class SmtpSession:
    """One logged-in submission connection; :meth:`submit` as many messages as wanted.

    Not thread-safe. Use as a context manager, or call :meth:`connect` and :meth:`close`.
    """

    def __init__(self, cfg: SmtpConfig, secret: Callable[[], str]) -> None:
        self.cfg = cfg
        self._secret = secret
        self._smtp: smtplib.SMTP | None = None
        self.authenticated = False

    @property
    def connected(self) -> bool:
        return self._smtp is not None

    def connect(self) -> None:
        """Connect, secure, log in. Raises TransientError, TLSError, AuthError, StoreError."""
        from syncd.config import TlsMode

        cfg = self.cfg
        ctx = tls.make_context(cfg) if cfg.tls is not TlsMode.NONE else None
        smtp: smtplib.SMTP
        # Host and port go to the constructor: it connects, checks the 220 greeting, and
        # remembers the host name that TLS (SNI and the certificate check) needs.
        with _mapped(cfg, "connect"):
            if cfg.tls is TlsMode.IMPLICIT:
                smtp = smtplib.SMTP_SSL(
                    cfg.host,
                    cfg.port,
                    local_hostname=_local_hostname(),
                    context=ctx,
                    timeout=cfg.timeout,
                )
            else:
                smtp = smtplib.SMTP(
                    cfg.host, cfg.port, local_hostname=_local_hostname(), timeout=cfg.timeout
                )
        self._smtp = smtp
        try:
            with _mapped(cfg, "EHLO"):
                if smtp.sock is not None:
                    with contextlib.suppress(OSError):
                        smtp.sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
                smtp.ehlo_or_helo_if_needed()
            if cfg.tls is TlsMode.STARTTLS:
                if not smtp.has_extn("starttls"):
                    raise TLSError(
                        f"SMTP {cfg.host}:{cfg.port} does not offer STARTTLS; refusing to "
                        "log in or send without TLS (use tls: implicit on port 465 if the "
                        "server has it)"
                    )
                with _mapped(cfg, "STARTTLS"):
                    smtp.starttls(context=ctx)
                    smtp.ehlo()
            if cfg.tls is not TlsMode.NONE:
                tls.check_pin(smtp.sock, cfg)
            self._login(smtp)
        except BaseException:
            self.close()
            raise
        extensions = " ".join(sorted(smtp.esmtp_features))
        if _first_time(("extensions", cfg.host, cfg.port, extensions)):
            log.debug("SMTP %s:%s: extensions: %s", cfg.host, cfg.port, extensions)
        log.debug(
            "SMTP %s:%s: connected%s",
            cfg.host,
            cfg.port,
            " and logged in" if self.authenticated else "",
        )

    def _login(self, smtp: smtplib.SMTP) -> None:
        from syncd.config import AuthMethod

        cfg = self.cfg
        if cfg.auth is AuthMethod.NONE:
            log.debug("SMTP %s:%s: auth: none, sending without login", cfg.host, cfg.port)
            return
        if not smtp.has_extn("auth"):
            # Some relays (a local Postfix on loopback) take mail without login; TLS was
            # already insisted on above, so nothing is weakened by going on.
            _log_once(
                ("no-auth", cfg.host, cfg.port),
                "SMTP %s:%s offers no AUTH; sending without login",
                cfg.host,
                cfg.port,
            )
            return
        secret = self._secret()
        try:
            self._auth(smtp, secret)
        except AuthError:
            if not renewed(self._secret, secret):
                raise
            self._auth(smtp, self._secret())
        self.authenticated = True

    def _auth(self, smtp: smtplib.SMTP, secret: str) -> None:
        from syncd.config import AuthMethod

        cfg = self.cfg
        with _mapped(cfg, "AUTH"):
            if cfg.auth is AuthMethod.PASSWORD:
                smtp.login(cfg.username, secret)
            else:
                if cfg.auth is AuthMethod.XOAUTH2:
                    mechanism = "XOAUTH2"
                    blob = f"user={cfg.username}\x01auth=Bearer {secret}\x01\x01"
                else:
                    mechanism = "OAUTHBEARER"
                    blob = f"n,a={cfg.username},\x01auth=Bearer {secret}\x01\x01"

                # On failure the server sends a JSON error as a challenge and waits for an
                # empty line before its 535 (RFC 7628); answering with the token again
                # would loop until smtplib gives up with a useless message.
                def answer(challenge: bytes | None = None) -> str:
                    return blob if challenge is None else ""

                smtp.auth(mechanism, answer)

    def close(self) -> None:
        smtp, self._smtp = self._smtp, None
        self.authenticated = False
        if smtp is None:
            return
        try:
            smtp.quit()
        except Exception:
            with contextlib.suppress(Exception):
                smtp.close()

    def __enter__(self) -> SmtpSession:
        self.connect()
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def submit(
        self,
        sender: str,
        recipients: Sequence[str],
        data: bytes,
        *,
        before_data: Callable[[], None] | None = None,
    ) -> Submission:
        """One transaction: MAIL FROM, RCPT TO each recipient, DATA ``data`` (CRLF form).

        ``before_data`` runs once at least one recipient was accepted, right before DATA:
        the engine commits its journal there. The server's replies are returned, whatever
        they say; a connection lost midway ends the transaction with ``lost`` set and the
        session closed (connect again for the next message). Raises only what
        ``before_data`` raises.
        """
        smtp = self._smtp
        if smtp is None:
            raise StoreError("SMTP session is not connected")
        mail: SmtpReply | None = None
        rcpt: dict[str, SmtpReply] = {}
        data_sent = False
        try:
            options = []
            if smtp.has_extn("size"):
                options.append(f"SIZE={len(data)}")
            if not data.isascii() and smtp.has_extn("8bitmime"):
                options.append("BODY=8BITMIME")
            if not all(a.isascii() for a in (sender, *recipients)):
                if not smtp.has_extn("smtputf8"):
                    why = "address is not ASCII and the server lacks SMTPUTF8"
                    return Submission(mail=SmtpReply(553, f"5.6.7 {why}"))
                options.append("SMTPUTF8")
            smtp.command_encoding = "ascii"  # MAIL switches it on for SMTPUTF8 only
            mail = _reply(*smtp.mail(sender, options))
            if not 200 <= mail.code < 300:
                self._rset(smtp)
                return Submission(mail=mail)
            for address in recipients:
                rcpt[address] = _reply(*smtp.rcpt(address))
            if not any(200 <= r.code < 300 for r in rcpt.values()):
                self._rset(smtp)
                return Submission(mail=mail, rcpt=rcpt)
            if before_data is not None:
                before_data()
            try:
                data_sent = True
                reply = _reply(*smtp.data(data))
            except smtplib.SMTPDataError as exc:
                # Refused at the DATA command itself: no byte of the message went out.
                data_sent = False
                reply = _reply(exc.smtp_code, exc.smtp_error)
            if not 200 <= reply.code < 300:
                self._rset(smtp)
            return Submission(mail=mail, rcpt=rcpt, data=reply, data_sent=data_sent)
        except (smtplib.SMTPException, ssl.SSLError, OSError) as exc:
            lost = str(map_error(exc, self.cfg, "sending"))
            self.close()
            return Submission(mail=mail, rcpt=rcpt, data_sent=data_sent, lost=lost)

    def _rset(self, smtp: smtplib.SMTP) -> None:
        # Ends a refused transaction so the next message starts clean on this connection.
        with contextlib.suppress(smtplib.SMTPException, OSError):
            smtp.rset()
