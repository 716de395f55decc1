"""syncd.credentials with real shell commands and a real (in-memory) keyring backend."""

from __future__ import annotations

from collections.abc import Iterator

import keyring
import keyring.backends.fail
import keyring.errors
import pytest
from keyring.backend import KeyringBackend

from syncd import credentials
from syncd.config import ServerConfig, parse_config
from syncd.credentials import get_secret, set_secret
from syncd.errors import CredentialError
from syncd.log import redact


class MemoryKeyring(KeyringBackend):
    """A complete keyring backend that keeps its entries in a dict."""

    priority = 50

    def __init__(self) -> None:
        super().__init__()  # type: ignore[no-untyped-call]
        self.entries: dict[tuple[str, str], str] = {}

    def get_password(self, service: str, username: str) -> str | None:
        return self.entries.get((service, username))

    def set_password(self, service: str, username: str, password: str) -> None:
        self.entries[(service, username)] = password

    def delete_password(self, service: str, username: str) -> None:
        if self.entries.pop((service, username), None) is None:
            raise keyring.errors.PasswordDeleteError(username)


class LockedKeyring(MemoryKeyring):
    def get_password(self, service: str, username: str) -> str | None:
        raise keyring.errors.KeyringLocked("the collection is locked")


@pytest.fixture
def use_keyring() -> Iterator[None]:
    previous = keyring.get_keyring()
    yield
    keyring.set_keyring(previous)


@pytest.fixture
def memory_keyring(use_keyring: None) -> MemoryKeyring:
    backend = MemoryKeyring()
    keyring.set_keyring(backend)
    return backend


def imap_server(*lines: str, account: str = "acct") -> ServerConfig:
    extra = "".join(f"      {line}\n" for line in lines)
    text = (
        f"accounts:\n  {account}:\n    maildir: /srv/mail/{account}\n    imap:\n"
        f"      host: imap.example.org\n      username: me\n{extra}"
    )
    server = parse_config(text).accounts[0].imap
    assert server is not None
    return server


# --- password_command ------------------------------------------------------------------------


def test_password_command_gives_the_first_line_only() -> None:
    server = imap_server("password_command: printf 'first-line-pw\\nsecond-line\\n'")
    assert get_secret(server) == "first-line-pw"


def test_password_command_strips_crlf_and_keeps_other_whitespace() -> None:
    server = imap_server("password_command: printf ' spaced pw \\r\\nrest'")
    assert get_secret(server) == " spaced pw "


def test_password_command_runs_in_a_shell() -> None:
    server = imap_server("password_command: echo piped-secret | tr a-z A-Z")
    assert get_secret(server) == "PIPED-SECRET"


def test_password_command_does_not_read_our_stdin() -> None:
    # Under `syncd sendmail` stdin is the message being queued; the command must not eat it.
    server = imap_server("password_command: cat; echo after-stdin-pw")
    assert get_secret(server) == "after-stdin-pw"


def test_failing_command_reports_status_and_stderr_but_not_stdout() -> None:
    server = imap_server(
        "password_command: 'echo leaked-stdout-pw; echo ''gpg: decryption failed'' >&2; exit 3'"
    )
    with pytest.raises(CredentialError) as info:
        get_secret(server)
    message = str(info.value)
    assert "accounts.acct.imap.password_command" in message
    assert "status 3" in message
    assert "gpg: decryption failed" in message
    assert "leaked-stdout-pw" not in message


def test_long_stderr_is_trimmed() -> None:
    server = imap_server("password_command: head -c 5000 /dev/zero | tr '\\0' x >&2; exit 1")
    with pytest.raises(CredentialError) as info:
        get_secret(server)
    assert len(str(info.value)) < 700


def test_empty_output_is_an_error() -> None:
    server = imap_server("password_command: 'true'")
    with pytest.raises(CredentialError, match="printed nothing"):
        get_secret(server)


def test_a_hanging_command_times_out(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(credentials, "COMMAND_TIMEOUT", 0.3)
    server = imap_server("password_command: sleep 5")
    with pytest.raises(CredentialError, match=r"did not finish within 0\.3 seconds"):
        get_secret(server)


def test_token_command_gives_the_token() -> None:
    server = imap_server("auth: oauthbearer", "token_command: echo ya29.token-value")
    assert get_secret(server) == "ya29.token-value"


# --- literal ---------------------------------------------------------------------------------


def test_literal_password() -> None:
    server = imap_server("password: literal-config-pw")
    assert get_secret(server) == "literal-config-pw"


# --- keyring ---------------------------------------------------------------------------------


def test_keyring_round_trip(memory_keyring: MemoryKeyring) -> None:
    set_secret("acct", "imap", "keyring-stored-pw")
    assert memory_keyring.entries == {("syncd", "acct/imap"): "keyring-stored-pw"}
    assert get_secret(imap_server()) == "keyring-stored-pw"


def test_missing_keyring_entry_says_how_to_add_one(memory_keyring: MemoryKeyring) -> None:
    with pytest.raises(CredentialError) as info:
        get_secret(imap_server(account="other"))
    assert "syncd password set other imap" in str(info.value)
    assert "password_command" in str(info.value)


def test_no_keyring_backend(use_keyring: None) -> None:
    keyring.set_keyring(keyring.backends.fail.Keyring())  # type: ignore[no-untyped-call]
    with pytest.raises(CredentialError, match="no system keyring is available"):
        get_secret(imap_server())
    with pytest.raises(CredentialError, match="no system keyring is available"):
        set_secret("acct", "imap", "whatever-pw")


def test_keyring_failure(use_keyring: None) -> None:
    keyring.set_keyring(LockedKeyring())
    with pytest.raises(CredentialError, match="the collection is locked"):
        get_secret(imap_server())


def test_set_secret_checks_the_role(memory_keyring: MemoryKeyring) -> None:
    with pytest.raises(CredentialError, match="imap, pop3, smtp"):
        set_secret("acct", "jmap", "some-pw")
    assert memory_keyring.entries == {}


# --- redaction -------------------------------------------------------------------------------


def test_every_secret_handed_out_is_registered(memory_keyring: MemoryKeyring) -> None:
    set_secret("acct", "smtp", "registered-keyring-pw")
    smtp_text = (
        "accounts:\n  acct:\n    maildir: /m\n    imap: {host: h, username: u, password: "
        "registered-literal-pw}\n    smtp: {host: h, username: u}\n"
    )
    account = parse_config(smtp_text).accounts[0]
    assert account.imap is not None and account.smtp is not None
    command = imap_server("password_command: echo registered-command-pw")
    for server in (account.imap, account.smtp, command):
        secret = get_secret(server)
        assert redact(f"AUTH {secret} done") == "AUTH *** done"
