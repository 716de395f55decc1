"""The YAML config file, turned into typed, frozen values.

Theory of operation: the file is *composed* with ``yaml.SafeLoader`` (never loaded into Python
objects wholesale), so every value keeps the line it came from. A small walker then reads the node
tree top-down, checking each mapping against the keys it knows, converting each scalar to the type
the key wants, and filling in the defaults from CONTRACT.md. The first mistake raises one
:class:`~syncd.errors.ConfigError` whose text reads ``FILE:LINE: KEY.PATH: what is wrong``, e.g.::

    ~/.config/syncd/config.yaml:12: accounts.personal.imap.port: expected an integer, got 'abc'

Invariants of a returned :class:`Config`:

- every account has a ``maildir`` and exactly one of ``imap``/``pop3``; names match
  ``[A-Za-z0-9_-]+``; no two accounts share or nest a maildir, nor share an outbox;
- every path is absolute, with ``~`` and ``$VARS`` expanded (relative paths are taken from the
  config file's directory);
- every server section has exactly one :class:`SecretSource`; a password never crosses a non-TLS
  connection to a host other than loopback unless ``allow_plaintext: true`` says so (RFC 8314);
- fingerprints are 64 lowercase hex digits.

YAML merge keys (``<<: *anchor``) work, so sections can share settings.
"""

from __future__ import annotations

import difflib
import enum
import ipaddress
import logging
import math
import os
import re
import shlex
from collections.abc import Collection, Iterator
from dataclasses import dataclass, field
from email.utils import parseaddr
from pathlib import Path
from typing import Any, Final, NoReturn, TypeVar

import yaml
from yaml.constructor import SafeConstructor
from yaml.nodes import MappingNode, Node, ScalarNode, SequenceNode

from syncd.configfile import default_config_path, sender_key
from syncd.errors import ConfigError
from syncd.model import Policy

__all__ = [
    "AccountConfig",
    "AuthMethod",
    "Config",
    "ImapConfig",
    "Layout",
    "OAuth2Config",
    "OAuth2Provider",
    "Pop3Config",
    "SecretKind",
    "SecretSource",
    "ServerConfig",
    "SmtpConfig",
    "TlsMode",
    "default_config_path",
    "load_config",
    "parse_config",
]

log = logging.getLogger(__name__)


SPECIAL_FOLDERS: tuple[tuple[str, str], ...] = (
    ("sent", "Sent"),
    ("drafts", "Drafts"),
    ("trash", "Trash"),
    ("junk", "Junk"),
    ("archive", "Archive"),
)
"""Default local names of the server's special-use folders (RFC 6154)."""


class TlsMode(enum.Enum):
    IMPLICIT = "implicit"
    STARTTLS = "starttls"
    NONE = "none"


class Layout(enum.Enum):
    VERBATIM = "verbatim"
    MAILDIRPP = "maildir++"


class AuthMethod(enum.Enum):
    PASSWORD = "password"  # noqa: S105  (the name of a method, not a secret)
    XOAUTH2 = "xoauth2"
    OAUTHBEARER = "oauthbearer"
    APOP = "apop"  # POP3 only: the password never crosses the wire
    NONE = "none"  # SMTP only: a relay that takes mail without login


class SecretKind(enum.Enum):
    KEYRING = "keyring"
    COMMAND = "command"
    LITERAL = "literal"
    OAUTH2 = "oauth2"  # the account's oauth2: block (syncd.oauth)


class OAuth2Provider(enum.Enum):
    GOOGLE = "google"
    MICROSOFT = "microsoft"
    CUSTOM = "custom"


@dataclass(frozen=True, slots=True)
class OAuth2Config:
    """An account's ``oauth2:`` block, with the provider's endpoints and scopes filled in.

    The refresh token is never part of it: it lives in the system keyring (service
    ``syncd``, key ``ACCOUNT/oauth2-refresh``) or comes from ``refresh_token_command``.
    """

    account: str
    provider: OAuth2Provider
    client_id: str
    auth_url: str
    token_url: str
    device_url: str | None
    """None: the provider (or custom server) has no device flow configured."""
    scopes: tuple[str, ...]
    client_secret: str | None = field(default=None, repr=False)
    client_secret_command: str | None = None
    refresh_token_command: str | None = None
    """Reads the refresh token (first line of stdout) instead of the keyring."""
    refresh_token_store_command: str | None = None
    """Gets a new refresh token on its stdin (login, rotation); only with the above."""
    auth_params: tuple[tuple[str, str], ...] = ()
    """Extra query parameters of the authorization URL (the provider's own)."""

    @property
    def keyring_key(self) -> str:
        return f"{self.account}/oauth2-refresh"


@dataclass(frozen=True, slots=True)
class SecretSource:
    """Where a server section's password or OAuth2 token comes from."""

    kind: SecretKind
    keyring_key: str
    """``ACCOUNT/ROLE``: the keyring entry (service ``syncd``); set for every kind."""
    command: str | None = None
    """``password_command`` or ``token_command`` text, run by a shell (COMMAND only)."""
    value: str | None = field(default=None, repr=False)
    """The literal ``password:`` (LITERAL only); kept out of ``repr``."""
    oauth2: OAuth2Config | None = None
    """The account's ``oauth2:`` block (OAUTH2 only)."""


@dataclass(frozen=True, slots=True)
class ServerConfig:
    """What the ``imap:``, ``pop3:`` and ``smtp:`` sections share."""

    role: str
    """``imap``, ``pop3`` or ``smtp``."""
    host: str
    port: int
    tls: TlsMode
    username: str
    auth: AuthMethod
    secret: SecretSource
    ca_file: Path | None
    fingerprint: str | None
    """SHA-256 of the server's DER certificate: 64 lowercase hex digits, or None."""
    allow_plaintext: bool
    timeout: float
    """Seconds a network operation may take."""


@dataclass(frozen=True, slots=True)
class ImapConfig(ServerConfig):
    folders: tuple[str, ...]
    """Glob patterns of folders to sync; ``!Pattern`` excludes."""
    idle: tuple[str, ...]
    """Folders watched with IDLE; the others are polled."""
    poll_interval: int
    idle_interval: int
    """Seconds before an IDLE is re-issued (RFC 2177 asks for less than 29 minutes)."""
    full_check_interval: int = 14400
    """Seconds between the daemon's full reconciliations (every folder listed on both
    sides); in between, it syncs what IDLE, polls and the file watch report."""
    special_folders: tuple[tuple[str, str], ...] | None = SPECIAL_FOLDERS
    tunnel: str | None = None
    """A command speaking IMAP on its stdin/stdout (``ssh host /usr/lib/dovecot/imap``),
    run through the shell, in place of a network connection (mbsync's Tunnel)."""
    """SPECIAL-USE role -> local name (RFC 6154): the server's \\Sent folder, whatever its
    name, is the local folder "Sent". None (``special_folders: false``) keeps server names."""
    namespace: str | None = None
    """The server's personal namespace prefix (``"INBOX."`` on Courier and Cyrus), which
    local folder names leave out; ``""`` for none. None: what NAMESPACE (RFC 2342) says."""
    separator: str | None = None
    """The server's hierarchy separator; None: the one NAMESPACE or LIST says."""


