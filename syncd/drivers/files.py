"""Two file-system helpers shared by the Maildir and the outbox; standard library only.

Kept apart from :mod:`syncd.drivers.maildir` so that ``syncd sendmail``, which queues one
message in the outbox, does not import the whole Maildir driver.
"""

from __future__ import annotations

import os

TYPE_CHECKING = False
if TYPE_CHECKING:
    from pathlib import Path

_O_DIR = os.O_RDONLY | getattr(os, "O_DIRECTORY", 0) | getattr(os, "O_CLOEXEC", 0)


def hostname() -> str:
    """This host's name for Maildir file names."""
    # The Maildir spec's escapes: "/" and ":" would break the path and the info separator.
    # uname's node name is what socket.gethostname() returns, without importing socket
    # (milliseconds of every `syncd sendmail`).
    return os.uname().nodename.replace("/", "\\057").replace(":", "\\072")


def fsync_dir(path: Path | str) -> None:
    """Make a directory's entries (a rename, a new file) durable."""
    fd = os.open(path, _O_DIR)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)
