"""One POP3 poll of one account: new server mail into the Maildir folder, old mail deleted
from the server when ``leave_on_server`` says so.

Theory of operation
-------------------
A poll takes the account lock, binds the Maildir to the state (as an IMAP sync does),
creates the ``folder:`` if missing, removes the leftovers of an interrupted delivery from
tmp/, *recovers* (see below), logs in, lists the maildrop (UIDL and LIST), asks
:func:`syncd.planner.pop3.plan_pop3` what to do, and applies the plan:

1. bookkeeping: records whose UIDL left the server are stamped gone, back or forgotten;
2. downloads, in listing order, one RETR at a time into a batch of at most
   :data:`FETCH_BATCH_BYTES` octets or :data:`FETCH_BATCH_MESSAGES` messages; per batch:

   a. commit a PENDING record per message (UIDL, header fingerprint, size, time);
   b. deliver the batch durably (:meth:`MaildirFolder.deliver`: tmp/, one flush of the
      filesystem, rename into new/, fsync of the directory), unseen, byte for byte;
   c. commit the records as DELIVERED, with each file's key;
   d. DELE the batch's messages the plan deletes in the same session;

3. DELE the older delivered messages that are due;
4. QUIT: only now does the server remove the marked messages;
5. ``last_sync``, ``last_error`` and ``pop3_last_poll`` in the account's meta table, which
   ``syncd status`` reads.

Crash windows, and why none loses or duplicates a message
----------------------------------------------------------
* Before (a): nothing is recorded or stored; the next poll downloads the batch again.
* Between (a) and (c), including halfway through (b): PENDING records, and each message's
  file is either not in new/ (only a ``*.syncd-tmp`` file, which ``clean_tmp`` removes) or
  complete in new/. The next poll's recovery looks every PENDING record up among the files
  of its folder that no DELIVERED record names and that were written since the record's
  time, by header fingerprint (:func:`syncd.model.fingerprint`; the file keeps the header
  byte for byte). A match turns the record DELIVERED with that file's key; a record
  without one is dropped, so that message is downloaded again. A stored message is thus
  never downloaded twice, and an unstored one is never taken for stored.
* Between (c) and QUIT: the DELE marks die with the session (RFC 1939 deletes only in the
  UPDATE state that QUIT starts), so the server still holds every message, and each is
  recorded: the next poll downloads nothing and deletes what the policy says.
* After QUIT: only the meta and bookkeeping writes can be missing; the next poll redoes them.

Nothing is marked for deletion before its local copy is durable (b) and recorded (c).

Why PENDING records rather than "deliver, then record": whatever the order of one delivery
and one commit, a crash between them leaves a file no record names, and the next poll
would download it again. The PENDING record says exactly which messages may sit unrecorded
in which folder, and the fingerprint finds them while reading only the headers of the few
files written since. (The UIDL cannot be put into the file name instead: the Maildir driver
chooses the names, and a UIDL may hold "/" or ":".)

Limits of the recovery: a file that the user moves to another folder or deletes between
the crash and the next poll is not found, and is downloaded again; of two messages with
byte-identical header blocks in one interrupted batch, the records are paired with the
files in order, so if only one of the two was stored the record may name the wrong one.
"""

from __future__ import annotations

import json
import logging
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Final

from syncd.drivers.maildir import MaildirFolder, MaildirStore
from syncd.drivers.pop3 import Pop3Session
from syncd.engine.sync import FolderReport, Progress, SyncReport
from syncd.errors import FolderError, MessageError, StateError, StoreError, SyncdError
from syncd.model import Flag, Side, Uid, fingerprint
from syncd.planner.actions import Copy, Delete, Plan
from syncd.planner.pop3 import (
    Download,
    Pop3Plan,
    Pop3Policy,
    RemoteMessage,
    Seen,
    SeenState,
    plan_pop3,
)
from syncd.state import AccountLock, State

if TYPE_CHECKING:
    from syncd.config import AccountConfig, Config, Pop3Config

__all__ = [
    "FETCH_BATCH_BYTES",
    "FETCH_BATCH_MESSAGES",
    "AccountFetch",
    "daemon_poll",
    "fetch_account",
]

log = logging.getLogger(__name__)

FETCH_BATCH_BYTES: Final = 16 * 1024 * 1024
FETCH_BATCH_MESSAGES: Final = 1000
# How far a delivered file's mtime may lie before its PENDING record's time and still be
# taken for the delivery: file times come from a coarser kernel clock than time.time().
_RECOVER_SLACK: Final = 60.0