@dataclass(frozen=True, slots=True)
class Pop3Config(ServerConfig):
    interval: int
    leave_on_server: bool | int
    """True (keep forever), False (delete once stored) or a number of days."""
    folder: str
    max_size: int | None
    """Bytes; larger messages are not downloaded. None: no limit."""


@dataclass(frozen=True, slots=True)
class SmtpConfig(ServerConfig):
    sent_folder: str | None
    """Where a copy of each sent message goes; None: keep no copy."""


@dataclass(frozen=True, slots=True)
class AccountConfig:
    name: str
    maildir: Path
    layout: Layout
    imap: ImapConfig | None
    pop3: Pop3Config | None
    smtp: SmtpConfig | None
    outbox: Path
    addresses: tuple[str, ...]
    """The ``from:`` addresses this account sends as (bare ``local@domain``)."""
    max_delete_share: float
    guard_min_messages: int
    on_new_mail: tuple[str, ...] | None
    """argv of a command to run after new mail arrived, or None."""
    oauth2: OAuth2Config | None = None
    """The ``oauth2:`` block: the built-in OAuth2 flow (``syncd oauth login``)."""

    @property
    def policy(self) -> Policy:
        """The mass-deletion guard for this account's folders (``force`` off)."""
        return Policy(
            max_delete_share=self.max_delete_share, guard_min_messages=self.guard_min_messages
        )

    @property
    def servers(self) -> tuple[ServerConfig, ...]:
        """The account's server sections, in the order imap, pop3, smtp."""
        return tuple(s for s in (self.imap, self.pop3, self.smtp) if s is not None)


@dataclass(frozen=True, slots=True)
class Config:
    path: Path | None
    """The file this came from; None when parsed from text."""
    state_dir: Path
    accounts: tuple[AccountConfig, ...]
    """In file order; never empty."""

    def account(self, name: str) -> AccountConfig:
        """The account called ``name``; ConfigError listing the known names otherwise."""
        for account in self.accounts:
            if account.name == name:
                return account
        known = ", ".join(a.name for a in self.accounts)
        raise ConfigError(
            f"no account named {name!r}; the config has: {known}",
            path=str(self.path) if self.path is not None else None,
        )

    def account_for_sender(self, address: str) -> AccountConfig | None:
        """The account that sends as ``address`` (case-insensitive), or None.

        ``from:`` addresses are tried first across all accounts, then the smtp and imap user
        names that look like addresses.
        """
        wanted = sender_key(address)
        for account in self.accounts:
            if any(a.casefold() == wanted for a in account.addresses):
                return account
        for account in self.accounts:
            for server in (account.smtp, account.imap):
                if server is not None and server.username.casefold() == wanted:
                    return account
        return None


def _default_state_dir() -> Path:
    xdg = os.environ.get("XDG_STATE_HOME")
    base = Path(xdg) if xdg and Path(xdg).is_absolute() else Path.home() / ".local" / "state"
    return base / "syncd"


def load_config(path: Path | None = None, *, text: str | None = None) -> Config:
    """Read and check the config file at ``path`` (default: :func:`default_config_path`).

    ``text``: the file's content, when the caller has read it already.
    """
    if path is None:
        path = default_config_path()
    try:
        if text is None:
            text = path.read_text(encoding="utf-8-sig")
    except FileNotFoundError:
        raise ConfigError(
            f"no config file at {path}. Create one there (config.example.yaml in the syncd "
            "sources is a commented starting point), or name another with -c FILE or "
            "$SYNCD_CONFIG."
        ) from None
    except UnicodeDecodeError as exc:
        raise ConfigError(f"the file is not valid UTF-8 ({exc.reason})", path=str(path)) from None
    except OSError as exc:
        raise ConfigError(
            f"cannot read the config file: {exc.strerror or exc}", path=str(path)
        ) from None
    config = parse_config(text, path)
    _warn_if_readable(path, config)
    return config


def _warn_if_readable(path: Path, config: Config) -> None:
    """Warn when a file holding a literal ``password:`` can be read by group or others."""
    literal = any(s.secret.kind is SecretKind.LITERAL for a in config.accounts for s in a.servers)
    if not literal:
        return
    try:
        mode = path.stat().st_mode & 0o777
    except OSError:
        return
    if mode & 0o077:
        log.warning(
            "%s holds a literal password but is readable by %s (mode %03o); "
            "make it private with: chmod 600 %s",
            path,
            "others" if mode & 0o007 else "its group",
            mode,
            shlex.quote(str(path)),
        )


def parse_config(text: str, path: Path | None = None) -> Config:
    """Check ``text`` as a config file and return it as values.

    ``path`` is only used in messages and as the base of relative paths (the current directory
    when None). Raises ConfigError, and nothing else, for any text.
    """
    source = str(path) if path is not None else "<config>"
    try:
        root = yaml.compose(text, Loader=yaml.SafeLoader)
    except yaml.MarkedYAMLError as exc:
        mark = exc.problem_mark or exc.context_mark
        problem = "; ".join(part for part in (exc.context, exc.problem) if part) or "unreadable"
        if "'\\t'" in problem:
            problem += " (indent with spaces; YAML does not allow tabs there)"
        if mark is None:
            raise ConfigError(f"YAML syntax error: {problem}", path=source) from None
        raise ConfigError(
            f"YAML syntax error at column {mark.column + 1}: {problem}",
            path=source,
            line=mark.line + 1,
        ) from None
    except yaml.reader.ReaderError as exc:
        line = text.count("\n", 0, exc.position) + 1
        char = exc.character
        shown = f"U+{char:04X}" if isinstance(char, int) else repr(char)
        raise ConfigError(
            f"the file holds a character YAML does not allow ({shown}); "
            "remove it or write it as a \\u escape in a double-quoted string",
            path=source,
            line=line,
        ) from None
    except yaml.YAMLError as exc:
        raise ConfigError(f"YAML syntax error: {exc}", path=source) from None
    except RecursionError:
        raise ConfigError("the YAML is nested too deeply", path=source) from None
    if root is None:
        raise ConfigError(
            "the config file is empty; it needs at least an accounts: section "
            "(see config.example.yaml)",
            path=source,
            line=1,
        )
    try:
        base_dir = path.absolute().parent if path is not None else Path.cwd()
    except OSError as exc:  # the current directory was removed under us
        raise ConfigError(f"cannot find the current directory: {exc}", path=source) from None
    return _Walker(source, base_dir).config(root, path)


# --- the walker ------------------------------------------------------------------------------

_TAG = "tag:yaml.org,2002:"
_STR: Final = _TAG + "str"
_INT: Final = _TAG + "int"
_FLOAT: Final = _TAG + "float"
_BOOL: Final = _TAG + "bool"
_NULL: Final = _TAG + "null"
_TIMESTAMP: Final = _TAG + "timestamp"
_MERGE: Final = _TAG + "merge"
# Scalars that read as text where text is wanted: `username: 12345` or a folder named 2024 are
# meant literally, and the raw text keeps leading zeros a number would lose.
_TEXT_TAGS: Final = frozenset({_STR, _INT, _FLOAT, _TIMESTAMP})
_PLAIN_TAGS: Final = _TEXT_TAGS | {_BOOL}

