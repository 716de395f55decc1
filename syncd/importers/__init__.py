"""Importers: turn an mbsync, OfflineIMAP or msmtp config into a syncd config.

Theory of operation
-------------------
Each importer module has one pure function, ``translate(text, ...)``, that reads the other
program's config text and returns an :class:`ImportResult`: the syncd config as commented
YAML (or None when not one account could be made) and the list of :class:`Issue` s, each
construct of the source that could not be carried over and why. The source's secrets are
never part of an issue's text. Nothing in these modules runs a command or evaluates Python;
only :func:`run_import`, :func:`run_merge` and :func:`write_output` (with
:func:`find_source`) touch files, and the command line (``syncd import``) is the only place
that prints. ``msmtp.merge`` adds ``smtp:`` sections to an existing config's text.

The importers share one intermediate form, :class:`AccountDraft` with :class:`ServerDraft`
sections, which :func:`render` lays out through :mod:`syncd.importers.yamlout`. A draft
holds only values syncd's config accepts; every value that the source spelled differently
carries a comment saying where it came from.

Migrating must not download anything twice, so an imported account keeps the folder names
the old tool used (``special_folders: false``: the server's names, as mbsync and OfflineIMAP
have them) and the Maildir layout it wrote; where the layouts differ, an issue says what to
rename before the first sync.
"""

from __future__ import annotations

import enum
import os
import posixpath
import re
import shlex
import tempfile
from collections.abc import Collection, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Final

from syncd.errors import SyncdError
from syncd.importers.yamlout import Field, Map, dump, dump_fields

__all__ = [
    "KINDS",
    "AccountDraft",
    "ImportResult",
    "Issue",
    "IssueKind",
    "ServerDraft",
    "SourceError",
    "account_name",
    "default_sources",
    "find_source",
    "render",
    "run_import",
    "run_merge",
    "shell_path",
    "token_command_note",
    "write_output",
]

KINDS: Final = ("mbsync", "offlineimap", "msmtp")
_NAME_BAD: Final = re.compile(r"[^A-Za-z0-9_-]+")
PLACEHOLDER_USER: Final = "CHANGE-ME"
"""The user name written when the source has none (syncd needs one); always reported."""


class SourceError(SyncdError):
    """The source config cannot be read, or the output cannot be written."""


class IssueKind(enum.Enum):
    UNTRANSLATED = "not translated"
    NOTE = "note"


@dataclass(frozen=True, slots=True)
class Issue:
    """One construct that was not (or only approximately) carried over.

    ``construct`` is the source text with any secret masked; ``line`` its line number (None
    for something about the file as a whole).
    """

    line: int | None
    construct: str
    reason: str
    kind: IssueKind = IssueKind.UNTRANSLATED

    def __str__(self) -> str:
        where = f"line {self.line}: " if self.line is not None else ""
        what = f"`{self.construct}` — " if self.construct else ""
        return f"{self.kind.value}: {where}{what}{self.reason}"


@dataclass(frozen=True, slots=True)
class ImportResult:
    """What an importer made: the config text (None if nothing could be made) and issues."""

    text: str | None
    issues: tuple[Issue, ...]
    accounts: tuple[str, ...]
    """Names of the syncd accounts in ``text``, in order."""


@dataclass(slots=True)
class ServerDraft:
    """One ``imap:`` or ``smtp:`` section to write. Only non-None values are written."""

    role: str
    host: str | None = None
    port: int | None = None
    tls: str | None = None
    tunnel: str | None = None
    username: str | None = None
    auth: str | None = None
    password_command: str | None = None
    token_command: str | None = None
    password: str | None = None
    ca_file: str | None = None
    fingerprint: str | None = None
    timeout: int | None = None
    folders: list[str] | None = None
    idle: list[str] | None = None
    keep_server_names: bool = False
    """Write ``special_folders: false`` (imap only)."""
    namespace: str | None = None
    """The server's personal namespace prefix (imap only; ``""``: none)."""
    separator: str | None = None
    sent_folder: str | None = None
    comments: dict[str, str] = field(default_factory=dict)
    """Key -> comment written after its value."""
    oauth2: dict[str, str] | None = None
    """The account-level ``oauth2:`` block this server's login needs (OfflineIMAP's
    ``oauth2_*`` keys); written on the account, not in this section."""

    def explain(self, key: str, text: str) -> None:
        """Say after ``key``'s value where it came from."""
        self.comments[key] = text


