"""The local store: standard Maildir, as mutt, aerc, notmuch, mbsync and Dovecot use it.

Theory of operation
-------------------

A message is one file. Its *key* (:data:`~syncd.model.LocalKey`) is the file name up to the
first ``:``; it never changes while the message lives. The part after ``:`` is the *info*:
``2,`` followed by flag letters in ASCII order. Syncd understands ``D F P R S T``; any other
letter (Dovecot keywords are lowercase letters) is kept untouched whenever syncd renames the
file. Unread mail sits in ``new/``, everything else in ``cur/``.

Writing follows the Maildir rules plus durability: each message goes to ``tmp/`` under a
unique name ending in ``.syncd-tmp``, the whole batch is flushed with one ``syncfs(2)``, and
only then is each file renamed into ``new/`` or ``cur/`` and the directories ``fsync``-ed.
A reader therefore never sees a partial message, and a crash leaves at most ``*.syncd-tmp``
files, which :meth:`MaildirFolder.clean_tmp` removes.

Flag changes are renames. They are made durable in bulk by :meth:`MaildirFolder.flush`,
which the engine calls before it records the new flags as the base.

A mail reader may rename a file (flag change, ``new/`` to ``cur/``) at any moment. Every
operation that finds its file gone looks the key up again once before giving up, and a scan
lists ``new/`` before ``cur/`` (files only ever move that way) and is repeated when either
directory changed while it was being read, so a message is never missed because it moved.

Folder names use ``/`` between levels. Layout ``verbatim`` maps ``A/B`` to ``root/A/B``;
``maildir++`` maps ``INBOX`` to the root and ``A/B`` to ``root/.A.B``.

The root holds a ``.syncd-id`` marker tying it to syncd's state (:meth:`MaildirStore.bind`):
an unmounted or replaced Maildir would otherwise look like every message had been deleted.
"""

from __future__ import annotations

import contextlib
import ctypes
import enum
import errno
import itertools
import logging
import os
import shlex
import stat
import threading
import time
import uuid
from collections.abc import Callable, Collection, Iterable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TypeVar

from syncd.drivers.files import fsync_dir, hostname
from syncd.errors import FolderError, MessageError, StateError, StoreError
from syncd.model import CHUNK_BYTES, Flag, LocalKey, remote_size, to_remote_bytes, to_remote_chunks

__all__ = ["LAYOUTS", "LocalEntry", "MaildirFolder", "MaildirStore", "UploadFile"]

log = logging.getLogger(__name__)

_T = TypeVar("_T")

LAYOUTS = ("verbatim", "maildir++")
INBOX = "INBOX"
MARKER = ".syncd-id"
TMP_SUFFIX = ".syncd-tmp"
DEFAULT_OUTBOX = ".outbox"

_SUBDIRS = ("cur", "new", "tmp")
_KNOWN_LETTERS = frozenset("DFPRST")
_HEADER_CHUNK = 8 * 1024
_HEADER_CAP = 256 * 1024
_NAME_MAX = 255
# A directory changed less than this long ago may change again within the same coarse
# kernel timestamp tick without its mtime moving, so its stamp cannot be trusted yet.
_SETTLE_NS = 2_000_000_000
_SCAN_ATTEMPTS = 3


def _coarse_tick_ns() -> int:
    """Twice the tick of the clock the kernel stamps directories with (CLOCK_REALTIME_COARSE,
    one jiffy: 4 ms at HZ=250); 50 ms where that clock cannot be asked. See _settled."""
    try:
        res = time.clock_getres(getattr(time, "CLOCK_REALTIME_COARSE", 5))
    except (OSError, ValueError):
        return 50_000_000
    return max(2_000_000, min(50_000_000, int(2 * res * 1e9)))


_FINE_TICK_NS = _coarse_tick_ns()
_INFO_CACHE_MAX = 4096
_DIR_MODE = 0o700
_FILE_MODE = 0o600
_O_DIR = os.O_RDONLY | getattr(os, "O_DIRECTORY", 0) | getattr(os, "O_CLOEXEC", 0)
_O_NEW_FILE = (
    os.O_WRONLY
    | os.O_CREAT
    | os.O_EXCL
    | getattr(os, "O_CLOEXEC", 0)
    | getattr(os, "O_NOFOLLOW", 0)
)

# Process-wide so that two batches in the same microsecond still get distinct names.
_counter = itertools.count()
_warned: set[str] = set()
_warned_lock = threading.Lock()
# Info string -> flags: a folder has few distinct ones, and Flag arithmetic is slow.
_INFO_FLAGS: dict[str, Flag] = {}


def _load_syncfs() -> Callable[[int], int] | None:
    try:
        libc = ctypes.CDLL(None, use_errno=True)
        func = libc.syncfs
    except (OSError, AttributeError):
        return None
    func.argtypes = [ctypes.c_int]
    func.restype = ctypes.c_int
    return func


# None where the C library lacks syncfs (not Linux): deliver() then fsyncs each file.
_syncfs: Callable[[int], int] | None = _load_syncfs()


@dataclass(frozen=True, slots=True)
class LocalEntry:
    """One message file as found by a scan or written by syncd.

    ``key`` is stable for the life of the message; ``subdir`` and ``name`` say where the file
    is right now and change with every flag change. Letters in the info other than
    ``D F P R S T`` are not in ``flags`` but stay in ``name`` and survive set_flags().
    """

    key: LocalKey
    subdir: str
    name: str
    flags: Flag


def _warn_once(tag: str, msg: str, *args: object) -> None:
    # Junk files are seen on every scan; the user needs to hear about each one once.
    with _warned_lock:
        if tag in _warned:
            return
        _warned.add(tag)
    log.warning(msg, *args)


def _split(name: str) -> tuple[str, str | None]:
    key, sep, info = name.partition(":")
    return key, (info if sep else None)


def key_of(rel: str) -> LocalKey | None:
    """The message key a watched file name (``cur/NAME`` or ``new/NAME``) belongs to; None
    for a name that is no message file (a dotfile, tmp/, anything else)."""
    subdir, _, name = rel.partition("/")
    if subdir not in ("new", "cur") or not name or name.startswith(".") or "/" in name:
        return None
    key = name.partition(":")[0]
    return LocalKey(key) if key else None


def _info_letters(info: str | None) -> str:
    """The flag letters of an info string, or "" when it is not the ``2,`` kind."""
    if info is not None and info.startswith("2,"):
        return info[2:]
    return ""


def _parse_name(name: str) -> tuple[str, Flag]:
    key, info = _split(name)
    return key, Flag.parse(_info_letters(info))


