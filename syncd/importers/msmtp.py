"""``syncd import msmtp``: the accounts of an ``.msmtprc`` as syncd ``smtp:`` sections.

Theory of operation
-------------------
msmtp's file is a list of ``command argument`` lines (``#`` lines are comments; an argument
in double quotes loses the quotes and nothing else). ``defaults`` collects settings every
later ``account`` starts from; ``account NAME : A, B`` also inherits all settings of the
accounts A and B; ``account default : NAME`` names the default account. :func:`parse`
resolves all that into one settings table per account, each setting with its line.

msmtp knows only the sending side, so there are two ways to use the result:

* on its own (:func:`translate`): each msmtp account becomes a syncd account whose
  ``imap:`` section is a guess (``smtp.example.org`` -> ``imap.example.org``), said so in a
  comment and in the issues, since a syncd account needs a server to sync with;
* merged (:func:`merge`) into an existing syncd config, e.g. one made by ``syncd import
  mbsync``: each msmtp account's ``smtp:`` section is added to the syncd account that sends
  as its ``from`` address (or logs in with its ``user``). The existing text is kept line
  for line, comments included; the sections are inserted after each account's last line.

msmtp accounts that differ only in ``from`` (``account freemail2 : freemail`` with another
address) share one ``smtp:`` section; the addresses are listed under ``from:``.
"""

from __future__ import annotations

import re
import string
from dataclasses import dataclass, field
from pathlib import Path
from typing import Final

import yaml
from yaml.nodes import MappingNode, Node, ScalarNode, SequenceNode

from syncd.importers import (
    PLACEHOLDER_USER,
    AccountDraft,
    ImportResult,
    Issue,
    IssueKind,
    ServerDraft,
    account_name,
    finish,
    is_loopback,
    masked,
    server_text,
    tidy_path,
    token_command_note,
)
from syncd.importers.yamlout import scalar

__all__ = ["MsmtpAccount", "Setting", "merge", "parse", "smtp_sections", "translate"]

_SECRETS: Final = frozenset({"password"})
_ON: Final = frozenset({"", "on"})
_ADDRESS: Final = re.compile(r"[^@\s*%]+@[^@\s*%]+")
_NOT_NEEDED: Final = "not needed: "
_REASONS: Final = {
    "domain": _NOT_NEEDED + "syncd greets the server with this machine's name",
    "source_ip": "syncd connects from the default address",
    "proxy_host": "syncd connects directly",
    "proxy_port": "syncd connects directly",
    "socket": "syncd connects over TCP",
    "protocol": "syncd submits over SMTP only",
    "dsn_notify": "syncd asks for no delivery status notifications",
    "dsn_return": "syncd asks for no delivery status notifications",
    "logfile": _NOT_NEEDED + "syncd logs each sent message (journal, or stderr)",
    "logfile_time_format": _NOT_NEEDED + "syncd logs each sent message (journal, or stderr)",
    "syslog": _NOT_NEEDED + "syncd logs each sent message (journal, or stderr)",
    "aliases": "syncd does not expand local aliases",
    "auto_from": "syncd sends with the From: address the message has",
    "maildomain": "syncd sends with the From: address the message has",
    "allow_from_override": _NOT_NEEDED + "`syncd sendmail -f` sets the envelope sender",
    "set_from_header": "syncd sends the message as it is (it adds only a missing Date: and "
    "Message-ID:)",
    "set_date_header": _NOT_NEEDED + "syncd adds a missing Date:",
    "set_msgid_header": _NOT_NEEDED + "syncd adds a missing Message-ID:",
    "remove_bcc_headers": _NOT_NEEDED + "syncd always removes Bcc: before sending",
    "undisclosed_recipients": "syncd sends the headers as they are",
    "ntlmdomain": "syncd has no NTLM login",
    "tls_key_file": "syncd does not send a client certificate",
    "tls_cert_file": "syncd does not send a client certificate",
    "tls_crl_file": _NOT_NEEDED + "certificates are checked with the system's settings",
    "tls_priorities": "syncd uses the system's TLS defaults (TLS 1.2 or newer)",
    "tls_min_dh_prime_bits": "syncd uses the system's TLS defaults (TLS 1.2 or newer)",
    "tls_host_override": "syncd checks the certificate against host",
    "keepbcc": _NOT_NEEDED + "syncd always removes Bcc: before sending",
    "eval": "syncd runs no command while reading its config; write the value itself",
}
_HANDLED: Final = frozenset(
    {
        "host",
        "port",
        "tls",
        "tls_starttls",
        "tls_trust_file",
        "tls_fingerprint",
        "tls_certcheck",
        "auth",
        "user",
        "password",
        "passwordeval",
        "from",
        "timeout",
    }
)
_SERVER_KEYS: Final = ("host", "port", "tls", "tls_starttls", "auth", "user", "password")


