"""``syncd import mbsync``: an mbsync (isync) ``.mbsyncrc`` as a syncd config.

Theory of operation
-------------------
:func:`parse` reads the file the way mbsync does (``src/config.c``): one keyword and its
arguments per line, arguments split at blanks unless in double quotes, a backslash escaping
the next character, ``#`` starting a comment where an argument would start, keywords
case-insensitive. ``IMAPAccount``, ``IMAPStore``, ``MaildirStore``, ``Channel`` and
``Group`` open a section, which a blank line ends; anything outside a section is global.

:func:`translate` then follows the channels, since only a channel says which server
folders go to which Maildir directories. Each channel between an IMAP store and a Maildir
store is *placed*: the Maildir root and layout under which syncd, naming local folders as
the server does, finds exactly the directories mbsync wrote.

* ``Patterns`` channels map every folder to ``Path``/name (``SubFolders Verbatim``, with
  INBOX at ``Inbox``) or to ``Inbox``/.name (``Maildir++``), i.e. syncd's layouts
  ``verbatim`` (INBOX at ``ROOT/INBOX``) and ``maildir++``.
* A single-folder channel (no ``Patterns``) fits wherever its directory is the folder's
  place under some root: ``Near :local:work`` holding INBOX is a ``maildir++`` root of its
  own, ``~/Mail/work/Sent`` holding ``Sent`` is ``verbatim`` under ``~/Mail/work``.

Channels of the same IMAP store whose placements agree become one syncd account (their
folders are listed together); others become further accounts. The server settings follow
mbsync's own defaults and legacy spellings (``SSLType`` and 1.5's ``TLSType``, ``imaps:``
host prefixes, ``RequireSSL``/``UseIMAPS``, ``Master``/``Slave``). Everything that has no
equivalent is reported as an :class:`~syncd.importers.Issue`.
"""

from __future__ import annotations

import posixpath
from collections.abc import Iterable, Sequence
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
    tidy_path,
    token_command_note,
)
from syncd.planner.folders import folder_selected

__all__ = ["Directive", "Rc", "Section", "parse", "split_args", "translate"]

_SECTION_KINDS: Final = ("imapaccount", "imapstore", "maildirstore", "channel", "group")
_SECRET_KEYS: Final = frozenset({"pass"})
_DEFAULT_INBOX: Final = "~/Maildir"

_SERVER_KEYS: Final = frozenset(
    {
        "host",
        "port",
        "user",
        "usercmd",
        "pass",
        "passcmd",
        "usekeychain",
        "timeout",
        "pipelinedepth",
        "disableextension",
        "disableextensions",
        "certificatefile",
        "systemcertificates",
        "clientcertificate",
        "clientkey",
        "cipherstring",
        "ssltype",
        "tlstype",
        "sslversion",
        "sslversions",
        "tlsversion",
        "tlsversions",
        "requiressl",
        "useimaps",
        "usesslv2",
        "usesslv3",
        "usetlsv1",
        "usetlsv1.1",
        "usetlsv1.2",
        "usetlsv1.3",
        "authmech",
        "authmechs",
        "requirecram",
        "tunnel",
    }
)
_LEGACY_TLS: Final = frozenset(
    {"requiressl", "useimaps", "usesslv2", "usesslv3", "usetlsv1", "usetlsv1.1", "usetlsv1.2"}
    | {"usetlsv1.3"}
)