@dataclass(slots=True)
class AccountDraft:
    """One syncd account to write."""

    name: str
    maildir: str
    layout: str = "verbatim"
    imap: ServerDraft | None = None
    smtp: ServerDraft | None = None
    addresses: list[str] = field(default_factory=list)
    about: list[str] = field(default_factory=list)
    """Comment paragraphs written above the account."""
    comments: dict[str, str] = field(default_factory=dict)


_SERVER_ORDER: Final = (
    "tunnel",
    "host",
    "port",
    "tls",
    "username",
    "auth",
    "password_command",
    "token_command",
    "password",
    "ca_file",
    "fingerprint",
    "timeout",
    "namespace",
    "separator",
    "folders",
    "idle",
    "sent_folder",
)


def _server_map(server: ServerDraft) -> Map:
    section = Map()
    for key in _SERVER_ORDER:
        value = getattr(server, key)
        if value is None:
            continue
        section.add(key, value, server.comments.get(key))
    if server.keep_server_names:
        section.add(
            "special_folders",
            False,
            server.comments.get(
                "special_folders", "keep the server's folder names, as the old tool did"
            ),
        )
    return section


def render(accounts: Sequence[AccountDraft], header: Sequence[str]) -> str:
    """The syncd config for ``accounts``, with ``header`` as its opening comment."""
    doc = Map()
    section = doc.child("accounts")
    for draft in accounts:
        body = section.child(draft.name, above=draft.about)
        body.add("maildir", draft.maildir, draft.comments.get("maildir"))
        body.add("layout", draft.layout, draft.comments.get("layout"))
        if draft.addresses:
            body.add("from", list(draft.addresses), draft.comments.get("from"))
        for server in (draft.imap, draft.smtp):
            if server is not None and server.oauth2:
                block = body.child(
                    "oauth2",
                    above=[
                        "The built-in OAuth2 flow: run `syncd oauth login "
                        f"{draft.name}` once to store a refresh token in the system keyring."
                    ],
                )
                for key, value in server.oauth2.items():
                    block.add(key, value)
                break
        for server in (draft.imap, draft.smtp):
            if server is not None:
                body.fields.append(
                    Field(server.role, _server_map(server), draft.comments.get(server.role))
                )
    return dump(doc, header)


def server_text(server: ServerDraft, level: int) -> list[str]:
    """The lines of one server section (``smtp:`` and its keys) at ``level`` (for merging)."""
    doc = Map()
    doc.fields.append(Field(server.role, _server_map(server)))
    return dump_fields(doc, level)


def account_name(raw: str, taken: Collection[str]) -> str:
    """A syncd account name (``[A-Za-z0-9_-]+``) for ``raw``, unlike any in ``taken``."""
    base = _NAME_BAD.sub("-", raw).strip("-") or "account"
    name, n = base, 2
    while name in taken:
        name, n = f"{base}-{n}", n + 1
    return name


def shell_path(path: str) -> str:
    """``path`` quoted for a shell, keeping a leading ``~/`` expandable."""
    if path.startswith("~/"):
        return "~/" + shlex.quote(path[2:])
    return shlex.quote(path)


def expand(path: str, home: str) -> str:
    """``path`` with a leading ``~`` or ``~/`` replaced by ``home``, normalized (no I/O)."""
    if path == "~" or path.startswith("~/"):
        path = home + path[1:]
    return posixpath.normpath(path) if path else path


def tidy_path(path: str, home: str, cwd: str) -> str:
    """A path as a syncd config should hold it: ``~/...`` kept, relative made absolute.

    The source tools read relative paths against the directory they run in; syncd reads
    them against the config file's directory, so they are made absolute here.
    """
    if path == "~" or path.startswith("~/"):
        rest = os.path.normpath(path[2:]) if len(path) > 2 else ""
        return "~" if rest in ("", ".") else f"~/{rest}"
    if path.startswith("~"):
        return path  # ~user/...: syncd expands it the same way
    if not posixpath.isabs(path):
        path = posixpath.join(cwd, path)
    return posixpath.normpath(path)


