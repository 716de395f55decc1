"""Two-way sync of one IMAP account with its Maildir."""

from __future__ import annotations

import datetime as dt
import logging
import os
import re
import time
from collections.abc import Callable, Collection, Mapping, Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import TYPE_CHECKING

from syncd.drivers.imap import Fetched, FolderStatus, ImapSession, Listing
from syncd.drivers.maildir import LocalEntry, MaildirFolder, MaildirStore, UploadFile, key_of
from syncd.errors import FolderError, MessageError, StoreError, SyncdError, TransientError
from syncd.model import (
    Fingerprint,
    Flag,
    LocalKey,
    Pair,
    Policy,
    Side,
    Uid,
    chunks_of,
    fingerprint,
    to_local_chunks,
)
from syncd.planner import (
    Copy,
    Delete,
    Forget,
    Link,
    Move,
    Plan,
    SetFlags,
    plan_folder,
    plan_folders,
    plan_moves,
)
from syncd.state import AccountLock, FolderState, State

if TYPE_CHECKING:
    from syncd.config import AccountConfig, ImapConfig

log = logging.getLogger(__name__)

Progress = Callable[[str, int, int], None]
"""progress(folder, done, total) while downloading."""

UPLOAD_BATCH_BYTES = 4 * 1024 * 1024
# Remote fingerprints are fetched for new server messages (to spot moves made by other
# clients) only while there are few of them; an initial sync should not pay for headers.
MOVE_PROBE_LIMIT = 500


@dataclass(slots=True)
class FolderReport:
    name: str
    downloaded: int = 0
    uploaded: int = 0
    flags_remote: int = 0
    flags_local: int = 0
    deleted_remote: int = 0
    deleted_local: int = 0
    moved: int = 0
    matched: int = 0
    deferred: int = 0
    held: tuple[str, ...] = ()
    """New local files (``cur/NAME``) not uploaded yet: copies of messages synced in other
    folders, made moments ago. A mail reader moves by copying first and deleting later;
    the daemon syncs the folder again when the deletion comes (then it is one MOVE on the
    server, keywords kept) or once the copy is old enough to be a copy."""
    from_delta: bool = False
    """Planned from the server's changes alone (no local listing, only the pairs touched)."""
    relist: bool = False
    """Something was held back or could not be done locally (a reader was busy in the
    folder): the next sync must list the folder, not trust the file watch's names."""
    skipped: bool = False
    created: str | None = None
    error: str | None = None
    notes: list[str] = field(default_factory=list)
    planned: Plan | None = None

    @property
    def changed(self) -> bool:
        return any(
            (
                self.downloaded,
                self.uploaded,
                self.flags_remote,
                self.flags_local,
                self.deleted_remote,
                self.deleted_local,
                self.moved,
                self.matched,
                self.created,
            )
        )

    def summary(self) -> str:
        parts = []
        for label, n in (
            ("downloaded", self.downloaded),
            ("uploaded", self.uploaded),
            ("flags pushed", self.flags_remote),
            ("flags pulled", self.flags_local),
            ("deleted on server", self.deleted_remote),
            ("deleted locally", self.deleted_local),
            ("moved", self.moved),
            ("matched", self.matched),
        ):
            if n:
                parts.append(f"{n} {label}")
        if self.created:
            parts.insert(0, f"created {self.created}")
        return ", ".join(parts) if parts else "in sync"


@dataclass(slots=True)
class SyncReport:
    account: str
    folders: dict[str, FolderReport] = field(default_factory=dict)
    error: str | None = None

    @property
    def ok(self) -> bool:
        return self.error is None and not any(f.error for f in self.folders.values())

    def folder(self, name: str) -> FolderReport:
        if name not in self.folders:
            self.folders[name] = FolderReport(name)
        return self.folders[name]


@dataclass(frozen=True, slots=True)
class LocalChanges:
    """What the daemon's file watch saw in the Maildir since each folder was last synced.

    It stands in for listing the folders: a folder with no names here is taken to be as
    the last sync left it. Only the daemon, whose watch was running through that sync and
    lost no event since, may claim that; anything else lists.
    """

    names: Mapping[str, frozenset[str]] = field(default_factory=dict)
    """Per folder, the files (``cur/NAME``, ``new/NAME``) that appeared, were renamed or
    went away."""
    unknown: frozenset[str] = frozenset()
    """Folders that changed in ways the watch could not name: listed whole."""
    server_quiet: frozenset[str] = frozenset()
    """Folders synced for their local changes only: the server's side of the messages not
    touched locally is left to IDLE or the next poll."""
    since: Callable[[], Collection[str] | None] | None = None
    """The files (``cur/NAME``, in any folder) the watch reported since ``names`` were
    taken, asked after the files were looked at, once the watch has caught up; None when
    that cannot be told. A message whose file went missing and is named there may have
    been moved meanwhile into a folder whose names were already taken: it would otherwise
    look deleted (or, with a server change, be restored)."""


class _Assumed(dict[LocalKey, LocalEntry]):
    """Entries of messages not listed: where syncd itself put each (made when first asked)."""

    def __init__(self, folder: MaildirFolder, flags: Mapping[LocalKey, Flag]) -> None:
        super().__init__()
        self._folder = folder
        self._flags = flags

    def __missing__(self, key: LocalKey) -> LocalEntry:
        entry = self._folder.assumed_entry(key, self._flags[key])
        self[key] = entry
        return entry

    def get(self, key: LocalKey, default: LocalEntry | None = None) -> LocalEntry | None:  # type: ignore[override]
        try:
            return self[key]
        except KeyError:
            return default


_LIST = object()
"""_snapshot_tracked's answer when the folder must be listed after all."""


@dataclass(slots=True)
class _Snap:
    """Everything known about one folder between planning and applying."""

    name: str
    status_uidvalidity: int
    status_uidnext: int
    status_messages: int
    status_modseq: int | None
    stamp_before: str | None
    base: dict[Uid, Pair]
    entries: dict[LocalKey, LocalEntry]
    sizes: dict[Uid, int]
    local_fps: dict[LocalKey, Fingerprint]
    remote_fps: dict[Uid, Fingerprint]
    reset: bool
    stable: bool = True
    """Whether the local scan was a snapshot (no rename overlapped it)."""
    deferred: bool = False
    """Some deletions or moves were held back: the next sync must list the folder again."""
    unseen: set[LocalKey] = field(default_factory=set)
    """Synced messages an unstable scan did not list: taken as unchanged this time."""
    scanned: tuple[int, ...] | None = None
    """The local directories' state when they were listed (None: not listed)."""
    inputs: tuple[dict[Uid, Flag], dict[LocalKey, Flag]] | None = None
    """The remote and local snapshots the plan was made from, to plan again."""
    delta: bool = False
    """Planned from the server's changes alone: ``base`` and ``entries`` hold only the
    messages those touch (see AccountSync._snapshot_delta)."""
    plan: Plan = field(default_factory=Plan)
    held: bool = False
    """Some new local files were held back (FolderReport.held): the local side is not as
    the state says, so its stamp must not be saved."""
    sizes_count: tuple[int, int] = (0, 0)
    """(remote, local) message counts as listed, for the mass-deletion guard."""

    def replan(self, remote: dict[Uid, Flag], local: dict[LocalKey, Flag], policy: Policy) -> None:
        """Plan (again) from these snapshots, kept in ``inputs``; the guard is the caller's."""
        self.inputs = (remote, local)
        self.plan = plan_folder(
            remote,
            local,
            list(self.base.values()),
            policy,
            remote_fps=self.remote_fps,
            local_fps=self.local_fps,
            guard=False,
        )


