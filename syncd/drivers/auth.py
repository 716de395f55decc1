"""The one retry a refused OAuth2 login gets (shared by the IMAP, POP3 and SMTP drivers).

A driver's ``secret`` is any ``Callable[[], str]``. The getters of
:func:`syncd.credentials.secret_for` also have ``renew(refused) -> bool``: after the server
refused a token, the built-in OAuth2 flow refreshes it and the driver logs in once more.
Passwords and token commands say False, and the refusal stands.
"""

from __future__ import annotations

from collections.abc import Callable


def renewed(secret: Callable[[], str], refused: str) -> bool:
    """True when ``secret`` has a fresh token after the server refused ``refused``."""
    renew = getattr(secret, "renew", None)
    if renew is None or not refused:
        return False
    return bool(renew(refused))
