"""``syncd import offlineimap``: an ``.offlineimaprc`` as a syncd config.

Theory of operation
-------------------
OfflineIMAP reads its config with Python's ``configparser`` (``%(name)s`` interpolation,
a ``[DEFAULT]`` section), so this module does too. Each account named in ``[general]
accounts`` joins a ``[Repository]`` of ``type = Maildir`` (the local side, under
``localfolders``) with one of ``type = IMAP`` or ``Gmail`` (the server). Server settings
map onto syncd's one by one; the Maildir maps onto layout ``verbatim`` rooted at
``localfolders``, which is exact with ``sep = /``. With OfflineIMAP's default ``sep = .``
a sub-folder ``Lists/python`` lives in the directory ``Lists.python``, which no syncd
layout reads, so the result says which directories to rename before the first sync.

Several settings are Python code: ``remotepasseval``, ``folderfilter``, ``nametrans``.
None of it is ever run. It is parsed with :mod:`ast` and translated only where the meaning
is plain:

* ``remotepasseval`` that runs a shell command (``subprocess.check_output("pass x",
  shell=True)``, an argument list, ``subprocess.getoutput``, ``os.popen(...).read()``,
  with ``.strip()``/``.decode()`` around it) becomes ``password_command``; so does a call of
  a function from ``pythonfile`` (``get_pass("x")``) whose body is a single ``return`` of
  such a call, with the call's literal arguments put in;
* ``folderfilter`` lambdas testing membership in a literal list, equality, or
  ``startswith`` (and their negations, joined with ``and``/``or``) become ``folders:``
  patterns.

Everything else is reported, never guessed.
"""

from __future__ import annotations

import ast
import configparser
import re
import shlex
import string
import warnings
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Final

from syncd.importers import (
    GMAIL_ALL_MAIL,
    PLACEHOLDER_USER,
    AccountDraft,
    ImportResult,
    Issue,
    IssueKind,
    ServerDraft,
    account_name,
    expand,
    finish,
    is_gmail,
    is_loopback,
    masked,
    shell_path,
    tidy_path,
)
from syncd.planner.folders import folder_selected

__all__ = [
    "local_roots",
    "pythonfile_of",
    "translate",
    "translate_folderfilter",
    "translate_passeval",
]

_HEADER: Final = re.compile(r"\[(?P<name>[^\]]+)\]")
_OPTION: Final = re.compile(r"(?P<key>[^\s=:#;][^=:]*?)\s*[=:]")
_SECRETS: Final = frozenset({"remotepass", "remotepasseval", "oauth2_client_secret"}) | {
    "oauth2_refresh_token",
    "oauth2_access_token",
}
_NOT_NEEDED: Final = "not needed: "
_ACCOUNT_REASONS: Final = {
    "autorefresh": _NOT_NEEDED + "`syncd run` gets new mail at once (IDLE) and polls the "
    "other folders every poll_interval",
    "quick": _NOT_NEEDED + "syncd skips unchanged folders on every run",
    "presynchook": "syncd runs no hook before a sync",
    "postsynchook": "syncd has on_new_mail (a command run after new mail arrived) instead",
    "maxsize": "syncd copies every message whole",
    "maxage": "syncd syncs every message of a folder",
    "startdate": "syncd syncs every message of a folder",
    "synclabels": "syncd does not sync Gmail labels (they stay on the server)",
    "labelsheader": "syncd does not sync Gmail labels (they stay on the server)",
    "ignorelabels": "syncd does not sync Gmail labels (they stay on the server)",
    "filterheaders": "syncd stores messages unchanged",
    "proxy": "syncd connects directly (or through tunnel:)",
    "authproxy": "syncd connects directly (or through tunnel:)",
    "utime_from_header": "syncd sets a file's time from the server's arrival date",
}
_LOCAL_REASONS: Final = {
    "restoreatime": _NOT_NEEDED + "syncd does not change folder times",
    "utime_from_header": "syncd sets a file's time from the server's arrival date",
    "filename_use_mail_timestamp": _NOT_NEEDED + "syncd names new files itself",
    "sync_deletes": "syncd always propagates deletions both ways",
    "fsync": _NOT_NEEDED + "syncd always flushes new mail to disk before it records it",
    "createfolders": "syncd creates a new folder on the other side whichever side it appears on",
    "readonly": "syncd always syncs both ways",
    "folderfilter": "a filter on the local side has no syncd equivalent; the server side's "
    "folderfilter becomes folders:",
    "nametrans": "syncd names local folders as the server does, so folders renamed by "
    "nametrans are not adopted: rename their directories to the server's names before the "
    "first sync, or they are downloaded again",
    "folderincludes": "syncd syncs the folders its folders: patterns select",
    "foldersort": _NOT_NEEDED + "syncd's order of folders does not matter",
}
_OAUTH2_REASON: Final = (
    "syncd's built-in OAuth2 flow reads it only with auth_mechanisms = XOAUTH2 and an "
    "oauth2_client_id"
)
_OAUTH2_KEYS: Final = frozenset(
    {
        "oauth2_request_url",
        "oauth2_client_id",
        "oauth2_client_id_eval",
        "oauth2_client_secret",
        "oauth2_client_secret_eval",
        "oauth2_refresh_token",
        "oauth2_refresh_token_eval",
        "oauth2_access_token",
        "oauth2_access_token_eval",
    }
)
_REMOTE_REASONS: Final = {
    "ssl_version": "syncd always uses TLS 1.2 or newer",
    "tls_level": "syncd always uses TLS 1.2 or newer",
    "sslclientcert": "syncd does not log in with a client certificate",
    "sslclientkey": "syncd does not log in with a client certificate",
    "remote_identity": "syncd has no proxy authorization (authzid)",
    "decodefoldernames": _NOT_NEEDED + "syncd always decodes folder names (UTF-8 on disk)",
    "usecompression": "syncd does not use COMPRESS",
    "maxconnections": _NOT_NEEDED + "syncd uses one connection per account, plus one per "
    "idle: folder",
    "holdconnectionopen": _NOT_NEEDED + "`syncd run` keeps its connections open",
    "keepalive": _NOT_NEEDED + "`syncd run` keeps its connections alive",
    "singlethreadperfolder": _NOT_NEEDED + "syncd syncs one folder at a time",
    "expunge": "syncd always propagates deletions both ways: a message removed on one side "
    "is removed on the other, and the deleted mark (T, \\Deleted) is synced as a flag",
    "subscribedonly": "syncd syncs every folder its folders: patterns select, subscribed or not",
    "nametrans": "syncd names local folders as the server does, so folders renamed by "
    "nametrans are not adopted: rename their directories to the server's names before the "
    "first sync, or they are downloaded again",
    "folderincludes": "syncd syncs the folders its folders: patterns select; add them there",
    "createfolders": "syncd creates a new folder on the other side whichever side it appears on",
    "sync_deletes": "syncd always propagates deletions both ways",
    "readonly": "syncd always syncs both ways",
    "foldersort": _NOT_NEEDED + "syncd's order of folders does not matter",
    "newmail_hook": "Python code is not run; syncd's on_new_mail runs a command after new "
    "mail arrived",
    "copy_ignore_eval": "syncd copies every message",
    "ipv6": _NOT_NEEDED + "syncd uses whatever address the host name has",
    "retrycount": _NOT_NEEDED + "syncd retries with backoff on its own",
    "dynamic_folderfilter": _NOT_NEEDED + "syncd checks folders: on every sync",
    "trashfolder": _NOT_NEEDED + "syncd syncs the Trash folder like any other",
    "spamfolder": _NOT_NEEDED + "syncd syncs the Spam folder like any other",
    "oauth2_request_url": _OAUTH2_REASON,
    "oauth2_client_id": _OAUTH2_REASON,
    "oauth2_client_id_eval": _OAUTH2_REASON,
    "oauth2_client_secret": _OAUTH2_REASON,
    "oauth2_client_secret_eval": _OAUTH2_REASON,
    "oauth2_refresh_token": _OAUTH2_REASON,
    "oauth2_refresh_token_eval": _OAUTH2_REASON,
    "oauth2_access_token": _OAUTH2_REASON,
    "oauth2_access_token_eval": _OAUTH2_REASON,
}
_HANDLED_REMOTE: Final = frozenset(
    {
        "type",
        "remotehost",
        "remotehosteval",
        "remoteport",
        "remoteporteval",
        "remoteuser",
        "remoteusereval",
        "remotepass",
        "remotepasseval",
        "remotepassfile",
        "ssl",
        "starttls",
        "sslcacertfile",
        "cert_fingerprint",
        "auth_mechanisms",
        "preauthtunnel",
        "transporttunnel",
        "folderfilter",
        "idlefolders",
        "sep",
        "nametrans",
        "reference",
    }
)
_HANDLED_LOCAL: Final = frozenset({"type", "localfolders", "sep", "nametrans"})
_HANDLED_ACCOUNT: Final = frozenset({"localrepository", "remoterepository"})
_SHELL_FUNCS: Final = frozenset({"check_output", "getoutput", "run", "popen", "getstatusoutput"})
_STRIP_METHODS: Final = frozenset({"strip", "rstrip", "lstrip", "decode"})