_NOT_NEEDED: Final = "not needed: "
_REASONS: Final = {
    "pipelinedepth": _NOT_NEEDED + "syncd sends one command at a time on each connection",
    "disableextension": "syncd goes by the server's CAPABILITY list; it has no switch to "
    "turn an extension off",
    "disableextensions": "syncd goes by the server's CAPABILITY list; it has no switch to "
    "turn an extension off",
    "sslversion": "syncd always uses TLS 1.2 or newer",
    "sslversions": "syncd always uses TLS 1.2 or newer",
    "tlsversion": "syncd always uses TLS 1.2 or newer",
    "tlsversions": "syncd always uses TLS 1.2 or newer",
    "cipherstring": "syncd uses the system's TLS cipher defaults",
    "clientcertificate": "syncd does not log in with a client certificate",
    "clientkey": "syncd does not log in with a client certificate",
    "usekeychain": "syncd does not read the macOS keychain; it uses the system keyring "
    "(store the password with `syncd password set ACCOUNT imap`)",
    "usercmd": "syncd needs the user name itself; put it in username",
    "requirecram": "syncd logs in with LOGIN/PLAIN inside TLS (or OAuth2); it has no CRAM-MD5",
    "subscribedonly": "syncd syncs every folder its folders: patterns select, subscribed or not",
    "mapinbox": "syncd has no INBOX alias; INBOX is synced as INBOX",
    "trash": "syncd keeps no trash folder of its own: a message deleted on one side is "
    "deleted on the other",
    "trashnewonly": "syncd keeps no trash folder of its own: a message deleted on one side "
    "is deleted on the other",
    "trashremotenew": "syncd keeps no trash folder of its own: a message deleted on one "
    "side is deleted on the other",
    "maxsize": "syncd copies every message whole",
    "altmap": _NOT_NEEDED + "syncd keeps UIDs in its own state, not in the Maildir",
    "maxmessages": "syncd keeps every message of a folder; it expires nothing",
    "expireunread": "syncd keeps every message of a folder; it expires nothing",
    "syncstate": _NOT_NEEDED + "syncd keeps its state in its state_dir",
    "fielddelimiter": _NOT_NEEDED + "syncd names its state files itself",
    "bufferlimit": _NOT_NEEDED + "syncd streams messages in bounded batches",
    "sync": "syncd always syncs both ways: new messages, deletions and flag changes, in both "
    "directions",
    "create": "syncd creates a new folder on the other side whichever side it appears on",
    "remove": "syncd removes a folder on the other side when it was removed on one side, as "
    "long as the other copy holds nothing unsynced",
    "expunge": "syncd always propagates deletions both ways: a message removed on one side "
    "is removed on the other, and the deleted mark (T, \\Deleted) is synced as a flag, "
    "never expunged on its own",
    "copyarrivaldate": "syncd always keeps the arrival date (INTERNALDATE and the file's time)",
    "fsync": "syncd always flushes new mail to disk before it records it",
    "group": _NOT_NEEDED + "syncd syncs every account; `syncd sync -a ACCOUNT` syncs one",
}
# Values for which the source setting already means what syncd does: no issue.
_SAME_AS_SYNCD: Final = {
    "sync": {"all", "full"},
    "create": {"both"},
    "remove": {"both"},
    "copyarrivaldate": {"yes", "true", "on", "1"},
    "fsync": {"yes", "true", "on", "1"},
    "maxmessages": {"0"},
    "maxsize": {"0"},
    "altmap": {"no", "false", "off", "0"},
    "expireunread": {"no", "false", "off", "0"},
}
_CHANNEL_KEYS: Final = frozenset(
    {
        "sync",
        "create",
        "remove",
        "expunge",
        "maxmessages",
        "expireunread",
        "copyarrivaldate",
        "syncstate",
        "maxsize",
    }
)
_HANDLED_SERVER_KEYS: Final = (
    frozenset(
        {
            "host",
            "port",
            "user",
            "pass",
            "passcmd",
            "timeout",
            "certificatefile",
            "systemcertificates",
            "ssltype",
            "tlstype",
            "authmech",
            "authmechs",
            "tunnel",
            "usercmd",
        }
    )
    | _LEGACY_TLS
)
_GLOBAL_ONLY: Final = frozenset({"fsync", "fielddelimiter", "bufferlimit"})
_TRUE: Final = frozenset({"yes", "true", "on", "1"})
_FALSE: Final = frozenset({"no", "false", "off", "0"})


# -- the file ----------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Directive:
    """One configuration line: a keyword and its arguments, unquoted."""

    line: int
    key: str
    args: tuple[str, ...]
    text: str
    """The line as written (stripped); use :meth:`shown` in messages."""

    @property
    def name(self) -> str:
        return self.key.lower()

    @property
    def value(self) -> str:
        return self.args[0] if self.args else ""

    def shown(self) -> str:
        """The line for a message: the text, or the keyword alone for a secret."""
        return masked(self.key) if self.name in _SECRET_KEYS else self.text


@dataclass(slots=True)
class Section:
    kind: str
    """Lowercase section keyword: imapaccount, imapstore, maildirstore, channel, group."""
    head: Directive
    body: list[Directive] = field(default_factory=list)

    @property
    def name(self) -> str:
        return self.head.value


@dataclass(slots=True)
class Rc:
    globals: list[Directive] = field(default_factory=list)
    sections: list[Section] = field(default_factory=list)


def split_args(line: str) -> tuple[list[str], bool, str | None]:
    """mbsync's ``get_arg`` over a whole line: (arguments, has a comment, error or None)."""
    args: list[str] = []
    i, n = 0, len(line)
    while True:
        while i < n and line[i].isspace():
            i += 1
        if i >= n:
            return args, False, None
        if line[i] == "#":
            return args, True, None
        out: list[str] = []
        escaped = quoted = False
        while i < n:
            ch = line[i]
            i += 1
            if escaped and ch >= " ":
                escaped = False
                out.append(ch)
            elif ch == "\\":
                escaped = True
            elif ch == '"':
                quoted = not quoted
            elif not quoted and ch.isspace():
                break
            else:
                out.append(ch)
        if escaped:
            return args, False, "unterminated escape sequence"
        if quoted:
            return args, False, "missing closing quote"
        args.append("".join(out))


def parse(text: str) -> tuple[Rc, list[Issue]]:
    """The sections and global lines of an ``.mbsyncrc``, and the lines that cannot be read."""
    rc = Rc()
    issues: list[Issue] = []
    current: Section | None = None
    for number, raw in enumerate(text.splitlines(), start=1):
        args, comment, error = split_args(raw)
        stripped = raw.strip()
        if error is not None:
            shown = stripped.split(None, 1)[0] if stripped else stripped
            issues.append(Issue(number, shown, f"cannot be read ({error}); left out"))
            continue
        if not args:
            if not comment:
                current = None  # a blank line ends a section
            continue
        directive = Directive(number, args[0], tuple(args[1:]), stripped)
        kind = directive.name
        if kind in _SECTION_KINDS:
            current = Section(kind, directive)
            rc.sections.append(current)
        elif current is not None:
            current.body.append(directive)
        else:
            rc.globals.append(directive)
    return rc, issues