_PENDING = SeenState.PENDING.value
_DELIVERED = SeenState.DELIVERED.value


class AccountFetch:
    """One poll of one POP3 account; create, call :meth:`run`, discard."""

    def __init__(
        self,
        account: AccountConfig,
        state: State,
        session: Pop3Session,
        *,
        dry_run: bool = False,
        progress: Progress | None = None,
        clock: Callable[[], float] = time.time,
    ) -> None:
        if account.pop3 is None:
            raise ValueError(f"account {account.name} has no pop3 section")
        self.account = account
        self.cfg: Pop3Config = account.pop3
        self.state = state
        self.session = session
        self.dry_run = dry_run
        self.progress = progress
        self.clock = clock
        self.store = MaildirStore(account.maildir, account.layout.value, exclude=[account.outbox])
        self.report = SyncReport(account.name)
        self.listed = 0
        self.listed_bytes = 0
        self.too_big = 0
        self._marked = 0

    @property
    def where(self) -> str:
        return f"{self.account.name}: {self.cfg.folder}"

    # -- the run ---------------------------------------------------------------------

    def run(self) -> SyncReport:
        fr = self.report.folder(self.cfg.folder)
        folder = None if self.dry_run else self._prepare_local(fr)
        self.session.connect()
        try:
            listing = self.session.listing()
            self.listed = len(listing)
            self.listed_bytes = sum(m.size for m in listing)
            now = self.clock()
            policy = Pop3Policy(
                leave_on_server=self.cfg.leave_on_server, max_size=self.cfg.max_size
            )
            plan = plan_pop3(
                [RemoteMessage(m.number, m.uidl, m.size) for m in listing],
                self._load_seen(),
                policy,
                now,
            )
            self.too_big = len(plan.too_big)
            fr.notes.extend(plan.notes)
            if not self.session.uses_uidl:
                fr.notes.append("the server has no UIDL: messages are told apart by their headers")
            if self.dry_run:
                fr.planned = _as_plan(plan)
                return self.report
            assert folder is not None
            self._bookkeep(plan, now)
            self._download(plan.download, folder, fr, now)
            for message in plan.delete:
                self._mark(message, fr)
            self.session.quit()
        finally:
            self.session.close()
        fr.deleted_remote = self._marked
        if fr.changed or fr.notes:
            log.info("%s: %s", self.where, "; ".join([fr.summary(), *fr.notes]))
        return self.report

    def _prepare_local(self, fr: FolderReport) -> MaildirFolder:
        expected = self.state.get_meta("maildir_id")
        maildir_id = self.store.bind(expected)
        if expected is None:
            self.state.set_meta("maildir_id", maildir_id)
        folder = self.store.create_folder(self.cfg.folder)
        folder.clean_tmp()  # an interrupted delivery's leftovers; we hold the lock
        self._recover(fr)
        return folder

    # -- state ---------------------------------------------------------------------

    def _load_seen(self) -> dict[str, Seen]:
        rows = self.state.db.execute(
            "SELECT uidl, state, first_seen, gone_since FROM pop3_seen"
        ).fetchall()
        out: dict[str, Seen] = {}
        for uidl, state, first_seen, gone_since in rows:
            try:
                kind = SeenState(state)
            except ValueError:
                raise StateError(
                    f"{self.state.path}: pop3_seen holds an unknown state {state!r} for {uidl!r}"
                ) from None
            out[uidl] = Seen(uidl, kind, first_seen, gone_since)
        return out

    def _bookkeep(self, plan: Pop3Plan, now: float) -> None:
        if not (plan.gone or plan.back or plan.forget):
            return
        db = self.state.db
        with self.state.transaction():
            db.executemany(
                "UPDATE pop3_seen SET gone_since = ? WHERE uidl = ?", ((now, u) for u in plan.gone)
            )
            db.executemany(
                "UPDATE pop3_seen SET gone_since = NULL WHERE uidl = ?", ((u,) for u in plan.back)
            )
            db.executemany("DELETE FROM pop3_seen WHERE uidl = ?", ((u,) for u in plan.forget))
        if plan.forget:
            log.debug("%s: forgot %d ids gone from the server", self.where, len(plan.forget))

    def _recover(self, fr: FolderReport) -> None:
        """Resolve the PENDING records of an interrupted poll (module docstring)."""
        db = self.state.db
        rows = db.execute(
            "SELECT uidl, first_seen, folder, fp FROM pop3_seen WHERE state = ? "
            "ORDER BY first_seen, uidl",
            (_PENDING,),
        ).fetchall()
        if not rows:
            return
        by_folder: dict[str, list[tuple[str, float, str]]] = {}
        for uidl, first_seen, name, fp in rows:
            by_folder.setdefault(name, []).append((uidl, first_seen, fp))
        found: list[tuple[str, str]] = []  # key, uidl
        lost: list[str] = []
        for name, pending in by_folder.items():
            candidates = self._unrecorded(name, min(t for _, t, _ in pending) - _RECOVER_SLACK)
            for uidl, _, fp in pending:
                keys = candidates.get(fp)
                if keys:
                    found.append((keys.pop(0), uidl))
                else:
                    lost.append(uidl)
        with self.state.transaction():
            db.executemany(
                "UPDATE pop3_seen SET state = ?, key = ? WHERE uidl = ?",
                ((_DELIVERED, key, uidl) for key, uidl in found),
            )
            db.executemany("DELETE FROM pop3_seen WHERE uidl = ?", ((u,) for u in lost))
        if found:
            fr.notes.append(
                f"{len(found)} message{'' if len(found) == 1 else 's'} stored before an "
                "interruption recognised, not downloaded again"
            )
        log.info(
            "%s: recovery after an interrupted poll: %d stored messages recognised, "
            "%d to download again",
            self.where,
            len(found),
            len(lost),
        )

    def _unrecorded(self, name: str, since: float) -> dict[str, list[str]]:
        """Fingerprint -> keys (oldest first) of files in ``name`` that no record names and
        that were written at ``since`` or later."""
        try:
            folder = self.store.folder(name)
        except FolderError:
            return {}
        if not folder.exists():
            return {}
        recorded = {
            key
            for (key,) in self.state.db.execute(
                "SELECT key FROM pop3_seen WHERE folder = ? AND state = ?", (name, _DELIVERED)
            )
        }
        out: dict[str, list[str]] = {}
        for key, entry in sorted(folder.scan().items()):
            if key in recorded:
                continue
            try:
                if folder.mtime(entry) < since:
                    continue
                fp = fingerprint(folder.read_header(entry))
            except StoreError as exc:
                log.warning("%s: cannot read %s: %s", self.where, entry.name, exc)
                continue
            out.setdefault(fp, []).append(key)
        return out

    # -- applying --------------------------------------------------------------------

    def _download(
        self, todo: Sequence[Download], folder: MaildirFolder, fr: FolderReport, now: float
    ) -> None:
        batch: list[tuple[Download, bytes]] = []
        nbytes = 0
        done = 0
        for item in todo:
            message = item.message
            try:
                raw = self.session.retrieve(message.number)
            except MessageError as exc:
                note = f"message {message.number} ({message.uidl}) not downloaded: {exc}"
                fr.notes.append(note)
                log.warning("%s: %s", self.where, note)
                continue
            batch.append((item, raw))
            nbytes += len(raw)
            if nbytes >= FETCH_BATCH_BYTES or len(batch) >= FETCH_BATCH_MESSAGES:
                self._store(batch, folder, fr, now)
                done += len(batch)
                batch, nbytes = [], 0
                if self.progress is not None:
                    self.progress(self.cfg.folder, done, len(todo))
        if batch:
            self._store(batch, folder, fr, now)
            done += len(batch)
            if self.progress is not None:
                self.progress(self.cfg.folder, done, len(todo))

    def _store(
        self,
        batch: list[tuple[Download, bytes]],
        folder: MaildirFolder,
        fr: FolderReport,
        now: float,
    ) -> None:
        """Steps (a) to (d) of the module docstring for one batch."""
        db = self.state.db
        name = self.cfg.folder
        with self.state.transaction():
            db.executemany(
                "INSERT INTO pop3_seen (uidl, state, first_seen, folder, key, fp, size, "
                "gone_since) VALUES (?, ?, ?, ?, NULL, ?, ?, NULL) ON CONFLICT(uidl) DO UPDATE "
                "SET state = excluded.state, first_seen = excluded.first_seen, "
                "folder = excluded.folder, key = NULL, fp = excluded.fp, size = excluded.size, "
                "gone_since = NULL",
                (
                    (d.message.uidl, _PENDING, now, name, fingerprint(raw), d.message.size)
                    for d, raw in batch
                ),
            )
        try:
            entries = folder.deliver([(raw, Flag.NONE, None) for _, raw in batch])
        except StoreError:
            # deliver() took its files back out, so nothing of this batch is stored.
            with self.state.transaction():
                db.executemany(
                    "DELETE FROM pop3_seen WHERE uidl = ? AND state = ?",
                    ((d.message.uidl, _PENDING) for d, _ in batch),
                )
            raise
        with self.state.transaction():
            db.executemany(
                "UPDATE pop3_seen SET state = ?, key = ? WHERE uidl = ?",
                (
                    (_DELIVERED, entry.key, d.message.uidl)
                    for (d, _), entry in zip(batch, entries, strict=True)
                ),
            )
        fr.downloaded += len(batch)
        log.debug("%s: stored %d messages", self.where, len(batch))
        for d, _ in batch:
            if d.delete:
                self._mark(d.message, fr)

    def _mark(self, message: RemoteMessage, fr: FolderReport) -> None:
        try:
            self.session.delete(message.number)
        except MessageError as exc:
            note = f"message {message.number} ({message.uidl}) not deleted on the server: {exc}"
            fr.notes.append(note)
            log.warning("%s: %s", self.where, note)
            return
        self._marked += 1

    def save_status(self, error: str | None) -> None:
        """What ``syncd status`` shows: the meta keys ``last_sync``, ``last_error`` and
        ``pop3_last_poll`` (JSON: server_messages, server_octets, downloaded, deleted,
        too_big, max_size, notes)."""
        fr = self.report.folder(self.cfg.folder)
        summary = {
            "folder": self.cfg.folder,
            "server_messages": self.listed - fr.deleted_remote,
            "server_octets": self.listed_bytes,
            "downloaded": fr.downloaded,
            "deleted": fr.deleted_remote,
            "too_big": self.too_big,
            "max_size": self.cfg.max_size,
            "notes": fr.notes,
        }
        with self.state.transaction():
            self.state.set_meta("last_sync", str(self.clock()))
            self.state.set_meta("last_error", error)
            self.state.set_meta("pop3_last_poll", json.dumps(summary, sort_keys=True))


