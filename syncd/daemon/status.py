"""The daemon's status file: written by the running daemon, read by ``syncd status``.

Apart from the supervisor so that ``syncd status`` reads it without importing the daemon
(its IDLE watchers import the IMAP driver).
"""

from __future__ import annotations

import json
import logging
import os
from pathlib import Path
from typing import Any

log = logging.getLogger(__name__)

STATUS_FILE = "daemon.json"


def write_status_file(state_dir: Path, data: dict[str, Any]) -> None:
    """Atomically replace the daemon's status file (read by ``syncd status``)."""
    state_dir.mkdir(parents=True, exist_ok=True, mode=0o700)
    path = state_dir / STATUS_FILE
    tmp = path.with_suffix(".tmp")
    try:
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(fd, "w") as f:
            json.dump(data, f, indent=1, sort_keys=True)
        tmp.replace(path)
    except OSError as exc:
        log.warning("cannot write %s: %s", path, exc)


def read_status_file(state_dir: Path) -> dict[str, Any] | None:
    """The running daemon's status, or None when no daemon is running."""
    path = state_dir / STATUS_FILE
    try:
        data = json.loads(path.read_text())
    except (OSError, ValueError):
        return None
    if not isinstance(data, dict) or not data.get("running"):
        return None
    pid = data.get("pid")
    if not isinstance(pid, int):
        return None
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return None
    except PermissionError:
        pass
    return data
