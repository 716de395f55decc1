"""Watch Maildir trees and outboxes with inotify (watchdog) and report which folder changed."""

from __future__ import annotations

import itertools
import logging
import os
import threading
import warnings
from collections.abc import Callable
from pathlib import Path
from typing import Any

log = logging.getLogger(__name__)

_SUBDIRS = ("cur", "new")
FENCE = ".syncd-fence"
"""Name prefix of a file made and removed in a watched root: once its event arrives, every
event of a change made before it has arrived too (one inotify queue, reported in order).
Each fence has a name of its own: the late events of an earlier fence (its removal comes
after its creation) must not pass for this one's."""

OUTBOX = "\0outbox"
"""The folder name reported for a change in an account's outbox."""


def folder_of(path: Path, root: Path, layout: str) -> str | None:
    """The Maildir folder a changed path belongs to, or None when it is not mail.

    Files in ``tmp/`` are deliveries in progress (ours or another program's): not a change
    yet. Their rename into ``new/`` or ``cur/`` is.
    """
    try:
        parts = path.relative_to(root).parts
    except ValueError:
        return None
    if not parts or any(p.startswith(".syncd") for p in parts):
        return None
    subs = {"cur", "new", "tmp"}
    if layout == "maildir++":
        if parts[0] in subs:
            return None if parts[0] == "tmp" else "INBOX"
        if not parts[0].startswith(".") or parts[0] in (".", ".."):
            return None
        name = parts[0][1:].replace(".", "/")
        if len(parts) > 1 and parts[1] == "tmp":
            return None
        return name or None
    for i, part in enumerate(parts):
        if part in subs:
            if part == "tmp" or i == 0:
                return None
            return "/".join(parts[:i])
        if part.startswith("."):
            return None
    return "/".join(parts)


def _events() -> list[Any]:
    """What changes a Maildir: files and folders made, renamed, removed, and a file written
    in place (a program that skips tmp/). Not opens, reads or attribute changes: a mail
    reader opens message files all the time, and each would cost an inotify event read and
    parsed in Python (the kernel drops them when they are not asked for)."""
    from watchdog import events as e

    return [
        e.FileCreatedEvent,
        e.FileMovedEvent,
        e.FileDeletedEvent,
        e.FileClosedEvent,
        e.DirCreatedEvent,
        e.DirMovedEvent,
        e.DirDeletedEvent,
    ]


class _LostEvents(logging.Handler):
    """Calls ``on_lost`` when watchdog reports that the kernel dropped events.

    watchdog rebuilds its watches after an inotify queue overflow and says so only in its
    log (``Inotify queue overflowed``); the daemon must then list every folder again.
    """

    def __init__(self, on_lost: Callable[[], None]) -> None:
        super().__init__(logging.WARNING)
        self._on_lost = on_lost

    def emit(self, record: logging.LogRecord) -> None:
        if "overflow" in str(record.msg).lower():
            self._on_lost()


class Watcher:
    """One inotify observer for every watched tree.

    Calls ``on_change(account, folder, name)`` for each change: ``name`` is the message
    file (``cur/NAME`` or ``new/NAME``) that appeared, was renamed or went away, or None
    when the change is not one file's (a folder made or removed). ``on_lost()`` when the
    kernel dropped events: what changed meanwhile is unknown.
    """

    def __init__(
        self,
        on_change: Callable[[str, str, str | None], None],
        on_lost: Callable[[], None] | None = None,
    ) -> None:
        from watchdog.observers import Observer

        # A folder syncd creates gets its watch added twice (by the creation event and by
        # watchdog's own walk of the new tree), and watchdog warns about that on stderr,
        # a screenful in the journal at the first start. Nothing is wrong: hush it.
        warnings.filterwarnings("ignore", "Callback with id", RuntimeWarning, r"watchdog\.")
        self._on_change = on_change
        self._observer: Any = Observer()
        self._started = False
        self._lost_hook: logging.Handler | None = None
        self._fences: dict[str, threading.Event] = {}
        self._fence_ids = itertools.count()
        if on_lost is not None:
            self._lost_hook = _LostEvents(on_lost)
            logging.getLogger("watchdog.observers").addHandler(self._lost_hook)

    def watch_maildir(self, account: str, root: Path, layout: str, outbox: Path) -> None:
        from watchdog.events import FileSystemEvent, FileSystemEventHandler

        wanted = _events()
        on_change = self._on_change
        fences = self._fences

        class Handler(FileSystemEventHandler):
            def on_any_event(self, event: FileSystemEvent) -> None:
                if event.event_type in ("opened", "closed_no_write"):
                    return
                paths = [event.src_path]
                dest = getattr(event, "dest_path", "")
                if dest:
                    paths.append(dest)
                for raw in paths:
                    p = Path(raw.decode() if isinstance(raw, bytes) else raw)
                    if p.name.startswith(FENCE):
                        fence = fences.get(str(p))
                        if fence is not None:
                            fence.set()
                        continue
                    if p == outbox or outbox in p.parents:
                        if "new" in p.relative_to(outbox).parts[:1]:
                            on_change(account, OUTBOX, None)
                        continue
                    folder = folder_of(p, root, layout)
                    if folder is None:
                        continue
                    if event.is_directory:
                        if event.event_type != "modified":
                            on_change(account, folder, None)  # a folder made or removed
                        # else: cur/ or new/ changed, and each file's own event says how
                        continue
                    sub = p.parent.name
                    on_change(account, folder, f"{sub}/{p.name}" if sub in _SUBDIRS else None)

        root.mkdir(parents=True, exist_ok=True, mode=0o700)
        self._observer.schedule(Handler(), str(root), recursive=True, event_filter=wanted)
        if not (outbox == root or root in outbox.parents):
            (outbox / "new").mkdir(parents=True, exist_ok=True, mode=0o700)
            self._observer.schedule(Handler(), str(outbox), recursive=True, event_filter=wanted)

    def fence(self, root: Path, timeout: float = 2.0) -> bool:
        """Wait until every event of a change made in ``root`` before now was reported.

        False when that could not be shown (the fence file could not be made, or its
        event did not come in time): the caller must then distrust the watch.
        """
        path = root / f"{FENCE}.{os.getpid()}.{next(self._fence_ids)}"
        done = threading.Event()
        self._fences[str(path)] = done
        try:
            fd = os.open(path, os.O_CREAT | os.O_WRONLY, 0o600)
            os.close(fd)
            path.unlink()
        except OSError:
            self._fences.pop(str(path), None)
            return False
        try:
            return done.wait(timeout)
        finally:
            self._fences.pop(str(path), None)

    def start(self) -> None:
        self._observer.start()
        self._started = True

    def stop(self) -> None:
        if self._started:
            self._observer.stop()
            self._observer.join(timeout=5)
            self._started = False
        if self._lost_hook is not None:
            logging.getLogger("watchdog.observers").removeHandler(self._lost_hook)
            self._lost_hook = None
