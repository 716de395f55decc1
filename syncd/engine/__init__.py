"""Apply plans through the drivers.

Theory of operation
-------------------
The engine is the only layer that does I/O for a sync. For one account it takes the
account lock, binds the Maildir to the state (so an unmounted or wrong Maildir is refused
instead of read as "everything was deleted"), lists folders on both sides, and then for
each folder: takes snapshots (a delta from HIGHESTMODSEQ where the server allows, or
nothing at all when STATUS and the local change stamp say nothing changed), asks the
planner for a plan, and applies it.

Write order is what makes a crash harmless. A message copy is made durable on the target
side first and recorded in the base after; a deletion happens first and its base pair is
dropped after. So a crash can only leave (a) copies that are not yet recorded, which the
next run pairs by header fingerprint instead of copying again, or (b) pairs whose message
is already gone on both sides, which the next run forgets. Neither loses nor duplicates.
"""

from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from syncd.engine.sync import FolderReport, SyncReport, sync_account

__all__ = ["FolderReport", "SyncReport", "sync_account"]


def __getattr__(name: str) -> object:
    # Loaded on first use: syncd.engine.sync imports the IMAP driver (imapclient, ssl),
    # which `syncd status` and `syncd send` never need.
    if name in __all__:
        from syncd.engine import sync

        return getattr(sync, name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
