"""Secrets for the server sections: from the system keyring, a command, or the config itself.

Every secret handed out is first registered with :func:`syncd.log.register_secret`, so it is
masked in any log line it might reach. Failures raise :class:`~syncd.errors.CredentialError`
with text that says which account and role, what went wrong and what to do; a command's output
(which may hold the secret) never appears in one.
"""

from __future__ import annotations

import subprocess
from typing import Final

from syncd.config import AuthMethod, SecretKind, ServerConfig
from syncd.errors import CredentialError
from syncd.log import register_secret

__all__ = [
    "KEYRING_SERVICE",
    "SecretGetter",
    "get_secret",
    "run_secret_command",
    "secret_for",
    "set_secret",
]

KEYRING_SERVICE: Final = "syncd"
ROLES: Final = ("imap", "pop3", "smtp")
COMMAND_TIMEOUT: Final = 60.0
_STDERR_LIMIT: Final = 500


def get_secret(server: ServerConfig) -> str:
    """The password (or OAuth2 access token) for ``server``, fetched anew on each call.

    A command is run every time, so a token command can hand out fresh tokens; callers that
    want to cache should do so themselves. The built-in OAuth2 flow (``oauth2:``) hands out
    the account's cached access token, refreshed when it is about to expire.
    """
    source = server.secret
    account, _, role = source.keyring_key.partition("/")
    where = f"accounts.{account}.{role}"
    if source.kind is SecretKind.LITERAL:
        if not source.value:
            raise CredentialError(f"{where}: the password in the config is empty")
        secret = source.value
    elif source.kind is SecretKind.OAUTH2:
        from syncd import oauth

        assert source.oauth2 is not None
        secret = oauth.access_token(source.oauth2)
    elif source.kind is SecretKind.COMMAND:
        if not source.command:
            raise CredentialError(f"{where}: the command for the secret is empty")
        secret = run_secret_command(source.command, f"{where}.{_command_key(server)}")
    else:
        secret = _from_keyring(source.keyring_key, account, role)
    register_secret(secret)
    return secret


class SecretGetter:
    """``server``'s secret as the drivers want it: call it for the secret.

    :meth:`renew` is for a login the server refused: with the built-in OAuth2 flow it gets a
    fresh access token (True: try the login once more); for anything else it is False.
    """

    def __init__(self, server: ServerConfig) -> None:
        self.server = server

    def __call__(self) -> str:
        return get_secret(self.server)

    def renew(self, refused: str) -> bool:
        source = self.server.secret
        if source.kind is not SecretKind.OAUTH2 or source.oauth2 is None:
            return False
        from syncd import oauth

        return oauth.renew(source.oauth2, refused)


def secret_for(server: ServerConfig) -> SecretGetter:
    """A getter for ``server``'s secret that the drivers can also ask to renew a token."""
    return SecretGetter(server)


def set_secret(account: str, role: str, secret: str) -> None:
    """Store ``secret`` in the system keyring as ``ACCOUNT/ROLE`` under service ``syncd``."""
    # keyring costs 20-40 ms to import; only accounts that use it pay for it.
    import keyring
    import keyring.errors

    if role not in ROLES:
        raise CredentialError(f"unknown role {role!r}; expected one of: {', '.join(ROLES)}")
    if not secret:
        raise CredentialError("refusing to store an empty password")
    register_secret(secret)
    try:
        keyring.set_password(KEYRING_SERVICE, f"{account}/{role}", secret)
    except keyring.errors.NoKeyringError as exc:
        raise CredentialError(_no_keyring(account, role, exc)) from exc
    except Exception as exc:  # backends raise their own types (dbus, jeepney, ...)
        raise CredentialError(
            f"could not store the password for {account}/{role} in the system keyring: {exc}"
        ) from exc


def _command_key(server: ServerConfig) -> str:
    return "password_command" if server.auth is AuthMethod.PASSWORD else "token_command"


def run_secret_command(
    command: str, where: str, *, stdin: str | None = None, want_output: bool = True
) -> str:
    """Run the user's ``command`` through the shell: its first line of output, or "".

    ``stdin``: text for its standard input (a command that stores a secret); otherwise it
    reads nothing. ``want_output``: an empty first line is an error. Raises CredentialError
    naming ``where``, never with the output in it.
    """
    try:
        # shell=True on purpose: the command is the user's own text from their config, and
        # pipes and quoting (`pass show x | head -1`) are what mbsync's PassCmd users expect.
        result = subprocess.run(  # noqa: S602
            command,
            shell=True,
            # Never the caller's stdin: under `syncd sendmail` it holds the message.
            input=stdin.encode("utf-8") if stdin is not None else None,
            stdin=subprocess.DEVNULL if stdin is None else None,
            capture_output=True,
            timeout=COMMAND_TIMEOUT,
            check=False,
        )
    except subprocess.TimeoutExpired:
        raise CredentialError(
            f"{where}: the command did not finish within {COMMAND_TIMEOUT:g} seconds "
            "(is it waiting for input, such as a passphrase prompt?)"
        ) from None
    except OSError as exc:
        raise CredentialError(f"{where}: could not start the command: {exc}") from None
    if result.returncode != 0:
        status = (
            f"was killed by signal {-result.returncode}"
            if result.returncode < 0
            else f"exited with status {result.returncode}"
        )
        stderr = result.stderr.decode("utf-8", "replace").strip()
        if len(stderr) > _STDERR_LIMIT:
            stderr = stderr[: _STDERR_LIMIT - 3] + "..."
        detail = f": {stderr}" if stderr else " and printed nothing on stderr"
        raise CredentialError(f"{where}: the command {status}{detail}")
    first = result.stdout.split(b"\n", 1)[0].removesuffix(b"\r")
    if not want_output:
        return ""
    if not first:
        raise CredentialError(
            f"{where}: the command printed nothing on its first line of output; "
            "it should print the secret"
        )
    try:
        return first.decode("utf-8")
    except UnicodeDecodeError:
        raise CredentialError(f"{where}: the command's output is not UTF-8 text") from None


def _from_keyring(key: str, account: str, role: str) -> str:
    import keyring
    import keyring.errors

    try:
        secret = keyring.get_password(KEYRING_SERVICE, key)
    except keyring.errors.NoKeyringError as exc:
        raise CredentialError(_no_keyring(account, role, exc)) from exc
    except Exception as exc:  # backends raise their own types (dbus, jeepney, ...)
        raise CredentialError(
            f"accounts.{account}.{role}: the system keyring failed: {exc}; unlock it, or set "
            "password_command in the config instead"
        ) from exc
    if secret is None:
        raise CredentialError(
            f"accounts.{account}.{role}: no password in the system keyring (service "
            f'"{KEYRING_SERVICE}", key "{key}"); store one with `syncd password set {account} '
            f"{role}`, or set password_command in the config"
        )
    if not secret:
        raise CredentialError(f"accounts.{account}.{role}: the keyring holds an empty password")
    return secret


def _no_keyring(account: str, role: str, exc: Exception) -> str:
    return (
        f"accounts.{account}.{role}: no system keyring is available ({exc}); install and unlock "
        "one (GNOME Keyring, KWallet, KeePassXC's Secret Service), or set password_command "
        "in the config instead"
    )
