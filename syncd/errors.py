"""One exception tree for syncd, grouped by what the caller does next.

    SyncdError
    ├── ConfigError          the config file is wrong: exit 2, name the key and line
    ├── CredentialError      no secret could be had (keyring empty, command failed)
    ├── StateError           the state database or the Maildir binding is unusable
    │   └── LockedError      another syncd holds this account
    └── StoreError           a driver failed talking to its store
        ├── TransientError   network, timeout, server busy: retry with backoff
        ├── AuthError        login refused: stop the account until config or secret change
        │   └── LoginRequired  the OAuth2 grant is gone: the user must run `syncd oauth login`
        ├── TLSError         certificate or TLS refused: like AuthError, not retried hot
        ├── FolderError      one folder is unusable: skip it, go on with the others
        └── MessageError     one message is unusable: skip it, go on with the folder

Drivers translate their library's exceptions into these at their edge
(``raise ... from exc``); nothing above the drivers sees imaplib, socket or ssl errors.
"""

from __future__ import annotations

__all__ = [
    "AuthError",
    "ConfigError",
    "CredentialError",
    "FolderError",
    "LockedError",
    "LoginRequired",
    "MessageError",
    "StateError",
    "StoreError",
    "SyncdError",
    "TLSError",
    "TransientError",
]


class SyncdError(Exception):
    """Base of every error syncd raises on purpose; its text is meant for the user."""


class ConfigError(SyncdError):
    """The configuration is invalid. The message names the key and, where known, the line."""

    def __init__(self, message: str, *, path: str | None = None, line: int | None = None) -> None:
        where = ""
        if path is not None:
            where = f"{path}:{line}: " if line is not None else f"{path}: "
        super().__init__(f"{where}{message}")
        self.path = path
        self.line = line


class CredentialError(SyncdError):
    """A secret could not be obtained."""


class StateError(SyncdError):
    """The state database or the Maildir it is bound to cannot be used safely."""


class LockedError(StateError):
    """Another syncd process holds this account's lock."""


class StoreError(SyncdError):
    """A store (IMAP, POP3, SMTP server or the Maildir) failed."""


class TransientError(StoreError):
    """Worth retrying later: network down, timeout, server busy or restarting."""


class AuthError(StoreError):
    """The server refused the credentials."""


class LoginRequired(AuthError):
    """No usable OAuth2 refresh token: none stored, or the provider revoked or expired it.

    Nothing syncd can retry fixes it; the text ends with the command that does
    (``syncd oauth login ACCOUNT``), which :attr:`command` holds on its own.
    """

    def __init__(self, message: str, *, account: str) -> None:
        self.command = f"syncd oauth login {account}"
        super().__init__(f"{message}; run: {self.command}")
        self.account = account


class TLSError(StoreError):
    """TLS could not be established safely (certificate, host name, missing STARTTLS)."""


class FolderError(StoreError):
    """One folder cannot be synced; the others can."""


class MessageError(StoreError):
    """One message cannot be synced; the rest of its folder can."""
