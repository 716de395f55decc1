"""The pure core of syncd: decide what to do, never do it.

Theory of operation
-------------------
A folder is synced by comparing three things: the remote snapshot (UID -> flags), the
local snapshot (key -> flags) and the base, the pairs both sides agreed on at the end of
the last sync. The planner turns them into a :class:`~syncd.planner.actions.Plan`, an
ordered list of actions for the engine to apply. It is total and deterministic: the same
inputs always give the same plan, and it does no I/O, reads no clock and logs nothing, so
it can be tested exhaustively (``tests/planner``).

For each pair in the base:

* both sides still hold the message: the flags are merged per flag against the base (a
  flag changed on one side propagates; changed on both sides the same way, nothing to do);
* one side lost it and the other did not change it since the base: the deletion
  propagates;
* one side lost it and the other changed it: **changes win over deletions**. The changed
  copy is kept and copied back, so a message flagged on the phone while deleted on the
  laptop survives. Nothing a user touched is ever lost by a conflict;
* both sides lost it: the pair is forgotten.

Messages in neither the base nor a pair are new. Before copying a new message across, the
planner looks for an equal message on the other side (same header fingerprint): this is
how an existing Maildir is adopted on a first run, how a UIDVALIDITY change is survived,
and how a sync interrupted between an upload and its record resumes without a duplicate.
Matched messages are paired with the union of their flags.

A plan that would delete more than ``policy.max_delete_share`` of a folder holding more
than ``policy.guard_min_messages`` messages on either side is refused as a whole (the mass
deletion guard): a server that suddenly shows an empty INBOX, or an unmounted Maildir,
must never wipe the other side.

Across folders, :func:`~syncd.planner.moves.plan_moves` turns a delete in one folder plus
a copy of the same message into another folder into a single move, so a message moved in
a mail reader is moved on the server instead of being uploaded again.
"""

from syncd.planner.actions import Copy, Delete, Forget, Link, Move, Plan, SetFlags
from syncd.planner.folder import guard_plan, merge_flags, plan_folder
from syncd.planner.folders import FolderPlan, folder_selected, plan_folders
from syncd.planner.moves import plan_moves

__all__ = [
    "Copy",
    "Delete",
    "FolderPlan",
    "Forget",
    "Link",
    "Move",
    "Plan",
    "SetFlags",
    "folder_selected",
    "guard_plan",
    "merge_flags",
    "plan_folder",
    "plan_folders",
    "plan_moves",
]