@dataclass(frozen=True, slots=True)
class Setting:
    value: str
    line: int
    text: str
    """The source line, stripped (see :meth:`shown`)."""

    def shown(self, key: str) -> str:
        return masked(key) if key in _SECRETS else self.text


@dataclass(slots=True)
class MsmtpAccount:
    name: str
    line: int
    settings: dict[str, Setting] = field(default_factory=dict)
    own: set[str] = field(default_factory=set)
    """Keys set in this account's own lines (not from defaults or parents)."""
    parents: list[str] = field(default_factory=list)


def _argument(rest: str) -> str:
    rest = rest.strip()
    if len(rest) >= 2 and rest.startswith('"') and rest.endswith('"'):
        return rest[1:-1]
    return rest


def parse(text: str) -> tuple[list[MsmtpAccount], str | None, list[Issue]]:
    """The accounts (settings resolved), the default account's target, and the problems."""
    accounts: list[MsmtpAccount] = []
    by_name: dict[str, MsmtpAccount] = {}
    defaults: dict[str, Setting] = {}
    current: dict[str, Setting] | None = None
    account: MsmtpAccount | None = None
    default_target: str | None = None
    issues: list[Issue] = []
    for number, raw in enumerate(text.splitlines(), start=1):
        stripped = raw.strip()
        if not stripped or stripped.startswith("#"):
            continue
        command, _, rest = stripped.partition(" ")
        if "\t" in command:
            command, _, more = command.partition("\t")
            rest = more + " " + rest
        command = command.lower()
        value = _argument(rest)
        if command == "defaults":
            current, account = defaults, None
            continue
        if command == "account":
            name, colon, parents = value.partition(":")
            name = name.strip()
            if not name:
                issues.append(Issue(number, stripped, "an account needs a name; left out"))
                current, account = None, None
                continue
            account = MsmtpAccount(name, number, dict(defaults))
            for parent in (p.strip() for p in parents.split(",") if colon and p.strip()):
                found = by_name.get(parent)
                if found is None:
                    issues.append(
                        Issue(number, stripped, f"there is no account {parent!r} to inherit from")
                    )
                    continue
                account.parents.append(parent)
                account.settings.update(found.settings)
            if name == "default" and colon and len(account.parents) == 1:
                default_target = account.parents[0]
            accounts.append(account)
            by_name[name] = account
            current = account.settings
            continue
        if current is None:
            issues.append(
                Issue(
                    number,
                    masked(command) if command in _SECRETS else stripped,
                    "comes before any account or defaults line; read as a default",
                    IssueKind.NOTE,
                )
            )
            current = defaults
        current[command] = Setting(value, number, stripped)
        if account is not None:
            account.own.add(command)
    return accounts, default_target, issues


@dataclass(slots=True)
class _Smtp:
    """One smtp: section and the msmtp accounts (and addresses) it came from."""

    server: ServerDraft
    accounts: list[MsmtpAccount]
    addresses: list[str]
    key: tuple[str, ...]