def _extra_letters(name: str) -> str:
    _, info = _split(name)
    return "".join(ch for ch in _info_letters(info) if ch not in _KNOWN_LETTERS)


def _file_name(key: str, flags: Flag, extra: str, subdir: str) -> str:
    letters = "".join(sorted(set(flags.letters) | set(extra)))
    if subdir == "new" and not letters:
        return key
    return f"{key}:2,{letters}"


def unique_name(pid: int, host: str) -> str:
    """A Maildir file name no other delivery uses: time, microseconds, pid, counter, host."""
    now = time.time_ns()
    sec, rest = divmod(now, 1_000_000_000)
    return f"{sec}.M{rest // 1000}P{pid}Q{next(_counter)}.{host}"


def _write_all(fd: int, data: bytes) -> None:
    view = memoryview(data)
    while view:
        written = os.write(fd, view)
        view = view[written:]


def _sync_filesystem(dir_fd: int) -> None:
    assert _syncfs is not None
    if _syncfs(dir_fd) != 0:
        err = ctypes.get_errno()
        raise OSError(err, f"syncfs: {os.strerror(err)}")


def _os_message(exc: OSError) -> str:
    return exc.strerror or str(exc)


class MaildirStore:
    """All Maildir folders of one account under ``root``.

    ``layout`` is ``"verbatim"`` or ``"maildir++"`` (a config ``Layout`` enum member works
    too). Directories in ``exclude`` (the outbox) and ``root/.outbox`` are never folders.
    """

    def __init__(
        self,
        root: Path,
        layout: str | enum.Enum = "verbatim",
        *,
        exclude: Sequence[Path] = (),
    ) -> None:
        value = layout.value if isinstance(layout, enum.Enum) else layout
        if value not in LAYOUTS:
            raise ValueError(f"unknown Maildir layout {layout!r}: use one of {', '.join(LAYOUTS)}")
        self.root = Path(root).absolute()
        self.layout: str = value
        # The default outbox is excluded even when the caller forgot it: in maildir++ it
        # would otherwise be the folder "outbox", and queued mail would be uploaded there.
        paths = [*exclude, self.root / DEFAULT_OUTBOX]
        self._exclude = frozenset(os.path.realpath(p) for p in paths)
        self._folders: dict[str, MaildirFolder] = {}

    def __repr__(self) -> str:
        return f"MaildirStore({str(self.root)!r}, {self.layout!r})"

    # -- binding ---------------------------------------------------------------------

    def bind(self, expected_id: str | None) -> str:
        """Tie this Maildir root to syncd's state and return the id in its marker.

        With ``expected_id`` None (fresh state) the root and marker are created as needed and
        an existing marker's id is reused. Otherwise the marker must exist and hold exactly
        that id; anything else raises StateError, because syncing against a missing or
        foreign tree would look like every message had been deleted.
        """
        marker = self.root / MARKER
        if expected_id is not None:
            if not self.root.is_dir():
                raise StateError(
                    f"Maildir root {self.root} does not exist (or is not a directory): is it "
                    f"mounted? syncd synced it before (id {expected_id}) and refuses to sync, "
                    "as that would look like every message was deleted; if you moved it on "
                    "purpose, set the account's maildir: to the new place"
                )
            found = self._read_marker(marker)
            if found is None:
                raise StateError(
                    f"Maildir root {self.root} has no {MARKER} marker: is it mounted? syncd "
                    f"synced it before (id {expected_id}) and refuses to sync, as that would "
                    "look like every message was deleted; if you moved it on purpose, move "
                    f"{MARKER} along, or if this really is the same mail, recreate it with: "
                    f"echo {expected_id} > {shlex.quote(str(marker))}"
                )
            if found != expected_id:
                raise StateError(
                    f"Maildir root {self.root} belongs to another syncd state: its {MARKER} "
                    f"holds id {found} but this account's state expects {expected_id}; two "
                    "accounts may share this directory (give each its own maildir:), or, if "
                    f"this tree really is this account's mail, put {expected_id} into {marker}"
                )
            return found

        try:
            if not self.root.exists():
                self.root.mkdir(mode=_DIR_MODE, parents=True)
                fsync_dir(self.root.parent)
        except OSError as exc:
            raise StateError(f"cannot create Maildir root {self.root}: {_os_message(exc)}") from exc
        found = self._read_marker(marker)
        if found is not None:
            # Fresh state but a marker: the state was lost or reset. Keeping the id lets the
            # engine re-pair the messages instead of treating the tree as foreign.
            log.warning(
                "Maildir %s: no state for it yet, reusing id %s from its %s",
                self.root,
                found,
                MARKER,
            )
            return found
        new_id = uuid.uuid4().hex
        try:
            self._write_marker(marker, new_id)
        except OSError as exc:
            raise StateError(f"cannot write {marker}: {_os_message(exc)}") from exc
        log.info("Maildir %s: bound to new id %s", self.root, new_id)
        return new_id

    def _read_marker(self, marker: Path) -> str | None:
        try:
            text = marker.read_text(encoding="ascii").strip()
        except FileNotFoundError:
            return None
        except (OSError, UnicodeDecodeError) as exc:
            raise StateError(f"cannot read {marker}: {exc}") from exc
        try:
            return uuid.UUID(hex=text).hex
        except ValueError:
            raise StateError(
                f"{marker} does not hold a syncd id (found {text[:40]!r}); remove it only if "
                "this Maildir is not bound to any other syncd state"
            ) from None

    def _write_marker(self, marker: Path, value: str) -> None:
        tmp = marker.with_name(f"{MARKER}.{os.getpid()}{TMP_SUFFIX}")
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC | os.O_CLOEXEC, _FILE_MODE)
        try:
            _write_all(fd, f"{value}\n".encode("ascii"))
            os.fsync(fd)
        finally:
            os.close(fd)
        try:
            tmp.replace(marker)
        except OSError:
            tmp.unlink(missing_ok=True)
            raise
        fsync_dir(self.root)

    # -- naming ----------------------------------------------------------------------

    def _check_name(self, name: str) -> list[str]:
        if not name:
            raise FolderError("empty folder name")
        if "\0" in name:
            raise FolderError(f"folder name {name!r} contains a NUL character")
        parts = name.split("/")
        for part in parts:
            self._check_part(name, part)
        return parts

    def _check_part(self, name: str, part: str) -> None:
        def bad(why: str) -> FolderError:
            return FolderError(
                f"folder name {name!r} cannot be stored in a {self.layout} Maildir: {why}"
            )

        if "/" in part:
            raise bad(f"component {part!r} contains '/', the hierarchy separator")
        if part == "":
            raise bad("empty component (leading, trailing or doubled '/')")
        if part in (".", ".."):
            raise bad(f"component {part!r} is not a directory name")
        if "\0" in part:
            raise bad("it contains a NUL character")
        try:
            encoded = part.encode("utf-8")
        except UnicodeEncodeError:
            raise bad("it is not valid Unicode") from None
        if len(encoded) > _NAME_MAX:
            raise bad(f"component {part[:20]!r}... is longer than {_NAME_MAX} bytes")
        if self.layout == "verbatim":
            if part.startswith("."):
                raise bad(f"component {part!r} starts with '.', which mail readers hide")
            if part in _SUBDIRS:
                raise bad(f"component {part!r} is a Maildir subdirectory name")
        elif "." in part:
            raise bad(f"component {part!r} contains '.', the maildir++ separator")

    def _path_for(self, name: str) -> Path:
        parts = self._check_name(name)
        if self.layout == "verbatim":
            path = self.root.joinpath(*parts)
        elif name == INBOX:
            path = self.root
        else:
            dirname = "." + ".".join(parts)
            if len(dirname.encode("utf-8")) > _NAME_MAX:
                raise FolderError(
                    f"folder name {name!r} is too long for a maildir++ directory name "
                    f"({_NAME_MAX} bytes)"
                )
            path = self.root / dirname
        if self._is_excluded(os.path.realpath(path)):
            raise FolderError(
                f"folder {name!r} would be stored at {path}, which is the outbox or excluded"
            )
        return path

    def _is_excluded(self, real: str) -> bool:
        return any(real == ex or real.startswith(ex + os.sep) for ex in self._exclude)

    def local_name(self, remote_parts: Sequence[str]) -> str:
        """The local folder name for a remote folder's decoded hierarchy components.

        Raises FolderError when a component cannot be represented in this layout (it
        contains "/", or "." under maildir++, or is otherwise not a valid name).
        """
        parts = list(remote_parts)
        if not parts:
            raise FolderError("empty remote folder name")
        shown = "/".join(parts)
        for part in parts:
            self._check_part(shown, part)
        return shown

    # -- folders ---------------------------------------------------------------------

    def folder(self, name: str) -> MaildirFolder:
        """The folder called ``name``, which need not exist yet; FolderError if unrepresentable."""
        found = self._folders.get(name)
        if found is None:
            found = MaildirFolder(name, self._path_for(name))
            self._folders[name] = found
        return found

    def create_folder(self, name: str) -> MaildirFolder:
        """Create ``name`` (cur/, new/, tmp/ with mode 0700) durably; fine if it exists."""
        folder = self.folder(name)
        if folder.exists() and (folder.path / "tmp").is_dir():
            return folder
        try:
            missing = [p for p in (folder.path, *folder.path.parents) if not p.exists()]
            # Parents one by one: mkdir(parents=True) would give them the umask's mode.
            for path in reversed(missing):
                path.mkdir(mode=_DIR_MODE, exist_ok=True)
            for sub in _SUBDIRS:
                (folder.path / sub).mkdir(mode=_DIR_MODE, exist_ok=True)
            if self.layout == "maildir++" and folder.path != self.root:
                # Courier and Dovecot mark maildir++ subfolders with this empty file.
                (folder.path / "maildirfolder").touch(mode=_FILE_MODE, exist_ok=True)
            fsync_dir(folder.path)
            for parent in dict.fromkeys([folder.path.parent, *(p.parent for p in missing)]):
                fsync_dir(parent)
        except OSError as exc:
            raise FolderError(
                f"cannot create folder {name!r} at {folder.path}: {_os_message(exc)}"
            ) from exc
        log.info("Maildir %s: created folder %s", self.root, name)
        return folder

    def delete_folder(self, name: str, names: Collection[str] | None = None) -> None:
        """Remove ``name``'s message files, its cur/, new/, tmp/ and, if then empty, itself.

        With ``names`` (the file names the caller checked: every message synced and gone
        remotely), only those files are unlinked, each by its exact name. Anything else
        (mail delivered or renamed since, a delivery in progress in tmp/) keeps the folder:
        FolderError, with nothing of it lost. The directories are removed with rmdir, which
        fails rather than remove a file that arrived at the last moment.
        """
        folder = self.folder(name)
        if not folder.path.is_dir():
            return
        removed = 0
        gone_subdirs: list[str] = []

        def keep(why: str) -> FolderError:
            for sub in gone_subdirs:  # leave a usable Maildir behind
                with _suppress_os():
                    (folder.path / sub).mkdir(mode=_DIR_MODE, exist_ok=True)
            return FolderError(f"not deleting local folder {name!r}: {why}; kept")

        try:
            files: list[tuple[str, str]] = []
            for sub in _SUBDIRS:
                subdir = folder.path / sub
                if not subdir.is_dir() or subdir.is_symlink():
                    continue
                with os.scandir(subdir) as it:
                    for entry in it:
                        if entry.is_dir(follow_symlinks=False):
                            raise keep(f"{entry.path} is a directory")
                        ours = sub == "tmp" and entry.name.endswith(TMP_SUFFIX)
                        if names is not None and not ours and entry.name not in names:
                            raise keep(f"{entry.path} arrived or changed since it was checked")
                        files.append((sub, entry.name))
            for sub, fname in files:
                try:
                    (folder.path / sub / fname).unlink()
                    removed += 1
                except FileNotFoundError:
                    pass  # renamed by a reader: rmdir below finds it and keeps the folder
            for sub in ("tmp", "new", "cur"):
                try:
                    (folder.path / sub).rmdir()
                    gone_subdirs.append(sub)
                except FileNotFoundError:
                    pass
                except OSError as exc:
                    if exc.errno in (errno.ENOTEMPTY, errno.EEXIST):
                        raise keep(f"mail arrived in {folder.path / sub} meanwhile") from exc
                    raise
            if folder.path != self.root:
                (folder.path / "maildirfolder").unlink(missing_ok=True)
                try:
                    folder.path.rmdir()
                except OSError as exc:
                    if exc.errno not in (errno.ENOTEMPTY, errno.EEXIST):
                        raise
                fsync_dir(folder.path.parent)
            else:
                fsync_dir(folder.path)
        except OSError as exc:
            raise FolderError(
                f"cannot delete folder {name!r} at {folder.path}: {_os_message(exc)}"
            ) from exc
        self._folders.pop(name, None)
        log.info("Maildir %s: deleted folder %s (%d files)", self.root, name, removed)

    def list_folders(self) -> list[str]:
        """Names of every folder (a directory with cur/ and new/), sorted.

        Skipped: hidden directories, cur/new/tmp, excluded directories (the outbox) and
        symlinked directories (following them would list the same mail twice or mail that
        is not under this root). A missing root lists nothing; bind() guards that case.
        """
        real_root = os.path.realpath(self.root)
        if not Path(real_root).is_dir():
            return []
        if self.layout == "verbatim":
            if _is_maildir(real_root):
                _warn_once(
                    f"rootmaildir:{real_root}",
                    "Maildir %s: the root itself is a Maildir, which layout verbatim ignores; "
                    "use layout: maildir++ to sync it as INBOX",
                    self.root,
                )
            names: list[str] = []
            self._walk_verbatim(real_root, [], names, top=True)
        else:
            names = self._list_maildirpp(real_root)
        return sorted(names)

    def _scan_dir(self, path: str, top: bool) -> list[os.DirEntry[str]]:
        try:
            with os.scandir(path) as it:
                return list(it)
        except OSError as exc:
            if top:
                raise StoreError(
                    f"cannot list Maildir root {self.root}: {_os_message(exc)}"
                ) from exc
            _warn_once(
                f"unlistable:{path}",
                "Maildir %s: skipping %s, which cannot be listed: %s",
                self.root,
                path,
                _os_message(exc),
            )
            return []

    def _usable_dir(self, entry: os.DirEntry[str]) -> bool:
        if entry.is_symlink():
            if entry.is_dir():
                target = os.path.realpath(entry.path)
                inside = target.startswith(os.path.realpath(self.root) + os.sep)
                where = "inside" if inside else "outside"
                _warn_once(
                    f"symlink:{entry.path}",
                    "Maildir %s: not following symlink %s to %s (%s the Maildir root)",
                    self.root,
                    entry.path,
                    target,
                    where,
                )
            return False
        if not entry.is_dir(follow_symlinks=False):
            return False
        if self._is_excluded(entry.path):
            return False
        try:
            entry.name.encode("utf-8")
        except UnicodeEncodeError:
            _warn_once(
                f"undecodable:{entry.path}",
                "Maildir %s: skipping directory %r, its name is not valid UTF-8",
                self.root,
                entry.path,
            )
            return False
        return True

    def _walk_verbatim(self, path: str, prefix: list[str], out: list[str], top: bool) -> None:
        for entry in self._scan_dir(path, top):
            if entry.name.startswith(".") or entry.name in _SUBDIRS:
                continue
            if not self._usable_dir(entry):
                continue
            parts = [*prefix, entry.name]
            if _is_maildir(entry.path):
                out.append("/".join(parts))
            self._walk_verbatim(entry.path, parts, out, top=False)

    def _list_maildirpp(self, real_root: str) -> list[str]:
        names = [INBOX] if _is_maildir(real_root) else []
        for entry in self._scan_dir(real_root, True):
            if not entry.name.startswith(".") or entry.name in (".", ".."):
                continue
            if not self._usable_dir(entry) or not _is_maildir(entry.path):
                continue
            parts = entry.name[1:].split(".")
            if "" in parts or entry.name[1:] == INBOX:
                _warn_once(
                    f"badpp:{entry.path}",
                    "Maildir %s: skipping %s, not a valid maildir++ folder name",
                    self.root,
                    entry.path,
                )
                continue
            names.append("/".join(parts))
        return names