def is_loopback(host: str) -> bool:
    """The same test syncd's config applies before it allows ``tls: none``."""
    import ipaddress

    name = host.strip().strip("[]").rstrip(".").lower()
    if name == "localhost":
        return True
    try:
        return ipaddress.ip_address(name).is_loopback
    except ValueError:
        return False


def is_gmail(host: str | None) -> bool:
    return host is not None and host.lower().rstrip(".").endswith(("gmail.com", "googlemail.com"))


GMAIL_ALL_MAIL: Final = "[Gmail]/All Mail"


def header(kind: str, source: str) -> list[str]:
    """The opening comment of an imported config."""
    return [
        f"syncd config imported from {source} by `syncd import {kind}`. The original file "
        "was not changed.",
        "Check it with `syncd check -c THIS-FILE`; `syncd sync -c THIS-FILE --dry-run` then "
        "shows what the first sync would do. On a Maildir the old tool filled, it should "
        "only match messages (`N matched`), never download or upload them again.",
    ]


def finish(
    drafts: Sequence[AccountDraft], issues: Sequence[Issue], kind: str, source: str
) -> ImportResult:
    """The result of an import: the rendered config (None without accounts) and the issues
    in line order (those about the whole file last)."""
    ordered = sorted(issues, key=lambda i: (i.line is None, i.line or 0))
    if not drafts:
        return ImportResult(None, tuple(ordered), ())
    return ImportResult(
        render(drafts, header(kind, source)), tuple(ordered), tuple(d.name for d in drafts)
    )


def masked(key: str) -> str:
    """How a source line holding a secret is shown: the key and ``********``."""
    return f"{key} ********"


# -- file I/O --------------------------------------------------------------------------


def default_sources(kind: str, home: Path, env: Mapping[str, str]) -> list[Path]:
    """Where ``kind`` reads its config by default, in the order the tool tries them."""
    xdg_raw = env.get("XDG_CONFIG_HOME", "")
    xdg = Path(xdg_raw) if xdg_raw and Path(xdg_raw).is_absolute() else home / ".config"
    if kind == "mbsync":
        return [home / ".mbsyncrc", xdg / "isyncrc"]
    if kind == "offlineimap":
        return [home / ".offlineimaprc", xdg / "offlineimap" / "config"]
    if kind == "msmtp":
        return [home / ".msmtprc", xdg / "msmtp" / "config"]
    raise ValueError(f"unknown importer {kind!r}")


def _read(path: Path) -> str:
    try:
        return path.read_text(encoding="utf-8", errors="surrogateescape")
    except FileNotFoundError:
        raise SourceError(f"{path}: no such file") from None
    except IsADirectoryError:
        raise SourceError(f"{path} is a directory, not a config file") from None
    except OSError as exc:
        raise SourceError(f"cannot read {path}: {exc.strerror or exc}") from None


def find_source(kind: str, path: Path | None, *, home: Path, env: Mapping[str, str]) -> Path:
    """``path``, or the first of :func:`default_sources` that exists; SourceError if none."""
    if path is not None:
        return path
    candidates = default_sources(kind, home, env)
    for candidate in candidates:
        if candidate.is_file():
            return candidate
    tried = " or ".join(str(c) for c in candidates)
    raise SourceError(f"no {kind} config found at {tried}; name the file: syncd import {kind} FILE")


