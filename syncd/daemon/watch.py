"""Watch Maildir trees and outboxes with inotify (watchdog) and report which folder changed."""

from __future__ import annotations

import logging
from collections.abc import Callable
from pathlib import Path
from typing import Any

log = logging.getLogger(__name__)

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


class Watcher:
    """One inotify observer for every watched tree; calls ``on_change(account, folder)``."""

    def __init__(self, on_change: Callable[[str, str], None]) -> None:
        from watchdog.observers import Observer

        self._on_change = on_change
        self._observer: Any = Observer()
        self._started = False

    def watch_maildir(self, account: str, root: Path, layout: str, outbox: Path) -> None:
        from watchdog.events import FileSystemEvent, FileSystemEventHandler

        on_change = self._on_change

        class Handler(FileSystemEventHandler):
            def on_any_event(self, event: FileSystemEvent) -> None:
                if event.event_type in ("opened", "closed", "closed_no_write"):
                    return
                paths = [event.src_path]
                dest = getattr(event, "dest_path", "")
                if dest:
                    paths.append(dest)
                for raw in paths:
                    p = Path(raw.decode() if isinstance(raw, bytes) else raw)
                    if p == outbox or outbox in p.parents:
                        if "new" in p.relative_to(outbox).parts[:1]:
                            on_change(account, OUTBOX)
                        continue
                    folder = folder_of(p, root, layout)
                    if folder is not None:
                        on_change(account, folder)

        root.mkdir(parents=True, exist_ok=True, mode=0o700)
        self._observer.schedule(Handler(), str(root), recursive=True)
        if not (outbox == root or root in outbox.parents):
            (outbox / "new").mkdir(parents=True, exist_ok=True, mode=0o700)
            self._observer.schedule(Handler(), str(outbox), recursive=True)

    def start(self) -> None:
        self._observer.start()
        self._started = True

    def stop(self) -> None:
        if self._started:
            self._observer.stop()
            self._observer.join(timeout=5)
            self._started = False