# -- reading the file --------------------------------------------------------------------


@dataclass(slots=True)
class _Ini:
    parser: configparser.ConfigParser
    lines: dict[tuple[str, str], int] = field(default_factory=dict)
    sections: dict[str, int] = field(default_factory=dict)
    own: dict[str, list[str]] = field(default_factory=dict)
    """Section -> the option names written in it (not inherited from DEFAULT), in order."""


def _scan(text: str) -> tuple[dict[tuple[str, str], int], dict[str, int], dict[str, list[str]]]:
    lines: dict[tuple[str, str], int] = {}
    sections: dict[str, int] = {}
    own: dict[str, list[str]] = {}
    current = ""
    for number, raw in enumerate(text.splitlines(), start=1):
        if not raw or raw[0].isspace() or raw.lstrip().startswith(("#", ";")):
            continue
        head = _HEADER.fullmatch(raw.strip())
        if head is not None:
            current = head.group("name")
            sections[current] = number
            own.setdefault(current, [])
            continue
        option = _OPTION.match(raw)
        if option is not None:
            key = option.group("key").strip().lower()
            lines[(current, key)] = number
            if key not in own.setdefault(current, []):
                own[current].append(key)
    return lines, sections, own


def _read(text: str) -> tuple[_Ini | None, str | None]:
    parser = configparser.ConfigParser(
        interpolation=configparser.BasicInterpolation(), strict=False
    )
    try:
        parser.read_string(text)
    except configparser.Error as exc:
        return None, str(exc).splitlines()[0]
    lines, sections, own = _scan(text)
    return _Ini(parser, lines, sections, own), None


def local_roots(text: str, *, home: str, cwd: str) -> list[str]:
    """The Maildir roots (``localfolders``, ``~`` expanded) the file names; no I/O."""
    ini, _ = _read(text)
    if ini is None:
        return []
    roots: list[str] = []
    for section in ini.parser.sections():
        if not section.startswith("Repository "):
            continue
        try:
            value = ini.parser.get(section, "localfolders", fallback=None)
        except configparser.Error:
            value = None
        if value and value.strip():
            roots.append(expand(tidy_path(value.strip(), home, cwd), home))
    return roots


def pythonfile_of(text: str) -> str | None:
    """The ``[general] pythonfile`` setting (the helper with ``get_pass()`` and the like)."""
    ini, _ = _read(text)
    if ini is None or not ini.parser.has_option("general", "pythonfile"):
        return None
    try:
        return ini.parser.get("general", "pythonfile").strip() or None
    except configparser.Error:
        return None


# -- Python expressions, read but never run ----------------------------------------------