class AccountSync:
    """One sync run of one IMAP account; create, call :meth:`run`, discard."""

    def __init__(
        self,
        account: AccountConfig,
        state: State,
        session: ImapSession,
        *,
        policy: Policy,
        only_folder: str | None = None,
        folders: Collection[str] | None = None,
        dry_run: bool = False,
        progress: Progress | None = None,
        watched: LocalChanges | None = None,
        hold_copies: float = 0.0,
    ) -> None:
        self.account = account
        self.state = state
        self.session = session
        self.policy = policy
        self.only_folder = only_folder
        self.folders = set(folders) if folders is not None else None
        self.dry_run = dry_run
        self.progress = progress
        self.watched = watched
        self.hold_copies = hold_copies
        self.store = MaildirStore(account.maildir, account.layout.value, exclude=[account.outbox])
        self.report = SyncReport(account.name)
        self.moves: tuple[Move, ...] = ()
        # Folders a dry run pretends to have created: (side where it is missing, name).
        self._virtual: set[tuple[Side, str]] = set()

    # -- the run ---------------------------------------------------------------------

    def run(self) -> SyncReport:
        acct = self.account
        assert acct.imap is not None
        expected = self.state.get_meta("maildir_id")
        if self.dry_run and expected is None and not acct.maildir.exists():
            maildir_id = None
        else:
            maildir_id = self.store.bind(expected)
        if maildir_id is not None and expected is None and not self.dry_run:
            self.state.set_meta("maildir_id", maildir_id)

        self.session.legacy_names = self._legacy_names()
        remote = self.session.list_folders()
        local = self.store.list_folders() if acct.maildir.exists() else []
        if not self.dry_run and self.watched is None:
            for name in local:
                # Leftovers of a run that was killed mid-delivery; we hold the lock.
                self.store.folder(name).clean_tmp()
        known = self.state.folders()
        patterns = acct.imap.folders
        fplan = plan_folders(remote, local, known, patterns)
        sync = list(fplan.sync)
        if self.only_folder is not None and self.only_folder not in (
            set(remote) | set(local) | set(known)
        ):
            raise FolderError(f"no folder named {self.only_folder!r} on either side")

        def wanted(name: str) -> bool:
            if self.folders is not None and name not in self.folders:
                return False
            return self.only_folder is None or name == self.only_folder

        self._guard_folders(fplan.gone_local, fplan.gone_remote, known)
        for name in fplan.create_local:
            if wanted(name) and self._create(Side.LOCAL, name):
                sync.append(name)
        for name in fplan.create_remote:
            if wanted(name) and self._create(Side.REMOTE, name):
                sync.append(name)
        for name in fplan.gone_remote:
            if wanted(name):
                self._folder_gone(Side.REMOTE, name)
        for name in fplan.gone_local:
            if wanted(name):
                self._folder_gone(Side.LOCAL, name)
        for name in fplan.forget:
            if wanted(name) and not self.dry_run:
                self.state.forget_folder(name)

        names = sorted((n for n in set(sync) if wanted(n)), key=lambda n: (n != "INBOX", n))
        snaps: dict[str, _Snap] = {}
        for name in names:
            fr = self.report.folder(name)
            try:
                snap = self._snapshot(name, known.get(name))
            except (FolderError, MessageError) as exc:
                fr.error = str(exc)
                self._record_error(name, fr.error)
                log.error("%s: folder %s: %s", acct.name, name, exc)
                continue
            if snap is None:
                fr.skipped = True
                continue
            snaps[name] = snap

        self._untear(snaps)
        self._plan(snaps)
        if self.dry_run:
            return self.report
        for name, snap in snaps.items():
            fr = self.report.folder(name)
            if snap.plan.refused:
                fr.error = snap.plan.refused
                self._record_error(name, fr.error)
                log.error("%s: folder %s: %s", acct.name, name, fr.error)
                continue
            try:
                self._apply(snap, fr)
            except (FolderError, MessageError) as exc:
                fr.error = str(exc)
                self._record_error(name, fr.error)
                log.error("%s: folder %s: %s", acct.name, name, exc)
                continue
        self._apply_moves(snaps)
        for name, snap in snaps.items():
            fr = self.report.folder(name)
            if not fr.error and not snap.plan.refused:
                self._finish(snap, fr)
            if fr.changed or fr.error:
                log.info("%s: %s: %s", acct.name, name, fr.error or fr.summary())
        return self.report

    # -- folders ---------------------------------------------------------------------

    def _guard_folders(
        self,
        gone_local: Sequence[str],
        gone_remote: Sequence[str],
        known: Mapping[str, FolderState],
    ) -> None:
        n = len(known)
        for side, gone in ((Side.LOCAL, gone_local), (Side.REMOTE, gone_remote)):
            if not self.policy.force and n > 3 and len(gone) > self.policy.max_delete_share * n:
                where = "locally" if side is Side.LOCAL else "on the server"
                raise FolderError(
                    f"{len(gone)} of {n} synced folders vanished {where}; refusing to delete "
                    "them on the other side (run `syncd sync --force` if that is intended)"
                )

    def _legacy_names(self) -> bool:
        """Whether this account was synced before syncd left the server's personal
        namespace out of local names (its local folders are "INBOX/Archive", not
        "Archive"): then the old names stay, so that nothing is downloaded twice or
        deleted. Only a prefix that the server announced counts; a ``namespace:`` in the
        config is the user's choice.
        """
        names = self.session.names
        if self.session.namespace_from != "NAMESPACE" or not names.prefix:
            return False
        old_root = "/".join(names.prefix.split(names.sep))
        if not old_root.endswith("/"):
            old_root += "/"
        known = [n for n in self.state.folders() if n.startswith(old_root)]
        if known and self.account.name not in _legacy_said:
            _legacy_said.add(self.account.name)
            log.warning(
                "%s: local folders such as %s were synced with the server's namespace prefix "
                "%r in their names; syncd keeps those names (new servers' folders are named "
                'without it). README "Namespaces and separators" says how to switch',
                self.account.name,
                known[0],
                names.prefix,
            )
        return bool(known)

    def _create(self, side: Side, name: str) -> bool:
        fr = self.report.folder(name)
        fr.created = "locally" if side is Side.LOCAL else "on the server"
        if self.dry_run:
            self._virtual.add((side, name))
            return True
        refused_key = f"create_refused:{name}"
        try:
            if side is Side.LOCAL:
                self.store.create_folder(name)
            else:
                self.session.create_folder(name)
                if self.state.get_meta(refused_key) is not None:
                    self.state.set_meta(refused_key, None)
        except (FolderError, MessageError) as exc:
            fr.created = None
            if side is Side.REMOTE and self.state.get_meta(refused_key) == str(exc):
                # Said as an error once already: the same refusal on every sync would make
                # every sync fail for one folder the user has been told how to exclude.
                fr.skipped = True
                log.warning("%s: folder %s stays local only: %s", self.account.name, name, exc)
                return False
            if side is Side.REMOTE:
                self.state.set_meta(refused_key, str(exc))
            fr.error = str(exc)
            log.error(
                "%s: cannot create folder %s %s: %s",
                self.account.name,
                name,
                "locally" if side is Side.LOCAL else "on the server",
                exc,
            )
            return False
        return True

    def _folder_gone(self, side: Side, name: str) -> None:
        """``name`` vanished on ``side`` after having been synced: delete the survivor
        only if it holds nothing that is not already synced."""
        fr = self.report.folder(name)
        base = self.state.pairs(name)
        by_key = {p.key: p for p in base.values()}
        entries: dict[LocalKey, LocalEntry] = {}
        listing: Listing | None = None
        validity = 0
        if side is Side.REMOTE:
            folder = self.store.folder(name)
            entries = folder.scan()
            unsynced: list[str] = [
                k for k, e in entries.items() if k not in by_key or by_key[k].flags != e.flags
            ]
        else:
            validity = self.session.select(name).uidvalidity
            fs = self.state.folder(name)
            listing = self.session.listing()
            unsynced = [
                str(u) for u, f in listing.flags.items() if u not in base or base[u].flags != f
            ]
            if fs is not None and fs.uidvalidity not in (None, validity):
                unsynced = [str(u) for u in listing.flags]
        where = "on the server" if side is Side.REMOTE else "locally"
        other = "local" if side is Side.REMOTE else "server"
        if unsynced:
            fr.error = (
                f"folder was deleted {where}, but the {other} copy holds {len(unsynced)} "
                "messages that were never synced or have changed; keeping it. Move them "
                f"elsewhere and delete the {other} folder by hand, or recreate it {where}"
            )
            log.warning("%s: folder %s: %s", self.account.name, name, fr.error)
            return
        fr.created = None
        fr.notes.append(f"deleted (it was deleted {where})")
        if self.dry_run:
            return
        try:
            if side is Side.REMOTE:
                # Only the files just checked, by their exact names: mail delivered or
                # changed since keeps the folder.
                self.store.delete_folder(name, {e.name for e in entries.values()})
                fr.deleted_local = len(base)
            else:
                assert listing is not None
                # Expunge exactly the messages checked, then delete the folder only if
                # nothing arrived meanwhile (IMAP has no "delete if unchanged").
                self.session.expunge(sorted(listing.flags), uidvalidity=validity)
                self.session.unselect()
                if self.session.status(name).messages:
                    raise FolderError(
                        "new mail arrived in it on the server while it was being deleted; "
                        "kept, the next sync downloads it"
                    )
                self.session.delete_folder(name)
                fr.deleted_remote = len(base)
        except FolderError as exc:
            fr.error = str(exc)
            fr.notes.pop()
            log.warning("%s: folder %s: %s", self.account.name, name, exc)
            return
        self.state.forget_folder(name)
        log.info(
            "%s: folder %s deleted %s, as it was %s",
            self.account.name,
            name,
            "locally" if side is Side.REMOTE else "on the server",
            f"deleted {where}",
        )

    # -- snapshots -------------------------------------------------------------------

    def _snapshot(self, name: str, fs: FolderState | None) -> _Snap | None:
        if (Side.REMOTE, name) in self._virtual:
            return self._snapshot_one_sided(name, remote_missing=True)
        if (Side.LOCAL, name) in self._virtual:
            return self._snapshot_one_sided(name, remote_missing=False)
        folder = self.store.folder(name)
        stamp = folder.stamp() if folder.exists() else None
        touched = self._touched(name, fs, stamp)
        if touched is not None and fs is not None and folder.exists():
            got = self._snapshot_tracked(name, fs, folder, stamp, touched)
            if got is not _LIST:
                assert got is None or isinstance(got, _Snap)
                return got
        session = self.session
        # The shortcut needs HIGHESTMODSEQ: without CONDSTORE a STATUS would only cost a
        # round trip (and on a Maildir server, a scan of the folder) before the SELECT.
        st = session.status(name) if session.strategy.delta_listing else None
        if (
            st is not None
            and fs is not None
            and fs.uidvalidity == st.uidvalidity
            and fs.uidnext == st.uidnext
            and fs.messages == st.messages
            and st.highestmodseq is not None
            and fs.highestmodseq == st.highestmodseq
            and stamp is not None
            and fs.local_stamp == stamp
            and fs.last_error is None
        ):
            return None

        sel = session.select(name)
        base = self.state.pairs(name)
        if not self.dry_run:
            self.state.recount_pairs(name, len(base))
        reset = False
        if fs is not None and fs.uidvalidity is not None and fs.uidvalidity != sel.uidvalidity:
            log.warning(
                "%s: folder %s: UIDVALIDITY changed on the server (%s -> %s); "
                "matching messages again by their headers",
                self.account.name,
                name,
                fs.uidvalidity,
                sel.uidvalidity,
            )
            self.report.folder(name).notes.append("UIDVALIDITY changed: re-matched")
            base = {}
            reset = True
        elif fs is not None and _went_backwards(fs, sel):
            # The same UIDVALIDITY, yet HIGHESTMODSEQ or UIDNEXT went down: the folder was
            # recreated (or restored) and UIDs may now name other messages. Neither the
            # delta nor the base can be trusted; re-match as for a UIDVALIDITY change.
            log.warning(
                "%s: folder %s: HIGHESTMODSEQ/UIDNEXT went backwards on the server "
                "(%s/%s -> %s/%s) with the same UIDVALIDITY; matching messages again by "
                "their headers",
                self.account.name,
                name,
                fs.highestmodseq,
                fs.uidnext,
                sel.highestmodseq,
                sel.uidnext,
            )
            self.report.folder(name).notes.append("server state went backwards: re-matched")
            base = {}
            reset = True

        remote: dict[Uid, Flag]
        if (
            base
            and fs is not None
            and fs.highestmodseq is not None
            and sel.highestmodseq is not None
            and session.strategy.delta_listing
            and fs.last_error is None
        ):
            listing: Listing = session.listing(since_modseq=fs.highestmodseq)
            remote = {uid: p.flags for uid, p in base.items()}
            for uid in listing.vanished or ():
                remote.pop(uid, None)
            remote.update(listing.flags)
            sizes = dict(listing.sizes)
            if sel.messages != len(remote):
                # The delta does not add up: expunges without QRESYNC, or a message the
                # base lacks whose MODSEQ is older than the last sync (a download that was
                # skipped). The UID list settles both; only the strays' flags are fetched.
                present = session.all_uids()
                remote = {u: f for u, f in remote.items() if u in present}
                strays = present - remote.keys()
                if strays:
                    extra = session.listing_of(strays)
                    remote.update(extra.flags)
                    sizes.update(extra.sizes)
        else:
            # Sizes (for batching downloads) only of the UIDs new since the last sync;
            # _download asks for any other it needs (a restore).
            known = fs.uidnext if base and fs is not None and not reset else None
            listing = session.listing(sizes_from=known)
            remote = dict(listing.flags)
            sizes = listing.sizes

        paired_keys = {p.key for p in base.values()}
        entries = folder.scan(trusted=paired_keys) if folder.exists() else {}
        local = {k: e.flags for k, e in entries.items()}
        by_key = {p.key: p for p in base.values()}
        for key in folder.damaged if folder.exists() else ():
            # An empty or unreadable file is not a deletion: leave its pair alone.
            if key in by_key:
                local[key] = by_key[key].flags
        unseen: set[LocalKey] = set()
        if folder.exists() and not folder.stable:
            # The listing raced a reader's renames: a synced message it lacks may just
            # have been missed. Take it as unchanged this time (neither deleted nor
            # restored from the server); the next sync lists the folder again.
            unseen = {k for k in by_key if k not in local}
            for key in unseen:
                local[key] = by_key[key].flags
        new_local = [k for k in local if k not in paired_keys]
        new_remote = [u for u in remote if u not in base]
        local_fps: dict[LocalKey, Fingerprint] = {}
        for key in new_local:
            try:
                local_fps[key] = fingerprint(folder.read_header(entries[key]))
            except (OSError, StoreError) as exc:
                log.warning("%s: %s: cannot read %s: %s", self.account.name, name, key, exc)
        remote_fps: dict[Uid, Fingerprint] = {}
        synced_before = fs is not None and fs.uidvalidity is not None
        if new_remote and (new_local or (synced_before and len(new_remote) <= MOVE_PROBE_LIMIT)):
            remote_fps = session.fingerprints(new_remote)
        snap = _Snap(
            name,
            sel.uidvalidity,
            sel.uidnext,
            sel.messages,
            sel.highestmodseq,
            stamp,
            base,
            entries,
            sizes,
            local_fps,
            remote_fps,
            reset,
        )
        snap.stable = folder.stable if folder.exists() else True
        snap.unseen = unseen
        snap.deferred = bool(unseen)
        snap.sizes_count = (len(remote), len(local))
        snap.scanned = folder.scanned_state if folder.exists() else None
        snap.replan(remote, local, self.policy)
        return snap

    def _untear(self, snaps: dict[str, _Snap]) -> None:
        """Distrust the absences that a change made while the folders were looked at explains.

        Folders are listed one after another. A reader moving a file from a folder not yet
        listed into one already listed hides it from both listings: the first would read
        as a deletion (or, with a server change, a restore into the old folder) while the
        file lives on in the other. When any listed folder changed before all were
        listed, the synced messages missing from the listings are taken as unchanged this
        time and the folders are listed again next time.

        The daemon knows more: its file watch says which files changed since the sync took
        the watch's names (before it listed or looked anything up). Only the missing
        messages among those are held back; their new names reach the next sync. So a
        reader who keeps working does not hold back every deletion in the folder.
        """
        watched = self.watched
        suspects: set[LocalKey] | None = None  # None: every absence
        if watched is not None and watched.since is not None:
            absent = {
                p.key
                for s in snaps.values()
                if s.inputs is not None
                for p in s.base.values()
                if p.key not in s.inputs[1]
            }
            if not absent:
                return
            since = watched.since()  # asked only when it matters: it waits for the watch
            if since is not None:
                suspects = absent & {k for k in map(key_of, since) if k is not None}
                if not suspects:
                    return
        elif not any(self._changed_since_listed(s) for s in snaps.values()):
            return
        for snap in snaps.values():
            if snap.inputs is None:
                continue
            remote, local = snap.inputs
            missing = {
                p.key: p.flags
                for p in snap.base.values()
                if p.key not in local and (suspects is None or p.key in suspects)
            }
            if not missing:
                continue
            log.debug(
                "%s: %s: changed while the folders were looked at; %d synced messages not "
                "found are taken as unchanged this time",
                self.account.name,
                snap.name,
                len(missing),
            )
            local.update(missing)
            snap.unseen |= missing.keys()
            snap.deferred = True
            snap.replan(remote, local, self.policy)

    def _changed_since_listed(self, snap: _Snap) -> bool:
        if snap.scanned is None:
            return False
        try:
            return self.store.folder(snap.name).dir_state() != snap.scanned
        except OSError:
            return True

    def _touched(
        self, name: str, fs: FolderState | None, stamp: str | None
    ) -> frozenset[str] | None:
        """The local files that changed since the last sync, or None when not known.

        The daemon's file watch names them. Otherwise a folder whose stamp is the one the
        last sync saved has no change at all; any other folder must be listed.
        """
        watched = self.watched
        if watched is not None and name not in watched.unknown:
            return watched.names.get(name, frozenset())
        if stamp is not None and fs is not None and fs.local_stamp == stamp:
            return frozenset()
        return None

    def _snapshot_tracked(
        self,
        name: str,
        fs: FolderState,
        folder: MaildirFolder,
        stamp: str | None,
        touched: frozenset[str],
    ) -> _Snap | object | None:
        """The folder's snapshot from its changes alone; None: nothing to do; _LIST: list it.

        Valid while the local side is as the last sync left it but for the ``touched``
        files (the daemon's file watch names them; an unchanged stamp says there are
        none). Only the messages those files hold and the ones the server reports as
        changed, new or expunged (CHANGEDSINCE, VANISHED) can need anything, so the
        planner gets just their pairs: the decision a full listing would give, at a cost
        that follows the changes, not the folder. The daemon keeps its last folder
        selected, and with QRESYNC asks it for the changes after a NOOP instead of selecting
        it again (a SELECT costs a server with a big folder far more than the changes do).

        Without CONDSTORE the server's side is listed whole, unless only local changes
        are being synced: then just their messages are asked about. A server delta that
        does not add up (an expunge a server without QRESYNC does not name) lists.
        """
        if fs.uidvalidity is None or fs.last_error is not None:
            return _LIST
        session, state = self.session, self.state
        found, missing, damaged = folder.look_up(touched) if touched else ({}, set(), set())
        keys = found.keys() | missing | damaged
        mine = state.pairs_of_keys(name, keys) if keys else {}
        paired = {p.key: p for p in mine.values()}
        local_news = any(k in paired for k in missing) or any(
            k not in paired or paired[k].flags != e.flags for k, e in found.items()
        )
        quiet = self.watched is not None and name in self.watched.server_quiet
        if quiet and not local_news:
            return None  # syncd's own deliveries and renames, seen by the watch
        condstore = session.strategy.delta_listing and fs.highestmodseq is not None
        kept = (
            condstore
            and session.strategy.vanished
            and session.selected == name
            and session.selected_uidvalidity == fs.uidvalidity
        )
        unchanged = (fs.uidvalidity, fs.uidnext, fs.messages, fs.highestmodseq)
        if kept:
            status = session.refresh_selected()
            now = (status.uidvalidity, status.uidnext, status.messages, status.highestmodseq)
            if not local_news and now == unchanged:
                return None
        else:
            if condstore and not local_news:
                st = session.status(name)
                if (st.uidvalidity, st.uidnext, st.messages, st.highestmodseq) == unchanged:
                    return None
            status = session.select(name)
        if status.uidvalidity != fs.uidvalidity or _went_backwards(fs, status):
            return _LIST
        total = state.count_pairs(name)
        remote: dict[Uid, Flag]
        if condstore and status.highestmodseq is not None:
            assert fs.highestmodseq is not None
            listing = session.listing(since_modseq=fs.highestmodseq)
            vanished = set(listing.vanished or ())
            base = state.pairs_of(name, set(listing.flags) | vanished)
            new = [u for u in listing.flags if u not in base]
            if total - len(vanished & base.keys()) + len(new) != status.messages:
                return _LIST
            remote = dict(listing.flags)
            sizes = dict(listing.sizes)
            for uid, p in mine.items():
                if uid not in remote and uid not in vanished:
                    remote[uid] = p.flags  # unchanged on the server since the last sync
        elif quiet and (status.uidnext, status.messages) == (fs.uidnext, fs.messages):
            base = {}
            listing = session.listing_of(mine)
            remote, sizes = dict(listing.flags), dict(listing.sizes)
        else:
            base = state.pairs(name)
            listing = session.listing(sizes_from=fs.uidnext)
            remote, sizes = dict(listing.flags), dict(listing.sizes)
            total = len(base)
        base.update(mine)
        local = {p.key: p.flags for p in base.values()}
        for key in missing:
            local.pop(key, None)
        local.update((k, e.flags) for k, e in found.items())
        entries = _Assumed(folder, local)
        entries.update(found)
        local_fps: dict[LocalKey, Fingerprint] = {}
        for key, entry in found.items():
            if key not in paired:
                try:
                    local_fps[key] = fingerprint(folder.read_header(entry))
                except (OSError, StoreError) as exc:
                    log.warning("%s: %s: cannot read %s: %s", self.account.name, name, key, exc)
        new_remote = [u for u in remote if u not in base]
        remote_fps: dict[Uid, Fingerprint] = {}
        if new_remote and (local_fps or len(new_remote) <= MOVE_PROBE_LIMIT):
            remote_fps = session.fingerprints(new_remote)  # moves made by another client
        snap = _Snap(
            name,
            status.uidvalidity,
            status.uidnext,
            status.messages,
            status.highestmodseq,
            stamp,
            base,
            entries,
            sizes,
            local_fps,
            remote_fps,
            False,
        )
        snap.delta = True
        snap.sizes_count = (status.messages, total + len(local_fps))
        snap.replan(remote, local, self.policy)
        return snap

    def _snapshot_one_sided(self, name: str, *, remote_missing: bool) -> _Snap:
        """A dry run's view of a folder that exists on one side only."""
        remote: dict[Uid, Flag] = {}
        local: dict[LocalKey, Flag] = {}
        entries: dict[LocalKey, LocalEntry] = {}
        sizes: dict[Uid, int] = {}
        if remote_missing:
            folder = self.store.folder(name)
            entries = folder.scan()
            local = {k: e.flags for k, e in entries.items()}
        else:
            self.session.select(name)
            listing = self.session.listing()
            remote, sizes = dict(listing.flags), listing.sizes
        snap = _Snap(name, 0, 0, 0, None, None, {}, entries, sizes, {}, {}, False)
        snap.sizes_count = (len(remote), len(local))
        snap.plan = plan_folder(remote, local, [], self.policy, guard=False)
        return snap

    def _plan(self, snaps: dict[str, _Snap]) -> None:
        # Messages restored because their other side changed may live on in a folder not
        # synced this time (the daemon syncs the folders it heard of): ask the state.
        restored = {
            s.base[a.replaces].fp
            for s in snaps.values()
            for a in s.plan.actions
            if isinstance(a, Copy) and a.replaces is not None and a.replaces in s.base
        }
        restored.discard(None)
        elsewhere = self.state.pairs_with_fps(fp for fp in restored if fp is not None)
        account_plan = plan_moves(
            {n: s.plan for n, s in snaps.items()},
            {n: s.base for n, s in snaps.items()},
            local_fps={n: s.local_fps for n, s in snaps.items()},
            remote_fps={n: s.remote_fps for n, s in snaps.items()},
            policy=self.policy,
            sizes={n: s.sizes_count for n, s in snaps.items()},
            elsewhere=elsewhere,
        )
        if self.hold_copies > 0:
            self._hold_copies(account_plan.folders, snaps)
        for name, plan in account_plan.folders.items():
            snaps[name].plan = plan
            fr = self.report.folder(name)
            fr.from_delta = snaps[name].delta
            fr.planned = plan
            fr.notes.extend(plan.notes)
            for note in plan.notes:
                log.debug("%s: %s: %s", self.account.name, name, note)
        self.moves = account_plan.moves

    def _hold_copies(self, plans: dict[str, Plan], snaps: dict[str, _Snap]) -> None:
        """Hold back the upload of a fresh copy of a message synced in another folder.

        mutt saves to another folder by writing the copy, and deletes the original only
        at its next sync (``$``), seconds or minutes later. Uploading the copy at once and
        expunging the original later would lose the message's keywords and cost an upload;
        held for ``hold_copies`` seconds, the two halves meet in one sync and become one
        MOVE. A copy older than that is a copy, and is uploaded.
        """
        fresh: dict[Fingerprint, list[tuple[str, LocalKey]]] = {}
        now = time.time()
        for name, plan in plans.items():
            snap = snaps[name]
            for a in plan.actions:
                if not (isinstance(a, Copy) and a.source is Side.LOCAL and a.replaces is None):
                    continue
                key = LocalKey(str(a.ident))
                fp = snap.local_fps.get(key)
                entry = snap.entries.get(key)
                if fp is None or entry is None:
                    continue
                try:
                    changed = os.lstat(self.store.folder(name).path_of(entry)).st_ctime
                except OSError:
                    continue
                if now - changed < self.hold_copies:
                    fresh.setdefault(fp, []).append((name, key))
        if not fresh:
            return
        held: dict[str, set[LocalKey]] = {}
        for fp, where in self.state.pairs_with_fps(fresh).items():
            for name, key in fresh[fp]:
                if any(folder != name for folder, _uid in where):
                    held.setdefault(name, set()).add(key)
        for name, keys in held.items():
            plan, snap = plans[name], snaps[name]
            plans[name] = replace(
                plan,
                actions=tuple(
                    a
                    for a in plan.actions
                    if not (isinstance(a, Copy) and a.source is Side.LOCAL and a.ident in keys)
                ),
            )
            snap.held = True
            entries = [snap.entries[k] for k in sorted(keys)]
            self.report.folder(name).held = tuple(f"{e.subdir}/{e.name}" for e in entries)

    # -- applying --------------------------------------------------------------------

    def _apply(self, snap: _Snap, fr: FolderReport) -> None:
        """Carry out one folder's plan; every destructive step re-checks its premise.

        Server commands run only in the UIDVALIDITY the plan was made in. A message is
        expunged on the server only once its local file is confirmed gone (the scan that
        missed it may have raced a reader's rename); local renames and deletions go from
        the exact name that was planned, so a reader's change made meanwhile is merged or
        kept, never overwritten. A message that cannot be handled is skipped, not the folder.
        """
        name = snap.name
        plan = snap.plan
        session, state = self.session, self.state
        folder = self.store.folder(name)
        if plan.actions:
            # Nothing to do (a no-op resync) sends nothing: no second SELECT of the folder.
            session.select_checked(name, snap.status_uidvalidity)
        if snap.reset:
            state.clear_pairs(name)
        self._record_uidvalidity(snap)

        expunge = [
            Uid(int(a.ident))
            for a in plan.actions
            if isinstance(a, Delete) and a.side is Side.REMOTE
        ]
        # Confirmed before our own renames below make the folder look busy.
        held = self._unconfirmed(snap, {snap.base[u].key for u in expunge}, fr)
        expunge = [u for u in expunge if snap.base[u].key not in held]

        remote_flags = [
            (Uid(int(a.ident)), a.old, a.new)
            for a in plan.actions
            if isinstance(a, SetFlags) and a.side is Side.REMOTE
        ]
        if remote_flags:
            session.set_flags(remote_flags, uidvalidity=snap.status_uidvalidity)
            fr.flags_remote = len(remote_flags)
        skipped: set[LocalKey] = set()
        for a in plan.actions:
            if isinstance(a, SetFlags) and a.side is Side.LOCAL:
                key = LocalKey(str(a.ident))
                if key in snap.unseen:
                    skipped.add(key)
                    continue
                try:
                    snap.entries[key] = folder.set_flags(snap.entries[key], a.new)
                except MessageError as exc:
                    # Its base stays as it was, so the next sync plans it again.
                    skipped.add(key)
                    snap.deferred = True
                    log.warning("%s: %s: %s", self.account.name, name, exc)
                    continue
                fr.flags_local += 1
        if fr.flags_local:
            folder.flush()  # renames durable before the base says they happened
        links = [a for a in plan.actions if isinstance(a, Link) and a.key not in skipped]
        if links:
            state.put_pairs(name, (Pair(a.uid, a.key, a.flags, a.fp) for a in links))
            fr.matched = sum(1 for a in links if a.uid not in snap.base)

        if expunge:
            session.expunge(expunge, uidvalidity=snap.status_uidvalidity)
            fr.deleted_remote = len(expunge)
        for a in plan.actions:
            if isinstance(a, Delete) and a.side is Side.LOCAL:
                key = LocalKey(str(a.ident))
                gone = snap.entries.get(key)
                if key in snap.unseen:
                    held.add(key)
                    continue
                if gone is not None:
                    try:
                        removed = folder.remove(gone)
                    except MessageError as exc:
                        log.warning("%s: %s: %s", self.account.name, name, exc)
                        removed = False
                    if not removed:
                        # Changed by a reader meanwhile: it survives, and the next sync
                        # restores it on the server (its base pair is kept for that).
                        held.add(key)
                        continue
                fr.deleted_local += 1
        if fr.deleted_local:
            folder.flush()
        forget = [
            a.uid
            for a in plan.actions
            if isinstance(a, Forget)
            and (a.uid not in snap.base or snap.base[a.uid].key not in held)
        ]
        if forget:
            state.drop_pairs(name, forget)

        downloads = {
            Uid(int(a.ident)): a
            for a in plan.actions
            if isinstance(a, Copy) and a.source is Side.REMOTE
        }
        if downloads:
            self._download(snap, folder, downloads, fr)
        uploads = [a for a in plan.actions if isinstance(a, Copy) and a.source is Side.LOCAL]
        if uploads:
            self._upload(snap, folder, uploads, fr)

    def _unconfirmed(self, snap: _Snap, keys: set[LocalKey], fr: FolderReport) -> set[LocalKey]:
        """Which of ``keys`` (absent from the scan) may still be in the folder after all.

        Those are held back from being deleted or moved on the server until a sync sees
        them gone from a listing no reader's rename overlapped.
        """
        if not keys:
            return set()
        folder = self.store.folder(snap.name)
        confirmed = folder.confirm_gone(keys) if snap.stable else set()
        held = keys - confirmed
        if held:
            snap.deferred = True
            fr.deferred += len(held)
            fr.notes.append(
                f"{len(held)} local deletions wait for the next sync (the folder was "
                "changing while it was read)"
            )
        return held

    def _record_uidvalidity(self, snap: _Snap) -> None:
        """Store the UIDVALIDITY the pairs about to be written belong to, before any is.

        An interrupted first sync then leaves pairs the next run can check against the
        server, instead of trusting them blindly.
        """
        fs = self.state.folder(snap.name)
        if fs is None or fs.uidvalidity != snap.status_uidvalidity:
            self.state.save_folder(
                FolderState(
                    snap.name,
                    uidvalidity=snap.status_uidvalidity,
                    last_error=fs.last_error if fs is not None else None,
                )
            )

    def _download(
        self, snap: _Snap, folder: MaildirFolder, todo: dict[Uid, Copy], fr: FolderReport
    ) -> None:
        total = len(todo)
        done = 0
        # A message bigger than a fetch batch arrives alone (ImapSession.fetch), as the
        # one copy imaplib reads; it is written converted a chunk at a time, and the batch
        # is let go before the next one is fetched, so two big messages are never held.
        unsized = [u for u in todo if u not in snap.sizes]
        if unsized:  # a full listing sized only the UIDs new since the last sync
            snap.sizes.update(self.session.listing_of(unsized).sizes)
        for batch in self.session.fetch(sorted(todo), snap.sizes):
            self._deliver(snap.name, folder, batch)
            done += len(batch)
            fr.downloaded += len(batch)
            batch.clear()
            if self.progress is not None:
                self.progress(snap.name, done, total)

    def _deliver(self, name: str, folder: MaildirFolder, batch: list[Fetched]) -> None:
        items = [
            (
                to_local_chunks(chunks_of(f.raw)),
                f.flags,
                f.internaldate.timestamp() if f.internaldate is not None else None,
            )
            for f in batch
        ]
        entries = folder.deliver(items)
        self.state.put_pairs(
            name,
            (
                Pair(f.uid, e.key, f.flags, fingerprint(f.raw))  # reads the header only
                for f, e in zip(batch, entries, strict=True)
            ),
        )

    def _upload(
        self, snap: _Snap, folder: MaildirFolder, todo: list[Copy], fr: FolderReport
    ) -> None:
        # A message up to 1 MiB is read whole (CRLF bytes); a bigger one stays an open file
        # (UploadFile) whose CRLF form is sent a chunk at a time: no copy of it is made.
        batch: list[tuple[LocalEntry, bytes | UploadFile, Flag, dt.datetime]] = []
        nbytes = 0

        def head(body: bytes | UploadFile) -> bytes:
            return body if isinstance(body, bytes) else body.head

        def close(body: bytes | UploadFile) -> None:
            if isinstance(body, UploadFile):
                body.close()

        def flush() -> None:
            nonlocal batch, nbytes
            if not batch:
                return
            try:
                uids = self.session.append(snap.name, [(b, fl, d) for _, b, fl, d in batch])
            finally:
                for _, body, _, _ in batch:
                    close(body)
            pairs = []
            replaced = []
            for (entry, body, fl, _), uid in zip(batch, uids, strict=True):
                if uid is not None:
                    pairs.append(Pair(uid, entry.key, fl, fingerprint(head(body))))
                else:
                    # Paired by header at the next sync, which must list the folder to
                    # see this file (a delta from the server alone would download it).
                    snap.deferred = True
            for a in todo_by_key.values():
                if a.replaces is not None and any(e.key == a.ident for e, *_ in batch):
                    replaced.append(a.replaces)
            with self.state.transaction():
                if replaced:
                    self.state.drop_pairs(snap.name, replaced)
                self.state.put_pairs(snap.name, pairs)
            fr.uploaded += len(batch)
            batch, nbytes = [], 0

        todo_by_key = {LocalKey(str(a.ident)): a for a in todo}
        for a in todo:
            entry = snap.entries.get(LocalKey(str(a.ident)))
            if entry is None:
                continue
            body: bytes | UploadFile | None = None
            try:
                body = folder.read_remote(entry)
                mtime = folder.mtime(entry)
            except (OSError, StoreError) as exc:
                if body is not None:
                    close(body)
                log.warning(
                    "%s: %s: cannot read %s, not uploaded: %s",
                    self.account.name,
                    snap.name,
                    entry.name,
                    exc,
                )
                continue
            if isinstance(body, bytes) and not body.strip():
                log.warning(
                    "%s: %s: %s is empty, not uploaded", self.account.name, snap.name, entry.name
                )
                continue
            if not _looks_like_message(head(body)):
                close(body)
                log.warning(
                    "%s: %s: %s does not start with a header field, so it is not a message "
                    "(a stray binary or text file?); not uploaded, left where it is",
                    self.account.name,
                    snap.name,
                    folder.path_of(entry),
                )
                continue
            date = dt.datetime.fromtimestamp(mtime, tz=dt.UTC)
            batch.append((entry, body, a.flags, date))
            nbytes += len(body) if isinstance(body, bytes) else body.size
            if nbytes >= UPLOAD_BATCH_BYTES or len(batch) >= 200:
                flush()
        flush()

    def _apply_moves(self, snaps: dict[str, _Snap]) -> None:
        # Grouped by direction: one MOVE command, one fsync per directory and one state
        # transaction per pair of folders, however many messages were archived at once.
        groups: dict[tuple[Side, str, str], list[Move]] = {}
        for mv in self.moves:
            if mv.src in snaps and mv.dst in snaps:
                groups.setdefault((mv.side, mv.src, mv.dst), []).append(mv)
        for (side, src, dst), moves in groups.items():
            fr = self.report.folder(dst)
            if self.report.folder(src).error or fr.error:
                # A folder that failed may have been reset: re-plan next time, from a full
                # listing of both (their stamps must not hide the pending move).
                snaps[src].deferred = snaps[dst].deferred = True
                continue
            try:
                if side is Side.REMOTE:
                    fr.moved += self._move_remote(moves, snaps[src], snaps[dst])
                else:
                    fr.moved += self._move_local(moves, snaps[src])
            except (FolderError, MessageError) as exc:
                fr.error = str(exc)
                snaps[src].deferred = snaps[dst].deferred = True

    def _move_remote(self, moves: list[Move], src: _Snap, dst: _Snap) -> int:
        """The user moved files between local folders: MOVE their server copies too."""
        src_name, dst_name = src.name, dst.name
        # A file the scan missed is not a move: move only what is confirmed gone.
        held = self._unconfirmed(src, {mv.key for mv in moves}, self.report.folder(src_name))
        if held:
            dst.deferred = True
            moves = [mv for mv in moves if mv.key not in held]
            if not moves:
                return 0
        old = {mv.uid: src.base[mv.uid] for mv in moves}
        self.session.select_checked(src_name, src.status_uidvalidity)
        new, validity = self.session.move(
            [mv.uid for mv in moves], dst_name, uidvalidity=src.status_uidvalidity
        )
        if validity is not None and validity != dst.status_uidvalidity:
            # The target was recreated since it was listed: its new UIDs are not the ones
            # the state knows it by; the next sync pairs them by header.
            new = {}
        moved = [(mv, new[mv.uid]) for mv in moves if mv.uid in new]
        with self.state.transaction():
            self.state.drop_pairs(src_name, list(old))
            # Without COPYUID the new UIDs are unknown; the next sync pairs them by header.
            self.state.put_pairs(
                dst_name,
                [Pair(uid, mv.key, old[mv.uid].flags, old[mv.uid].fp) for mv, uid in moved],
            )
        # The new remote copies still carry the old flags; bring them to the local ones.
        changed = [(mv, uid) for mv, uid in moved if mv.flags != old[mv.uid].flags]
        if changed:
            self.session.select_checked(dst_name, dst.status_uidvalidity)
            self.session.set_flags(
                [(uid, old[mv.uid].flags, mv.flags) for mv, uid in changed],
                uidvalidity=dst.status_uidvalidity,
            )
            self.state.put_pairs(
                dst_name, [Pair(uid, mv.key, mv.flags, old[mv.uid].fp) for mv, uid in changed]
            )
        return len(moves)

    def _move_local(self, moves: list[Move], src: _Snap) -> int:
        """Another client moved messages on the server: rename the local files alike."""
        src_name, dst_name = moves[0].src, moves[0].dst
        src_folder = self.store.folder(src_name)
        dst_folder = self.store.folder(dst_name)
        by_key = {p.key: p for p in src.base.values()}
        done: list[tuple[Move, LocalEntry]] = []
        for mv in moves:
            entry = src.entries.get(mv.key)
            if entry is None:
                continue
            try:
                moved = dst_folder.adopt(entry, src_folder)
                # A reader may have changed its flags since the scan: apply only the
                # planned change on top of what the file says now.
                # (From the base: a message changed locally and moved on the server is
                # a restore turned into a move, and keeps its local change.)
                old = by_key[mv.key].flags if mv.key in by_key else entry.flags
                add, drop = mv.flags & ~old, old & ~mv.flags
                moved = dst_folder.set_flags(moved, (moved.flags | add) & ~drop)
            except MessageError as exc:
                log.warning("%s: %s: %s", self.account.name, src_name, exc)
                continue
            done.append((mv, moved))
        # The renames are durable before the state says they happened.
        dst_folder.flush()
        src_folder.flush()
        with self.state.transaction():
            olds = [by_key[mv.key] for mv, _ in done if mv.key in by_key]
            self.state.drop_pairs(src_name, [p.uid for p in olds])
            self.state.put_pairs(
                dst_name,
                [
                    Pair(mv.uid, e.key, mv.flags, by_key[mv.key].fp if mv.key in by_key else None)
                    for mv, e in done
                ],
            )
        return len(done)

    def _finish(self, snap: _Snap, fr: FolderReport) -> None:
        folder = self.store.folder(snap.name)
        stamp_after = folder.stamp()
        stamp = snap.stamp_before if stamp_after == snap.stamp_before and not snap.held else None
        if snap.delta and self.watched is not None:
            # Planned from the watch's names, taken before this stamp: a change made in
            # between (a long sync of other folders first) is in neither, and a later
            # `syncd sync` trusting the stamp would never look for it.
            stamp = None
        modseq = snap.status_modseq
        fr.relist = snap.deferred
        if snap.deferred:
            # Something was held back: the next sync must see this folder whole again
            # (a delta since now would hide the server changes it still has to apply).
            stamp, modseq = None, None
        self.state.save_folder(
            FolderState(
                snap.name,
                uidvalidity=snap.status_uidvalidity,
                uidnext=snap.status_uidnext,
                highestmodseq=modseq,
                messages=snap.status_messages,
                local_stamp=stamp,
                local_count=self.state.count_pairs(snap.name) if snap.delta else len(snap.entries),
                last_sync=time.time(),
                last_error=None,
            )
        )

    def _record_error(self, name: str, error: str) -> None:
        if not self.dry_run:
            self.state.update_folder(name, last_error=error, last_sync=time.time())