# -- the parts ---------------------------------------------------------------------------


@dataclass(slots=True)
class _Server:
    """An IMAPAccount, or the connection settings written into an IMAPStore."""

    name: str
    head: Directive
    lines: dict[str, Directive] = field(default_factory=dict)
    others: list[Directive] = field(default_factory=list)

    def get(self, key: str) -> Directive | None:
        return self.lines.get(key)


@dataclass(slots=True)
class _ImapStore:
    name: str
    head: Directive
    server: _Server
    path: Directive | None = None
    delimiter: Directive | None = None
    use_namespace: Directive | None = None
    others: list[Directive] = field(default_factory=list)


@dataclass(slots=True)
class _MaildirStore:
    name: str
    head: Directive
    path: str | None = None
    inbox: str = _DEFAULT_INBOX
    inbox_line: Directive | None = None
    subfolders: str | None = None
    subfolders_line: Directive | None = None
    flatten: Directive | None = None
    others: list[Directive] = field(default_factory=list)


@dataclass(slots=True)
class _Side:
    store: str
    box: str | None
    line: Directive


@dataclass(slots=True)
class _Channel:
    name: str
    head: Directive
    far: _Side | None = None
    near: _Side | None = None
    patterns: list[tuple[str, Directive]] = field(default_factory=list)
    options: list[Directive] = field(default_factory=list)


@dataclass(slots=True)
class _Placement:
    """Where a channel's folders are, in syncd's terms."""

    channel: _Channel
    store: _ImapStore
    maildir: _MaildirStore
    candidates: list[tuple[str, str, str]]
    """(comparable root, root as written, layout), best first."""
    folders: list[str]
    issues: list[Issue] = field(default_factory=list)
    namespace: str | None = None
    """syncd's ``namespace:`` (from Path and the far side's mailbox prefix), None: NAMESPACE."""


@dataclass(slots=True)
class _Group:
    store: _ImapStore
    candidates: list[tuple[str, str, str]]
    folders: list[str]
    channels: list[_Channel]
    maildir: _MaildirStore
    issues: list[Issue] = field(default_factory=list)
    namespace: str | None = None