def _report_junk(entry: os.DirEntry[str]) -> None:
    if entry.name.startswith("."):
        what = "hidden file"
    elif entry.is_symlink():
        what = "symlink"
    elif entry.is_dir(follow_symlinks=False):
        what = "directory"
    else:
        what = "special file"
    _warn_once(f"junk:{entry.path}", "Maildir: ignoring %s %s", what, entry.path)


def _unusable(entry: os.DirEntry[str]) -> str | None:
    """Why a file not seen before cannot be a message: "empty", "unreadable", "" (it went
    away meanwhile: the rescan check catches a rename), or None when it is fine."""
    try:
        size = entry.stat(follow_symlinks=False).st_size
    except FileNotFoundError:
        return ""
    if size == 0:
        return "empty"
    if not os.access(entry.path, os.R_OK):
        return "unreadable"
    return None


def _tick_ns(*mtimes_ns: int) -> int:
    """How long after a directory change its mtime may stay the same (see _settled).

    Directory timestamps come from the kernel's coarse clock (a jiffy, 1-10 ms), or whole
    seconds on some filesystems, which show as mtimes without a fraction.
    """
    if all(m % 1_000_000_000 == 0 for m in mtimes_ns):
        return 1_000_000_000
    return _FINE_TICK_NS


def _is_maildir(path: str | Path) -> bool:
    base = Path(path)
    return (base / "cur").is_dir() and (base / "new").is_dir()