_ACCOUNT_NAME: Final = re.compile(r"[A-Za-z0-9_-]+")
_ENV_VAR: Final = re.compile(r"\$(?:\{(?P<braced>[^}]*)\}|(?P<bare>[A-Za-z_][A-Za-z0-9_]*))")
_VAR_NAME: Final = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")
_SIZE: Final = re.compile(r"(?P<n>[0-9]+)\s*(?P<unit>[KMG]?)(?:I?B)?", re.IGNORECASE)
_SIZE_UNITS: Final = {"": 1, "K": 1024, "M": 1024**2, "G": 1024**3}
_HEX64: Final = re.compile(r"[0-9a-f]{64}")

_TOP_KEYS: Final = ("state_dir", "accounts")
_ACCOUNT_KEYS: Final = (
    "maildir",
    "layout",
    "imap",
    "pop3",
    "smtp",
    "outbox",
    "from",
    "max_delete_share",
    "guard_min_messages",
    "on_new_mail",
    "oauth2",
)
_OAUTH2_KEYS: Final = (
    "provider",
    "client_id",
    "client_secret",
    "client_secret_command",
    "tenant",
    "auth_url",
    "token_url",
    "device_url",
    "scopes",
    "refresh_token_command",
    "refresh_token_store_command",
)
_OAUTH2_URL_KEYS: Final = ("auth_url", "token_url", "device_url")
_MICROSOFT: Final = "https://login.microsoftonline.com/{tenant}/oauth2/v2.0/"
_PRESETS: Final[dict[OAuth2Provider, dict[str, Any]]] = {
    # https://developers.google.com/identity/protocols/oauth2/native-app; the Gmail IMAP,
    # POP3 and SMTP scope is https://mail.google.com/ (Google's device flow refuses it).
    OAuth2Provider.GOOGLE: {
        "auth_url": "https://accounts.google.com/o/oauth2/auth",
        "token_url": "https://oauth2.googleapis.com/token",
        "device_url": "https://oauth2.googleapis.com/device/code",
        "scopes": ("https://mail.google.com/",),
        "auth_params": (("access_type", "offline"),),
    },
    # https://learn.microsoft.com/en-us/exchange/client-developer/legacy-protocols/
    # how-to-authenticate-an-imap-pop-smtp-application-by-using-oauth
    OAuth2Provider.MICROSOFT: {
        "auth_url": _MICROSOFT + "authorize",
        "token_url": _MICROSOFT + "token",
        "device_url": _MICROSOFT + "devicecode",
        "scopes": (
            "https://outlook.office.com/IMAP.AccessAsUser.All",
            "https://outlook.office.com/POP.AccessAsUser.All",
            "https://outlook.office.com/SMTP.Send",
            "offline_access",
        ),
        "auth_params": (),
    },
}
_SERVER_KEYS: Final = (
    "host",
    "port",
    "tls",
    "username",
    "auth",
    "password_command",
    "password",
    "token_command",
    "ca_file",
    "fingerprint",
    "allow_plaintext",
    "timeout",
)
_ROLE_KEYS: Final = {
    "imap": (
        "folders",
        "idle",
        "poll_interval",
        "idle_interval",
        "full_check_interval",
        "special_folders",
        "tunnel",
        "namespace",
        "separator",
    ),
    "pop3": ("interval", "leave_on_server", "folder", "max_size"),
    "smtp": ("sent_folder",),
}
_SECRET_KEYS: Final = ("password_command", "password", "token_command")
_OAUTH: Final = (AuthMethod.XOAUTH2, AuthMethod.OAUTHBEARER)

_DEFAULT_TIMEOUT: Final = 60.0
_MAX_IDLE_INTERVAL: Final = 29 * 60

_E = TypeVar("_E", bound=enum.Enum)


def _join(parent: str, key: str) -> str:
    return f"{parent}.{key}" if parent else key


def _line(node: Node) -> int:
    return node.start_mark.line + 1


class _Mapping:
    """One YAML mapping, its keys checked: the node for each key and where it is."""

    def __init__(
        self, keypath: str, line: int, entries: dict[str, tuple[ScalarNode, Node]]
    ) -> None:
        self.keypath = keypath
        self.line = line
        self.entries = entries

    def __contains__(self, key: str) -> bool:
        return key in self.entries

    def __iter__(self) -> Iterator[tuple[str, ScalarNode, Node]]:
        for name, (key_node, value_node) in self.entries.items():
            yield name, key_node, value_node

    def get(self, key: str) -> Node | None:
        entry = self.entries.get(key)
        return entry[1] if entry is not None else None

    def key_line(self, key: str) -> int:
        return _line(self.entries[key][0])

    def path(self, key: str) -> str:
        return _join(self.keypath, key)