class _Translator:
    def __init__(self, issues: list[Issue], home: str, cwd: str) -> None:
        self.issues = issues
        self.home = home
        self.cwd = cwd
        self.reported: set[tuple[int, str]] = set()

    def report(
        self,
        key: str,
        setting: Setting | None,
        reason: str,
        kind: IssueKind = IssueKind.UNTRANSLATED,
        *,
        line: int | None = None,
        construct: str | None = None,
    ) -> None:
        where = setting.line if setting is not None else line
        if setting is not None:
            # A setting from defaults or a parent shows up in every account: say it once.
            if (setting.line, reason) in self.reported:
                return
            self.reported.add((setting.line, reason))
        shown = construct if construct is not None else (setting.shown(key) if setting else "")
        self.issues.append(Issue(where, shown, reason, kind))

    def smtp(self, account: MsmtpAccount) -> _Smtp | None:
        s = account.settings
        host = s.get("host")
        if host is None or not host.value:
            self.report(
                "account",
                None,
                f"msmtp account {account.name} has no host; skipped",
                line=account.line,
                construct=f"account {account.name}",
            )
            return None
        protocol = s.get("protocol")
        if protocol is not None and protocol.value.lower() == "lmtp":
            self.report("protocol", protocol, "syncd submits over SMTP only; account skipped")
            return None
        draft = ServerDraft("smtp", host=host.value)
        tls_on = s["tls"].value.lower() in _ON if "tls" in s else False
        starttls = s["tls_starttls"].value.lower() in _ON if "tls_starttls" in s else True
        if not tls_on:
            if is_loopback(host.value):
                draft.tls = "none"
            else:
                draft.tls = "starttls"
                self.report(
                    "tls",
                    s.get("tls"),
                    f"msmtp sent in clear text; syncd does not send a password in clear text "
                    f"to {host.value} (RFC 8314), so the config asks for STARTTLS; if the "
                    "server has no TLS at all, set tls: none and allow_plaintext: true",
                    line=account.line,
                    construct=s["tls"].text if "tls" in s else f"account {account.name}",
                )
        else:
            draft.tls = "starttls" if starttls else "implicit"
        port_setting = s.get("port")
        port: int | None = None
        if port_setting is not None:
            try:
                port = int(port_setting.value)
            except ValueError:
                port = None
            if port is None or not 0 < port < 65536:
                self.report("port", port_setting, "not a port number; msmtp's default is used")
                port = None
        if port is None:
            port = 465 if draft.tls == "implicit" else 25
            if port == 25:
                draft.explain("port", "msmtp's default; submission is usually 587")
                self.report(
                    "port",
                    None,
                    "no port: msmtp's default, 25, is written; mail submission usually takes 587",
                    IssueKind.NOTE,
                    line=account.line,
                    construct=f"account {account.name}",
                )
        draft.port = port
        self.certificates(account, draft)
        self.login(account, draft)
        timeout = s.get("timeout")
        if timeout is not None and timeout.value.lower() != "off":
            try:
                seconds = int(timeout.value)
            except ValueError:
                seconds = 0
            if 0 < seconds <= 86400:
                draft.timeout = seconds
            else:
                self.report("timeout", timeout, "not a number of seconds; left out")
        for key in sorted(s, key=lambda k: s[k].line):
            if key not in _HANDLED:
                self.report(key, s[key], _REASONS.get(key, "unknown command; left out"))
        addresses: list[str] = []
        sender = s.get("from")
        if sender is not None:
            if _ADDRESS.fullmatch(sender.value):
                addresses.append(sender.value)
            else:
                self.report(
                    "from",
                    sender,
                    "syncd's from: takes plain addresses; a pattern or %-substitution is left "
                    "out (syncd sendmail -a ACCOUNT picks the account instead)",
                )
        identity = tuple(
            s[k].value if k in s else "" for k in (*_SERVER_KEYS, "passwordeval", "tls_fingerprint")
        )
        return _Smtp(draft, [account], addresses, identity)

    def certificates(self, account: MsmtpAccount, draft: ServerDraft) -> None:
        s = account.settings
        if draft.tls == "none":
            for key in ("tls_trust_file", "tls_fingerprint"):
                if key in s:
                    self.report(key, s[key], _NOT_NEEDED + "the connection has no TLS")
            return
        trust = s.get("tls_trust_file")
        if trust is not None and trust.value not in ("", "system"):
            draft.ca_file = tidy_path(trust.value, self.home, self.cwd)
            draft.explain("ca_file", "tls_trust_file")
        fingerprint = s.get("tls_fingerprint")
        if fingerprint is not None and fingerprint.value:
            digits = fingerprint.value.replace(":", "").strip().lower()
            if len(digits) == 64 and all(c in string.hexdigits for c in digits):
                draft.fingerprint = "sha256:" + digits
                draft.explain("fingerprint", "tls_fingerprint")
            else:
                self.report(
                    "tls_fingerprint",
                    fingerprint,
                    "syncd pins SHA-256 fingerprints only (this one is SHA-1 or MD5); the "
                    "certificate is checked against the CAs instead",
                )
        check = s.get("tls_certcheck")
        if check is not None and check.value.lower() == "off":
            self.report(
                "tls_certcheck",
                check,
                "syncd always checks the server's certificate; pin a self-signed one with "
                "fingerprint: sha256:...",
            )

    def login(self, account: MsmtpAccount, draft: ServerDraft) -> None:
        s = account.settings
        auth = s["auth"].value.lower() if "auth" in s else "off"
        user = s.get("user")
        if auth in ("xoauth2", "oauthbearer"):
            draft.auth = auth
        elif auth == "off":
            self.report(
                "auth",
                s.get("auth"),
                "msmtp did not log in; syncd logs in whenever the server offers AUTH (and "
                "sends without login when it does not), so check username",
                line=account.line,
                construct=s["auth"].text if "auth" in s else f"account {account.name}",
            )
        elif auth not in ("", "on", "plain", "login", "scram-sha-1", "scram-sha-256", "cram-md5"):
            self.report("auth", s["auth"], "syncd logs in with a password (or OAuth2)")
        if user is not None and user.value:
            draft.username = user.value
        else:
            sender = s.get("from")
            if sender is not None and _ADDRESS.fullmatch(sender.value):
                draft.username = sender.value
                draft.explain("username", "msmtp had no user; the from address")
            else:
                draft.username = PLACEHOLDER_USER
                draft.explain("username", "put in your user name")
            if auth != "off":
                self.report(
                    "user",
                    None,
                    f"no user; syncd needs one, so username is {draft.username}",
                    line=account.line,
                    construct=f"account {account.name}",
                )
        evaluated = s.get("passwordeval")
        password = s.get("password")
        if evaluated is not None and evaluated.value:
            if draft.auth is not None:
                draft.token_command = evaluated.value
                draft.explain("token_command", "passwordeval")
                self.report(
                    "passwordeval",
                    evaluated,
                    token_command_note(evaluated.value, "ACCOUNT"),
                    IssueKind.NOTE,
                )
            else:
                draft.password_command = evaluated.value
                draft.explain("password_command", "passwordeval")
        elif password is not None and password.value:
            draft.password = password.value
            draft.explain("password", "copied from msmtp; better: syncd password set ACCOUNT smtp")
            self.report(
                "password",
                password,
                "copied as password: (syncd warns about a password in its config); "
                "`syncd password set ACCOUNT smtp` keeps it in the system keyring instead",
                IssueKind.NOTE,
            )
        elif draft.auth is not None:
            self.report(
                "auth",
                s.get("auth"),
                f"auth: {draft.auth} needs a token_command printing a fresh access token; add one",
            )
            draft.auth = None
        elif auth != "off":
            self.report(
                "account",
                None,
                "no password or passwordeval (msmtp used its keyring or ~/.netrc); syncd takes "
                "it from the system keyring: store it with `syncd password set ACCOUNT smtp`",
                IssueKind.NOTE,
                line=account.line,
                construct=f"account {account.name}",
            )