class MaildirFolder:
    """One Maildir folder. Obtain it from :meth:`MaildirStore.folder`."""

    def __init__(self, name: str, path: Path) -> None:
        self.name = name
        self.path = path
        # Per subdir, the names of files already known to be non-empty regular files, so that
        # a steady-state scan needs no stat() per file: only files not seen before are checked.
        self._checked: dict[str, set[str]] = {"new": set(), "cur": set()}
        self._damaged: frozenset[LocalKey] = frozenset()
        self._dirty: set[str] = set()
        self._stable = True
        self._scanned_state: tuple[int, ...] | None = None

    def __repr__(self) -> str:
        return f"MaildirFolder({self.name!r}, {str(self.path)!r})"

    @property
    def damaged(self) -> frozenset[LocalKey]:
        """Keys of files the last scan() skipped as empty or unreadable.

        They are on disk but unusable (an empty file is what a crash leaves of a file some
        other program renamed without fsync); the engine should not mistake them for
        deletions.
        """
        return self._damaged

    def exists(self) -> bool:
        return _is_maildir(self.path)

    def _require(self) -> None:
        if not self.exists():
            raise FolderError(f"folder {self.name!r} does not exist at {self.path} (no cur/, new/)")

    def stamp(self) -> str | None:
        """A value that changes whenever a file name in new/ or cur/ changes.

        None when either directory changed in the last 2 seconds, or cannot be read: then
        the caller must list the folder and not trust an equal stamp next time. Take the
        stamp before scan(), so a change during the scan shows up next time.
        """
        try:
            new = (self.path / "new").stat()
            cur = (self.path / "cur").stat()
        except OSError:
            return None
        now = time.time_ns()
        if now - max(new.st_mtime_ns, cur.st_mtime_ns) < _SETTLE_NS:
            return None
        return f"{new.st_ino}.{new.st_mtime_ns}.{cur.st_ino}.{cur.st_mtime_ns}"

    def dir_state(self) -> tuple[int, ...]:
        """The directories' identity and change times: equal values, no change between
        (given :meth:`_settled`)."""
        return self._dir_state()

    @property
    def scanned_state(self) -> tuple[int, ...] | None:
        """:meth:`dir_state` as the last scan() found it, or None when it kept changing."""
        return self._scanned_state

    def _dir_state(self) -> tuple[int, ...]:
        new = (self.path / "new").stat()
        cur = (self.path / "cur").stat()
        return (new.st_ino, new.st_mtime_ns, cur.st_ino, cur.st_mtime_ns)

    def _settled(self, state: tuple[int, ...], taken_ns: int) -> bool:
        """True when ``state`` (taken at ``taken_ns``) would show any later change.

        A directory's mtime comes from the kernel's coarse clock: a rename in the same
        tick as the last change leaves it as it was. Only a stamp older than a tick is
        proof that a later, equal stamp means "nothing happened in between".
        """
        newest = max(state[1], state[3])
        return taken_ns - newest > _tick_ns(state[1], state[3])

    def _quiet_state(self) -> tuple[tuple[int, ...], bool]:
        """The directories' state, and whether it is settled (see :meth:`_settled`).

        When a change is younger than a tick, waits the tick out once (at most 50 ms, or a
        second on filesystems with whole-second times), as mbsync does.
        """
        taken = time.time_ns()
        state = self._dir_state()
        if self._settled(state, taken):
            return state, True
        tick = _tick_ns(state[1], state[3])
        time.sleep(max(0, tick - (taken - max(state[1], state[3]))) / 1e9 + 0.001)
        taken = time.time_ns()
        state = self._dir_state()
        return state, self._settled(state, taken)

    @property
    def stable(self) -> bool:
        """Whether the last scan() is a snapshot: neither directory changed while it ran.

        A readdir racing a reader's rename burst can miss a file, so an unstable scan's
        absences are no evidence of deletion (see :meth:`confirm_gone`).
        """
        return self._stable

    def confirm_gone(self, keys: Collection[LocalKey]) -> set[LocalKey]:
        """The subset of ``keys`` that provably has no file in new/ or cur/ right now.

        Each key is confirmed by a listing of both directories that no rename, delivery or
        deletion overlapped (their stamps settled before it and unchanged after it). While
        a reader keeps changing the folder, nothing is confirmed and the caller must wait
        for a later sync: a missing file that was only being renamed must never become a
        deletion on the other side.
        """
        if not keys:
            return set()
        try:
            for _ in range(_SCAN_ATTEMPTS):
                before, settled = self._quiet_state()
                if not settled:
                    continue
                present: set[str] = set()
                for subdir in ("new", "cur"):
                    with os.scandir(self.path / subdir) as it:
                        present.update(e.name.partition(":")[0] for e in it)
                if self._dir_state() == before:
                    return {k for k in keys if k not in present}
        except OSError as exc:
            log.warning("Maildir folder %s: cannot re-list it: %s", self.name, _os_message(exc))
            return set()
        log.info(
            "Maildir folder %s keeps changing; %d deletions wait for the next sync",
            self.name,
            len(keys),
        )
        return set()

    # -- reading ---------------------------------------------------------------------

    def scan(self, trusted: Collection[str] = ()) -> dict[LocalKey, LocalEntry]:
        """Every message in new/ and cur/, by key.

        ``trusted`` keys (messages already synced) skip the per-file empty/unreadable check,
        which is one stat per file: a resync of a big folder then costs one scandir.

        Junk is skipped with a warning: dotfiles, directories, symlinks, empty or unreadable
        files, names with an empty key. When a key is there twice, the cur/ file wins (a
        reader moved it), then the lexically first name.
        """
        self._require()
        try:
            for _ in range(_SCAN_ATTEMPTS - 1):
                before, settled = self._quiet_state()
                result = self._scan_once(trusted)
                if self._dir_state() == before:
                    self._stable = settled
                    self._scanned_state = before
                    return result
                log.debug("Maildir folder %s changed while listed; listing again", self.name)
            # Still changing: the listing is usable for copies and flags, but its absences
            # are not deletions (the engine checks `stable`).
            self._stable = False
            self._scanned_state = None
            return self._scan_once(trusted)
        except OSError as exc:
            raise FolderError(
                f"cannot list folder {self.name!r} at {self.path}: {_os_message(exc)}"
            ) from exc

    def _scan_once(self, trusted: Collection[str] = ()) -> dict[LocalKey, LocalEntry]:
        found: dict[LocalKey, LocalEntry] = {}
        checked: dict[str, set[str]] = {"new": set(), "cur": set()}
        damaged: set[LocalKey] = set()
        # new/ first: readers only move files from new/ to cur/, so a file moving during the
        # scan is seen at least once.
        for subdir in ("new", "cur"):
            for entry in self._list_sub(subdir, checked, damaged, trusted):
                old = found.get(entry.key)
                if old is not None:
                    keep, drop = self._pick(old, entry)
                    _warn_once(
                        f"dup:{self.path}/{drop.subdir}/{drop.name}",
                        "Maildir folder %s: %s/%s has the same key as %s/%s; using the latter",
                        self.name,
                        drop.subdir,
                        drop.name,
                        keep.subdir,
                        keep.name,
                    )
                    entry = keep
                found[entry.key] = entry
        self._checked = checked
        self._damaged = frozenset(damaged - found.keys())
        return found

    @staticmethod
    def _pick(a: LocalEntry, b: LocalEntry) -> tuple[LocalEntry, LocalEntry]:
        if a.subdir != b.subdir:
            return (a, b) if a.subdir == "cur" else (b, a)
        return (a, b) if a.name <= b.name else (b, a)

    def _list_sub(
        self,
        subdir: str,
        checked: dict[str, set[str]],
        damaged: set[LocalKey],
        trusted: Collection[str] = (),
    ) -> list[LocalEntry]:
        where = str(self.path / subdir)
        known = self._checked[subdir]
        ok = checked[subdir]
        out: list[LocalEntry] = []
        with os.scandir(where) as it:
            entries = list(it)
        # The loop body is the cost of a steady-state scan: no syscall for a known file.
        for entry in entries:
            name = entry.name
            if name.startswith(".") or not entry.is_file(follow_symlinks=False):
                _report_junk(entry)
                continue
            key, _, info = name.partition(":")
            if not key:
                _warn_once(
                    f"nokey:{entry.path}", "Maildir: ignoring %s: empty name before ':'", entry.path
                )
                continue
            if name not in known and key not in trusted:
                problem = _unusable(entry)
                if problem is not None:
                    if problem:
                        _warn_once(
                            f"{problem}:{entry.path}",
                            "Maildir: ignoring %s file %s",
                            problem,
                            entry.path,
                        )
                        damaged.add(LocalKey(key))
                    continue
            ok.add(name)
            flags = _INFO_FLAGS.get(info)
            if flags is None:
                flags = Flag.parse(_info_letters(info))
                if len(_INFO_FLAGS) < _INFO_CACHE_MAX:
                    _INFO_FLAGS[info] = flags
            out.append(LocalEntry(LocalKey(key), subdir, name, flags))
        return out

    def look_up(
        self, names: Collection[str]
    ) -> tuple[dict[LocalKey, LocalEntry], set[LocalKey], set[LocalKey]]:
        """Which of these files (``"cur/NAME"`` or ``"new/NAME"``) are messages now.

        For the names a file watch reported, without listing the folder: one lstat per
        name. Returns (the messages found, by key; the keys none of whose names is a
        file now; the keys found only as empty or unreadable files). A key missing here
        may have been renamed again under a name not reported yet, so it is a claim to
        confirm (:meth:`confirm_gone`) before anything is deleted for it.
        """
        found: dict[LocalKey, LocalEntry] = {}
        tried: set[LocalKey] = set()
        damaged: set[LocalKey] = set()
        for rel in names:
            key = key_of(rel)
            if key is None:
                continue
            subdir, _, name = rel.partition("/")
            tried.add(key)
            try:
                st = os.lstat(self.path / subdir / name)
            except OSError:
                continue
            if not stat.S_ISREG(st.st_mode):
                continue
            if st.st_size == 0 or not os.access(self.path / subdir / name, os.R_OK):
                damaged.add(key)
                continue
            entry = LocalEntry(key, subdir, name, _parse_name(name)[1])
            old = found.get(key)
            found[key] = entry if old is None else self._pick(old, entry)[0]
        damaged -= found.keys()
        return found, tried - found.keys() - damaged, damaged

    def _refind(self, key: LocalKey) -> LocalEntry | None:
        """Where the message ``key`` is now, after a reader renamed it; None if gone.

        A file being renamed while a directory is read can be missed, so "not found" is
        believed only from a listing that no change overlapped (or after three tries).
        """
        found: LocalEntry | None = None
        for _ in range(_SCAN_ATTEMPTS):
            try:
                before, settled = self._quiet_state()
            except OSError:
                return self._refind_once(key)
            found = self._refind_once(key)
            if found is not None:
                return found
            try:
                if settled and self._dir_state() == before:
                    return None
            except OSError:
                return None
        return found

    def _refind_once(self, key: LocalKey) -> LocalEntry | None:
        best: LocalEntry | None = None
        for subdir in ("new", "cur"):
            try:
                with os.scandir(self.path / subdir) as it:
                    names = [e.name for e in it if e.is_file(follow_symlinks=False)]
            except OSError:
                continue
            for name in names:
                if name == key or name.startswith(key + ":"):
                    entry = LocalEntry(key, subdir, name, _parse_name(name)[1])
                    best = entry if best is None else self._pick(best, entry)[0]
        return best

    def _retry(self, entry: LocalEntry, action: str) -> LocalEntry:
        found = self._refind(entry.key)
        if found is None:
            raise MessageError(
                f"Maildir folder {self.name!r}: cannot {action} message {entry.key}: "
                "it was deleted meanwhile"
            )
        log.debug(
            "Maildir folder %s: %s moved to %s/%s", self.name, entry.key, found.subdir, found.name
        )
        return found

    def _with_retry(self, entry: LocalEntry, action: str, op: Callable[[Path], _T]) -> _T:
        try:
            try:
                return op(self.path_of(entry))
            except FileNotFoundError:
                return op(self.path_of(self._retry(entry, action)))
        except FileNotFoundError as exc:
            raise MessageError(
                f"Maildir folder {self.name!r}: cannot {action} message {entry.key}: "
                "it vanished while being read"
            ) from exc
        except OSError as exc:
            raise MessageError(
                f"Maildir folder {self.name!r}: cannot {action} {self.path_of(entry)}: "
                f"{_os_message(exc)}"
            ) from exc

    def assumed_entry(self, key: LocalKey, flags: Flag) -> LocalEntry:
        """Where syncd itself would have put message ``key`` with ``flags``, unlisted.

        For a folder known to be unchanged since syncd last wrote it. Every operation on an
        entry goes from its name and looks the key up again when the name is wrong (a file
        kept in cur/ without flags, letters syncd does not know), so a wrong guess costs
        one listing, never a wrong action.
        """
        subdir = "cur" if flags else "new"
        entry = LocalEntry(key, subdir, _file_name(key, flags, "", subdir), flags)
        if Flag.S not in flags and not os.path.lexists(self.path_of(entry)):
            # Unread mail a reader has seen stays unflagged in cur/ (mutt's mark_old); and
            # deliver() leaves unread mail in new/ whatever its other flags ("key:2,F").
            other = "new" if subdir == "cur" else "cur"
            there = LocalEntry(key, other, _file_name(key, flags, "", other), flags)
            if os.path.lexists(self.path_of(there)):
                return there
        return entry

    def path_of(self, entry: LocalEntry) -> Path:
        return self.path / entry.subdir / entry.name

    def read(self, entry: LocalEntry) -> bytes:
        """The message's bytes exactly as stored. MessageError if it is gone or unreadable."""
        return self._with_retry(entry, "read", Path.read_bytes)

    def read_header(self, entry: LocalEntry) -> bytes:
        """The message's header block including the blank line that ends it.

        Reads in 8 KiB chunks and at most 256 KiB, so fingerprinting a folder does not read
        every body. ``fingerprint(read_header(e)) == fingerprint(read(e))`` unless the header
        is longer than the cap.
        """
        return self._with_retry(entry, "read", _read_header)

    def mtime(self, entry: LocalEntry) -> float:
        return self._with_retry(entry, "stat", lambda p: p.stat().st_mtime)

    def read_remote(self, entry: LocalEntry) -> bytes | UploadFile:
        """The message in the CRLF form to upload (:func:`~syncd.model.to_remote_bytes`).

        Up to one chunk (1 MiB) as bytes. A bigger file is returned open, as an
        :class:`UploadFile` that produces the same bytes a chunk at a time, so uploading a
        200 MB attachment never holds a copy of it; the caller closes it. MessageError if
        the file is gone or unreadable.
        """
        return self._with_retry(entry, "read", _open_remote)

    # -- writing ---------------------------------------------------------------------

    def _tmp_dir(self) -> Path:
        tmp = self.path / "tmp"
        if not os.path.lexists(tmp):
            _warn_once(
                f"notmp:{tmp}", "Maildir folder %s: %s was missing; creating it", self.name, tmp
            )
            try:
                tmp.mkdir(mode=_DIR_MODE)
            except FileExistsError:
                pass
            except OSError as exc:
                raise StoreError(f"cannot create {tmp}: {_os_message(exc)}") from exc
        return tmp

    def deliver(
        self, messages: Sequence[tuple[bytes | Iterable[bytes], Flag, float | None]]
    ) -> list[LocalEntry]:
        """Store messages (LF form, flags, mtime or None) durably; entries in input order.

        A message is its bytes, or an iterable of chunks written one after the other as
        they come (a big message converted chunk by chunk is never held whole: see
        :func:`syncd.model.to_local_chunks`).

        All or nothing: on any error (also one raised by a chunk iterable) the batch's files
        are removed from tmp/, new/ and cur/ and the error propagates; an OSError becomes
        StoreError with the system's message (ENOSPC, EDQUOT, EIO...). When it returns,
        every file is on stable storage and visible to readers.
        """
        if not messages:
            return []
        self._require()
        tmp = self._tmp_dir()
        pid = os.getpid()
        host = hostname()
        fds: dict[str, int] = {}
        staged: list[tuple[str, str, str]] = []  # tmp name, subdir, final name
        moved: list[tuple[str, str]] = []  # subdir, final name
        try:
            try:
                fds["tmp"] = os.open(tmp, _O_DIR)
                for data, flags, when in messages:
                    base = unique_name(pid, host)
                    tmp_name = base + TMP_SUFFIX
                    subdir = "cur" if Flag.S in flags else "new"
                    fd = os.open(tmp_name, _O_NEW_FILE, _FILE_MODE, dir_fd=fds["tmp"])
                    staged.append((tmp_name, subdir, _file_name(base, flags, "", subdir)))
                    try:
                        if isinstance(data, bytes):
                            _write_all(fd, data)
                        else:
                            for chunk in data:
                                _write_all(fd, chunk)
                        if when is not None:
                            os.utime(fd, (when, when))
                        if _syncfs is None:
                            os.fsync(fd)
                    finally:
                        os.close(fd)
                # One flush of the filesystem for the whole batch instead of one per file:
                # the journal commits once, which is what makes bulk downloads fast.
                if _syncfs is not None:
                    _sync_filesystem(fds["tmp"])
                for tmp_name, subdir, final in staged:
                    if subdir not in fds:
                        fds[subdir] = os.open(self.path / subdir, _O_DIR)
                    os.rename(tmp_name, final, src_dir_fd=fds["tmp"], dst_dir_fd=fds[subdir])
                    moved.append((subdir, final))
                for sub in ("new", "cur"):
                    if sub in fds:
                        os.fsync(fds[sub])
            except BaseException:
                self._undo(fds, staged, moved)
                raise
            finally:
                for fd in fds.values():
                    os.close(fd)
        except OSError as exc:
            raise StoreError(
                f"Maildir folder {self.name!r}: cannot deliver {len(messages)} messages to "
                f"{self.path}: {_os_message(exc)}"
            ) from exc
        entries = []
        for (_tmp_name, subdir, final), (_, flags, _when) in zip(staged, messages, strict=True):
            self._checked[subdir].add(final)
            entries.append(LocalEntry(LocalKey(_split(final)[0]), subdir, final, flags))
        log.debug("Maildir folder %s: delivered %d messages", self.name, len(entries))
        return entries

    def _undo(
        self, fds: dict[str, int], staged: list[tuple[str, str, str]], moved: list[tuple[str, str]]
    ) -> None:
        # Files already renamed were never reported to the caller, so they would come back as
        # "new local mail" and be uploaded again: take them out too.
        done = {final for _, final in moved}
        for subdir, final in moved:
            _quiet_unlink(final, fds.get(subdir), self.path / subdir)
        for tmp_name, _subdir, final in staged:
            if final not in done:
                _quiet_unlink(tmp_name, fds.get("tmp"), self.path / "tmp")

    def set_flags(self, entry: LocalEntry, flags: Flag) -> LocalEntry:
        """Change the message's flags from ``entry.flags`` to ``flags``; the entry as it is now.

        The rename is made *from* ``entry``'s name only. When a reader renamed the file
        meanwhile, its current flags are read again and only this change (the flags added
        and removed between ``entry.flags`` and ``flags``) is applied on top of them, so a
        flag the reader set at that moment is kept, never overwritten with stale ones.

        Letters syncd does not know are kept. Any flag moves a file from new/ to cur/; a file
        never moves back. MessageError if the message is gone. Call flush() before relying
        on the change surviving a crash.
        """
        if entry.flags == flags:
            return entry
        add, drop = flags & ~entry.flags, entry.flags & ~flags
        current, target = entry, flags
        try:
            for _ in range(_SCAN_ATTEMPTS):
                try:
                    return self._rename_flags(current, target)
                except FileNotFoundError:
                    found = self._refind(entry.key)
                    if found is None:
                        raise
                current = found
                target = (found.flags | add) & ~drop
                if target == found.flags:
                    return found
                log.debug(
                    "Maildir folder %s: %s was renamed meanwhile to %s; merging",
                    self.name,
                    entry.key,
                    found.name,
                )
        except FileNotFoundError as exc:
            raise MessageError(
                f"Maildir folder {self.name!r}: cannot change flags of {entry.key}: it "
                "was deleted meanwhile"
            ) from exc
        except OSError as exc:
            raise FolderError(
                f"Maildir folder {self.name!r}: cannot rename {self.path_of(current)}: "
                f"{_os_message(exc)}"
            ) from exc
        raise MessageError(
            f"Maildir folder {self.name!r}: cannot change flags of {entry.key}: it keeps "
            "being renamed"
        )

    def _rename_flags(self, entry: LocalEntry, flags: Flag) -> LocalEntry:
        subdir = "cur" if (flags or entry.subdir == "cur") else "new"
        name = _file_name(entry.key, flags, _extra_letters(entry.name), subdir)
        new = LocalEntry(entry.key, subdir, name, flags)
        if new.subdir == entry.subdir and new.name == entry.name:
            return new
        self.path_of(entry).rename(self.path_of(new))
        self._checked[subdir].add(name)
        self._dirty.update((entry.subdir, subdir))
        return new

    def remove(self, entry: LocalEntry) -> bool:
        """Delete the message if it is unchanged since ``entry`` was read; True if it is gone.

        The file is unlinked by ``entry``'s name only. A reader that renamed it meanwhile
        either only moved it (new/ to cur/ with the same flags: it is deleted there) or
        changed its flags: then it is kept and False returned, since a message changed on
        one side survives its deletion on the other. A message already gone is not an error.
        """
        current = entry
        for _ in range(_SCAN_ATTEMPTS):
            try:
                self.path_of(current).unlink()
            except FileNotFoundError:
                found = self._refind(entry.key)
                if found is None:
                    return True
                if found.flags != entry.flags:
                    log.info(
                        "Maildir folder %s: %s changed (now %s) while being deleted; keeping it",
                        self.name,
                        entry.key,
                        found.name,
                    )
                    return False
                current = found
                continue
            except OSError as exc:
                raise MessageError(
                    f"Maildir folder {self.name!r}: cannot delete {self.path_of(current)}: "
                    f"{_os_message(exc)}"
                ) from exc
            self._dirty.add(current.subdir)
            return True
        raise MessageError(
            f"Maildir folder {self.name!r}: cannot delete {entry.key}: it keeps being renamed"
        )

    def adopt(self, entry: LocalEntry, source: MaildirFolder) -> LocalEntry:
        """Move a message from ``source`` (a folder of the same store) here, keeping its name."""
        self._require()

        def move(src: Path) -> LocalEntry:
            subdir = src.parent.name
            dst = self.path / subdir / src.name
            src.rename(dst)
            return LocalEntry(entry.key, subdir, src.name, _parse_name(src.name)[1])

        try:
            new = source._with_retry(entry, "move", move)
        except MessageError as exc:
            if isinstance(exc.__cause__, OSError) and exc.__cause__.errno == errno.EXDEV:
                raise FolderError(
                    f"cannot move messages from {source.path} to {self.path}: different filesystems"
                ) from exc
            raise
        self._checked[new.subdir].add(new.name)
        self._dirty.add(new.subdir)
        source._dirty.add(new.subdir)
        return new

    def flush(self) -> None:
        """Make the renames and deletions done since the last flush durable (fsync new/, cur/)."""
        try:
            for sub in sorted(self._dirty):
                fsync_dir(self.path / sub)
        except OSError as exc:
            raise StoreError(
                f"Maildir folder {self.name!r}: cannot sync {self.path}: {_os_message(exc)}"
            ) from exc
        self._dirty.clear()

    def clean_tmp(self) -> int:
        """Delete leftover ``tmp/*.syncd-tmp`` files of an interrupted delivery; how many."""
        tmp = self.path / "tmp"
        count = 0
        try:
            with os.scandir(tmp) as it:
                leftovers = [
                    e.path
                    for e in it
                    if e.name.endswith(TMP_SUFFIX) and e.is_file(follow_symlinks=False)
                ]
        except (FileNotFoundError, NotADirectoryError):
            return 0
        except OSError as exc:
            raise FolderError(f"cannot list {tmp}: {_os_message(exc)}") from exc
        for path in leftovers:
            try:
                Path(path).unlink()
                count += 1
            except FileNotFoundError:
                pass
            except OSError as exc:
                raise FolderError(f"cannot remove {path}: {_os_message(exc)}") from exc
        if count:
            log.info(
                "Maildir folder %s: removed %d unfinished deliveries from tmp/", self.name, count
            )
        return count


