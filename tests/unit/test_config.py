"""syncd.config: real YAML files in, frozen values or one ConfigError naming key and line out."""

from __future__ import annotations

import copy
import logging
import textwrap
from pathlib import Path
from typing import Any

import pytest
import yaml
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from syncd.config import (
    AccountConfig,
    AuthMethod,
    Config,
    ImapConfig,
    Layout,
    Pop3Config,
    SecretKind,
    SecretSource,
    SmtpConfig,
    TlsMode,
    default_config_path,
    load_config,
    parse_config,
)
from syncd.errors import ConfigError
from syncd.model import Policy

REPO = Path(__file__).resolve().parents[2]

FULL = """\
state_dir: ~/.local/state/syncd
accounts:
  personal:
    maildir: ~/Mail/personal
    imap:
      host: imap.example.org
      port: 993
      tls: implicit
      username: me@example.org
      password_command: pass show mail/personal
      folders: ["*", "!Junk"]
      idle: [INBOX]
      poll_interval: 300
    smtp:
      host: smtp.example.org
      port: 587
      tls: starttls
      username: me@example.org
      password_command: pass show mail/personal
      sent_folder: Sent
    outbox: ~/Mail/personal/.outbox
    from: [me@example.org, "Me <me@example.net>"]
  work:
    maildir: $HOME/Mail/work
    layout: maildir++
    pop3:
      host: pop.example.org
      port: 995
      tls: implicit
      username: me
      interval: 600
      leave_on_server: 14
      folder: INBOX
      max_size: 10M
"""


@pytest.fixture
def home(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    home = tmp_path / "home"
    home.mkdir()
    monkeypatch.setenv("HOME", str(home))
    monkeypatch.delenv("XDG_STATE_HOME", raising=False)
    monkeypatch.delenv("XDG_CONFIG_HOME", raising=False)
    monkeypatch.delenv("SYNCD_CONFIG", raising=False)
    return home


def write(tmp_path: Path, text: str, name: str = "config.yaml") -> Path:
    path = tmp_path / name
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text, encoding="utf-8")
    return path


def error_for(tmp_path: Path, text: str) -> tuple[ConfigError, Path]:
    path = write(tmp_path, text)
    with pytest.raises(ConfigError) as info:
        load_config(path)
    return info.value, path


# --- a valid file --------------------------------------------------------------------------------


def test_full_config_round_trips_with_defaults(tmp_path: Path, home: Path) -> None:
    path = write(tmp_path, FULL)
    cfg = load_config(path)

    assert cfg.path == path
    assert cfg.state_dir == home / ".local/state/syncd"
    assert [a.name for a in cfg.accounts] == ["personal", "work"]

    personal = cfg.account("personal")
    assert personal == AccountConfig(
        name="personal",
        maildir=home / "Mail/personal",
        layout=Layout.VERBATIM,
        imap=ImapConfig(
            role="imap",
            host="imap.example.org",
            port=993,
            tls=TlsMode.IMPLICIT,
            username="me@example.org",
            auth=AuthMethod.PASSWORD,
            secret=SecretSource(
                SecretKind.COMMAND, "personal/imap", command="pass show mail/personal"
            ),
            ca_file=None,
            fingerprint=None,
            allow_plaintext=False,
            timeout=60.0,
            folders=("*", "!Junk"),
            idle=("INBOX",),
            poll_interval=300,
            idle_interval=1500,
        ),
        pop3=None,
        smtp=SmtpConfig(
            role="smtp",
            host="smtp.example.org",
            port=587,
            tls=TlsMode.STARTTLS,
            username="me@example.org",
            auth=AuthMethod.PASSWORD,
            secret=SecretSource(
                SecretKind.COMMAND, "personal/smtp", command="pass show mail/personal"
            ),
            ca_file=None,
            fingerprint=None,
            allow_plaintext=False,
            timeout=60.0,
            sent_folder="Sent",
        ),
        outbox=home / "Mail/personal/.outbox",
        addresses=("me@example.org", "me@example.net"),
        max_delete_share=0.5,
        guard_min_messages=20,
        on_new_mail=None,
    )
    assert personal.policy == Policy(max_delete_share=0.5, guard_min_messages=20)
    assert personal.servers == (personal.imap, personal.smtp)

    work = cfg.account("work")
    assert work.maildir == home / "Mail/work"
    assert work.layout is Layout.MAILDIRPP
    assert work.imap is None and work.smtp is None
    assert work.outbox == home / "Mail/work/.outbox"
    assert work.addresses == ()
    assert work.pop3 == Pop3Config(
        role="pop3",
        host="pop.example.org",
        port=995,
        tls=TlsMode.IMPLICIT,
        username="me",
        auth=AuthMethod.PASSWORD,
        secret=SecretSource(SecretKind.KEYRING, "work/pop3"),
        ca_file=None,
        fingerprint=None,
        allow_plaintext=False,
        timeout=60.0,
        interval=600,
        leave_on_server=14,
        folder="INBOX",
        max_size=10 * 1024 * 1024,
    )