def smtp_sections(
    text: str, *, home: str, cwd: str
) -> tuple[list[tuple[str, ServerDraft, list[str], list[MsmtpAccount]]], list[Issue]]:
    """The distinct smtp: sections of an ``.msmtprc``: (name, section, from addresses,
    msmtp accounts), and the issues."""
    accounts, default_target, issues = parse(text)
    translator = _Translator(issues, home, cwd)
    groups: list[_Smtp] = []
    for account in accounts:
        if account.name == "default" and default_target is not None and not account.own:
            continue  # `account default : NAME` only names the default
        found = translator.smtp(account)
        if found is None:
            continue
        same = next((g for g in groups if g.key == found.key), None)
        if same is None:
            groups.append(found)
            continue
        same.accounts.append(account)
        same.addresses.extend(a for a in found.addresses if a not in same.addresses)
    out: list[tuple[str, ServerDraft, list[str], list[MsmtpAccount]]] = []
    taken: list[str] = []
    for group in groups:
        name = account_name(group.accounts[0].name, taken)
        taken.append(name)
        for field_name, comment in group.server.comments.items():
            group.server.explain(field_name, comment.replace("ACCOUNT", name))
        out.append((name, group.server, group.addresses, group.accounts))
    return out, issues


def _guess_imap(smtp: ServerDraft) -> ServerDraft:
    host = smtp.host or ""
    for prefix in ("smtp.", "mail.", "submission."):
        if host.startswith(prefix):
            guess = ("mail." if prefix == "mail." else "imap.") + host[len(prefix) :]
            break
    else:
        guess = host
    imap = ServerDraft(
        "imap",
        host=guess,
        tls="implicit",
        username=smtp.username,
        password_command=smtp.password_command,
        password=smtp.password,
        auth=smtp.auth,
        token_command=smtp.token_command,
    )
    imap.explain("host", "a guess: msmtp knows only the SMTP server")
    if smtp.password_command or smtp.token_command:
        imap.explain(
            "password_command" if smtp.password_command else "token_command", "the SMTP one; check"
        )
    return imap


