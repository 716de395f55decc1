"""Log in to a configured server and out again: what ``syncd check`` runs.

Each role goes through its own driver, so a check logs in exactly as a sync, a poll or a
send does (STARTTLS refusal, pinning, APOP, XOAUTH2/OAUTHBEARER) and reports failures with
the same words.
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable
from typing import TYPE_CHECKING

from syncd.errors import TLSError

if TYPE_CHECKING:
    from syncd.config import ServerConfig


def probe(server: ServerConfig, secret: Callable[[], str]) -> str:
    """Connect, secure, log in and out; returns a short description or raises."""
    from syncd.config import ImapConfig, Pop3Config, SmtpConfig

    if isinstance(server, ImapConfig):
        from syncd.drivers.imap import ImapSession

        with ImapSession(server, secret) as session:
            folders = session.list_folders()
            lines = session.describe()
        return f"{len(folders)} folders" + "".join(f"\n  {line}" for line in lines)
    if isinstance(server, Pop3Config):
        from syncd.drivers.pop3 import Pop3Session

        with Pop3Session(server, secret) as pop:
            count, _size = pop.stat()
            pop.quit()
        return f"{count} messages waiting"
    assert isinstance(server, SmtpConfig)
    from syncd.drivers.smtp import SmtpSession

    with SmtpSession(server, secret) as smtp:
        if smtp.authenticated:
            return "logged in"
    if not server.username:
        return "auth: none, sending without login"
    return "server offers no AUTH; sending without login"


def login_mechanisms(server: ServerConfig) -> tuple[str, ...]:
    """The ways an IMAP server lets a client log in, read before any login: its AUTH=
    mechanisms, and LOGIN unless it says LOGINDISABLED (after STARTTLS where configured).

    What ``syncd init`` asks to tell a server that takes only OAuth2 (XOAUTH2, OAUTHBEARER)
    from one that takes a password. Raises TransientError, TLSError, StoreError.
    """
    import ssl

    from imapclient import IMAPClient

    from syncd.config import TlsMode
    from syncd.drivers import tls
    from syncd.drivers.imap import map_errors

    where = f"IMAP {server.host}:{server.port}"
    ctx = tls.make_context(server) if server.tls is not TlsMode.NONE else None
    with map_errors(where):
        client = IMAPClient(
            server.host,
            port=server.port,
            ssl=server.tls is TlsMode.IMPLICIT,
            ssl_context=ctx,
            timeout=server.timeout,
        )
        try:
            if server.tls is TlsMode.STARTTLS:
                try:
                    client.starttls(ctx)
                except ssl.SSLError as exc:
                    raise TLSError(tls.describe(exc, server)) from exc
            caps = {c.decode().upper() for c in client.capabilities()}
        finally:
            with contextlib.suppress(Exception):
                client.shutdown()
    ways = sorted(c.removeprefix("AUTH=") for c in caps if c.startswith("AUTH="))
    if "LOGINDISABLED" not in caps:
        ways.append("LOGIN")
    return tuple(ways)