_legacy_said: set[str] = set()
"""Accounts whose old folder names were reported in this process (once is enough)."""

_HEADER_FIELD = re.compile(rb"(?:From |[\x21-\x39\x3b-\x7e]+[ \t]*:)")


def _looks_like_message(raw: bytes) -> bool:
    """True when ``raw`` starts like RFC 5322 (a header field) or an mbox ``From `` line.

    Junk in a Maildir (an image, a core dump, random bytes) would otherwise be uploaded as
    a "message", and the server would keep it for every client to see.
    """
    return _HEADER_FIELD.match(raw) is not None


def _went_backwards(fs: FolderState, sel: FolderStatus) -> bool:
    """True when the server's counters are lower than what an earlier sync saw (both are
    only ever supposed to grow while UIDVALIDITY stays the same, RFC 7162 and RFC 3501)."""
    if fs.uidvalidity is None or fs.uidvalidity != sel.uidvalidity:
        return False
    if (
        fs.highestmodseq is not None
        and sel.highestmodseq is not None
        and sel.highestmodseq < fs.highestmodseq
    ):
        return True
    return bool(fs.uidnext and sel.uidnext and sel.uidnext < fs.uidnext)


def _name_server(exc: SyncdError, imap: ImapConfig) -> SyncdError:
    """``exc`` with the server named: the driver's text says only which command failed
    ("FETCH (folder INBOX): timed out"), and a user with several accounts needs the host."""
    if not isinstance(exc, TransientError) or str(exc).startswith("IMAP "):
        return exc
    where = "IMAP tunnel" if imap.tunnel else f"IMAP {imap.host}:{imap.port}"
    return TransientError(f"{where}: {exc}")


