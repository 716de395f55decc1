"""Plan the folder list: which folders to sync, create or report gone."""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from fnmatch import fnmatchcase


def folder_selected(name: str, patterns: Sequence[str]) -> bool:
    """Whether ``name`` matches the account's ``folders:`` patterns.

    Patterns are globs over the whole name: "*" matches anything (also across "/"), "?"
    one character; brackets are literal, so "![Gmail]/All Mail" means that folder. A
    pattern starting with "!" excludes. A name is selected when some include pattern matches and no
    exclude pattern does. "INBOX" is compared case-insensitively, as IMAP does.
    """
    candidates = {name, "INBOX"} if name.upper() == "INBOX" else {name}
    included = False
    for pattern in patterns:
        exclude = pattern.startswith("!")
        glob = pattern[1:] if exclude else pattern
        glob = glob.replace("[", "[[]")  # Gmail's "[Gmail]/..." is a name, not a class
        if glob.upper() == "INBOX":
            glob = "INBOX"
        if any(fnmatchcase(c, glob) for c in candidates):
            if exclude:
                return False
            included = True
    return included


@dataclass(frozen=True, slots=True)
class FolderPlan:
    """The folder-level decisions of one account sync.

    ``sync`` folders exist on both sides (after the creations). ``gone_remote`` and
    ``gone_local`` were synced before and have since vanished on that side: the engine
    deletes the survivor only if it holds nothing unsynced, else it reports them.
    """

    sync: tuple[str, ...]
    create_local: tuple[str, ...]
    create_remote: tuple[str, ...]
    gone_remote: tuple[str, ...]
    gone_local: tuple[str, ...]
    forget: tuple[str, ...]


def plan_folders(
    remote: Iterable[str],
    local: Iterable[str],
    known: Iterable[str],
    patterns: Sequence[str],
) -> FolderPlan:
    """Compare the folder names on both sides with the ones synced before (``known``).

    Pure. A folder new on one side is created on the other; one that vanished from a side
    after having been synced is reported as gone there; folders outside ``patterns`` are
    left alone on both sides.
    """
    remote_set = {n for n in remote if folder_selected(n, patterns)}
    local_set = {n for n in local if folder_selected(n, patterns)}
    known_set = set(known)
    sync: list[str] = []
    create_local: list[str] = []
    create_remote: list[str] = []
    gone_remote: list[str] = []
    gone_local: list[str] = []
    forget: list[str] = []
    for name in sorted(remote_set | local_set | known_set):
        on_remote, on_local, was = name in remote_set, name in local_set, name in known_set
        if on_remote and on_local:
            sync.append(name)
        elif on_remote:
            (gone_local if was else create_local).append(name)
        elif on_local:
            (gone_remote if was else create_remote).append(name)
        elif was and folder_selected(name, patterns):
            forget.append(name)
    return FolderPlan(
        tuple(sync),
        tuple(create_local),
        tuple(create_remote),
        tuple(gone_remote),
        tuple(gone_local),
        tuple(forget),
    )