def test_config_values_are_frozen(home: Path) -> None:
    cfg = parse_config(FULL)
    with pytest.raises(AttributeError):
        cfg.accounts[0].name = "other"  # type: ignore[misc]


MINIMAL = """\
accounts:
  a:
    maildir: /srv/mail/a
    imap:
      host: imap.example.org
      username: me
"""


def test_minimal_config_gets_every_default(home: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    cfg = parse_config(MINIMAL)
    assert cfg.path is None
    assert cfg.state_dir == home / ".local/state/syncd"
    account = cfg.accounts[0]
    assert account.layout is Layout.VERBATIM
    assert account.outbox == Path("/srv/mail/a/.outbox")
    assert account.max_delete_share == 0.5
    assert account.guard_min_messages == 20
    assert account.smtp is None
    imap = account.imap
    assert imap is not None
    assert (imap.port, imap.tls, imap.auth) == (993, TlsMode.IMPLICIT, AuthMethod.PASSWORD)
    assert imap.secret == SecretSource(SecretKind.KEYRING, "a/imap")
    assert (imap.folders, imap.idle, imap.poll_interval, imap.idle_interval) == (
        ("*",),
        ("INBOX",),
        300,
        1500,
    )
    assert imap.timeout == 60.0

    monkeypatch.setenv("XDG_STATE_HOME", "/var/tmp/xdgstate")
    assert parse_config(MINIMAL).state_dir == Path("/var/tmp/xdgstate/syncd")


@pytest.mark.parametrize(
    ("role", "extra", "port", "tls"),
    [
        ("imap", "", 993, TlsMode.IMPLICIT),
        ("imap", "tls: starttls", 143, TlsMode.STARTTLS),
        ("imap", "port: 143", 143, TlsMode.STARTTLS),
        ("imap", "port: 10993", 10993, TlsMode.IMPLICIT),
        ("pop3", "", 995, TlsMode.IMPLICIT),
        ("pop3", "tls: starttls", 110, TlsMode.STARTTLS),
        ("pop3", "port: 110", 110, TlsMode.STARTTLS),
        ("smtp", "", 587, TlsMode.STARTTLS),
        ("smtp", "port: 465", 465, TlsMode.IMPLICIT),
        ("smtp", "port: 25", 25, TlsMode.STARTTLS),
        ("smtp", "tls: implicit", 465, TlsMode.IMPLICIT),
        ("smtp", "port: 2525, tls: implicit", 2525, TlsMode.IMPLICIT),
    ],
)
def test_port_and_tls_defaults(role: str, extra: str, port: int, tls: TlsMode) -> None:
    section = f"{{host: mail.example.org, username: me, {extra}}}"
    receive = section if role != "smtp" else "{host: imap.example.org, username: me}"
    text = (
        f"accounts:\n  a:\n    maildir: /m\n    {'pop3' if role == 'pop3' else 'imap'}: {receive}\n"
    )
    if role == "smtp":
        text += f"    smtp: {section}\n"
    server = parse_config(text).accounts[0].servers[-1]
    assert server.role == role
    assert (server.port, server.tls) == (port, tls)


def test_account_for_sender(home: Path) -> None:
    cfg = parse_config(FULL)
    assert cfg.account_for_sender("ME@example.net").name == "personal"  # type: ignore[union-attr]
    assert cfg.account_for_sender("Me <me@example.org>").name == "personal"  # type: ignore[union-attr]
    assert cfg.account_for_sender("stranger@example.com") is None


def test_unknown_account_lists_the_known_ones(home: Path) -> None:
    with pytest.raises(
        ConfigError, match=r"no account named 'nope'; the config has: personal, work"
    ):
        parse_config(FULL).account("nope")


# --- paths ---------------------------------------------------------------------------------------


def test_tilde_and_env_vars_expand_in_every_path(
    tmp_path: Path, home: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("MAILROOT", str(tmp_path / "mailroot"))
    path = write(
        tmp_path,
        textwrap.dedent(
            """\
            state_dir: ${HOME}/state
            accounts:
              a:
                maildir: $MAILROOT/a
                outbox: ~/outbox
                imap:
                  host: imap.example.org
                  username: me
                  ca_file: ~/ca.pem
            """
        ),
    )
    cfg = load_config(path)
    account = cfg.accounts[0]
    assert cfg.state_dir == home / "state"
    assert account.maildir == tmp_path / "mailroot/a"
    assert account.outbox == home / "outbox"
    assert account.imap is not None and account.imap.ca_file == home / "ca.pem"


def test_unset_env_var_in_a_path_is_an_error(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("SYNCD_NO_SUCH_VAR", raising=False)
    err, path = error_for(tmp_path, MINIMAL.replace("/srv/mail/a", "$SYNCD_NO_SUCH_VAR/a"))
    assert str(err) == (
        f"{path}:3: accounts.a.maildir: environment variable $SYNCD_NO_SUCH_VAR is not set"
    )


def test_relative_paths_are_taken_from_the_config_directory(tmp_path: Path) -> None:
    path = write(
        tmp_path,
        MINIMAL.replace("/srv/mail/a", "mail/a") + "state_dir: ../state\n",
        name="conf/config.yaml",
    )
    cfg = load_config(path)
    assert cfg.accounts[0].maildir == tmp_path / "conf/mail/a"
    assert cfg.state_dir == tmp_path / "state"


def test_two_accounts_with_one_maildir_are_refused(tmp_path: Path, home: Path) -> None:
    err, path = error_for(
        tmp_path,
        textwrap.dedent(
            """\
            accounts:
              first:
                maildir: ~/Mail
                imap: {host: imap.example.org, username: me}
              second:
                maildir: $HOME/Mail/sub/..
                pop3: {host: pop.example.org, username: me}
            """
        ),
    )
    assert err.line == 6
    assert str(err).startswith(f"{path}:6: accounts.second.maildir: ")
    assert "accounts.first.maildir" in str(err)


def test_nested_maildirs_are_refused(tmp_path: Path) -> None:
    err, _ = error_for(
        tmp_path,
        textwrap.dedent(
            """\
            accounts:
              outer:
                maildir: /m
                imap: {host: imap.example.org, username: me}
              inner:
                maildir: /m/inner
                imap: {host: imap.example.org, username: me}
            """
        ),
    )
    assert (err.line, "accounts.inner.maildir" in str(err), "inside" in str(err)) == (6, True, True)


def test_default_config_path(monkeypatch: pytest.MonkeyPatch, home: Path) -> None:
    assert default_config_path() == home / ".config/syncd/config.yaml"
    monkeypatch.setenv("XDG_CONFIG_HOME", "/etc/xdg-user")
    assert default_config_path() == Path("/etc/xdg-user/syncd/config.yaml")
    monkeypatch.setenv("SYNCD_CONFIG", "~/elsewhere.yaml")
    assert default_config_path() == home / "elsewhere.yaml"


def test_load_config_uses_the_default_path(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    path = write(tmp_path, MINIMAL, name="xdg/syncd/config.yaml")
    monkeypatch.delenv("SYNCD_CONFIG", raising=False)
    monkeypatch.setenv("XDG_CONFIG_HOME", str(tmp_path / "xdg"))
    assert load_config().path == path


def test_missing_file_says_where_and_how(tmp_path: Path) -> None:
    missing = tmp_path / "nowhere.yaml"
    with pytest.raises(ConfigError) as info:
        load_config(missing)
    assert str(missing) in str(info.value)
    assert "config.example.yaml" in str(info.value)


# --- secrets and TLS -----------------------------------------------------------------------------


def test_literal_password_works_but_warns(caplog: pytest.LogCaptureFixture) -> None:
    with caplog.at_level(logging.WARNING, logger="syncd.config"):
        cfg = parse_config(MINIMAL + "      password: hunter2-literal\n")
    imap = cfg.accounts[0].imap
    assert imap is not None
    assert imap.secret.kind is SecretKind.LITERAL
    assert imap.secret.value == "hunter2-literal"
    assert "hunter2-literal" not in repr(imap)
    [record] = [r for r in caplog.records if r.name == "syncd.config"]
    assert record.levelno == logging.WARNING
    message = record.getMessage()
    assert "password_command" in message
    assert "syncd password set a imap" in message
    assert "hunter2-literal" not in message


def test_token_command_for_oauth() -> None:
    cfg = parse_config(MINIMAL + "      auth: xoauth2\n      token_command: oauth2-helper\n")
    imap = cfg.accounts[0].imap
    assert imap is not None
    assert imap.auth is AuthMethod.XOAUTH2
    assert imap.secret == SecretSource(SecretKind.COMMAND, "a/imap", command="oauth2-helper")


@pytest.mark.parametrize("host", ["localhost", "127.0.0.1", "127.1.2.3", "::1", "LocalHost"])
def test_plaintext_to_loopback_is_allowed(host: str) -> None:
    text = MINIMAL.replace("imap.example.org", f'"{host}"') + "      tls: none\n"
    imap = parse_config(text).accounts[0].imap
    assert imap is not None
    assert (imap.tls, imap.port) == (TlsMode.NONE, 143)


def test_plaintext_to_a_remote_host_is_refused(tmp_path: Path) -> None:
    err, path = error_for(tmp_path, MINIMAL + "      tls: none\n")
    assert err.line == 7
    assert str(err).startswith(f"{path}:7: accounts.a.imap.tls: ")
    assert "RFC 8314" in str(err)
    assert "allow_plaintext" in str(err)


def test_allow_plaintext_lifts_the_refusal() -> None:
    imap = parse_config(MINIMAL + "      tls: none\n      allow_plaintext: true\n").accounts[0].imap
    assert imap is not None
    assert imap.allow_plaintext is True
    assert imap.tls is TlsMode.NONE


@pytest.mark.parametrize(
    "given",
    [
        "sha256:9F86D081884C7D659A2FEAA0C55AD015A3BF4F1B2B0B822CD15D6C15B0F00A08",
        "SHA256:9f:86:d0:81:88:4c:7d:65:9a:2f:ea:a0:c5:5a:d0:15:a3:bf:4f:1b:2b:0b:82:2c:d1:5d:6c:15:b0:f0:0a:08",
    ],
)
def test_fingerprint_is_normalised(given: str) -> None:
    imap = parse_config(MINIMAL + f'      fingerprint: "{given}"\n').accounts[0].imap
    assert imap is not None
    assert imap.fingerprint == "9f86d081884c7d659a2feaa0c55ad015a3bf4f1b2b0b822cd15d6c15b0f00a08"


def test_merge_keys_share_settings() -> None:
    text = textwrap.dedent(
        """\
        accounts:
          a:
            maildir: /m
            imap: &server
              host: mail.example.org
              username: me
              password_command: pass mail
            smtp:
              <<: *server
              port: 465
        """
    )
    smtp = parse_config(text).accounts[0].smtp
    assert smtp is not None
    assert (smtp.host, smtp.port, smtp.tls) == ("mail.example.org", 465, TlsMode.IMPLICIT)
    assert smtp.secret == SecretSource(SecretKind.COMMAND, "a/smtp", command="pass mail")


@pytest.mark.parametrize("auth", ["", "      auth: none\n"])
def test_smtp_without_login(auth: str) -> None:
    # A relay that takes mail without AUTH needs neither a username nor a secret.
    smtp = parse_config(MINIMAL + "    smtp:\n      host: relay.example.org\n" + auth)
    cfg = smtp.accounts[0].smtp
    assert cfg is not None
    assert (cfg.username, cfg.auth) == ("", AuthMethod.NONE)


def test_pop3_options() -> None:
    base = "accounts:\n  a:\n    maildir: /m\n    pop3:\n      host: h.example\n      username: u\n"
    pop3 = parse_config(base).accounts[0].pop3
    assert pop3 is not None
    assert (pop3.interval, pop3.leave_on_server, pop3.folder, pop3.max_size) == (
        600,
        True,
        "INBOX",
        None,
    )
    extra = "      leave_on_server: false\n      max_size: 500K\n      folder: Inbox/pop\n"
    pop3 = parse_config(base + extra).accounts[0].pop3
    assert pop3 is not None
    assert (pop3.leave_on_server, pop3.max_size, pop3.folder) == (False, 500 * 1024, "Inbox/pop")
    pop3 = parse_config(base + "      max_size: 2048\n").accounts[0].pop3
    assert pop3 is not None and pop3.max_size == 2048


def test_account_options() -> None:
    text = MINIMAL.replace(
        "    imap:\n",
        "    from: solo@example.org\n"
        "    max_delete_share: 1\n"
        "    guard_min_messages: 0\n"
        "    on_new_mail: notmuch new --quiet 'a b'\n"
        "    imap:\n",
    )
    text += "      folders: INBOX\n      idle: []\n"
    text += "    smtp: {host: smtp.example.org, username: me, sent_folder: null}\n"
    account = parse_config(text).accounts[0]
    assert account.addresses == ("solo@example.org",)
    assert (account.max_delete_share, account.guard_min_messages) == (1.0, 0)
    assert account.on_new_mail == ("notmuch", "new", "--quiet", "a b")
    assert account.imap is not None
    assert (account.imap.folders, account.imap.idle) == (("INBOX",), ())
    assert account.smtp is not None and account.smtp.sent_folder is None


def test_numeric_looking_text_keeps_its_spelling() -> None:
    text = MINIMAL.replace("username: me", "username: 00123") + "      password: 0777\n"
    imap = parse_config(text).accounts[0].imap
    assert imap is not None
    assert (imap.username, imap.secret.value) == ("00123", "0777")


# --- errors: key path and exact line -------------------------------------------------------------

# MINIMAL spans lines 1-6; imap keys appended start on line 7.
IMAP = MINIMAL


def account_with(line4: str) -> str:
    """MINIMAL with one more account-level key on line 4."""
    return MINIMAL.replace("    imap:\n", f"    {line4}\n    imap:\n")


ERRORS: list[tuple[str, str | None, int, str]] = [
    # (text, key path, line, words the message must contain)
    ("accounts:\n  a: [1, 2\n", None, 3, "YAML syntax error"),
    ("accounts:\n\tx: 1\n", None, 2, "YAML syntax error"),
    ("- a\n- b\n", None, 1, "expected a mapping"),
    ("just text\n", None, 1, "expected a mapping"),
    ("\n# only a comment\n", None, 1, "empty"),
    ("acounts: {}\n", "acounts", 1, 'did you mean "accounts"?'),
    ("state_dir: /s\naccounts: {}\n", "accounts", 2, "no accounts"),
    ("state_dir: /s\naccounts:\n", "accounts", 2, "no accounts"),
    ("accounts:\n  - a:\n      maildir: /m\n", "accounts", 2, "got a list"),
    ("state_dir: /s\n", None, 1, 'missing required key "accounts"'),
    ("state_dir: [a]\naccounts: {}\n", "state_dir", 1, "expected a path, got a list"),
    (MINIMAL.replace("  a:", "  my mail:"), "accounts.my mail", 2, "letters, digits"),
    (MINIMAL.replace("    maildir: /srv/mail/a\n", ""), "accounts.a", 2, '"maildir"'),
    (MINIMAL.replace("imap:", "smtp:"), "accounts.a", 2, "imap: or a pop3:"),
    (MINIMAL + "    pop3: {host: h, username: u}\n", "accounts.a.pop3", 7, "not both"),
    (MINIMAL.replace("      host: imap.example.org\n", ""), "accounts.a.imap", 4, '"host"'),
    (MINIMAL.replace("      username: me\n", ""), "accounts.a.imap", 4, '"username"'),
    (IMAP + "      port: abc\n", "accounts.a.imap.port", 7, "expected an integer, got 'abc'"),
    (IMAP + "      port: true\n", "accounts.a.imap.port", 7, "expected an integer, got true"),
    (IMAP + "      port: 993.0\n", "accounts.a.imap.port", 7, "expected an integer"),
    (IMAP + "      port: 0\n", "accounts.a.imap.port", 7, "between 1 and 65535"),
    (IMAP + "      port: 65536\n", "accounts.a.imap.port", 7, "between 1 and 65535"),
    (IMAP + "      tls: ssl\n", "accounts.a.imap.tls", 7, "implicit, starttls, none"),
    (IMAP + "      tls: false\n", "accounts.a.imap.tls", 7, "implicit, starttls, none"),
    (IMAP + "      auth: plain\n", "accounts.a.imap.auth", 7, "password, xoauth2, oauthbearer"),
    (account_with("layout: mbox"), "accounts.a.layout", 4, "verbatim, maildir++"),
    (account_with("lay_out: verbatim"), "accounts.a.lay_out", 4, 'did you mean "layout"?'),
    (
        IMAP + "      pasword_command: pass x\n",
        "accounts.a.imap.pasword_command",
        7,
        'did you mean "password_command"?',
    ),
    (IMAP + "      host: again.example\n", "accounts.a.imap.host", 7, "duplicate key"),
    (MINIMAL + "  a:\n    maildir: /n\n", "accounts.a", 7, "duplicate key"),
    (
        IMAP + "      password_command: pass x\n      password: y1234\n",
        "accounts.a.imap.password",
        8,
        "only one of",
    ),
    (IMAP + "      token_command: oauth\n", "accounts.a.imap.token_command", 7, "xoauth2"),
    (IMAP + "      auth: xoauth2\n", "accounts.a.imap.auth", 7, "token_command"),
    (
        IMAP + "      auth: oauthbearer\n      password_command: p\n",
        "accounts.a.imap.password_command",
        8,
        "token_command",
    ),
    (IMAP + "      fingerprint: abcdef\n", "accounts.a.imap.fingerprint", 7, "64 hex digits"),
    (
        IMAP + f"      fingerprint: md5:{'a' * 64}\n",
        "accounts.a.imap.fingerprint",
        7,
        "sha256:",
    ),
    (
        IMAP + f"      fingerprint: sha256:{'g' * 64}\n",
        "accounts.a.imap.fingerprint",
        7,
        "64 hex digits",
    ),
    (IMAP + "      allow_plaintext: sure\n", "accounts.a.imap.allow_plaintext", 7, "true or false"),
    (IMAP + "      timeout: -1\n", "accounts.a.imap.timeout", 7, "more than 0"),
    (IMAP + "      timeout: .inf\n", "accounts.a.imap.timeout", 7, "finite"),
    (IMAP + '      poll_interval: "300"\n', "accounts.a.imap.poll_interval", 7, "integer"),
    (IMAP + "      idle_interval: 3600\n", "accounts.a.imap.idle_interval", 7, "1740"),
    (IMAP + "      folders: []\n", "accounts.a.imap.folders", 7, "empty"),
    (
        IMAP + "      folders:\n        - INBOX\n        - [x]\n",
        "accounts.a.imap.folders[1]",
        9,
        "got a list",
    ),
    (IMAP + "      folders: {a: 1}\n", "accounts.a.imap.folders", 7, "list of strings"),
    (
        MINIMAL.replace("imap.example.org", "[a, b]"),
        "accounts.a.imap.host",
        5,
        "expected a host name, got a list",
    ),
    (
        MINIMAL.replace("username: me", "username: yes"),
        "accounts.a.imap.username",
        6,
        "quotes",
    ),
    (MINIMAL.replace("username: me", "username:"), "accounts.a.imap.username", 6, "null"),
    (account_with("max_delete_share: 0"), "accounts.a.max_delete_share", 4, "more than 0"),
    (account_with("max_delete_share: 1.5"), "accounts.a.max_delete_share", 4, "at most 1"),
    (account_with("guard_min_messages: -1"), "accounts.a.guard_min_messages", 4, "at least 0"),
    (account_with("from: nobody"), "accounts.a.from", 4, "not an e-mail address"),
    (account_with("from: [a@b.c, x]"), "accounts.a.from[1]", 4, "not an e-mail address"),
    (account_with('on_new_mail: "say \'hi"'), "accounts.a.on_new_mail", 4, "quotation"),
    (account_with("on_new_mail: []"), "accounts.a.on_new_mail", 4, "empty"),
    (account_with("imap2: {}"), "accounts.a.imap2", 4, 'did you mean "imap"?'),
    (
        "accounts:\n  a:\n    maildir: /m\n    imap: &x\n      <<: *x\n",
        "accounts.a.imap",
        4,
        "refers to",
    ),
    ("accounts:\n  a:\n    <<: [1]\n", "accounts.a.<<", 3, "merge"),
    ("accounts:\n  a: {? [x] : 1}\n", "accounts.a", 2, "plain names"),
    (
        "accounts:\n  a:\n    maildir: /m\n    pop3:\n      host: h\n      username: u\n"
        "      leave_on_server: forever\n",
        "accounts.a.pop3.leave_on_server",
        7,
        "number of days",
    ),
    (
        "accounts:\n  a:\n    maildir: /m\n    pop3:\n      host: h\n      username: u\n"
        "      max_size: 10X\n",
        "accounts.a.pop3.max_size",
        7,
        "10M",
    ),
    (
        "accounts:\n  a:\n    maildir: /m\n    pop3:\n      host: h\n      username: u\n"
        "      folders: [x]\n",
        "accounts.a.pop3.folders",
        7,
        'did you mean "folder"?',
    ),
    (
        MINIMAL + "    smtp:\n      host: s\n      username: u\n      sent_folder: ''\n",
        "accounts.a.smtp.sent_folder",
        10,
        "empty",
    ),
    (
        MINIMAL + "      tls: none\n      allow_plaintext: true\n      ca_file: /ca.pem\n",
        "accounts.a.imap.ca_file",
        9,
        "no effect",
    ),
    # SMTP without login: `auth: none`, or neither username nor a secret.
    (MINIMAL + "      auth: none\n", "accounts.a.imap.auth", 7, "exists only for SMTP"),
    (
        MINIMAL + "    smtp:\n      host: s\n      auth: none\n      username: u\n",
        "accounts.a.smtp.username",
        10,
        "no meaning with auth: none",
    ),
    (
        MINIMAL + "    smtp:\n      host: s\n      auth: none\n      password_command: x\n",
        "accounts.a.smtp.password_command",
        10,
        "no meaning with auth: none",
    ),
    (
        MINIMAL + "    smtp:\n      host: s\n      password_command: x\n",
        "accounts.a.smtp",
        7,
        'missing required key "username"',
    ),
    (
        MINIMAL + "    smtp:\n      host: smtp.example.org\n      tls: none\n",
        "accounts.a.smtp.tls",
        9,
        "your mail in clear text",
    ),
]


@pytest.mark.parametrize(
    ("text", "keypath", "line", "words"),
    ERRORS,
    ids=[f"{case[1]}-{case[3]}" for case in ERRORS],
)
def test_each_mistake_names_key_and_line(
    tmp_path: Path, text: str, keypath: str | None, line: int, words: str
) -> None:
    err, path = error_for(tmp_path, text)
    assert err.path == str(path)
    assert err.line == line
    prefix = f"{path}:{line}: " + (f"{keypath}: " if keypath else "")
    assert str(err).startswith(prefix), str(err)
    assert words in str(err)


def test_unknown_key_without_a_close_match_lists_the_valid_ones(tmp_path: Path) -> None:
    err, _ = error_for(tmp_path, account_with("zzz: 1"))
    assert "valid keys here: " in str(err)
    assert "max_delete_share" in str(err)


def test_parse_config_without_a_path_still_gives_the_line() -> None:
    with pytest.raises(ConfigError) as info:
        parse_config(IMAP + "      port: abc\n")
    assert str(info.value) == "<config>:7: accounts.a.imap.port: expected an integer, got 'abc'"


# --- the example file ----------------------------------------------------------------------------


def test_example_config_is_valid(home: Path, caplog: pytest.LogCaptureFixture) -> None:
    with caplog.at_level(logging.WARNING, logger="syncd.config"):
        cfg = load_config(REPO / "config.example.yaml")
    assert not caplog.records, "the example should not need warnings"
    personal = cfg.account("personal")
    assert personal.imap is not None and personal.smtp is not None
    assert personal.maildir == home / "Mail/personal"
    pop = [a for a in cfg.accounts if a.pop3 is not None]
    assert len(pop) == 1
    # Everything not commented out is the default: removing those keys changes nothing.
    assert personal.imap.port == 993 and personal.imap.tls is TlsMode.IMPLICIT


# --- never anything but ConfigError --------------------------------------------------------------

_KNOWN_WORDS = [
    "accounts",
    "state_dir",
    "maildir",
    "imap",
    "pop3",
    "smtp",
    "host",
    "port",
    "tls",
    "username",
    "password",
    "password_command",
    "token_command",
    "auth",
    "fingerprint",
    "folders",
    "from",
    "max_size",
    "leave_on_server",
    "on_new_mail",
    "outbox",
    "layout",
]
_scalars = (
    st.none()
    | st.booleans()
    | st.integers()
    | st.floats()
    | st.text(max_size=20)
    | st.sampled_from(
        [
            "none",
            "starttls",
            "implicit",
            "maildir++",
            "xoauth2",
            "sha256:" + "ab" * 32,
            "127.0.0.1",
            "~/x",
            "~nosuchuser/x",
            "$HOME/y",
            "${}",
            "10M",
            "*",
            "INBOX",
            "a\0b",
            "/",
            "..",
        ]
    )
    | st.sampled_from(_KNOWN_WORDS)
)
_values = st.recursive(
    _scalars,
    lambda inner: (
        st.lists(inner, max_size=3)
        | st.dictionaries(st.sampled_from(_KNOWN_WORDS) | _scalars, inner, max_size=4)
    ),
    max_leaves=10,
)


def _valid_doc() -> dict[str, Any]:
    doc = yaml.safe_load(FULL)
    assert isinstance(doc, dict)
    return doc


def _parse_or_config_error(text: str) -> None:
    try:
        result = parse_config(text)
    except ConfigError as err:
        assert str(err)
    else:
        assert isinstance(result, Config)


@settings(deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.text() | st.text(alphabet=":-[]{}#&*!|>'\"%@` \n\t,.?~<=aA01\\"))
def test_random_text_gives_config_or_config_error(text: str) -> None:
    _parse_or_config_error(text)


@settings(deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(_values | st.dictionaries(st.sampled_from(["accounts", "state_dir"]), _values))
def test_random_structures_give_config_or_config_error(value: object) -> None:
    _parse_or_config_error(yaml.safe_dump(value, sort_keys=False))


@settings(deadline=None, suppress_health_check=[HealthCheck.too_slow], max_examples=300)
@given(st.data())
def test_mutated_valid_config_gives_config_or_config_error_with_a_line(data: st.DataObject) -> None:
    doc: Any = copy.deepcopy(_valid_doc())
    for _ in range(data.draw(st.integers(1, 3), label="mutations")):
        parent: Any = None
        key: Any = None
        node: Any = doc
        while isinstance(node, dict | list) and node and data.draw(st.booleans()):
            keys = list(node) if isinstance(node, dict) else list(range(len(node)))
            parent, key = node, data.draw(st.sampled_from(keys))
            node = node[key]
        action = data.draw(st.sampled_from(["replace", "delete", "add"]), label="action")
        if parent is None:
            if action == "replace":
                doc = data.draw(_values, label="new document")
            continue
        if action == "replace":
            parent[key] = data.draw(_values, label="new value")
        elif action == "delete":
            del parent[key]
        elif isinstance(parent, dict):
            parent[data.draw(st.sampled_from(_KNOWN_WORDS) | _scalars)] = data.draw(_values)
        else:
            parent.append(data.draw(_values))
    text = yaml.safe_dump(doc, sort_keys=False)
    try:
        result = parse_config(text)
    except ConfigError as err:
        assert err.line is not None and err.line >= 1, str(err)
    else:
        assert isinstance(result, Config)


def test_special_folders_default_custom_and_off():
    from syncd.config import SPECIAL_FOLDERS, parse_config

    def imap(extra: str):
        text = (
            "accounts:\n  a:\n    maildir: /tmp/m-special\n    imap:\n      host: localhost\n"
            "      username: u\n      password_command: echo x\n" + extra
        )
        acct = parse_config(text).accounts[0]
        assert acct.imap is not None
        return acct.imap.special_folders

    assert imap("") == SPECIAL_FOLDERS
    assert imap("      special_folders: false\n") is None
    custom = dict(imap("      special_folders:\n        sent: Gesendet\n") or ())
    assert custom["sent"] == "Gesendet" and custom["trash"] == "Trash"
    with pytest.raises(ConfigError, match=r"special_folders\.outbox"):
        imap("      special_folders:\n        outbox: X\n")


# -- the built-in OAuth2 flow (issue 15) ----------------------------------------------------

OAUTH = """\
accounts:
  work:
    maildir: /srv/mail/work
    oauth2:
      provider: microsoft
      client_id: 9e5f94bc-e8a4-4e73-b8be-63364c29d753
    imap:
      host: outlook.office365.com
      username: me@contoso.com
      auth: xoauth2
    smtp:
      host: smtp.office365.com
      port: 587
      username: me@contoso.com
      auth: xoauth2
"""


def test_oauth2_block_gives_both_servers_the_accounts_flow() -> None:
    from syncd.config import OAuth2Provider

    acct = parse_config(OAUTH).accounts[0]
    oauth = acct.oauth2
    assert oauth is not None and oauth.provider is OAuth2Provider.MICROSOFT
    assert oauth.auth_url == "https://login.microsoftonline.com/common/oauth2/v2.0/authorize"
    assert oauth.token_url == "https://login.microsoftonline.com/common/oauth2/v2.0/token"
    assert oauth.device_url == "https://login.microsoftonline.com/common/oauth2/v2.0/devicecode"
    assert "https://outlook.office.com/IMAP.AccessAsUser.All" in oauth.scopes
    assert "https://outlook.office.com/SMTP.Send" in oauth.scopes
    assert "offline_access" in oauth.scopes
    assert oauth.keyring_key == "work/oauth2-refresh"
    for server in acct.servers:
        assert server.secret.kind is SecretKind.OAUTH2
        assert server.secret.oauth2 == oauth


def test_google_preset_and_a_microsoft_tenant() -> None:
    google = parse_config(OAUTH.replace("microsoft", "google")).accounts[0].oauth2
    assert google is not None
    assert google.auth_url == "https://accounts.google.com/o/oauth2/auth"
    assert google.token_url == "https://oauth2.googleapis.com/token"
    assert google.device_url == "https://oauth2.googleapis.com/device/code"
    assert google.scopes == ("https://mail.google.com/",)
    tenant = OAUTH.replace(
        "      client_id:", "      tenant: contoso.onmicrosoft.com\n      client_id:"
    )
    ms = parse_config(tenant).accounts[0].oauth2
    assert ms is not None
    assert ms.token_url.startswith("https://login.microsoftonline.com/contoso.onmicrosoft.com/")


def test_client_secret_is_kept_out_of_repr() -> None:
    text = OAUTH.replace(
        "      client_id:", "      client_secret: GOCSPX-s3cr3t-value\n      client_id:"
    )
    cfg = parse_config(text)
    assert cfg.accounts[0].oauth2 is not None
    assert cfg.accounts[0].oauth2.client_secret == "GOCSPX-s3cr3t-value"
    assert "GOCSPX" not in repr(cfg)


def test_token_command_wins_over_the_block_per_section() -> None:
    text = OAUTH.replace(
        "      port: 587\n", "      port: 587\n      token_command: pizauth show work\n"
    )
    acct = parse_config(text).accounts[0]
    assert acct.imap is not None and acct.imap.secret.kind is SecretKind.OAUTH2
    assert acct.smtp is not None and acct.smtp.secret.kind is SecretKind.COMMAND


CUSTOM = OAUTH.replace("provider: microsoft", "provider: custom")
NO_BLOCK = OAUTH.replace(OAUTH[OAUTH.index("    oauth2:") : OAUTH.index("    imap:")], "")
OAUTH_ERRORS: list[tuple[str, str, int, str]] = [
    (
        OAUTH.replace("    oauth2:\n      provider: microsoft\n", "    oauth2:\n"),
        "accounts.work.oauth2",
        4,
        '"provider"',
    ),
    (OAUTH.replace("microsoft", "yahoo"), "accounts.work.oauth2.provider", 5, "google, microsoft"),
    (CUSTOM, "accounts.work.oauth2", 4, '"auth_url" (the URL of the server\'s authorization'),
    (
        CUSTOM.replace(
            "      client_id:",
            "      auth_url: https://a/x\n      token_url: https://a/t\n      client_id:",
        ),
        "accounts.work.oauth2",
        4,
        '"scopes"',
    ),
    (
        OAUTH.replace(
            "      client_id:", "      token_url: https://evil.example/t\n      client_id:"
        ),
        "accounts.work.oauth2.token_url",
        6,
        "provider: custom",
    ),
    (
        CUSTOM.replace(
            "      client_id:", "      token_url: http://idp.example/t\n      client_id:"
        ),
        "accounts.work.oauth2.token_url",
        6,
        "https://",
    ),
    (
        OAUTH.replace("microsoft", "google").replace(
            "      client_id:", "      tenant: common\n      client_id:"
        ),
        "accounts.work.oauth2.tenant",
        6,
        "only exists for provider: microsoft",
    ),
    (
        OAUTH.replace(
            "      client_id:",
            "      client_secret: x1234\n      client_secret_command: pass x\n      client_id:",
        ),
        "accounts.work.oauth2.client_secret_command",
        7,
        "only one of",
    ),
    (
        OAUTH.replace(
            "      client_id:", "      refresh_token_store_command: pass insert x\n      client_id:"
        ),
        "accounts.work.oauth2.refresh_token_store_command",
        6,
        "refresh_token_command",
    ),
    (
        OAUTH.replace("      auth: xoauth2\n", ""),
        "accounts.work.oauth2",
        4,
        "no server section uses this oauth2: block",
    ),
    (
        NO_BLOCK,
        "accounts.work.imap.auth",
        7,
        "syncd oauth login work",
    ),
    (
        OAUTH.replace("      provider:", "      providr:"),
        "accounts.work.oauth2.providr",
        5,
        '"provider"',
    ),
]


@pytest.mark.parametrize(("text", "keypath", "line", "words"), OAUTH_ERRORS)
def test_oauth2_config_errors_name_key_line_and_fix(
    text: str, keypath: str, line: int, words: str
) -> None:
    with pytest.raises(ConfigError) as err:
        parse_config(text, Path("/c.yaml"))
    message = str(err.value)
    assert message.startswith(f"/c.yaml:{line}: {keypath}: "), message
    assert words in message, message
