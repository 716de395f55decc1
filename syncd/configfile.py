"""Where the config file is, and what ``syncd sendmail`` keeps of it between calls.

Theory of operation
-------------------
A mail reader runs ``syncd sendmail`` once per message (``git send-email`` of a series, fifty
times in a row), and every call used to parse the config: PyYAML and the config walker cost
several times what queueing the message does. Yet sendmail needs little of the config: per
account its name, the addresses and user names it sends as, its outbox, and whether it has an
``smtp:`` section. These :class:`Routes` are kept in one small file,
``$XDG_CACHE_HOME/syncd/sendmail.json``, together with everything they were derived from:

- the config file's absolute path and its exact text (compared in full, not dated or hashed);
- the value of every environment variable the text can use (each ``$NAME`` and ``${NAME}`` in
  it, ``HOME`` for ``~``, every ``XDG_*`` and ``SYNCD_*``);
- the syncd version and the size and modification time of the parser's source file;
- for a config holding a literal password, that the file was private (so that the warning
  :func:`syncd.config.load_config` gives about a readable one is never skipped).

Any difference, a missing or unreadable file, or another config's entry is a miss: the caller
parses the config in full, with all its checks and error messages, and stores the routes again
(:func:`store`). So the file makes sendmail faster, not different; the only checks a hit skips
are those that look at the file system rather than the text (whether two maildirs are one
directory through a symlink), which were made when the entry was written. The file holds no
secret. It is replaced atomically (a temporary file renamed over it), without fsync: losing it
costs one full parse.

This module is on ``syncd sendmail``'s start-up path: standard library only, and nothing heavy
(``os``, ``re``, ``json``; paths are strings, no pathlib or typing at run time).
"""

from __future__ import annotations

import contextlib
import json
import os
import re

from syncd import __version__

TYPE_CHECKING = False
if TYPE_CHECKING:
    from pathlib import Path
    from typing import Any

    from syncd.config import Config

CACHE_NAME = "sendmail.json"
_FORMAT = 1
_VARIABLE = re.compile(r"\$\{?([A-Za-z_][A-Za-z0-9_]*)")


def _expanduser(path: str) -> str:
    """``os.path.expanduser``, with ``Path.expanduser``'s RuntimeError when there is no home."""
    if not path.startswith("~"):
        return path
    expanded = os.path.expanduser(path)
    if expanded.startswith("~"):
        raise RuntimeError("Could not determine home directory.")
    return expanded


def config_file() -> str:
    """``$SYNCD_CONFIG``, else ``$XDG_CONFIG_HOME/syncd/config.yaml``, else ``~/.config/...``."""
    explicit = os.environ.get("SYNCD_CONFIG")
    if explicit:
        return _expanduser(explicit)
    xdg = os.environ.get("XDG_CONFIG_HOME")
    base = xdg if xdg and os.path.isabs(xdg) else os.path.join(_expanduser("~"), ".config")
    return os.path.join(base, "syncd", "config.yaml")


def default_config_path() -> Path:
    """:func:`config_file` as a Path."""
    from pathlib import Path

    return Path(config_file())


def cache_dir() -> str:
    xdg = os.environ.get("XDG_CACHE_HOME")
    base = xdg if xdg and os.path.isabs(xdg) else os.path.join(_expanduser("~"), ".cache")
    return os.path.join(base, "syncd")


def sender_key(address: str) -> str:
    """How a sender address is compared with an account's ``from:`` and user names."""
    from syncd.drivers.enqueue import simple_address

    simple = simple_address(address)  # parseaddr's answer, without importing the email package
    if simple is not None:
        return simple.casefold()
    from email.utils import parseaddr

    return parseaddr(address)[1].casefold() or address.strip().casefold()


class Route:
    """One account as sendmail sees it."""

    __slots__ = ("name", "outbox", "sends")

    def __init__(self, name: str, outbox: str, sends: bool) -> None:
        self.name = name
        self.outbox = outbox
        self.sends = sends