def _as_plan(plan: Pop3Plan) -> Plan:
    """A dry run's view of a POP3 plan in the IMAP plan's terms, for ``syncd sync -n``.

    The idents are this session's message numbers, not UIDs: the plan is only counted.
    """
    actions: list[Copy | Delete] = []
    for d in plan.download:
        actions.append(Copy(Side.REMOTE, Uid(d.message.number), Flag.NONE))
        if d.delete:
            actions.append(Delete(Side.REMOTE, Uid(d.message.number)))
    actions.extend(Delete(Side.REMOTE, Uid(m.number)) for m in plan.delete)
    return Plan(actions=tuple(actions), notes=plan.notes)


def fetch_account(
    account: AccountConfig,
    state_dir: Path,
    secret: Callable[[], str],
    *,
    dry_run: bool = False,
    progress: Progress | None = None,
    apop: bool | None = None,
) -> SyncReport:
    """Poll one POP3 account once. Raises for account-wide failures (TransientError,
    AuthError, TLSError, StateError, StoreError); message failures are notes in the report.

    ``apop``: log in with APOP (None: as the config says; see syncd.drivers.pop3).
    """
    if account.pop3 is None:
        raise ValueError(f"account {account.name} has no pop3 section")
    with AccountLock(state_dir, account.name), State.for_account(state_dir, account.name) as st:
        session = Pop3Session(account.pop3, secret, apop=apop)
        run = AccountFetch(account, st, session, dry_run=dry_run, progress=progress)
        try:
            report = run.run()
        except SyncdError as exc:
            if not dry_run:
                st.set_meta("last_error", str(exc))
            raise
        if not dry_run:
            run.save_status(None if report.ok else "some messages failed")
        return report


def daemon_poll(config: Config, account: AccountConfig) -> SyncReport:
    """The daemon's entry point (syncd.daemon.supervisor): one poll with the stored secret."""
    from syncd.credentials import secret_for

    pop3 = account.pop3
    if pop3 is None:
        raise ValueError(f"account {account.name} has no pop3 section")
    return fetch_account(account, config.state_dir, secret_for(pop3))
