"""Log in to a configured server and out again: what ``syncd check`` runs.

Each role goes through its own driver, so a check logs in exactly as a sync, a poll or a
send does (STARTTLS refusal, pinning, APOP, XOAUTH2/OAUTHBEARER) and reports failures with
the same words.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING

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