class Routes:
    """Every account's :class:`Route`, and which account sends as which address."""

    def __init__(self, accounts: list[Route], senders: dict[str, str]) -> None:
        self.accounts = accounts
        self.senders = senders
        """:func:`sender_key` -> account name, as ``Config.account_for_sender`` decides."""

    @classmethod
    def from_config(cls, config: Config) -> Routes:
        accounts = [Route(a.name, str(a.outbox), a.smtp is not None) for a in config.accounts]
        senders: dict[str, str] = {}
        for account in config.accounts:  # from: addresses first, across all accounts...
            for address in account.addresses:
                senders.setdefault(address.casefold(), account.name)
        for account in config.accounts:  # ...then the user names
            for server in (account.smtp, account.imap):
                if server is not None:
                    senders.setdefault(server.username.casefold(), account.name)
        return cls(accounts, senders)

    def named(self, name: str) -> Route | None:
        return next((r for r in self.accounts if r.name == name), None)

    def for_sender(self, address: str) -> Route | None:
        """The account that sends as ``address``, like ``Config.account_for_sender``."""
        name = self.senders.get(sender_key(address))
        return None if name is None else self.named(name)


def read(path: str | os.PathLike[str] | None) -> tuple[str, str] | None:
    """The config file's absolute path and text, or None when it cannot be read as UTF-8."""
    try:
        name = os.fspath(path) if path is not None else config_file()
        # Joined, not normalised: "link/../x" must stay the file it names.
        absolute = name if os.path.isabs(name) else os.path.join(os.getcwd(), name)
        with open(absolute, encoding="utf-8-sig") as f:
            return absolute, f.read()
    except (OSError, UnicodeDecodeError, ValueError, RuntimeError):  # RuntimeError: no home
        return None


def _stamp(path: str, text: str) -> dict[str, Any]:
    """Everything the routes of ``text`` at ``path`` depend on besides the text itself."""
    names = {"HOME", *_VARIABLE.findall(text)}
    names.update(n for n in os.environ if n.startswith(("XDG_", "SYNCD_")))
    try:
        source = os.stat(os.path.join(os.path.dirname(__file__), "config.py"))
        code = [__version__, source.st_size, source.st_mtime_ns]
    except OSError:
        code = [__version__, None, None]
    return {
        "format": _FORMAT,
        "config": path,
        "code": code,
        "env": {n: os.environ.get(n) for n in sorted(names)},
    }


def _private(path: str) -> bool:
    try:
        return not os.stat(path).st_mode & 0o077
    except OSError:
        return False


def lookup(path: str, text: str) -> Routes | None:
    """The stored routes for this exact config text, or None (a miss: parse it in full)."""
    try:
        with open(os.path.join(cache_dir(), CACHE_NAME), encoding="utf-8") as f:
            entry = json.load(f)
        if entry.get("text") != text or entry.get("stamp") != _stamp(path, text):
            return None
        if entry["literal"] and not _private(path):
            return None
        accounts = [Route(str(n), str(o), bool(s)) for n, o, s in entry["accounts"]]
        senders = {str(k): str(v) for k, v in entry["senders"].items()}
    except (OSError, ValueError, KeyError, TypeError, AttributeError, RuntimeError):
        return None
    return Routes(accounts, senders)


def store(path: str, text: str, config: Config) -> Routes:
    """Keep the routes of ``config``, parsed from ``text`` at ``path``; returns them.

    Failing to write is not an error: the next call parses the config again.
    """
    routes = Routes.from_config(config)
    from syncd.config import SecretKind

    literal = any(s.secret.kind is SecretKind.LITERAL for a in config.accounts for s in a.servers)
    if literal and not _private(path):
        return routes  # the full load warns about this file; keep it doing so every time
    entry = {
        "stamp": _stamp(path, text),
        "text": text,
        "literal": literal,
        "accounts": [[r.name, str(r.outbox), r.sends] for r in routes.accounts],
        "senders": routes.senders,
    }
    try:
        directory = cache_dir()
    except RuntimeError:  # no home directory to keep it in
        return routes
    tmp = os.path.join(directory, f".{CACHE_NAME}.{os.getpid()}")
    try:
        os.makedirs(directory, mode=0o700, exist_ok=True)
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(fd, "w", encoding="utf-8") as f:
            json.dump(entry, f)
        os.replace(tmp, os.path.join(directory, CACHE_NAME))
    except OSError:
        with contextlib.suppress(OSError):
            os.unlink(tmp)
    return routes