def _string(node: ast.expr, env: Mapping[str, str]) -> str | None:
    """The value of a string expression built from literals and ``env`` names, or None."""
    if isinstance(node, ast.Constant) and isinstance(node.value, str):
        return node.value
    if isinstance(node, ast.Name):
        return env.get(node.id)
    if isinstance(node, ast.BinOp) and isinstance(node.op, ast.Add):
        left, right = _string(node.left, env), _string(node.right, env)
        return left + right if left is not None and right is not None else None
    if isinstance(node, ast.JoinedStr):
        parts: list[str] = []
        for value in node.values:
            if isinstance(value, ast.Constant) and isinstance(value.value, str):
                parts.append(value.value)
            elif (
                isinstance(value, ast.FormattedValue)
                and value.conversion == -1
                and value.format_spec is None
            ):
                inner = _string(value.value, env)
                if inner is None:
                    return None
                parts.append(inner)
            else:
                return None
        return "".join(parts)
    if isinstance(node, ast.BinOp) and isinstance(node.op, ast.Mod):
        template = _string(node.left, env)
        if template is None or re.search(r"%[^s%]", template):
            return None
        items = node.right.elts if isinstance(node.right, ast.Tuple) else [node.right]
        values = [_string(item, env) for item in items]
        if any(v is None for v in values) or template.count("%s") != len(values):
            return None
        return template % tuple(values)
    if (
        isinstance(node, ast.Call)
        and isinstance(node.func, ast.Attribute)
        and node.func.attr == "format"
        and not node.keywords
    ):
        template = _string(node.func.value, env)
        if template is None:
            return None
        fields = [f for _, f, _, _ in string.Formatter().parse(template) if f is not None]
        if any(f not in ("",) and not f.isdigit() for f in fields):
            return None
        args = [_string(a, env) for a in node.args]
        if any(a is None for a in args):
            return None
        try:
            return template.format(*args)
        except (IndexError, ValueError):
            return None
    return None


def _call_name(func: ast.expr) -> str | None:
    if isinstance(func, ast.Name):
        return func.id
    if (
        isinstance(func, ast.Attribute)
        and isinstance(func.value, ast.Name)
        and func.value.id in ("subprocess", "os", "sp")
    ):
        return func.attr
    return None


def _unwrap(node: ast.expr) -> ast.expr:
    """Strip ``.strip()``, ``.decode()``, ``[:-1]``, ``.splitlines()[0]``, ``.stdout``."""
    while True:
        if (
            isinstance(node, ast.Call)
            and isinstance(node.func, ast.Attribute)
            and node.func.attr in _STRIP_METHODS
        ):
            node = node.func.value
        elif isinstance(node, ast.Subscript):
            inner = node.value
            if (
                isinstance(inner, ast.Call)
                and isinstance(inner.func, ast.Attribute)
                and inner.func.attr in ("splitlines", "split")
            ):
                node = inner.func.value
            elif isinstance(node.slice, ast.Slice | ast.Constant):
                node = inner
            else:
                return node
        elif isinstance(node, ast.Attribute) and node.attr == "stdout":
            node = node.value
        else:
            return node


def _shell_call(node: ast.expr, env: Mapping[str, str]) -> str | None:
    """The shell command a ``subprocess``/``os.popen`` call runs, or None."""
    node = _unwrap(node)
    if (
        isinstance(node, ast.Call)
        and isinstance(node.func, ast.Attribute)
        and node.func.attr == "read"
        and isinstance(node.func.value, ast.Call)
    ):
        node = node.func.value  # os.popen(cmd).read()
    if not isinstance(node, ast.Call) or not node.args:
        return None
    name = _call_name(node.func)
    if name not in _SHELL_FUNCS:
        return None
    shell = name in ("getoutput", "getstatusoutput", "popen") or any(
        kw.arg == "shell" and isinstance(kw.value, ast.Constant) and kw.value.value is True
        for kw in node.keywords
    )
    first = node.args[0]
    if isinstance(first, ast.List | ast.Tuple):
        if shell:
            return None
        words = [_string(item, env) for item in first.elts]
        if not words or any(w is None for w in words):
            return None
        return shlex.join(w for w in words if w is not None)
    command = _string(first, env)
    if command is None or not shell:
        # One string without shell=True is a program name alone.
        return shlex.quote(command) if command is not None and " " not in command else None
    return command


def _helper_call(node: ast.expr, helpers: str | None) -> tuple[str | None, str | None]:
    """A call of a ``pythonfile`` function that only runs a command: (command, name)."""
    node = _unwrap(node)
    if not isinstance(node, ast.Call) or not isinstance(node.func, ast.Name) or not helpers:
        return None, None
    name = node.func.id
    try:
        module = ast.parse(helpers)
    except (SyntaxError, ValueError):
        return None, name
    func = next(
        (item for item in module.body if isinstance(item, ast.FunctionDef) and item.name == name),
        None,
    )
    if func is None:
        return None, name
    body = list(func.body)
    if (
        body
        and isinstance(body[0], ast.Expr)
        and isinstance(body[0].value, ast.Constant)
        and isinstance(body[0].value.value, str)
    ):
        body = body[1:]
    if len(body) != 1 or not isinstance(body[0], ast.Return) or body[0].value is None:
        return None, name
    params = [a.arg for a in func.args.args]
    defaults = func.args.defaults
    env: dict[str, str] = {}
    for param, default in zip(params[len(params) - len(defaults) :], defaults, strict=True):
        value = _string(default, {})
        if value is not None:
            env[param] = value
    if len(node.args) > len(params):
        return None, name
    for param, arg in zip(params, node.args, strict=False):
        value = _string(arg, {})
        if value is None:
            return None, name
        env[param] = value
    for kw in node.keywords:
        value = _string(kw.value, {}) if kw.arg is not None else None
        if value is None or kw.arg not in params:
            return None, name
        env[kw.arg] = value
    if any(p not in env for p in params):
        return None, name
    return _shell_call(body[0].value, env), name


