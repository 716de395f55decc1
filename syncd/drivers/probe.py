"""Log in to a configured server and out again: what ``syncd check`` runs."""

from __future__ import annotations

import contextlib
import poplib
import smtplib
import ssl
from collections.abc import Callable, Iterator
from typing import TYPE_CHECKING

from syncd.drivers import tls
from syncd.errors import AuthError, StoreError, TLSError, TransientError

if TYPE_CHECKING:
    from syncd.config import ImapConfig, ServerConfig


@contextlib.contextmanager
def _mapped(server: ServerConfig) -> Iterator[None]:
    where = f"{server.host}:{server.port}"
    try:
        yield
    except ssl.SSLCertVerificationError as exc:
        raise TLSError(tls.describe(exc, server)) from exc
    except ssl.SSLError as exc:
        raise TLSError(tls.describe(exc, server)) from exc
    except smtplib.SMTPAuthenticationError as exc:
        raise AuthError(f"{where}: login refused: {exc.smtp_code} {exc.smtp_error!r}") from exc
    except poplib.error_proto as exc:
        text = exc.args[0] if exc.args else exc
        if isinstance(text, bytes):
            text = text.decode(errors="replace")
        raise AuthError(f"{where}: server said: {text}") from exc
    except smtplib.SMTPException as exc:
        raise StoreError(f"{where}: {exc}") from exc
    except TimeoutError as exc:
        raise TransientError(f"{where}: timed out") from exc
    except OSError as exc:
        raise TransientError(f"{where}: cannot connect: {exc}") from exc


def probe(server: ServerConfig, secret: Callable[[], str]) -> str:
    """Connect, secure, log in and out; returns a short description or raises."""
    from syncd.config import AuthMethod, TlsMode

    if server.role == "imap":
        from syncd.config import ImapConfig
        from syncd.drivers.imap import ImapSession

        assert isinstance(server, ImapConfig)
        return _probe_imap(server, secret, ImapSession)
    ctx = tls.make_context(server) if server.tls is not TlsMode.NONE else None
    if server.role == "pop3":
        # The POP3 driver itself, so that check logs in exactly as a poll does (STLS, APOP,
        # XOAUTH2) and reports [IN-USE] as a busy mailbox, not as a wrong password.
        from syncd.config import Pop3Config
        from syncd.drivers.pop3 import Pop3Session

        assert isinstance(server, Pop3Config)
        with Pop3Session(server, secret) as session:
            count, _size = session.stat()
            session.quit()
        return f"{count} messages waiting"
    with _mapped(server):
        smtp: smtplib.SMTP
        if server.tls is TlsMode.IMPLICIT:
            smtp = smtplib.SMTP_SSL(server.host, server.port, context=ctx, timeout=server.timeout)
        else:
            smtp = smtplib.SMTP(server.host, server.port, timeout=server.timeout)
        try:
            smtp.ehlo()
            if server.tls is TlsMode.STARTTLS:
                if not smtp.has_extn("starttls"):
                    raise TLSError(f"{server.host}: SMTP server does not offer STARTTLS")
                smtp.starttls(context=ctx)
                smtp.ehlo()
            if server.tls is not TlsMode.NONE:
                tls.check_pin(smtp.sock, server)
            if smtp.has_extn("auth"):
                if server.auth is AuthMethod.PASSWORD:
                    smtp.login(server.username, secret())
                else:
                    token = secret()
                    blob = f"user={server.username}\x01auth=Bearer {token}\x01\x01"
                    smtp.auth("XOAUTH2", lambda challenge=None: blob)
                return "logged in"
            return "server offers no AUTH; sending without login"
        finally:
            with contextlib.suppress(Exception):
                smtp.quit()


def _probe_imap(server: ImapConfig, secret: Callable[[], str], session_cls: type) -> str:
    with session_cls(server, secret) as session:
        folders = session.list_folders()
    return f"{len(folders)} folders"