class UploadFile:
    """An open message file, read as its CRLF form one chunk at a time for an upload.

    ``size`` is the exact length of that form, counted when the file was opened, as an
    IMAP literal must announce it before the first byte. The file stays open, so a reader
    renaming it meanwhile changes nothing. If its content changes anyway (Maildir files are
    never rewritten, but an editor might), :meth:`chunks` raises MessageError before the
    last chunk: the server never receives a complete literal of the wrong length.
    """

    def __init__(self, path: Path) -> None:
        self.path = path
        self._file = path.open("rb", buffering=0)
        try:
            self.head = self._file.read(CHUNK_BYTES)
            """The first chunk as stored (LF form): enough to sniff and fingerprint."""
            self.size = remote_size(
                itertools.chain((self.head,), iter(lambda: self._file.read(CHUNK_BYTES), b""))
            )
        except BaseException:
            self._file.close()
            raise

    def chunks(self) -> Iterator[bytes]:
        """The CRLF form from the start of the file; its lengths add up to ``size``."""
        self._file.seek(0)
        pending = b""
        total = 0  # bytes yielded plus pending: never more than announced
        for chunk in to_remote_chunks(iter(lambda: self._file.read(CHUNK_BYTES), b"")):
            total += len(chunk)
            if total > self.size:
                break
            # One chunk of look-ahead: the last one goes out only once the end of the file
            # confirms the length, so a changed file never completes the literal.
            if pending:
                yield pending
            pending = chunk
        if total != self.size:
            raise MessageError(
                f"{self.path} changed while it was being uploaded ({self.size} bytes "
                f"announced, {'more' if total > self.size else total} read); it is uploaded "
                "again by the next sync"
            )
        if pending:
            yield pending

    def close(self) -> None:
        self._file.close()