def translate_passeval(expr: str, helpers: str | None = None) -> tuple[str, str] | None:
    """``remotepasseval`` as ("command", CMD) or ("literal", TEXT); None if not plain.

    ``helpers`` is the text of ``pythonfile``, where ``get_pass()``-style functions live.
    """
    try:
        node = ast.parse(expr.strip(), mode="eval").body
    except (SyntaxError, ValueError):
        return None
    if isinstance(node, ast.Constant) and isinstance(node.value, str):
        return "literal", node.value
    command = _shell_call(node, {})
    if command is None:
        command, _ = _helper_call(node, helpers)
    return ("command", command) if command else None


def _condition(node: ast.expr, var: str) -> tuple[list[str], list[str]] | None:
    """(include globs, exclude globs) equivalent to ``node``; None when not plain."""
    if isinstance(node, ast.UnaryOp) and isinstance(node.op, ast.Not):
        inner = _condition(node.operand, var)
        if inner is None:
            return None
        include, exclude = inner
        if include and not exclude:
            return [], include
        if exclude and not include:
            return exclude, []
        return None
    if isinstance(node, ast.BoolOp):
        parts = [_condition(v, var) for v in node.values]
        if any(p is None for p in parts):
            return None
        found = [p for p in parts if p is not None]
        includes = [x for inc, _ in found for x in inc]
        excludes = [x for _, exc in found for x in exc]
        if isinstance(node.op, ast.Or):
            return (includes, []) if not excludes else None
        if sum(1 for inc, _ in found if inc) > 1:
            return None  # two include tests that must both hold: no glob says that
        return includes, excludes
    if isinstance(node, ast.Compare) and len(node.ops) == 1:
        op, left, right = node.ops[0], node.left, node.comparators[0]
        if isinstance(right, ast.Name) and right.id == var and isinstance(op, ast.Eq | ast.NotEq):
            left, right = right, left
        if not (isinstance(left, ast.Name) and left.id == var):
            return None
        if isinstance(op, ast.In | ast.NotIn):
            if not isinstance(right, ast.List | ast.Tuple | ast.Set):
                return None
            names = [_string(e, {}) for e in right.elts]
            if any(n is None or not _literal(n) for n in names):
                return None
            clean = [n for n in names if n is not None]
            return (clean, []) if isinstance(op, ast.In) else ([], clean)
        if isinstance(op, ast.Eq | ast.NotEq):
            name = _string(right, {})
            if name is None or not _literal(name):
                return None
            return ([name], []) if isinstance(op, ast.Eq) else ([], [name])
        return None
    if (
        isinstance(node, ast.Call)
        and isinstance(node.func, ast.Attribute)
        and node.func.attr == "startswith"
        and isinstance(node.func.value, ast.Name)
        and node.func.value.id == var
        and len(node.args) == 1
        and not node.keywords
    ):
        arg = node.args[0]
        items = arg.elts if isinstance(arg, ast.Tuple) else [arg]
        prefixes = [_string(i, {}) for i in items]
        if any(p is None or not _literal(p) for p in prefixes):
            return None
        return [f"{p}*" for p in prefixes if p is not None], []
    return None


def _literal(name: str) -> bool:
    """A folder name a glob can match exactly: one without ``*`` or ``?``."""
    return "*" not in name and "?" not in name


_REGEX_META: Final = frozenset("^$*+?{}[]()|\\")


def _literal_regex(text: str) -> str | None:
    """The text a regex without operators matches ("INBOX\\." -> "INBOX."), else None.
    An unescaped "." is read as itself, as people mean it in a folder prefix."""
    out: list[str] = []
    chars = iter(text)
    for c in chars:
        if c == "\\":
            nxt = next(chars, "")
            if not nxt or nxt.isalnum():
                return None
            out.append(nxt)
        elif c in _REGEX_META:
            return None
        else:
            out.append(c)
    return "".join(out)


def _str_arg(node: ast.expr) -> str | None:
    return node.value if isinstance(node, ast.Constant) and isinstance(node.value, str) else None


def _parse_quietly(expr: str) -> ast.expr | None:
    # '^INBOX\.' in a plain string is an invalid escape, which Python only warns about
    # (and keeps the backslash): the usual way nametrans is written.
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        try:
            return ast.parse(expr.strip(), mode="eval").body
        except (SyntaxError, ValueError):
            return None


def translate_nametrans_prefix(expr: str) -> str | None:
    """The prefix a remote ``nametrans`` strips, if it does only that: ``lambda f:
    re.sub('^INBOX\\.', '', f)`` or ``f.removeprefix('INBOX.')``; None otherwise."""
    node = _parse_quietly(expr)
    if not isinstance(node, ast.Lambda) or len(node.args.args) != 1:
        return None
    var = node.args.args[0].arg
    call = node.body
    if not isinstance(call, ast.Call) or not isinstance(call.func, ast.Attribute) or call.keywords:
        return None
    func, args = call.func, call.args
    is_var = [isinstance(a, ast.Name) and a.id == var for a in args]
    if (
        func.attr == "sub"
        and isinstance(func.value, ast.Name)
        and func.value.id == "re"
        and len(args) == 3
        and is_var[2]
        and _str_arg(args[1]) == ""
    ):
        pattern = _str_arg(args[0])
        if pattern is None or not pattern.startswith("^"):
            return None
        prefix = _literal_regex(pattern[1:])
        return prefix or None
    if (
        func.attr == "removeprefix"
        and isinstance(func.value, ast.Name)
        and func.value.id == var
        and len(args) == 1
    ):
        return _str_arg(args[0]) or None
    return None


def translate_nametrans_add(expr: str) -> str | None:
    """The prefix a local ``nametrans`` puts back, if it does only that: ``lambda f:
    'INBOX.' + f``; None otherwise."""
    node = _parse_quietly(expr)
    if not isinstance(node, ast.Lambda) or len(node.args.args) != 1:
        return None
    body = node.body
    if (
        isinstance(body, ast.BinOp)
        and isinstance(body.op, ast.Add)
        and isinstance(body.right, ast.Name)
        and body.right.id == node.args.args[0].arg
    ):
        return _str_arg(body.left) or None
    return None