class _Walker:
    """Reads one composed document top-down; every method either returns a value or fails."""

    def __init__(self, source: str, base_dir: Path) -> None:
        self.source = source
        self.base_dir = base_dir
        self.account_oauth2: OAuth2Config | None = None
        """The ``oauth2:`` block of the account being read (its server sections use it)."""
        self.lines: dict[str, int] = {}
        """Key path -> line of its key, for errors found after the values are converted."""
        self._constructor = SafeConstructor()

    # --- errors ---

    def fail(self, keypath: str, message: str, line: int | None) -> NoReturn:
        text = f"{keypath}: {message}" if keypath else message
        raise ConfigError(text, path=self.source, line=line)

    def got(self, node: Node) -> str:
        """How a wrong value is shown to the user: "got 'abc'", "got a list"."""
        if isinstance(node, MappingNode):
            return "got a mapping"
        if isinstance(node, SequenceNode):
            return "got a list"
        assert isinstance(node, ScalarNode)
        if node.tag == _NULL:
            return "got nothing (null)"
        if node.tag not in _PLAIN_TAGS:
            # `!!binary ...` or a custom tag: the value may be a secret, so it is not echoed.
            return f"got a value tagged {node.tag.replace(_TAG, '!!')}"
        raw = str(node.value)
        shown = raw if len(raw) <= 60 else raw[:57] + "..."
        return f"got {shown!r}" if node.tag == _STR else f"got {shown}"

    # --- structure ---

    def mapping(
        self, node: Node, keypath: str, known: Collection[str] | None, what: str = ""
    ) -> _Mapping:
        """Check that ``node`` is a mapping of plain keys, none repeated, all in ``known``."""
        if not isinstance(node, MappingNode):
            hint = f" ({what})" if what else ""
            self.fail(keypath, f"expected a mapping{hint}, {self.got(node)}", _line(node))
        line = self.lines.get(keypath, _line(node))
        entries = self._entries(node, keypath, set())
        for name, (key_node, _) in entries.items():
            if known is not None and name not in known:
                self.unknown_key(_join(keypath, name), name, known, _line(key_node))
            self.lines[_join(keypath, name)] = _line(key_node)
        return _Mapping(keypath, line, entries)

    def _entries(
        self, node: MappingNode, keypath: str, active: set[int]
    ) -> dict[str, tuple[ScalarNode, Node]]:
        # Our own merge-key handling (`<<: *defaults`): explicit keys win over merged ones,
        # earlier merge sources over later ones, and a self-referencing anchor is an error
        # rather than endless recursion.
        if id(node) in active:
            self.fail(keypath, "a merge (<<) refers to the mapping it is part of", _line(node))
        active = active | {id(node)}
        merged: dict[str, tuple[ScalarNode, Node]] = {}
        explicit: dict[str, tuple[ScalarNode, Node]] = {}
        for key_node, value_node in node.value:
            if not isinstance(key_node, ScalarNode):
                self.fail(
                    keypath, "keys must be plain names, not lists or mappings", _line(key_node)
                )
            if key_node.tag == _MERGE:
                sources = value_node.value if isinstance(value_node, SequenceNode) else [value_node]
                for source in sources:
                    if not isinstance(source, MappingNode):
                        self.fail(
                            _join(keypath, "<<"),
                            f"a merge needs a mapping or a list of mappings, {self.got(source)}",
                            _line(source),
                        )
                    for name, entry in self._entries(source, keypath, active).items():
                        merged.setdefault(name, entry)
                continue
            name = str(key_node.value)
            if name in explicit:
                first = _line(explicit[name][0])
                self.fail(
                    _join(keypath, name),
                    f"duplicate key {name!r} (first given on line {first}); keep only one",
                    _line(key_node),
                )
            explicit[name] = (key_node, value_node)
        merged.update(explicit)
        return merged

    def unknown_key(self, keypath: str, name: str, known: Collection[str], line: int) -> NoReturn:
        close = difflib.get_close_matches(name, list(known), n=1, cutoff=0.6)
        if close:
            hint = f'did you mean "{close[0]}"?'
        else:
            hint = f"valid keys here: {', '.join(sorted(known))}"
        self.fail(keypath, f"unknown key {name!r}; {hint}", line)

    def require(self, section: _Mapping, key: str) -> Node:
        node = section.get(key)
        if node is None:
            self.fail(section.keypath, f'missing required key "{key}"', section.line)
        return node

    # --- scalars ---

    def value(self, node: Node) -> object:
        """The Python value of a scalar; _INVALID for a collection or a scalar YAML cannot build."""
        if not isinstance(node, ScalarNode):
            return _INVALID
        try:
            return self._constructor.construct_object(node, deep=True)
        except (yaml.YAMLError, ValueError, OverflowError, TypeError, RecursionError):
            # PyYAML itself trips over odd scalars such as `0x_` or `2001-02-30`.
            return _INVALID

    def text(self, node: Node, keypath: str, *, what: str = "a string") -> str:
        if not isinstance(node, ScalarNode) or node.tag not in _TEXT_TAGS:
            hint = " (put it in quotes if you meant the text)" if node.tag == _BOOL else ""
            self.fail(keypath, f"expected {what}, {self.got(node)}{hint}", _line(node))
        text = str(node.value)
        if not text.strip():
            self.fail(keypath, f"expected {what}, got an empty string", _line(node))
        try:
            text.encode("utf-8")
        except UnicodeEncodeError:
            # "\ud800" escapes give lone surrogates that no file name or protocol can carry.
            self.fail(
                keypath, f"{what} cannot hold a lone surrogate (\\uD800-\\uDFFF)", _line(node)
            )
        return text

    def integer(self, node: Node, keypath: str, low: int, high: int | None = None) -> int:
        value = self.value(node)
        # bool is an int in Python, but `port: yes` is a mistake, not 1.
        if not isinstance(value, int) or isinstance(value, bool):
            self.fail(keypath, f"expected an integer, {self.got(node)}", _line(node))
        if value < low or (high is not None and value > high):
            bounds = f"between {low} and {high}" if high is not None else f"at least {low}"
            self.fail(keypath, f"must be {bounds}, {self.got(node)}", _line(node))
        return value

    def number(self, node: Node, keypath: str, low: float, high: float) -> float:
        """A number with ``low < value <= high``."""
        value = self.value(node)
        if not isinstance(value, int | float) or isinstance(value, bool):
            self.fail(keypath, f"expected a number, {self.got(node)}", _line(node))
        if isinstance(value, float) and not math.isfinite(value):
            self.fail(keypath, f"expected a finite number, {self.got(node)}", _line(node))
        if not low < value <= high:
            self.fail(
                keypath,
                f"must be more than {low:g} and at most {high:g}, {self.got(node)}",
                _line(node),
            )
        return float(value)

    def boolean(self, node: Node, keypath: str) -> bool:
        value = self.value(node)
        if not isinstance(value, bool):
            self.fail(keypath, f"expected true or false, {self.got(node)}", _line(node))
        return value

    def choice(self, node: Node, keypath: str, kind: type[_E], what: str) -> _E:
        valid = [str(member.value) for member in kind]
        raw = str(node.value) if isinstance(node, ScalarNode) and node.tag != _NULL else None
        if raw is not None:
            for member in kind:
                if member.value == raw.strip().lower():
                    return member
        shown = repr(raw) if raw is not None else self.got(node).removeprefix("got ")
        close = difflib.get_close_matches(raw.lower(), valid, n=1) if raw is not None else []
        hint = f'; did you mean "{close[0]}"?' if close else ""
        self.fail(
            keypath,
            f"unknown {what} {shown}{hint} (expected one of: {', '.join(valid)})",
            _line(node),
        )

    def strings(self, node: Node, keypath: str, *, allow_empty: bool) -> tuple[str, ...]:
        """A list of strings; a bare string counts as a list of one."""
        if isinstance(node, ScalarNode):
            return (self.text(node, keypath),)
        if not isinstance(node, SequenceNode):
            self.fail(keypath, f"expected a list of strings, {self.got(node)}", _line(node))
        items = tuple(self.text(item, f"{keypath}[{i}]") for i, item in enumerate(node.value))
        if not items and not allow_empty:
            self.fail(keypath, "the list is empty; give at least one entry", _line(node))
        return items

    def path(self, node: Node, keypath: str) -> Path:
        """A path with ``$VARS``/``${VARS}`` and ``~`` expanded, relative to the config file."""
        raw = self.text(node, keypath, what="a path")
        if "\0" in raw:
            self.fail(keypath, "a path cannot contain a NUL character", _line(node))

        def substitute(match: re.Match[str]) -> str:
            name = match.group("braced") if match.group("bare") is None else match.group("bare")
            if not _VAR_NAME.fullmatch(name):
                self.fail(keypath, f"{match.group(0)!r} is not a valid variable name", _line(node))
            value = os.environ.get(name)
            if value is None:
                self.fail(keypath, f"environment variable ${name} is not set", _line(node))
            return value

        expanded = _ENV_VAR.sub(substitute, raw)
        try:
            result = Path(expanded).expanduser()
        except RuntimeError:
            self.fail(keypath, f"cannot expand ~ in {expanded!r}: no such user", _line(node))
        if not result.is_absolute():
            result = self.base_dir / result
        # normpath, not resolve(): keep the user's symlinks in what we show, drop "a/../".
        return Path(os.path.normpath(result))

    # --- sections ---

    def config(self, root: Node, source: Path | None) -> Config:
        top = self.mapping(
            root, "", _TOP_KEYS, what="the config needs an accounts: mapping at the top level"
        )
        state_node = top.get("state_dir")
        state_dir = (
            self.path(state_node, "state_dir") if state_node is not None else _default_state_dir()
        )
        accounts_node = self.require(top, "accounts")
        if isinstance(accounts_node, SequenceNode):
            self.fail(
                "accounts",
                "expected a mapping of account names to their settings, got a list; "
                'write "personal:" rather than "- personal:"',
                _line(accounts_node),
            )
        if isinstance(accounts_node, ScalarNode) and accounts_node.tag == _NULL:
            self.fail(
                "accounts", "no accounts configured; add at least one", top.key_line("accounts")
            )
        accounts_map = self.mapping(accounts_node, "accounts", None, what="account names")
        if not accounts_map.entries:
            self.fail("accounts", "no accounts configured; add at least one", accounts_map.line)
        accounts: list[AccountConfig] = []
        for name, key_node, value_node in accounts_map:
            if not _ACCOUNT_NAME.fullmatch(name):
                self.fail(
                    accounts_map.path(name),
                    f"account name {name!r} may only use letters, digits, '_' and '-'",
                    _line(key_node),
                )
            accounts.append(self.account(name, value_node))
        self.check_overlaps(accounts)
        return Config(path=source, state_dir=state_dir, accounts=tuple(accounts))

    def account(self, name: str, node: Node) -> AccountConfig:
        kp = f"accounts.{name}"
        section = self.mapping(node, kp, _ACCOUNT_KEYS, what="the account's settings")
        maildir = self.path(self.require(section, "maildir"), section.path("maildir"))

        layout = Layout.VERBATIM
        if (layout_node := section.get("layout")) is not None:
            layout = self.choice(layout_node, section.path("layout"), Layout, "layout")

        self.account_oauth2 = None
        if (oauth_node := section.get("oauth2")) is not None:
            self.account_oauth2 = self.oauth2(name, oauth_node, section.path("oauth2"))
        if "imap" in section and "pop3" in section:
            self.fail(
                section.path("pop3"),
                "an account syncs with either imap: or pop3:, not both; "
                "make a second account for the other",
                max(section.key_line("imap"), section.key_line("pop3")),
            )
        imap: ImapConfig | None = None
        pop3: Pop3Config | None = None
        if (imap_node := section.get("imap")) is not None:
            imap = self.imap(name, imap_node, section.path("imap"))
        elif (pop3_node := section.get("pop3")) is not None:
            pop3 = self.pop3(name, pop3_node, section.path("pop3"))
        else:
            self.fail(kp, "an account needs an imap: or a pop3: section", section.line)
        smtp: SmtpConfig | None = None
        if (smtp_node := section.get("smtp")) is not None:
            smtp = self.smtp(name, smtp_node, section.path("smtp"))

        outbox_node = section.get("outbox")
        outbox = (
            self.path(outbox_node, section.path("outbox"))
            if outbox_node is not None
            else maildir / ".outbox"
        )

        addresses: tuple[str, ...] = ()
        if (from_node := section.get("from")) is not None:
            addresses = self.addresses(from_node, section.path("from"))

        max_delete_share = 0.5
        if (share_node := section.get("max_delete_share")) is not None:
            max_delete_share = self.number(share_node, section.path("max_delete_share"), 0, 1)
        guard_min_messages = 20
        if (guard_node := section.get("guard_min_messages")) is not None:
            guard_min_messages = self.integer(guard_node, section.path("guard_min_messages"), 0)

        on_new_mail = None
        if (hook_node := section.get("on_new_mail")) is not None:
            on_new_mail = self.command(hook_node, section.path("on_new_mail"))

        oauth2 = self.account_oauth2
        if oauth2 is not None and not any(
            server.secret.kind is SecretKind.OAUTH2 for server in (imap, pop3, smtp) if server
        ):
            self.fail(
                section.path("oauth2"),
                "no server section uses this oauth2: block; set auth: xoauth2 (or "
                "oauthbearer) in imap:, pop3: or smtp:, or remove the block",
                section.key_line("oauth2"),
            )
        return AccountConfig(
            name=name,
            maildir=maildir,
            layout=layout,
            imap=imap,
            pop3=pop3,
            smtp=smtp,
            outbox=outbox,
            addresses=addresses,
            max_delete_share=max_delete_share,
            guard_min_messages=guard_min_messages,
            on_new_mail=on_new_mail,
            oauth2=oauth2,
        )

    def oauth2(self, account: str, node: Node, kp: str) -> OAuth2Config:
        """The ``oauth2:`` block, with a provider's preset endpoints and scopes filled in."""
        section = self.mapping(node, kp, _OAUTH2_KEYS, what="the account's OAuth2 settings")
        provider = self.choice(
            self.require(section, "provider"), section.path("provider"), OAuth2Provider, "provider"
        )
        client_id = self.text(
            self.require(section, "client_id"), section.path("client_id"), what="a client ID"
        ).strip()
        texts: dict[str, str] = {}
        for key in ("client_secret", "client_secret_command", "tenant"):
            if (value := section.get(key)) is not None:
                texts[key] = self.text(value, section.path(key)).strip()
        for key in ("refresh_token_command", "refresh_token_store_command"):
            if (value := section.get(key)) is not None:
                texts[key] = self.text(value, section.path(key), what="a shell command").strip()
        if "client_secret" in texts and "client_secret_command" in texts:
            self.fail(
                section.path("client_secret_command"),
                "give only one of client_secret and client_secret_command",
                section.key_line("client_secret_command"),
            )
        if "refresh_token_store_command" in texts and "refresh_token_command" not in texts:
            self.fail(
                section.path("refresh_token_store_command"),
                "refresh_token_store_command only works with refresh_token_command (which "
                "reads back what it stored); without both, the token goes into the keyring",
                section.key_line("refresh_token_store_command"),
            )
        if "tenant" in texts and provider is not OAuth2Provider.MICROSOFT:
            self.fail(
                section.path("tenant"),
                "tenant only exists for provider: microsoft; remove it",
                section.key_line("tenant"),
            )
        urls: dict[str, str] = {}
        for key in _OAUTH2_URL_KEYS:
            if (value := section.get(key)) is None:
                continue
            if provider is not OAuth2Provider.CUSTOM:
                self.fail(
                    section.path(key),
                    f"{key} comes from provider: {provider.value}; remove it, or use "
                    "provider: custom to give every endpoint yourself",
                    section.key_line(key),
                )
            urls[key] = self.url(value, section.path(key))
        scopes: tuple[str, ...] | None = None
        if (scopes_node := section.get("scopes")) is not None:
            scopes = self.strings(scopes_node, section.path("scopes"), allow_empty=False)
        params: tuple[tuple[str, str], ...] = ()
        if provider is OAuth2Provider.CUSTOM:
            for key in ("auth_url", "token_url"):
                if key not in urls:
                    self.fail(
                        kp,
                        f'provider: custom needs "{key}" (the URL of the server\'s '
                        f"{'authorization' if key == 'auth_url' else 'token'} endpoint)",
                        section.line,
                    )
            if scopes is None:
                self.fail(
                    kp,
                    'provider: custom needs "scopes" (what the server calls access to mail)',
                    section.line,
                )
        else:
            preset = _PRESETS[provider]
            tenant = texts.get("tenant", "common")
            if not re.fullmatch(r"[A-Za-z0-9._-]+", tenant):
                self.fail(
                    section.path("tenant"),
                    f"expected a tenant ID or domain (or common, organizations, consumers), "
                    f"got {tenant!r}",
                    section.key_line("tenant"),
                )
            urls = {key: str(preset[key]).format(tenant=tenant) for key in _OAUTH2_URL_KEYS}
            scopes = scopes if scopes is not None else tuple(preset["scopes"])
            params = tuple(preset["auth_params"])
        return OAuth2Config(
            account=account,
            provider=provider,
            client_id=client_id,
            auth_url=urls["auth_url"],
            token_url=urls["token_url"],
            device_url=urls.get("device_url"),
            scopes=scopes,
            client_secret=texts.get("client_secret"),
            client_secret_command=texts.get("client_secret_command"),
            refresh_token_command=texts.get("refresh_token_command"),
            refresh_token_store_command=texts.get("refresh_token_store_command"),
            auth_params=params,
        )

    def url(self, node: Node, keypath: str) -> str:
        """An https URL, or http to a loopback host (RFC 8252's rule for tokens)."""
        from urllib.parse import urlsplit

        raw = self.text(node, keypath, what="a URL").strip()
        parts = urlsplit(raw)
        host = parts.hostname or ""
        if parts.scheme == "https" and host:
            return raw
        if parts.scheme == "http" and host and _is_loopback(host):
            return raw
        self.fail(
            keypath,
            f"expected an https:// URL (http:// only to a loopback address), got {raw!r}",
            _line(node),
        )

    def addresses(self, node: Node, keypath: str) -> tuple[str, ...]:
        out: list[str] = []
        items = node.value if isinstance(node, SequenceNode) else [node]
        for i, item in enumerate(items):
            item_path = f"{keypath}[{i}]" if isinstance(node, SequenceNode) else keypath
            raw = self.text(item, item_path, what="an e-mail address")
            address = parseaddr(raw)[1]
            local, at, domain = address.rpartition("@")
            if not (local and at and domain) or any(ch.isspace() for ch in address):
                self.fail(
                    item_path,
                    f"{raw!r} is not an e-mail address (write it as me@example.org)",
                    _line(item),
                )
            out.append(address)
        if not out:
            self.fail(keypath, "the list is empty; give at least one address", _line(node))
        return tuple(out)

    def command(self, node: Node, keypath: str) -> tuple[str, ...] | None:
        if isinstance(node, ScalarNode) and node.tag == _NULL:
            return None
        if isinstance(node, SequenceNode):
            argv = self.strings(node, keypath, allow_empty=False)
        else:
            raw = self.text(node, keypath, what="a command")
            try:
                argv = tuple(shlex.split(raw))
            except ValueError as exc:
                self.fail(keypath, f"cannot split the command into words: {exc}", _line(node))
        if not argv:
            self.fail(keypath, "the command is empty", _line(node))
        return argv

    def server(
        self, account: str, role: str, node: Node, kp: str
    ) -> tuple[_Mapping, dict[str, Any]]:
        """Check the keys every server section shares; returns them as constructor kwargs."""
        known = _SERVER_KEYS + _ROLE_KEYS[role]
        section = self.mapping(node, kp, known, what=f"the {role} server's settings")
        tunnel: str | None = None
        if (tunnel_node := section.get("tunnel")) is not None:
            tunnel = self.text(tunnel_node, section.path("tunnel"), what="a command").strip()
            if not tunnel:
                self.fail(section.path("tunnel"), "the command is empty", _line(tunnel_node))
            for key in ("host", "port", "tls", "ca_file", "fingerprint"):
                if (other := section.get(key)) is not None:
                    self.fail(
                        section.path(key),
                        f"{key} has no meaning with tunnel: (the command is the connection)",
                        _line(other),
                    )
        if tunnel is not None:
            host = "localhost"  # never contacted: the tunnel command is the connection
        else:
            host = self.text(
                self.require(section, "host"), section.path("host"), what="a host name"
            )
        host = host.strip()
        if any(ch.isspace() for ch in host):
            self.fail(
                section.path("host"),
                f"{host!r} is not a host name",
                self.lines[section.path("host")],
            )

        port: int | None = None
        if (port_node := section.get("port")) is not None:
            port = self.integer(port_node, section.path("port"), 1, 65535)
        tls_node = section.get("tls")
        if tls_node is not None:
            tls = self.choice(tls_node, section.path("tls"), TlsMode, "tls mode")
        else:
            tls = _default_tls(role, port)
        if tunnel is not None:
            tls = TlsMode.NONE  # the command's own transport (ssh) protects the session
        if port is None:
            port = _default_port(role, tls)

        auth = AuthMethod.PASSWORD
        if (auth_node := section.get("auth")) is not None:
            auth = self.choice(auth_node, section.path("auth"), AuthMethod, "auth method")
            if auth is AuthMethod.APOP and role != "pop3":
                self.fail(
                    section.path("auth"),
                    "auth: apop exists only for POP3; use password, xoauth2 or oauthbearer",
                    _line(auth_node),
                )
            if auth is AuthMethod.NONE and role != "smtp":
                self.fail(
                    section.path("auth"),
                    f"auth: none exists only for SMTP (a relay that takes mail without "
                    f"login); {role.upper()} always logs in: use password, xoauth2 or "
                    "oauthbearer",
                    _line(auth_node),
                )
        elif role == "smtp" and not any(k in section for k in ("username", *_SECRET_KEYS)):
            auth = AuthMethod.NONE  # neither a user nor a secret: send without login
        if auth is AuthMethod.NONE:
            for key in ("username", *_SECRET_KEYS):
                if (other := section.get(key)) is not None:
                    self.fail(
                        section.path(key),
                        f"{key} has no meaning with auth: none (sending without login); "
                        "remove it, or remove auth: none to log in",
                        _line(other),
                    )
            username = ""
        elif tunnel is not None and section.get("username") is None:
            username = ""  # a tunnel to a preauthenticated IMAP process needs no login
        else:
            username = self.text(
                self.require(section, "username"), section.path("username"), what="a user name"
            )
        if auth is AuthMethod.NONE:
            secret = SecretSource(SecretKind.KEYRING, f"{account}/{role}")  # never asked for
        else:
            secret = self.secret(section, account, role, auth)

        allow_plaintext = False
        if (plain_node := section.get("allow_plaintext")) is not None:
            allow_plaintext = self.boolean(plain_node, section.path("allow_plaintext"))
        if tls is TlsMode.NONE and not allow_plaintext and not _is_loopback(host):
            what = "the OAuth2 token" if auth in _OAUTH else "the password"
            if auth is AuthMethod.NONE:
                what = "your mail"
            self.fail(
                section.path("tls"),
                f"tls: none would send {what} in clear text to {host}; RFC 8314 asks "
                "for TLS on every mail connection. Use tls: implicit or starttls, or set "
                "allow_plaintext: true if the network path is trusted",
                section.key_line("tls"),
            )

        ca_file = None
        if (ca_node := section.get("ca_file")) is not None:
            ca_file = self.path(ca_node, section.path("ca_file"))
        fingerprint = None
        if (fp_node := section.get("fingerprint")) is not None:
            fingerprint = self.fingerprint(fp_node, section.path("fingerprint"))
        for key in ("ca_file", "fingerprint"):
            if tls is TlsMode.NONE and key in section:
                self.fail(
                    section.path(key),
                    f"{key} has no effect with tls: none; remove it or turn TLS on",
                    section.key_line(key),
                )

        timeout = _DEFAULT_TIMEOUT
        if (timeout_node := section.get("timeout")) is not None:
            timeout = self.number(timeout_node, section.path("timeout"), 0, 86400)

        common: dict[str, Any] = {
            "role": role,
            "host": host,
            "port": port,
            "tls": tls,
            "username": username,
            "auth": auth,
            "secret": secret,
            "ca_file": ca_file,
            "fingerprint": fingerprint,
            "allow_plaintext": allow_plaintext,
            "timeout": timeout,
        }
        return section, common

    def secret(self, section: _Mapping, account: str, role: str, auth: AuthMethod) -> SecretSource:
        keyring_key = f"{account}/{role}"
        given = [key for key in _SECRET_KEYS if key in section]
        if len(given) > 1:
            second = max(given, key=section.key_line)
            self.fail(
                section.path(second),
                f"give only one of {', '.join(_SECRET_KEYS)}; this section has "
                f"{' and '.join(given)}",
                section.key_line(second),
            )
        chosen = given[0] if given else None
        if auth in _OAUTH and chosen is None:
            if self.account_oauth2 is None:
                self.fail(
                    section.path("auth"),
                    f"auth: {auth.value} needs an OAuth2 access token: add an oauth2: block to "
                    f"accounts.{account} (provider, client_id; then run `syncd oauth login "
                    f"{account}`), or a token_command here (a command printing a fresh token)",
                    section.key_line("auth"),
                )
            oauth2 = self.account_oauth2
            return SecretSource(SecretKind.OAUTH2, oauth2.keyring_key, oauth2=oauth2)
        if auth in _OAUTH:
            if chosen != "token_command":
                where = chosen if chosen is not None else "auth"
                line = section.key_line(where) if where in section else section.line
                self.fail(
                    section.path(where),
                    f"auth: {auth.value} takes its OAuth2 token from token_command "
                    "(a command printing a fresh access token)"
                    + (f", not from {chosen}" if chosen is not None else "; add one"),
                    line,
                )
        elif chosen == "token_command":
            self.fail(
                section.path("token_command"),
                "token_command only works with auth: xoauth2 or oauthbearer; "
                "for a password use password_command",
                section.key_line("token_command"),
            )
        if chosen is None:
            return SecretSource(SecretKind.KEYRING, keyring_key)
        node = section.entries[chosen][1]
        kp = section.path(chosen)
        if chosen == "password":
            value = self.text(node, kp, what="a password")
            log.warning(
                "%s: a literal password in the config file is discouraged; use "
                "password_command, or store it in the keyring with `syncd password set %s %s`",
                kp,
                account,
                role,
            )
            return SecretSource(SecretKind.LITERAL, keyring_key, value=value)
        command = self.text(node, kp, what="a shell command")
        return SecretSource(SecretKind.COMMAND, keyring_key, command=command)

    def fingerprint(self, node: Node, keypath: str) -> str:
        raw = self.text(node, keypath, what="a fingerprint")
        prefix, colon, digits = raw.strip().partition(":")
        normal = digits.replace(":", "").strip().lower()
        if prefix.lower() != "sha256" or not colon or not _HEX64.fullmatch(normal):
            self.fail(
                keypath,
                "expected sha256: followed by the 64 hex digits of the SHA-256 of the server's "
                f"certificate (colons and case do not matter), {self.got(node)}; "
                "`openssl x509 -noout -fingerprint -sha256 -in CERT` prints it",
                _line(node),
            )
        return normal

    def imap(self, account: str, node: Node, kp: str) -> ImapConfig:
        section, common = self.server(account, "imap", node, kp)
        folders: tuple[str, ...] = ("*",)
        if (folders_node := section.get("folders")) is not None:
            folders = self.strings(folders_node, section.path("folders"), allow_empty=False)
        idle: tuple[str, ...] = ("INBOX",)
        if (idle_node := section.get("idle")) is not None:
            idle = self.strings(idle_node, section.path("idle"), allow_empty=True)
        poll_interval = 300
        if (poll_node := section.get("poll_interval")) is not None:
            poll_interval = self.integer(poll_node, section.path("poll_interval"), 1)
        idle_interval = 1500
        if (reidle_node := section.get("idle_interval")) is not None:
            idle_interval = self.integer(
                reidle_node, section.path("idle_interval"), 1, _MAX_IDLE_INTERVAL
            )
        full_check = 14400
        if (full_node := section.get("full_check_interval")) is not None:
            full_check = self.integer(full_node, section.path("full_check_interval"), 60)
        namespace, separator = self._namespace(section)
        special: tuple[tuple[str, str], ...] | None = SPECIAL_FOLDERS
        if (special_node := section.get("special_folders")) is not None:
            special = self.special_folders(special_node, section.path("special_folders"))
        return ImapConfig(
            **common,
            folders=folders,
            idle=idle,
            poll_interval=poll_interval,
            idle_interval=idle_interval,
            full_check_interval=full_check,
            special_folders=special,
            tunnel=self._tunnel(section),
            namespace=namespace,
            separator=separator,
        )

    def _namespace(self, section: _Mapping) -> tuple[str | None, str | None]:
        """``namespace:`` and ``separator:``, checked against each other."""
        sep: str | None = None
        if (sep_node := section.get("separator")) is not None:
            kp = section.path("separator")
            if not isinstance(sep_node, ScalarNode) or sep_node.tag not in _TEXT_TAGS:
                self.fail(kp, f"expected one character, {self.got(sep_node)}", _line(sep_node))
            sep = str(sep_node.value)
            if len(sep) != 1 or sep.isalnum() or sep.isspace():
                self.fail(
                    kp,
                    f"expected one character that is not a letter, digit or space, like "
                    f'"." or "/" (what the server shows in LIST replies), got {sep!r}',
                    _line(sep_node),
                )
        prefix: str | None = None
        if (ns_node := section.get("namespace")) is not None:
            kp = section.path("namespace")
            if not isinstance(ns_node, ScalarNode) or ns_node.tag not in _TEXT_TAGS:
                self.fail(
                    kp,
                    f'expected the server\'s folder prefix as text, like "INBOX." or "" for '
                    f"none, {self.got(ns_node)}",
                    _line(ns_node),
                )
            prefix = str(ns_node.value)
            if prefix.upper() == "INBOX":
                self.fail(
                    kp,
                    f"{prefix!r} lacks the separator: the prefix is INBOX followed by it, "
                    'like "INBOX." (Courier, Cyrus) or "INBOX/"',
                    _line(ns_node),
                )
            if prefix and sep is not None and not prefix.endswith(sep):
                self.fail(
                    kp,
                    f"{prefix!r} does not end with the separator {sep!r}; write {prefix + sep!r}",
                    _line(ns_node),
                )
        return prefix, sep

    def _tunnel(self, section: _Mapping) -> str | None:
        node = section.get("tunnel")
        return None if node is None else self.text(node, section.path("tunnel")).strip()

    def special_folders(self, node: Node, keypath: str) -> tuple[tuple[str, str], ...] | None:
        """``false`` (keep server names) or a mapping of roles to local folder names."""
        if isinstance(node, ScalarNode) and node.tag == _BOOL:
            return SPECIAL_FOLDERS if self.boolean(node, keypath) else None
        roles = [role for role, _ in SPECIAL_FOLDERS]
        section = self.mapping(node, keypath, roles, "role: local folder name, or false")
        chosen = dict(SPECIAL_FOLDERS)
        for role, _key, value in section:
            chosen[role] = self.text(value, section.path(role), what="a folder name")
        return tuple((role, chosen[role]) for role in roles)

    def pop3(self, account: str, node: Node, kp: str) -> Pop3Config:
        section, common = self.server(account, "pop3", node, kp)
        interval = 600
        if (interval_node := section.get("interval")) is not None:
            interval = self.integer(interval_node, section.path("interval"), 1)
        leave: bool | int = True
        if (leave_node := section.get("leave_on_server")) is not None:
            value = self.value(leave_node)
            if isinstance(value, bool):
                leave = value
            elif isinstance(value, int):
                leave = self.integer(leave_node, section.path("leave_on_server"), 0)
            else:
                self.fail(
                    section.path("leave_on_server"),
                    f"expected true, false or a number of days, {self.got(leave_node)}",
                    _line(leave_node),
                )
        folder = "INBOX"
        if (folder_node := section.get("folder")) is not None:
            folder = self.text(folder_node, section.path("folder"), what="a folder name")
        max_size = None
        if (size_node := section.get("max_size")) is not None:
            max_size = self.size(size_node, section.path("max_size"))
        return Pop3Config(
            **common, interval=interval, leave_on_server=leave, folder=folder, max_size=max_size
        )

    def size(self, node: Node, keypath: str) -> int | None:
        """Bytes, from an integer or a text like ``10M``/``500K`` (binary multiples)."""
        if isinstance(node, ScalarNode) and node.tag == _NULL:
            return None
        value = self.value(node)
        if isinstance(value, int) and not isinstance(value, bool):
            return self.integer(node, keypath, 1)
        match = _SIZE.fullmatch(str(value).strip()) if isinstance(value, str) else None
        if match is None:
            self.fail(
                keypath,
                f"expected a size such as 10M, 500K or 1048576, {self.got(node)}",
                _line(node),
            )
        size = int(match.group("n")) * _SIZE_UNITS[match.group("unit").upper()]
        if size < 1:
            self.fail(keypath, "must be at least 1 byte", _line(node))
        return size

    def smtp(self, account: str, node: Node, kp: str) -> SmtpConfig:
        section, common = self.server(account, "smtp", node, kp)
        sent_folder: str | None = "Sent"
        if (sent_node := section.get("sent_folder")) is not None:
            if isinstance(sent_node, ScalarNode) and sent_node.tag == _NULL:
                sent_folder = None
            else:
                sent_folder = self.text(
                    sent_node, section.path("sent_folder"), what="a folder name"
                )
        return SmtpConfig(**common, sent_folder=sent_folder)

    def check_overlaps(self, accounts: list[AccountConfig]) -> None:
        """No two accounts may share or nest maildirs, or share an outbox."""
        seen: list[tuple[AccountConfig, Path, Path]] = []
        for account in accounts:
            maildir = self.resolve(account.maildir, f"accounts.{account.name}.maildir")
            outbox = self.resolve(account.outbox, f"accounts.{account.name}.outbox")
            for other, other_maildir, other_outbox in seen:
                where = f"accounts.{other.name}"
                if maildir == other_maildir:
                    problem = f"is the same directory as {where}.maildir ({other.maildir})"
                elif maildir.is_relative_to(other_maildir):
                    problem = f"lies inside {where}.maildir ({other.maildir})"
                elif other_maildir.is_relative_to(maildir):
                    problem = f"contains {where}.maildir ({other.maildir})"
                elif outbox == other_outbox:
                    kp = f"accounts.{account.name}.outbox"
                    self.fail(
                        kp,
                        f"{account.outbox} is also the outbox of {where}; "
                        "each account needs its own",
                        self.lines.get(kp, self.lines[f"accounts.{account.name}"]),
                    )
                else:
                    continue
                kp = f"accounts.{account.name}.maildir"
                self.fail(
                    kp,
                    f"{account.maildir} {problem}; each account needs a maildir of its own",
                    self.lines[kp],
                )
            seen.append((account, maildir, outbox))

    def resolve(self, path: Path, keypath: str) -> Path:
        try:
            return path.resolve()
        except (OSError, ValueError, RuntimeError) as exc:
            account = keypath.rsplit(".", 1)[0]
            line = self.lines.get(keypath, self.lines.get(account))
            self.fail(keypath, f"{path} is not a usable path: {exc}", line)


class _Invalid:
    """A scalar that YAML cannot turn into a value; never equal to anything valid."""

    def __repr__(self) -> str:
        return "<invalid>"


_INVALID: Final = _Invalid()


def _default_tls(role: str, port: int | None) -> TlsMode:
    # Never plaintext by default: the standard clear-text ports mean STARTTLS.
    if role == "smtp":
        return TlsMode.IMPLICIT if port == 465 else TlsMode.STARTTLS
    clear_port = 143 if role == "imap" else 110
    return TlsMode.STARTTLS if port == clear_port else TlsMode.IMPLICIT


def _default_port(role: str, tls: TlsMode) -> int:
    implicit, other = {"imap": (993, 143), "pop3": (995, 110), "smtp": (465, 587)}[role]
    return implicit if tls is TlsMode.IMPLICIT else other


def _is_loopback(host: str) -> bool:
    name = host.strip().strip("[]").rstrip(".").lower()
    if name == "localhost":
        return True
    try:
        return ipaddress.ip_address(name).is_loopback
    except ValueError:
        return False