def translate(text: str, *, source: str, home: str, cwd: str) -> ImportResult:
    """Translate ``.msmtprc`` text into a config of its own (with guessed ``imap:``)."""
    sections, issues = smtp_sections(text, home=home, cwd=cwd)
    drafts: list[AccountDraft] = []
    for name, server, addresses, accounts in sections:
        imap = _guess_imap(server)
        names = ", ".join(f"{a.name} (line {a.line})" for a in accounts)
        drafts.append(
            AccountDraft(
                name=name,
                maildir=f"~/Mail/{name}",
                imap=imap,
                smtp=server,
                addresses=addresses,
                about=[
                    f"msmtp account {names}. The maildir: and imap: sections are guesses "
                    "(msmtp only sends): replace them, or merge the smtp: section into an "
                    "existing syncd config with `syncd import msmtp --merge CONFIG -o FILE`."
                ],
            )
        )
        issues.append(
            Issue(
                accounts[0].line,
                f"account {accounts[0].name}",
                f"msmtp only sends: the imap: section of syncd account {name} is a guess "
                f"({imap.host}) and its maildir is {drafts[-1].maildir}; check both, or use "
                "--merge with a config from `syncd import mbsync` or `offlineimap`",
                IssueKind.NOTE,
            )
        )
    return finish(drafts, issues, "msmtp", source)


# -- merging into an existing syncd config ------------------------------------------------


def _last_line(node: Node) -> int:
    """The 0-based line where ``node``'s text ends."""
    if isinstance(node, MappingNode | SequenceNode) and not node.flow_style and node.value:
        last = node.value[-1]
        return _last_line(last[1] if isinstance(node, MappingNode) else last)
    end = node.end_mark
    return end.line if end.column > 0 else end.line - 1


def _mapping_get(node: MappingNode, key: str) -> Node | None:
    for key_node, value_node in node.value:
        if isinstance(key_node, ScalarNode) and key_node.value == key:
            assert isinstance(value_node, Node)
            return value_node
    return None