def translate_folderfilter(expr: str) -> list[str] | None:
    """A ``folderfilter`` lambda as syncd ``folders:`` patterns; None if not plain."""
    try:
        node = ast.parse(expr.strip(), mode="eval").body
    except (SyntaxError, ValueError):
        return None
    if not isinstance(node, ast.Lambda) or len(node.args.args) != 1:
        return None
    var = node.args.args[0].arg
    found = _condition(node.body, var)
    if found is None:
        return None
    includes, excludes = found
    return list(dict.fromkeys([*(includes or ["*"]), *(f"!{x}" for x in excludes)]))


# -- the translation ---------------------------------------------------------------------


class _Translator:
    def __init__(
        self,
        ini: _Ini,
        issues: list[Issue],
        home: str,
        cwd: str,
        helpers: str | None,
        local_dirs: Mapping[str, Sequence[str]] | None,
    ) -> None:
        self.ini = ini
        self.issues = issues
        self.home = home
        self.cwd = cwd
        self.helpers = helpers
        self.local_dirs = local_dirs or {}

    def line(self, section: str, key: str | None = None) -> int | None:
        if key is None:
            return self.ini.sections.get(section)
        return self.ini.lines.get((section, key), self.ini.lines.get(("DEFAULT", key)))

    def shown(self, section: str, key: str) -> str:
        if key in _SECRETS:
            return masked(key + " =")
        return f"{key} = {self.raw(section, key)}"

    def raw(self, section: str, key: str) -> str:
        try:
            value = self.ini.parser.get(section, key, raw=True)
        except configparser.Error:
            return ""
        one_line = " ".join(value.split())
        return one_line if len(one_line) <= 80 else one_line[:77] + "..."

    def get(self, section: str, key: str) -> str | None:
        parser = self.ini.parser
        if not parser.has_option(section, key):
            return None
        try:
            return parser.get(section, key)
        except configparser.Error as exc:
            self.report(section, key, f"cannot be read ({exc.message}); the raw text is used")
            return parser.get(section, key, raw=True)

    def boolean(self, section: str, key: str, default: bool) -> bool:
        value = self.get(section, key)
        if value is None:
            return default
        lowered = value.strip().lower()
        if lowered in configparser.ConfigParser.BOOLEAN_STATES:
            return configparser.ConfigParser.BOOLEAN_STATES[lowered]
        self.report(section, key, f"not true or false; {default} is used")
        return default

    def report(
        self,
        section: str,
        key: str | None,
        reason: str,
        kind: IssueKind = IssueKind.UNTRANSLATED,
    ) -> None:
        construct = self.shown(section, key) if key is not None else f"[{section}]"
        self.issues.append(Issue(self.line(section, key), construct, reason, kind))

    def leftovers(self, section: str, handled: frozenset[str], reasons: Mapping[str, str]) -> None:
        for key in self.ini.own.get(section, []):
            if key in handled:
                continue
            reason = reasons.get(key) or "unknown option; left out"
            self.report(section, key, reason)

    def accounts(self) -> list[str]:
        parser = self.ini.parser
        listed = parser.get("general", "accounts", fallback=None)
        if listed is None:
            names = [s[len("Account ") :] for s in parser.sections() if s.startswith("Account ")]
            self.issues.append(
                Issue(
                    self.line("general"),
                    "[general]",
                    "no accounts = line; every [Account ...] section is imported",
                    IssueKind.NOTE,
                )
            )
            return names
        return [n.strip() for n in listed.split(",") if n.strip()]

    def translate(self) -> list[AccountDraft]:
        drafts: list[AccountDraft] = []
        taken: list[str] = []
        for general_key in self.ini.own.get("general", []):
            if general_key not in ("accounts", "pythonfile", "metadata"):
                self.report("general", general_key, _general_reason(general_key))
        if "mbnames" in self.ini.sections and self.boolean("mbnames", "enabled", False):
            self.report(
                "mbnames",
                None,
                "syncd does not write the mailboxes file itself: run `syncd mailboxes "
                "--format mutt` (or neomutt, aerc) and source its output",
            )
        for name in self.accounts():
            draft = self.account(name, taken)
            if draft is not None:
                drafts.append(draft)
                taken.append(draft.name)
        return drafts

    def account(self, name: str, taken: Sequence[str]) -> AccountDraft | None:
        section = f"Account {name}"
        parser = self.ini.parser
        if not parser.has_section(section):
            self.issues.append(
                Issue(
                    self.line("general", "accounts"),
                    f"accounts = {name}",
                    f"there is no [{section}] section; account skipped",
                )
            )
            return None
        self.leftovers(section, _HANDLED_ACCOUNT, _ACCOUNT_REASONS)
        local_name = self.get(section, "localrepository")
        remote_name = self.get(section, "remoterepository")
        if not local_name or not remote_name:
            self.report(section, None, "localrepository or remoterepository is missing; skipped")
            return None
        local, remote = f"Repository {local_name}", f"Repository {remote_name}"
        for repo in (local, remote):
            if not parser.has_section(repo):
                self.report(section, None, f"there is no [{repo}] section; skipped")
                return None
        maildir = self.local(local)
        if maildir is None:
            return None
        root, layout_issue = maildir
        imap = self.remote(remote)
        if imap is None:
            return None
        account = account_name(name, taken)
        for field_name, comment in imap.comments.items():
            imap.explain(field_name, comment.replace("ACCOUNT", account))
        if account != name:
            self.report(section, None, f"the syncd account is called {account}", IssueKind.NOTE)
        if layout_issue is not None:
            self.issues.append(layout_issue)
        return AccountDraft(
            name=account,
            maildir=root,
            layout="verbatim",
            imap=imap,
            about=[f"[{section}] (line {self.line(section)}): [{local}] and [{remote}]"],
            comments={"maildir": "localfolders"},
        )

    def local(self, section: str) -> tuple[str, Issue | None] | None:
        kind = (self.get(section, "type") or "").strip()
        if kind.lower() not in ("maildir", "gmailmaildir"):
            self.report(
                section,
                "type",
                "syncd syncs an IMAP server with a Maildir; this local repository is not a "
                "Maildir, so the account is skipped",
            )
            return None
        if kind.lower() == "gmailmaildir":
            self.report(
                section,
                "type",
                "read as a Maildir; syncd does not sync Gmail labels (they stay on the server)",
                IssueKind.NOTE,
            )
        folders = self.get(section, "localfolders")
        if not folders:
            self.report(section, None, "localfolders is missing; account skipped")
            return None
        self.leftovers(section, _HANDLED_LOCAL, _LOCAL_REASONS)
        local_trans = self.get(section, "nametrans")
        if local_trans is not None:
            if translate_nametrans_add(local_trans) is not None:
                self.report(
                    section,
                    "nametrans",
                    _NOT_NEEDED + "syncd puts the server's namespace prefix back by itself "
                    "(namespace: in the imap section)",
                    IssueKind.NOTE,
                )
            else:
                self.report(section, "nametrans", _LOCAL_REASONS["nametrans"])
        root = tidy_path(folders.strip(), self.home, self.cwd)
        sep = (self.get(section, "sep") or ".").strip()
        if sep == "/":
            return root, None
        known = expand(root, self.home) in self.local_dirs
        renames = self.renames(root, sep)
        if known and not renames:
            return root, None  # no directory name holds the separator: nothing to rename
        where = self.line(section, "sep") or self.line(section)
        construct = f"sep = {sep}" if self.line(section, "sep") else f"[{section}]"
        text = (
            f"OfflineIMAP keeps a sub-folder such as Lists/python in the directory "
            f"Lists{sep}python (sep = {sep}); syncd's layout verbatim nests it as "
            "Lists/python. Top-level folders are the same. Before the first sync, rename "
            "sub-folder directories to nested ones, or they are downloaded again and the "
            f"{sep}-named ones are uploaded as new folders"
        )
        if renames:
            text += (
                " (where the server's folder really is nested, not named with a "
                f"'{sep}'): " + "; ".join(renames)
            )
            return root, Issue(where, construct, text)
        return root, Issue(where, construct, text, IssueKind.NOTE)

    def renames(self, root: str, sep: str) -> list[str]:
        names = self.local_dirs.get(expand(root, self.home), ())
        out: list[str] = []
        for name in sorted(names):
            if sep not in name or name.startswith("."):
                continue
            nested = name.replace(sep, "/")
            parent = nested.rsplit("/", 1)[0]
            out.append(
                f"`mkdir -p {shell_path(root + '/' + parent)} && "
                f"mv {shell_path(root + '/' + name)} {shell_path(root + '/' + nested)}`"
            )
        return out

    def remote(self, section: str) -> ServerDraft | None:
        kind = (self.get(section, "type") or "").strip().lower()
        if kind not in ("imap", "gmail"):
            self.report(
                section,
                "type",
                "the remote repository is not IMAP; account skipped",
            )
            return None
        gmail = kind == "gmail"
        draft = ServerDraft("imap", keep_server_names=True)
        handled = _HANDLED_REMOTE | (_OAUTH2_KEYS if self.uses_oauth2(section) else frozenset())
        self.leftovers(section, handled, _REMOTE_REASONS)
        tunnel_key = next(
            (k for k in ("preauthtunnel", "transporttunnel") if self.get(section, k)), None
        )
        host = self.value_or_eval(section, "remotehost")
        if host is None and gmail:
            host = "imap.gmail.com"
        if tunnel_key is not None:
            draft.tunnel = (self.get(section, tunnel_key) or "").strip()
            draft.explain("tunnel", f"{tunnel_key}: IMAP over the command's stdin/stdout")
            for key in ("remotehost", "remoteport", "ssl", "starttls", "sslcacertfile"):
                if key in self.ini.own.get(section, []):
                    self.report(section, key, _NOT_NEEDED + "the tunnel command is the connection")
        elif not host:
            self.report(section, None, "no remotehost; account skipped")
            return None
        else:
            draft.host = host.strip()
            self.tls(section, draft, gmail)
        self.user(section, draft)
        self.password(section, draft)
        self.folders(section, draft, gmail)
        self.namespace(section, draft)
        return draft

    def namespace(self, section: str, draft: ServerDraft) -> None:
        """``namespace:`` from a ``nametrans`` that strips a prefix; otherwise ``""``, as
        OfflineIMAP names local folders with the server's full names (INBOX.Archive)."""
        trans = self.get(section, "nametrans")
        reference = (self.get(section, "reference") or "").strip().strip("\"'")
        prefix = translate_nametrans_prefix(trans) if trans is not None else None
        if trans is not None and prefix is None:
            self.report(section, "nametrans", _REMOTE_REASONS["nametrans"])
        if prefix is not None:
            draft.namespace = prefix
            draft.explain("namespace", "nametrans stripped it: left out of local folder names")
        else:
            draft.namespace = ""
            draft.explain("namespace", "OfflineIMAP kept the server's full folder names")
        if reference and reference not in (prefix, (prefix or "")[:-1]):
            self.report(
                section,
                "reference",
                f"syncd lists every folder, not only those under {reference}; write the "
                "wanted ones in folders: (with '/' between levels)",
            )

    def value_or_eval(self, section: str, key: str) -> str | None:
        value = self.get(section, key)
        if value is not None:
            return value
        expr = self.get(section, key + "eval")
        if expr is None:
            return None
        try:
            node = ast.parse(expr.strip(), mode="eval").body
        except (SyntaxError, ValueError):
            node = None
        if isinstance(node, ast.Constant) and isinstance(node.value, str | int):
            return str(node.value)
        self.report(section, key + "eval", "Python code is not run; write the value itself")
        return None

    def tls(self, section: str, draft: ServerDraft, gmail: bool) -> None:
        assert draft.host is not None
        ssl_on = self.boolean(section, "ssl", True)
        starttls = self.boolean(section, "starttls", True)
        port_text = self.value_or_eval(section, "remoteport")
        if port_text is not None:
            try:
                port = int(port_text.strip())
            except ValueError:
                port = 0
            if 0 < port < 65536:
                draft.port = port
            else:
                self.report(section, "remoteport", "not a port number; the default is used")
        if ssl_on:
            draft.tls = "implicit"
        elif starttls:
            draft.tls = "starttls"
            draft.explain("tls", "ssl = no, starttls = yes")
            self.report(
                section,
                "ssl",
                "OfflineIMAP used STARTTLS only when the server offered it; syncd insists on "
                "it (a server without STARTTLS is refused, never used in clear text)",
                IssueKind.NOTE,
            )
        elif is_loopback(draft.host):
            draft.tls = "none"
        else:
            draft.tls = "starttls"
            self.report(
                section,
                "starttls",
                f"syncd does not send a password in clear text to {draft.host} (RFC 8314), "
                "so the config asks for STARTTLS; if the server has no TLS at all, set "
                "tls: none and allow_plaintext: true",
            )
        cafile = self.get(section, "sslcacertfile")
        if cafile and cafile.strip() != "OS-DEFAULT" and draft.tls != "none":
            draft.ca_file = tidy_path(cafile.strip(), self.home, self.cwd)
            draft.explain("ca_file", "sslcacertfile")
        fingerprints = self.get(section, "cert_fingerprint")
        if fingerprints and draft.tls != "none":
            digests = [
                f.strip().lower().replace(":", "") for f in fingerprints.split(",") if f.strip()
            ]
            sha256 = [d for d in digests if len(d) == 64 and all(c in string.hexdigits for c in d)]
            if sha256:
                draft.fingerprint = "sha256:" + sha256[0]
                draft.explain("fingerprint", "cert_fingerprint")
            if len(sha256) != len(digests) or len(sha256) > 1:
                self.report(
                    section,
                    "cert_fingerprint",
                    "syncd pins exactly one SHA-256 fingerprint; "
                    + (
                        "the first SHA-256 one is used"
                        if sha256
                        else "none is SHA-256, so "
                        "the certificate is checked against the CAs instead"
                    ),
                )

    def user(self, section: str, draft: ServerDraft) -> None:
        user = self.value_or_eval(section, "remoteuser")
        if user:
            draft.username = user.strip()
        elif draft.tunnel is None:
            draft.username = PLACEHOLDER_USER
            draft.explain("username", "put in your user name")
            self.report(
                section,
                "remoteusereval" if self.get(section, "remoteusereval") else None,
                f"no remoteuser; syncd needs the user name in username, now {PLACEHOLDER_USER}",
            )

    def uses_oauth2(self, section: str) -> bool:
        """XOAUTH2 first in auth_mechanisms, with a client ID: the oauth2_* keys are read."""
        mechs = (self.get(section, "auth_mechanisms") or "").split(",")
        first = mechs[0].strip().lower() if mechs else ""
        return first == "xoauth2" and bool(self.client_id(section))

    def client_id(self, section: str) -> str | None:
        """``oauth2_client_id``, or an ``oauth2_client_id_eval`` that is a plain string."""
        value = self.get(section, "oauth2_client_id")
        if value is not None:
            return value.strip() or None
        expr = self.get(section, "oauth2_client_id_eval")
        found = translate_passeval(expr, self.helpers) if expr is not None else None
        return found[1].strip() or None if found is not None and found[0] == "literal" else None

    def oauth2(self, section: str, draft: ServerDraft) -> bool:
        """OfflineIMAP's ``oauth2_*`` keys as the built-in flow (provider from the URL).

        The refresh token is not copied into the config: `syncd oauth login` gets a new
        one into the keyring. False when there is no client ID to build on.
        """
        client_id = self.client_id(section)
        if not client_id:
            return False
        url = (self.get(section, "oauth2_request_url") or "").strip()
        host = (draft.host or "").lower()
        block: dict[str, str] = {}
        if "googleapis.com" in url or "accounts.google.com" in url or is_gmail(host):
            block["provider"] = "google"
        elif "login.microsoftonline.com" in url or "office365.com" in host:
            block["provider"] = "microsoft"
            tenant = url.split("login.microsoftonline.com/", 1)[-1].split("/", 1)[0]
            if "login.microsoftonline.com/" in url and tenant and tenant != "common":
                block["tenant"] = tenant
        else:
            self.report(
                section,
                "oauth2_request_url",
                "OAuth2 with a provider syncd has no preset for: add auth_url and scopes "
                "to the oauth2: block (provider: custom), then run `syncd oauth login "
                "ACCOUNT`",
            )
            block["provider"] = "custom"
            block["token_url"] = url or "https://CHANGE-ME/token"
            block["auth_url"] = "https://CHANGE-ME/authorize"
            block["scopes"] = "CHANGE-ME"
        block["client_id"] = client_id.strip()
        secret_eval = self.get(section, "oauth2_client_secret_eval")
        secret = self.get(section, "oauth2_client_secret")
        if secret_eval is not None:
            found = translate_passeval(secret_eval, self.helpers)
            if found is not None and found[0] == "command":
                block["client_secret_command"] = found[1]
            elif found is not None:
                block["client_secret"] = found[1]
            else:
                self.report(
                    section,
                    "oauth2_client_secret_eval",
                    "not a plain call; add client_secret to the oauth2: block",
                )
        elif secret:
            block["client_secret"] = secret.strip()
        draft.auth = "xoauth2"
        draft.oauth2 = block
        dropped = [
            k
            for k in (
                "oauth2_refresh_token",
                "oauth2_refresh_token_eval",
                "oauth2_access_token",
                "oauth2_access_token_eval",
            )
            if self.get(section, k) is not None
        ]
        note = (
            f"OAuth2: the built-in flow (provider: {block['provider']}, your client ID"
            + (
                " and secret"
                if "client_secret" in block or "client_secret_command" in block
                else ""
            )
            + "); run `syncd oauth login ACCOUNT` once"
        )
        if dropped:
            note += (
                f" ({', '.join(dropped)} not copied: tokens never go into syncd's config; "
                "the login stores a new refresh token in the system keyring)"
            )
        self.report(section, "auth_mechanisms", note, IssueKind.NOTE)
        return True

    def password(self, section: str, draft: ServerDraft) -> None:
        mechs = [
            m.strip().lower()
            for m in (self.get(section, "auth_mechanisms") or "").split(",")
            if m.strip()
        ]
        if mechs and "xoauth2" in mechs[:1]:
            if self.oauth2(section, draft):
                return
            self.report(
                section,
                "auth_mechanisms",
                "OAuth2 is not carried over: no oauth2_client_id; add an oauth2: block "
                "(provider, client_id) and auth: xoauth2, then run `syncd oauth login "
                "ACCOUNT`, or a token_command printing a fresh access token (the config now "
                "logs in with a password from the system keyring)",
            )
            return
        if mechs and not set(mechs) & {"plain", "login"}:
            self.report(
                section,
                "auth_mechanisms",
                "syncd logs in with LOGIN/PLAIN inside TLS, or OAuth2",
            )
        passeval = self.get(section, "remotepasseval")
        if passeval is not None:
            found = translate_passeval(passeval, self.helpers)
            if found is not None and found[0] == "command":
                draft.password_command = found[1]
                draft.explain("password_command", "from remotepasseval")
                self.report(
                    section,
                    "remotepasseval",
                    f"translated to password_command: {found[1]}",
                    IssueKind.NOTE,
                )
                return
            if found is not None:
                draft.password = found[1]
                draft.explain("password", "from remotepasseval")
                return
            self.report(
                section,
                "remotepasseval",
                "Python code is not run, and this is not a plain shell command; put the "
                "command in password_command, or store the password with `syncd password set "
                "ACCOUNT imap` (the config now uses the system keyring)",
            )
            return
        password = self.get(section, "remotepass")
        if password is not None:
            draft.password = password
            draft.explain(
                "password", "copied from remotepass; better: syncd password set ACCOUNT imap"
            )
            self.report(
                section,
                "remotepass",
                "copied as password: (syncd warns about a password in its config); "
                "`syncd password set ACCOUNT imap` keeps it in the system keyring instead",
                IssueKind.NOTE,
            )
            return
        passfile = self.get(section, "remotepassfile")
        if passfile is not None:
            draft.password_command = "cat " + shell_path(passfile.strip())
            draft.explain("password_command", "remotepassfile")
            return
        if draft.tunnel is None or draft.username is not None:
            self.report(
                section,
                None,
                "no password setting (OfflineIMAP asked, or read ~/.netrc); syncd takes it "
                "from the system keyring: store it with `syncd password set ACCOUNT imap`",
                IssueKind.NOTE,
            )

    def folders(self, section: str, draft: ServerDraft, gmail: bool) -> None:
        patterns = ["*"]
        expr = self.get(section, "folderfilter")
        if expr is not None:
            translated = translate_folderfilter(expr)
            if translated is None:
                self.report(
                    section,
                    "folderfilter",
                    "Python code is not run, and this filter is not a plain list or prefix "
                    "test; every folder is synced: write the wanted ones in folders:",
                )
            else:
                patterns = translated
                draft.explain("folders", "from folderfilter")
                if any("." in p and "/" not in p for p in translated):
                    self.report(
                        section,
                        "folderfilter",
                        "syncd writes sub-folders with '/': if the server separates them "
                        "with '.', write INBOX.Sent as INBOX/Sent in folders:",
                        IssueKind.NOTE,
                    )
        if (gmail or is_gmail(draft.host)) and folder_selected(GMAIL_ALL_MAIL, patterns):
            patterns.append("!" + GMAIL_ALL_MAIL)
            draft.explain(
                "folders",
                "syncd never syncs All Mail (every message twice); the old copy is left alone",
            )
        draft.folders = patterns
        idle = self.get(section, "idlefolders")
        if idle is not None:
            try:
                value = ast.literal_eval(idle.strip())
            except (SyntaxError, ValueError):
                value = None
            if isinstance(value, list | tuple) and all(isinstance(v, str) for v in value):
                if value:
                    draft.idle = list(value)
                    draft.explain("idle", "idlefolders")
            else:
                self.report(section, "idlefolders", "not a list of folder names; left out")