class _Translator:
    def __init__(self, rc: Rc, issues: list[Issue], home: str, cwd: str) -> None:
        self.rc = rc
        self.issues = issues
        self.home = home
        self.cwd = cwd
        self.accounts: dict[str, _Server] = {}
        self.imap_stores: dict[str, _ImapStore] = {}
        self.maildir_stores: dict[str, _MaildirStore] = {}
        self.channels: list[_Channel] = []

    def report(
        self,
        directive: Directive | None,
        reason: str,
        kind: IssueKind = IssueKind.UNTRANSLATED,
        construct: str | None = None,
    ) -> None:
        line = directive.line if directive is not None else None
        shown = construct if construct is not None else (directive.shown() if directive else "")
        self.issues.append(Issue(line, shown, reason, kind))

    def report_option(self, directive: Directive) -> None:
        """An option syncd has no setting for; silent where it already behaves that way."""
        name = directive.name
        if name in _SAME_AS_SYNCD and directive.value.lower() in _SAME_AS_SYNCD[name]:
            return
        if name == "infodelimiter":
            if directive.value != ":":
                self.report(
                    directive,
                    "syncd reads and writes Maildir file names with the standard ':' before "
                    "the flags; rename the messages (or keep mbsync) first",
                )
            return
        reason = _REASONS.get(name)
        if reason is None:
            reason = "unknown keyword; left out"
        self.report(directive, reason)

    # -- reading the sections --

    def read(self) -> None:
        for directive in self.rc.globals:
            name = directive.name
            if name in _CHANNEL_KEYS or name in _GLOBAL_ONLY:
                self.report_option(directive)
            else:
                self.report(directive, "unknown global keyword; left out")
        for section in self.rc.sections:
            if section.kind == "imapaccount":
                server = self.server(section.name, section.head, section.body)
                self.accounts[section.name] = server
            elif section.kind == "imapstore":
                self.imap_store(section)
            elif section.kind == "maildirstore":
                self.maildir_store(section)
            elif section.kind == "channel":
                self.channel(section)
            else:
                self.report(section.head, _REASONS["group"])

    def server(self, name: str, head: Directive, body: Iterable[Directive]) -> _Server:
        server = _Server(name, head)
        for directive in body:
            if directive.name in _SERVER_KEYS:
                server.lines[directive.name] = directive
            else:
                server.others.append(directive)
        for directive in server.others:
            self.report(directive, "not an IMAPAccount keyword; left out")
        return server

    def imap_store(self, section: Section) -> None:
        store_lines: list[Directive] = []
        server_lines: list[Directive] = []
        account: Directive | None = None
        for directive in section.body:
            if directive.name == "account":
                account = directive
            elif directive.name in _SERVER_KEYS:
                server_lines.append(directive)
            else:
                store_lines.append(directive)
        if account is not None:
            found = self.accounts.get(account.value)
            if found is None:
                self.report(account, f"there is no IMAPAccount {account.value!r}; store skipped")
                return
            for directive in server_lines:
                self.report(directive, "ignored by mbsync too: the store uses an Account")
            server = found
        else:
            server = self.server(section.name, section.head, server_lines)
        store = _ImapStore(section.name, section.head, server)
        for directive in store_lines:
            if directive.name == "path":
                store.path = directive
            elif directive.name == "pathdelimiter":
                store.delimiter = directive
            elif directive.name == "usenamespace":
                store.use_namespace = directive
            else:
                store.others.append(directive)
                self.report_option(directive)
        self.imap_stores[section.name] = store

    def maildir_store(self, section: Section) -> None:
        store = _MaildirStore(section.name, section.head)
        for directive in section.body:
            name = directive.name
            if name == "path":
                store.path = directive.value
            elif name == "inbox":
                store.inbox = directive.value
                store.inbox_line = directive
            elif name == "subfolders":
                store.subfolders = directive.value.lower()
                store.subfolders_line = directive
            elif name == "flatten":
                store.flatten = directive
            else:
                store.others.append(directive)
        for directive in store.others:
            self.report_option(directive)
        self.maildir_stores[section.name] = store

    def channel(self, section: Section) -> None:
        chan = _Channel(section.name, section.head)
        for directive in section.body:
            name = directive.name
            if name in ("far", "master", "near", "slave"):
                side = self.side(directive)
                if side is None:
                    continue
                if name in ("master", "slave"):
                    self.report(
                        directive,
                        "read as " + ("Far" if name == "master" else "Near") + " (mbsync's "
                        "name before 1.4)",
                        IssueKind.NOTE,
                    )
                if name in ("far", "master"):
                    chan.far = side
                else:
                    chan.near = side
            elif name in ("pattern", "patterns"):
                chan.patterns.extend((arg, directive) for arg in directive.args)
            elif name in _CHANNEL_KEYS:
                chan.options.append(directive)
            else:
                self.report(directive, "not a Channel keyword; left out")
        self.channels.append(chan)

    def side(self, directive: Directive) -> _Side | None:
        spec = directive.value
        if not spec.startswith(":") or ":" not in spec[1:]:
            self.report(directive, "not a :store:mailbox reference; left out")
            return None
        store, _, box = spec[1:].partition(":")
        return _Side(store, box or None, directive)

    # -- placing the channels --

    def place_all(self) -> list[_Placement]:
        placements: list[_Placement] = []
        for chan in self.channels:
            for directive in chan.options:
                self.report_option(directive)
            placement = self.place(chan)
            if placement is not None:
                placements.append(placement)
        return placements

    def place(self, chan: _Channel) -> _Placement | None:
        if chan.far is None or chan.near is None:
            self.report(chan.head, "the channel lacks a Far or Near store; skipped")
            return None
        sides = (chan.far, chan.near)
        imap_sides = [s for s in sides if s.store in self.imap_stores]
        maildir_sides = [s for s in sides if s.store in self.maildir_stores]
        for side in sides:
            if side.store not in self.imap_stores and side.store not in self.maildir_stores:
                self.report(side.line, f"there is no store {side.store!r}; channel skipped")
                return None
        if len(imap_sides) != 1 or len(maildir_sides) != 1:
            self.report(
                chan.head,
                "syncd syncs an IMAP server with a Maildir; this channel joins two stores of "
                "the same kind, so it is skipped",
            )
            return None
        remote, local = imap_sides[0], maildir_sides[0]
        store = self.imap_stores[remote.store]
        maildir = self.maildir_stores[local.store]
        if chan.patterns:
            return self.place_patterns(chan, store, remote, maildir, local)
        return self.place_single(chan, store, remote, maildir, local)

    def root_text(self, path: str) -> tuple[str, str]:
        """(comparable, as written) forms of a local directory."""
        written = tidy_path(path, self.home, self.cwd)
        comparable = expand(written, self.home)
        return comparable, written

    def place_patterns(
        self,
        chan: _Channel,
        store: _ImapStore,
        remote: _Side,
        maildir: _MaildirStore,
        local: _Side,
    ) -> _Placement | None:
        namespace = self.namespace(chan, store, remote.box or "", remote.line)
        if isinstance(namespace, _Skip):
            return None
        folders, pattern_issues = translate_patterns(chan.patterns)
        issues = list(pattern_issues)
        style = maildir.subfolders
        if style == "maildir++" and maildir.flatten is None:
            if local.box:
                self.report(
                    local.line,
                    "a mailbox prefix under a Maildir++ store has no syncd layout; "
                    f"channel {chan.name} skipped",
                )
                return None
            comparable, written = self.root_text(maildir.inbox)
            return _Placement(
                chan,
                store,
                maildir,
                [(comparable, written, "maildir++")],
                folders,
                issues,
                namespace,
            )
        prefix = (maildir.path or "") + (local.box or "")
        if not maildir.path and not local.box:
            self.report(
                maildir.head,
                f"the Maildir store has no Path, so channel {chan.name}'s folders have no "
                "common root; skipped",
            )
            return None
        if not prefix.endswith("/"):
            self.report(
                local.line if local.box else maildir.head,
                f"mbsync puts the folders at {prefix}NAME (Path plus mailbox prefix, which "
                "does not end in '/'); syncd needs them in one directory. Channel skipped",
            )
            return None
        comparable, written = self.root_text(prefix.rstrip("/") or "/")
        if maildir.flatten is not None:
            issues.append(
                Issue(
                    maildir.flatten.line,
                    maildir.flatten.text,
                    f"mbsync stored sub-folders flattened (Lists{maildir.flatten.value}python); "
                    "syncd's layout verbatim nests them (Lists/python). Rename those "
                    "directories before the first sync, or they are downloaded again and the "
                    "flattened ones are uploaded as new folders",
                )
            )
        elif style == "legacy":
            line = maildir.subfolders_line
            issues.append(
                Issue(
                    line.line if line else None,
                    line.text if line else "",
                    "mbsync's Legacy style stores sub-folders as top/.sub; syncd's layout "
                    "verbatim uses top/sub (top-level folders are the same). Rename "
                    "sub-folders before the first sync, or they are downloaded again",
                )
            )
        if not local.box and folder_selected("INBOX", folders):
            inbox_cmp = expand(tidy_path(maildir.inbox, self.home, self.cwd), self.home)
            want = posixpath.join(comparable, "INBOX")
            if inbox_cmp != want:
                inbox_written = tidy_path(maildir.inbox, self.home, self.cwd)
                if inbox_cmp == comparable:
                    place = f"in the Maildir root {written} itself"
                    subdirs = " ".join(f"{written}/{sub}" for sub in ("cur", "new", "tmp"))
                    move = f"mkdir {written}/INBOX && mv {subdirs} {written}/INBOX/"
                else:
                    place = f"at {inbox_written}"
                    move = f"mv {inbox_written} {written}/INBOX"
                directive = maildir.inbox_line or maildir.head
                issues.append(
                    Issue(
                        directive.line,
                        directive.text,
                        f"mbsync keeps INBOX {place}; syncd's layout verbatim keeps it at "
                        f"{written}/INBOX. Move it there before the first sync (`{move}`), "
                        "or the first sync downloads INBOX again",
                    )
                )
        return _Placement(
            chan, store, maildir, [(comparable, written, "verbatim")], folders, issues, namespace
        )

    def place_single(
        self,
        chan: _Channel,
        store: _ImapStore,
        remote: _Side,
        maildir: _MaildirStore,
        local: _Side,
    ) -> _Placement | None:
        folder = remote.box or "INBOX"
        is_inbox = folder.upper() == "INBOX"
        if is_inbox:
            folder = "INBOX"
        namespace = self.namespace(chan, store, "", remote.line)
        if isinstance(namespace, _Skip):
            return None
        box = local.box or "INBOX"
        if box.upper() == "INBOX":
            path = maildir.inbox
        elif maildir.flatten is not None:
            path = (maildir.path or "") + box.replace("/", maildir.flatten.value)
        elif maildir.subfolders == "maildir++":
            path = maildir.inbox.rstrip("/") + "/." + box.replace("/", ".")
        else:
            path = (maildir.path or "") + box
        comparable, written = self.root_text(path)
        candidates: list[tuple[str, str, str]] = []
        parent_cmp, parent_written = posixpath.dirname(comparable), posixpath.dirname(written)
        base = posixpath.basename(comparable)
        if is_inbox:
            if base == "INBOX":
                candidates.append((parent_cmp, parent_written, "verbatim"))
            candidates.append((comparable, written, "maildir++"))
        else:
            tail = "/" + folder
            if comparable.endswith(tail):
                cut = len(comparable) - len(tail)
                cut_written = len(written) - len(tail)
                if written.endswith(tail):
                    candidates.append((comparable[:cut], written[:cut_written], "verbatim"))
            if base == "." + folder.replace("/", "."):
                candidates.append((parent_cmp, parent_written, "maildir++"))
        if not candidates:
            self.report(
                chan.head,
                f"the channel keeps the server's folder {folder!r} in {written}, under another "
                "name; syncd names local folders as the server does, so it cannot adopt that "
                "directory. Skipped (rename the directory, or sync it into a new one)",
            )
            return None
        return _Placement(chan, store, maildir, candidates, [folder], namespace=namespace)

    def namespace(
        self, chan: _Channel, store: _ImapStore, box: str, line: Directive
    ) -> str | _Skip | None:
        """syncd's ``namespace:`` for a channel: the store's Path followed by the far
        side's mailbox prefix (what mbsync puts before every folder name and leaves out
        locally), "" for ``UseNamespace no``, None to ask the server (mbsync's default)."""
        path = store.path.value if store.path is not None else ""
        prefix = path + box
        if not prefix:
            off = store.use_namespace
            if off is not None and off.value.lower() in ("no", "false", "off", "0"):
                return ""
            return None
        if prefix[-1].isalnum():
            self.report(
                store.path if store.path is not None and not box else line,
                f"mbsync puts the folders at {prefix}NAME; syncd needs the prefix to end with "
                "the server's hierarchy separator (like INBOX. or INBOX/). "
                f"Channel {chan.name} skipped",
            )
            return _SKIP
        return prefix

    # -- accounts --

    def group(self, placements: Sequence[_Placement]) -> list[_Group]:
        groups: list[_Group] = []
        for placement in placements:
            for group in groups:
                if group.store is not placement.store or group.namespace != placement.namespace:
                    continue
                common = [c for c in group.candidates if c in placement.candidates]
                if common:
                    group.candidates = common
                    group.folders.extend(f for f in placement.folders if f not in group.folders)
                    group.channels.append(placement.channel)
                    group.issues.extend(placement.issues)
                    break
            else:
                groups.append(
                    _Group(
                        placement.store,
                        list(placement.candidates),
                        list(placement.folders),
                        [placement.channel],
                        placement.maildir,
                        list(placement.issues),
                        placement.namespace,
                    )
                )
        return groups

    def draft_server(self, server: _Server) -> ServerDraft | None:
        draft = ServerDraft("imap")
        tunnel = server.get("tunnel")
        host_line = server.get("host")
        host = host_line.value if host_line is not None else None
        implied_tls: str | None = None
        if host is not None:
            for prefix, mode in (("imaps:", "imaps"), ("imap:", None)):
                if host.lower().startswith(prefix):
                    host, implied_tls = host[len(prefix) :], mode
                    break
            host = host.removeprefix("//")
            if host != (host_line.value if host_line else None):
                draft.explain("host", f"from {host_line.text if host_line else ''}")
        if tunnel is None and not host:
            self.report(server.head, "the IMAP account has neither Host nor Tunnel; it is skipped")
            return None
        ssl_type, tls_note = self.tls_mode(server, implied_tls)
        if tunnel is not None:
            draft.tunnel = tunnel.value
            draft.explain("tunnel", "Tunnel: IMAP over the command's stdin/stdout")
            if ssl_type not in ("none", None):
                line = server.get("ssltype") or server.get("tlstype")
                self.report(
                    line or tunnel,
                    "syncd runs the IMAP session over the tunnel as it is, without TLS of its own",
                )
            for key in ("host", "port", "certificatefile"):
                if (extra := server.get(key)) is not None:
                    self.report(extra, _NOT_NEEDED + "the tunnel command is the connection")
        else:
            assert host is not None
            draft.host = host
            port_line = server.get("port")
            if port_line is not None:
                try:
                    port = int(port_line.value)
                except ValueError:
                    port = 0
                if 0 < port < 65536:
                    draft.port = port
                else:
                    self.report(port_line, "not a port number; left out")
            mode = ssl_type or "starttls"
            if mode == "imaps":
                draft.tls = "implicit"
            elif mode == "starttls":
                draft.tls = "starttls"
            elif is_loopback(host):
                draft.tls = "none"
            else:
                draft.tls = "starttls"
                line = server.get("ssltype") or server.get("tlstype") or server.get("requiressl")
                self.report(
                    line or server.head,
                    f"syncd does not send a password in clear text to {host} (RFC 8314), so "
                    "the config asks for STARTTLS; if the server has no TLS at all, set "
                    "tls: none and allow_plaintext: true",
                )
            if tls_note:
                draft.explain("tls", tls_note)
            cert = server.get("certificatefile")
            if cert is not None:
                if draft.tls == "none":
                    self.report(cert, _NOT_NEEDED + "the connection has no TLS")
                else:
                    draft.ca_file = tidy_path(cert.value, self.home, self.cwd)
                    draft.explain("ca_file", "CertificateFile: trusted besides the system's CAs")
            system = server.get("systemcertificates")
            if system is not None and system.value.lower() in _FALSE:
                self.report(system, "syncd trusts the system's CAs as well as ca_file")
        self.login(server, draft)
        timeout = server.get("timeout")
        if timeout is not None:
            try:
                seconds = int(timeout.value)
            except ValueError:
                seconds = -1
            if 0 < seconds <= 86400:
                draft.timeout = seconds
            else:
                self.report(
                    timeout,
                    "syncd needs a timeout between 1 and 86400 seconds; the default (60) is used",
                )
        for key, directive in sorted(server.lines.items(), key=lambda kv: kv[1].line):
            if key not in _HANDLED_SERVER_KEYS:
                self.report(directive, _REASONS.get(key, "unknown keyword; left out"))
        return draft

    def tls_mode(self, server: _Server, implied: str | None) -> tuple[str | None, str | None]:
        """mbsync's resolution of its TLS settings: (none|starttls|imaps, comment)."""
        explicit = server.get("tlstype") or server.get("ssltype")
        legacy = {k: v for k, v in server.lines.items() if k in _LEGACY_TLS}
        if explicit is not None:
            value = explicit.value.lower()
            mode = {"none": "none", "starttls": "starttls", "imaps": "imaps"}.get(value)
            if mode is None:
                self.report(explicit, "unknown TLS type; STARTTLS (mbsync's default) is used")
                mode = "starttls"
            for directive in legacy.values():
                self.report(directive, "mbsync refuses this together with SSLType; left out")
            return mode, f"{explicit.key} {explicit.value}"
        if legacy:

            def flag(key: str) -> int:
                directive = legacy.get(key)
                if directive is None:
                    return -1
                return 1 if directive.value.lower() in _TRUE else 0

            versions = (
                flag("usetlsv1") != 0
                or flag("usetlsv1.1") == 1
                or flag("usetlsv1.2") == 1
                or flag("usetlsv1.3") == 1
            )
            if flag("useimaps") == 1:
                mode = "imaps"
            elif flag("requiressl") != 0 or versions:
                mode = "starttls"
            else:
                mode = "none"
            shown = ", ".join(d.text for d in sorted(legacy.values(), key=lambda d: d.line))
            first = min(legacy.values(), key=lambda d: d.line)
            self.report(
                first,
                f"mbsync's deprecated TLS options read as SSLType "
                f"{ {'imaps': 'IMAPS', 'starttls': 'STARTTLS', 'none': 'None'}[mode] }, as "
                "mbsync itself reads them",
                IssueKind.NOTE,
                construct=shown,
            )
            return mode, f"from {shown}"
        if implied is not None:
            return implied, None
        if server.get("tunnel") is not None:
            return "none", None
        return None, "mbsync's default, SSLType STARTTLS"

    def login(self, server: _Server, draft: ServerDraft) -> None:
        user = server.get("user")
        if user is not None:
            draft.username = user.value
            if (usercmd := server.get("usercmd")) is not None:
                self.report(usercmd, "mbsync refuses UserCmd together with User; User is used")
        elif draft.tunnel is None:
            draft.username = PLACEHOLDER_USER
            draft.explain("username", "mbsync asked for it; put in your user name")
            self.report(
                server.get("usercmd") or server.head,
                "no User (mbsync asks for it, or runs UserCmd); syncd needs the user name "
                f"in username, now {PLACEHOLDER_USER}",
            )
        mechs_line = server.get("authmechs") or server.get("authmech")
        mechs = [m.lower() for m in mechs_line.args] if mechs_line is not None else ["*"]
        oauth = next((m for m in mechs if m in ("xoauth2", "oauthbearer")), None)
        passcmd = server.get("passcmd")
        password = server.get("pass")
        command = passcmd.value.removeprefix("+").strip() if passcmd is not None else None
        if oauth is not None:
            draft.auth = oauth
            if command:
                draft.token_command = command
                draft.explain("token_command", "PassCmd, which printed the OAuth2 token")
                assert passcmd is not None
                self.report(passcmd, token_command_note(command, "ACCOUNT"), IssueKind.NOTE)
            else:
                self.report(
                    mechs_line,
                    f"auth: {oauth} needs a token_command that prints a fresh access token; "
                    "add one",
                )
        elif mechs_line is not None and not set(mechs) <= {"*", "login", "plain"}:
            self.report(
                mechs_line,
                "syncd logs in with LOGIN/PLAIN inside TLS, or OAuth2; other mechanisms are "
                "not used",
            )
        if oauth is None:
            if command:
                draft.password_command = command
                if passcmd is not None and passcmd.value.startswith("+"):
                    draft.explain("password_command", "PassCmd without its '+' (TTY) mark")
            elif password is not None:
                draft.password = password.value
                draft.explain(
                    "password", "copied from Pass; better: syncd password set ACCOUNT imap"
                )
                self.report(
                    password,
                    "copied as password: (syncd warns about a password in its config); "
                    "`syncd password set ACCOUNT imap` keeps it in the system keyring instead",
                    IssueKind.NOTE,
                )
            elif draft.tunnel is None or user is not None:
                self.report(
                    server.head,
                    "no Pass or PassCmd (mbsync asks for the password); syncd takes it from "
                    "the system keyring: store it with `syncd password set ACCOUNT imap`",
                    IssueKind.NOTE,
                    construct=server.head.text,
                )

    def drafts(self, groups: Sequence[_Group]) -> list[AccountDraft]:
        out: list[AccountDraft] = []
        taken: list[str] = []
        roots: list[tuple[str, str]] = []
        servers: dict[int, ServerDraft | None] = {}
        for group in groups:
            key = id(group.store.server)
            if key not in servers:
                servers[key] = self.draft_server(group.store.server)
            server = servers[key]
            if server is None:
                continue
            comparable, written, layout = _best(group.candidates)
            clash = next(
                (
                    (name, other)
                    for name, other in roots
                    if comparable == other
                    or comparable.startswith(other.rstrip("/") + "/")
                    or other.startswith(comparable.rstrip("/") + "/")
                ),
                None,
            )
            names = ", ".join(c.name for c in group.channels)
            if clash is not None:
                self.report(
                    group.channels[0].head,
                    f"its Maildir {written} overlaps the one of syncd account {clash[0]}, and "
                    f"syncd needs a Maildir per account; channel(s) {names} skipped",
                )
                continue
            self.issues.extend(group.issues)
            raw_name = group.store.server.name
            name = account_name(raw_name, taken)
            taken.append(name)
            roots.append((name, comparable))
            imap = _copy_server(server)
            for field_name, comment in imap.comments.items():
                imap.explain(field_name, comment.replace("ACCOUNT", name))
            imap.folders = list(group.folders)
            imap.keep_server_names = True
            if group.namespace is not None:
                imap.namespace = group.namespace
                imap.explain(
                    "namespace",
                    "mbsync's Path and far-side prefix: left out of local folder names"
                    if group.namespace
                    else "UseNamespace no: folder names as the server lists them",
                )
            delimiter = group.store.delimiter
            if delimiter is not None:
                imap.separator = delimiter.value
                imap.explain("separator", "mbsync's PathDelimiter")
            if is_gmail(imap.host) and folder_selected(GMAIL_ALL_MAIL, imap.folders):
                imap.folders.append("!" + GMAIL_ALL_MAIL)
                imap.explain(
                    "folders",
                    "syncd never syncs All Mail (every message twice); mbsync's copy stays",
                )
            if len(group.channels) > 1 and any(f.startswith("!") for f in group.folders):
                self.report(
                    group.channels[0].head,
                    f"the folders of channels {names} are listed together, and in syncd an "
                    "exclusion applies to all of them: check folders:",
                    IssueKind.NOTE,
                    construct=group.channels[0].head.text,
                )
            about = [
                f"IMAPStore {group.store.name} (line {group.store.head.line}) and "
                + ", ".join(f"Channel {c.name} (line {c.head.line})" for c in group.channels)
            ]
            comments = {}
            if layout == "maildir++":
                comments["layout"] = "INBOX is the root itself, other folders are .Name.Sub"
            out.append(
                AccountDraft(
                    name=name,
                    maildir=written,
                    layout=layout,
                    imap=imap,
                    about=about,
                    comments=comments,
                )
            )
            if name != raw_name:
                self.report(
                    group.store.server.head,
                    f"the syncd account is called {name} (letters, digits, '_' and '-' only)",
                    IssueKind.NOTE,
                )
        return out