def _open_remote(path: Path) -> bytes | UploadFile:
    with path.open("rb", buffering=0) as f:
        if os.fstat(f.fileno()).st_size <= CHUNK_BYTES:
            return to_remote_bytes(f.read())
    return UploadFile(path)


@contextlib.contextmanager
def _suppress_os() -> Iterator[None]:
    try:
        yield
    except OSError as exc:
        log.warning("Maildir: %s", _os_message(exc))


def _quiet_unlink(name: str, dir_fd: int | None, where: Path) -> None:
    try:
        if dir_fd is not None:
            os.unlink(name, dir_fd=dir_fd)
        else:
            (where / name).unlink()
    except OSError as exc:
        log.warning(
            "Maildir: could not remove %s/%s while undoing a delivery: %s",
            where,
            name,
            _os_message(exc),
        )


def _header_end(buf: bytearray, start: int) -> int:
    """Offset just past the blank line ending the header, or -1 (LF, CRLF or mixed)."""
    lf = buf.find(b"\n\n", start)
    crlf = buf.find(b"\n\r\n", start)
    ends = [i + n for i, n in ((lf, 2), (crlf, 3)) if i >= 0]
    return min(ends) if ends else -1


def _read_header(path: Path) -> bytes:
    buf = bytearray()
    with path.open("rb", buffering=0) as f:
        while len(buf) < _HEADER_CAP:
            chunk = f.read(_HEADER_CHUNK)
            if not chunk:
                break
            # Look back 2 bytes: the blank line may straddle two chunks.
            start = max(0, len(buf) - 2)
            buf += chunk
            end = _header_end(buf, start)
            if end >= 0:
                return bytes(buf[:end])
    return bytes(buf[:_HEADER_CAP])