def _general_reason(key: str) -> str:
    return {
        "maxsyncaccounts": _NOT_NEEDED + "syncd syncs accounts one after another",
        "ui": _NOT_NEEDED + "syncd prints one line per change (-v for more, -q for less)",
        "socktimeout": "syncd's timeout: is per server section (default 60 seconds)",
        "fsync": _NOT_NEEDED + "syncd always flushes new mail to disk before it records it",
        "ignore-readonly": _NOT_NEEDED + "syncd reports read-only folders itself",
    }.get(key, "unknown option; left out")


def translate(
    text: str,
    *,
    source: str,
    home: str,
    cwd: str,
    pythonfile_text: str | None = None,
    local_dirs: Mapping[str, Sequence[str]] | None = None,
) -> ImportResult:
    """Translate ``.offlineimaprc`` text.

    ``pythonfile_text`` is the helper file named by ``[general] pythonfile`` (for
    ``remotepasseval`` calls); ``local_dirs`` maps a Maildir root (as :func:`expand` gives
    it) to the names of the folder directories in it, for exact rename advice.
    """
    ini, error = _read(text)
    if ini is None:
        issue = Issue(None, "", f"not a valid OfflineIMAP config: {error}")
        return ImportResult(None, (issue,), ())
    issues: list[Issue] = []
    translator = _Translator(ini, issues, home, cwd, pythonfile_text, local_dirs)
    drafts = translator.translate()
    if not drafts and not any(s.startswith("Account ") for s in ini.parser.sections()):
        issues.append(Issue(None, "", "the file defines no [Account ...]; nothing to import"))
    return finish(drafts, issues, "offlineimap", source)