class _Skip:
    """The channel cannot be expressed; it was reported."""


_SKIP: Final = _Skip()


def _best(candidates: Sequence[tuple[str, str, str]]) -> tuple[str, str, str]:
    """Layout verbatim where both fit: further folders then nest as they did under Path."""
    for candidate in candidates:
        if candidate[2] == "verbatim":
            return candidate
    return candidates[0]


def _copy_server(server: ServerDraft) -> ServerDraft:
    from dataclasses import replace

    return replace(server, comments=dict(server.comments))


def translate_patterns(
    patterns: Sequence[tuple[str, Directive]],
) -> tuple[list[str], list[Issue]]:
    """mbsync ``Patterns`` as syncd ``folders:`` patterns, and what did not carry over.

    mbsync: ``*`` matches anything, ``%`` anything but ``/``, ``!`` excludes, the last
    matching pattern wins. syncd: ``*`` and ``?`` are wildcards, an exclusion always wins.
    ``P%`` becomes ``P*`` plus the exclusion ``!P*/*``.
    """
    includes: list[str] = []
    excludes: list[str] = []
    issues: list[Issue] = []
    seen_exclude = False
    reported_order = False
    for pattern, directive in patterns:
        negative = pattern.startswith("!")
        body = pattern[1:] if negative else pattern
        if not body:
            continue
        if negative:
            seen_exclude = True
            if "%" in body:
                issues.append(
                    Issue(
                        directive.line,
                        directive.text,
                        f"the exclusion {pattern} ('%': one level only) has no syncd "
                        "pattern; left out",
                    )
                )
                continue
            excludes.append("!" + body)
            continue
        if seen_exclude and not reported_order:
            reported_order = True
            issues.append(
                Issue(
                    directive.line,
                    directive.text,
                    "in mbsync a later pattern overrides an earlier exclusion; in syncd an "
                    "exclusion always wins, so check folders:",
                    IssueKind.NOTE,
                )
            )
        if "%" in body:
            includes.append(body.replace("%", "*"))
            if body.count("%") == 1:
                excludes.append("!" + body.replace("%", "*/*"))
            else:
                excludes.append(
                    "!" + body.replace("%", "*", body.count("%") - 1).replace("%", "*/*")
                )
                issues.append(
                    Issue(
                        directive.line,
                        directive.text,
                        f"{pattern} is approximated (several '%'); check folders:",
                        IssueKind.NOTE,
                    )
                )
        else:
            includes.append(body)
    if any("%" in p for p, _ in patterns if not p.startswith("!")) and len(includes) > 1:
        first = patterns[0][1]
        issues.append(
            Issue(
                first.line,
                first.text,
                "'%' (one level) is written as an exclusion of deeper folders, which in "
                "syncd applies to the other patterns too; check folders:",
                IssueKind.NOTE,
            )
        )
    unique = list(dict.fromkeys(includes + excludes))
    return unique, issues


def translate(text: str, *, source: str, home: str, cwd: str) -> ImportResult:
    """Translate ``.mbsyncrc`` text; ``home`` and ``cwd`` resolve ``~`` and relative paths."""
    rc, issues = parse(text)
    translator = _Translator(rc, issues, home, cwd)
    translator.read()
    placements = translator.place_all()
    groups = translator.group(placements)
    drafts = translator.drafts(groups)
    used = {
        side.store
        for chan in translator.channels
        for side in (chan.far, chan.near)
        if side is not None
    }
    for store in translator.imap_stores.values():
        if store.name not in used:
            translator.report(
                store.head, "no Channel syncs this store with a Maildir; nothing imported"
            )
    if not drafts and not translator.channels:
        issues.append(Issue(None, "", "the file defines no Channel; nothing to import"))
    return finish(drafts, issues, "mbsync", source)