def sync_account(
    account: AccountConfig,
    state_dir: Path,
    secret: Callable[[], str],
    *,
    policy: Policy | None = None,
    only_folder: str | None = None,
    folders: Collection[str] | None = None,
    dry_run: bool = False,
    progress: Progress | None = None,
    session: ImapSession | None = None,
    lock_wait: float = 30.0,
    watched: LocalChanges | None = None,
    hold_copies: float = 0.0,
) -> SyncReport:
    """Sync one IMAP account once, both ways.

    Raises for account-wide failures (TransientError, AuthError, TLSError, StateError,
    LockedError); folder failures are in the report. ``folders`` limits the message sync
    to those folders (the daemon's IDLE and file-watch triggers); ``session`` reuses an
    open connection (the daemon's), which is left open. ``watched``: what the daemon's file
    watch saw change since the last sync, in place of listing the folders. ``hold_copies``:
    seconds a fresh copy of a message synced elsewhere waits for its original's deletion
    (the daemon's, see AccountSync._hold_copies).
    """
    if policy is None:
        policy = account.policy
    assert account.imap is not None
    lock = AccountLock(state_dir, account.name)
    lock.acquire(wait=lock_wait)
    try:
        with State.for_account(state_dir, account.name) as st:
            own = session is None
            if session is None:
                session = ImapSession(account.imap, secret)
                session.connect()
            try:
                run = AccountSync(
                    account,
                    st,
                    session,
                    policy=policy,
                    only_folder=only_folder,
                    folders=folders,
                    dry_run=dry_run,
                    progress=progress,
                    watched=watched,
                    hold_copies=hold_copies,
                )
                try:
                    report = run.run()
                except SyncdError as exc:
                    named = _name_server(exc, account.imap)
                    if not dry_run:
                        st.set_meta("last_error", str(named))
                    if named is exc:
                        raise
                    raise named from exc
                if not dry_run:
                    st.set_meta("last_sync", str(time.time()))
                    st.set_meta("last_error", None if report.ok else "some folders failed")
                return report
            finally:
                if own:
                    session.close()
    finally:
        lock.release()