def run_import(
    kind: str,
    path: Path | None,
    *,
    home: Path | None = None,
    env: Mapping[str, str] | None = None,
    cwd: Path | None = None,
) -> tuple[Path, ImportResult]:
    """Read the ``kind`` config at ``path`` (or its default place) and translate it.

    The source file is only read. Returns the file used and the result; SourceError when
    it cannot be read.
    """
    home = home if home is not None else Path.home()
    env = env if env is not None else os.environ
    cwd = cwd if cwd is not None else Path.cwd()
    source = find_source(kind, path, home=home, env=env)
    text = _read(source)
    shown = str(source)
    if kind == "mbsync":
        from syncd.importers import mbsync

        return source, mbsync.translate(text, source=shown, home=str(home), cwd=str(cwd))
    if kind == "offlineimap":
        from syncd.importers import offlineimap

        pythonfile = offlineimap.pythonfile_of(text)
        helper = None
        if pythonfile is not None:
            helper_path = Path(expand(pythonfile, str(home)))
            if not helper_path.is_absolute():
                helper_path = cwd / helper_path
            try:
                helper = helper_path.read_text(encoding="utf-8")
            except (OSError, UnicodeDecodeError):
                helper = None
        local_dirs: dict[str, list[str]] = {}
        for root in offlineimap.local_roots(text, home=str(home), cwd=str(cwd)):
            try:
                local_dirs[root] = sorted(
                    entry.name
                    for entry in os.scandir(root)
                    if entry.is_dir(follow_symlinks=False) and Path(entry.path, "cur").is_dir()
                )
            except OSError:
                continue
        return source, offlineimap.translate(
            text,
            source=shown,
            home=str(home),
            cwd=str(cwd),
            pythonfile_text=helper,
            local_dirs=local_dirs,
        )
    if kind == "msmtp":
        from syncd.importers import msmtp

        return source, msmtp.translate(text, source=shown, home=str(home), cwd=str(cwd))
    raise ValueError(f"unknown importer {kind!r}")


def write_output(path: Path, text: str, *, force: bool, protect: Sequence[Path] = ()) -> None:
    """Write ``text`` to ``path`` atomically with mode 0600 (it may hold a password).

    An existing file is replaced only with ``force``; a file in ``protect`` (the source
    config) never is. SourceError says why when it cannot be written.
    """
    try:
        target = path.resolve()
        for original in protect:
            if original.exists() and target == original.resolve():
                raise SourceError(
                    f"{path} is the file being imported; syncd never changes it. "
                    "Write the syncd config elsewhere with -o FILE"
                )
    except OSError as exc:
        raise SourceError(f"cannot use {path}: {exc.strerror or exc}") from None
    if path.exists() and not force:
        raise SourceError(f"{path} exists; add --force to replace it")
    directory = path.parent
    try:
        fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=directory)
    except OSError as exc:
        raise SourceError(f"cannot write in {directory}: {exc.strerror or exc}") from None
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as out:
            out.write(text)
            out.flush()
            os.fsync(out.fileno())
        Path(tmp).replace(path)
    except OSError as exc:
        Path(tmp).unlink(missing_ok=True)
        raise SourceError(f"cannot write {path}: {exc.strerror or exc}") from None


def run_merge(
    path: Path | None,
    config: Path,
    *,
    home: Path | None = None,
    env: Mapping[str, str] | None = None,
    cwd: Path | None = None,
) -> tuple[Path, ImportResult]:
    """Read the msmtp config at ``path`` (or its default place) and the syncd ``config``;
    return the config text with the msmtp accounts' ``smtp:`` sections merged in."""
    from syncd.importers import msmtp

    home = home if home is not None else Path.home()
    env = env if env is not None else os.environ
    cwd = cwd if cwd is not None else Path.cwd()
    source = find_source("msmtp", path, home=home, env=env)
    text = _read(source)
    existing = _read(config)
    return source, msmtp.merge(
        existing, config, text, source=str(source), home=str(home), cwd=str(cwd)
    )


_TOKEN_HELPERS: Final = (
    ("mutt_oauth2", "mutt's mutt_oauth2.py"),
    ("pizauth", "pizauth"),
    ("oama", "oama"),
    ("oauth2ms", "oauth2ms"),
    ("oauth2token", "oauth2token"),
)


def token_command_note(command: str, account: str) -> str:
    """What an import says when it keeps an OAuth2 helper's command as ``token_command``."""
    helper = next((name for key, name in _TOKEN_HELPERS if key in command), "that command")
    return (
        f"OAuth2: kept as token_command ({helper} goes on getting and refreshing the "
        f"tokens); to drop the helper, give the account an oauth2: block (provider, "
        f"client_id) instead and run `syncd oauth login {account}` (README: OAuth2)"
    )