def merge(
    existing: str,
    path: Path | None,
    msmtp_text: str,
    *,
    source: str,
    home: str,
    cwd: str,
) -> ImportResult:
    """``existing`` (a syncd config) with the msmtp accounts' smtp: sections added.

    Each section goes to the account that sends as one of its ``from`` addresses (or whose
    imap/pop3 user name equals the address or msmtp ``user``) and has no ``smtp:`` yet; an
    account without ``from:`` gets the addresses too. ``text`` is None when nothing could
    be merged.
    """
    from syncd.config import parse_config
    from syncd.errors import ConfigError

    sections, issues = smtp_sections(msmtp_text, home=home, cwd=cwd)
    try:
        config = parse_config(existing, path)
        root = yaml.compose(existing, Loader=yaml.SafeLoader)
    except (ConfigError, yaml.YAMLError) as exc:
        issues.append(Issue(None, "", f"the config to merge into is not valid: {exc}"))
        return ImportResult(None, tuple(issues), ())
    assert isinstance(root, MappingNode)
    accounts_node = _mapping_get(root, "accounts")
    assert isinstance(accounts_node, MappingNode)
    lines = existing.splitlines()
    inserts: list[tuple[int, list[str]]] = []
    merged: list[str] = []
    for name, server, addresses, msmtp_accounts in sections:
        first = msmtp_accounts[0]
        wanted = [a.casefold() for a in addresses]
        user = (server.username or "").casefold()
        target = next(
            (
                acct
                for acct in config.accounts
                if any(a.casefold() in wanted for a in acct.addresses)
            ),
            None,
        )
        if target is None:
            target = next(
                (
                    acct
                    for acct in config.accounts
                    for s in (acct.imap, acct.pop3)
                    if s is not None
                    and s.username
                    and (s.username.casefold() in wanted or s.username.casefold() == user)
                ),
                None,
            )
        where = f"account {first.name}"
        if target is None:
            shown = ", ".join(addresses) or "no from address"
            issues.append(
                Issue(
                    first.line,
                    where,
                    f"no syncd account sends as {shown} or logs in as {server.username}; "
                    "not merged (add from: to the account it belongs to, and merge again)",
                )
            )
            continue
        if target.smtp is not None or target.name in merged:
            issues.append(
                Issue(
                    first.line,
                    where,
                    f"syncd account {target.name} has an smtp: section already; left as it is",
                )
            )
            continue
        node = _mapping_get(accounts_node, target.name)
        if not isinstance(node, MappingNode) or node.flow_style or not node.value:
            issues.append(
                Issue(
                    first.line,
                    where,
                    f"syncd account {target.name} is written in flow style ({{...}}); add the "
                    "smtp: section by hand",
                )
            )
            continue
        column = node.value[0][0].start_mark.column
        indent = " " * column
        block = [f"{indent}# smtp: from msmtp {where} (`syncd import msmtp --merge`)"]
        if not target.addresses and addresses:
            block.append(f"{indent}from: [{', '.join(scalar(a, flow=True) for a in addresses)}]")
        for field_name, comment in server.comments.items():
            server.explain(field_name, comment.replace(name, target.name))
        block.extend(indent + line for line in server_text(server, 0))
        inserts.append((_last_line(node) + 1, block))
        merged.append(target.name)
        if name != target.name:
            issues.append(
                Issue(
                    first.line,
                    where,
                    f"merged into syncd account {target.name}",
                    IssueKind.NOTE,
                )
            )
    if not merged:
        return ImportResult(None, tuple(sorted(issues, key=_order)), ())
    for at, block in sorted(inserts, key=lambda item: item[0], reverse=True):
        lines[at:at] = block
    text = "\n".join(lines) + "\n"
    parse_config(text, path)  # the result must be as valid as its parts
    return ImportResult(text, tuple(sorted(issues, key=_order)), tuple(merged))


def _order(issue: Issue) -> tuple[bool, int]:
    return issue.line is None, issue.line or 0
