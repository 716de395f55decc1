"""The daemon's supervisor and per-account workers (see the package docstring)."""

from __future__ import annotations

import contextlib
import functools
import json
import logging
import os
import re
import signal
import subprocess
import threading
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from types import FrameType
from typing import TYPE_CHECKING, Any

from syncd.daemon.idle import AUTH_BACKOFF, IdleWatcher, backoff
from syncd.daemon.notify import Notifier
from syncd.daemon.status import write_status_file
from syncd.daemon.watch import OUTBOX, Watcher
from syncd.errors import (
    AuthError,
    ConfigError,
    LockedError,
    StateError,
    SyncdError,
    TLSError,
    TransientError,
)

if TYPE_CHECKING:
    from syncd.config import AccountConfig, Config
    from syncd.drivers.imap import ImapSession
    from syncd.engine.sync import LocalChanges, SyncReport

log = logging.getLogger(__name__)

DEBOUNCE = 0.25
"""Wait this long after a local change for more (mutt renames hundreds of files at once)...

Only local changes wait: a change the server reports is synced at once, even while local
changes are settling (the server has already grouped its changes: Dovecot, for one, reports
them on IDLE half a second after the first)."""
DEBOUNCE_MAX = 1.0
"""...but never longer than this after the first one."""
NOOP_AFTER = 120.0
"""Check a worker's connection with NOOP before use if it sat unused this long."""
STUCK_AFTER = 900.0
"""A worker that shows no sign of life for this long makes the daemon unhealthy."""
RECENT_CHANGES = 4096
"""How many of the latest local changes a worker remembers to tell a sync what moved
while it looked at the folders; beyond that, every absence is distrusted."""

HOLD_COPIES = 10.0
"""Seconds a fresh copy of a message synced in another folder waits for the original's
deletion before it is uploaded as a copy (a mail reader's move: copy, then delete)."""


@dataclass
class WorkerStatus:
    state: str = "starting"
    last_sync: float | None = None
    last_error: str | None = None
    next_retry: float | None = None
    pending: list[str] = field(default_factory=list)
    idle: dict[str, bool] = field(default_factory=dict)
    folders: int = 0
    send_error: str | None = None
    send_next_retry: float | None = None
    """When the outbox is tried again after a connection failure (wall clock)."""


class AccountWorker(threading.Thread):
    """Does every sync of one account, one at a time, merging requests that pile up."""

    def __init__(self, config: Config, account: AccountConfig) -> None:
        super().__init__(name=f"worker-{account.name}", daemon=True)
        self.config = config
        self.account = account
        self._cond = threading.Condition()
        self._stopping = False
        self._all = True  # the first job is a full sync
        self._send = account.smtp is not None
        self._folders: set[str] = set()
        """Folders with local changes, synced once ``_debounce_until`` has passed."""
        self._names: dict[str, set[str]] = {}
        """Per folder, the message files the file watch saw change since its last sync."""
        self._unknown: set[str] = set()
        """Folders that changed in ways the watch did not name: listed at their next sync."""
        self.watching = False
        """The supervisor's file watch covers this account's Maildir (set before start)."""
        self.fence: Callable[[], bool] | None = None
        """Waits until the watch has reported every change made before the call (set
        before start, with ``watching``)."""
        self._local_seq = 0
        """Local changes reported so far (under ``_cond``)."""
        self._recent: deque[tuple[int, str | None]] = deque(maxlen=RECENT_CHANGES)
        """The latest local changes: (their ``_local_seq``, the file, or None when the
        change was not one file's), to tell a sync what moved while it looked."""
        self._tracking = False
        """Every local change since the last full sync was reported by the watch, so a
        sync may take the watch's word for what changed instead of listing folders."""
        self._full = True
        """The next sync of everything is a full reconciliation (start, reconnect, lost
        events), not a check of the changes alone."""
        self._next_full = 0.0
        self._losses = 0
        """How many times the file watch lost events (under ``_cond``)."""
        self._held: dict[str, tuple[float, frozenset[str]]] = {}
        """Folders with held copies (FolderReport.held): when to sync them again, and the
        files. Synced along with every other folder until then, to meet the deletion."""
        self._urgent: set[str] = set()
        """Folders the server reported changed: synced as soon as the worker is free."""
        self._not_before = 0.0
        """No mail sync before this (a backoff after a failure)."""
        self._debounce_until = 0.0
        self._send_not_before = 0.0
        self._send_due: float | None = None
        self._send_attempt = 0
        self._first_request: float | None = None
        self._attempt = 0
        self._next_poll = 0.0
        self._session: ImapSession | None = None
        """This worker thread's IMAP connection: only this thread uses or closes it. Other
        threads may only ``interrupt()`` it (see :meth:`kick`)."""
        self._session_used = 0.0
        self._kicks = 0
        """How many times :meth:`kick` was called (under ``_cond``)."""
        self._session_kicks = 0
        """``_kicks`` when the session was made: an older session is not used again."""
        self.heartbeat = time.monotonic()
        self.busy = False
        self.status = WorkerStatus()
        self.idlers: list[IdleWatcher] = []

    # -- requests (any thread) -------------------------------------------------------

    def request(
        self, folder: str | None = None, *, debounce: bool = False, name: str | None = None
    ) -> None:
        """Ask for a sync of ``folder`` (None: everything; OUTBOX: drain the outbox).

        ``debounce``: a local change, of the message file ``name`` (``cur/NAME``) or, with
        no name, of anything in the folder.
        """
        now = time.monotonic()
        with self._cond:
            if folder is None:
                self._all = True
            elif folder == OUTBOX:
                self._send = True
            elif debounce:
                self._local_seq += 1
                self._recent.append((self._local_seq, name))
                self._folders.add(folder)
                if name is None:
                    self._unknown.add(folder)
                else:
                    self._names.setdefault(folder, set()).add(name)
                if self._first_request is None:
                    self._first_request = now
                self._debounce_until = max(
                    self._debounce_until,
                    min(now + DEBOUNCE, self._first_request + DEBOUNCE_MAX),
                )
            else:
                self._urgent.add(folder)
            self._cond.notify()

    def events_lost(self) -> None:
        """The file watch dropped events: reconcile everything in full now."""
        with self._cond:
            self._tracking = False
            self._all = self._full = True
            self._losses += 1
            self._local_seq += 1
            self._recent.append((self._local_seq, None))
            self._cond.notify()

    def kick(self) -> None:
        """Reconnect and sync everything now (network back, resumed from suspend).

        Returns at once, whatever the worker is doing: the connections belong to their
        threads, so this only asks. The worker makes a new connection before its next
        command; if it is blocked in one on a dead link, the shutdown of its socket makes
        that command fail now instead of at its timeout, and the job is retried at once.
        """
        with self._cond:
            self._attempt = 0
            self._not_before = 0.0
            self._all = self._full = True
            self._send = self.account.smtp is not None
            self._send_not_before = 0.0
            self._send_attempt = 0
            self._kicks += 1
            self._cond.notify()
        session = self._session
        if session is not None:
            session.interrupt()
        for idler in self.idlers:
            idler.kick()

    def network_up(self) -> None:
        """A connection to the server succeeded again: retry pending work now."""
        with self._cond:
            if self.status.state in ("offline", "waiting"):
                self._attempt = 0
                self._not_before = 0.0
            if self._send_attempt:
                self._send_attempt = 0
                self._send_not_before = 0.0
            self._cond.notify()

    def stop(self) -> None:
        with self._cond:
            self._stopping = True
            self._cond.notify()
        for idler in self.idlers:
            idler.stop()

    # -- the worker thread -----------------------------------------------------------

    def _secret_for(self, server: Any) -> Callable[[], str]:
        from syncd.credentials import secret_for

        return secret_for(server)

    def run(self) -> None:
        acct = self.account
        if acct.imap is not None and acct.imap.tunnel and acct.imap.idle:
            log.info(
                "%s: IDLE needs a socket, which a tunnel: command has not; polling every %d s",
                acct.name,
                acct.imap.poll_interval,
            )
        elif acct.imap is not None:
            for folder in acct.imap.idle:
                idler = IdleWatcher(
                    acct.name,
                    acct.imap,
                    folder,
                    self._secret_for(acct.imap),
                    lambda f: self.request(f),
                    on_connect=self.network_up,
                )
                self.idlers.append(idler)
                idler.start()
        try:
            self._loop()
        finally:
            for idler in self.idlers:
                idler.stop()
            self._drop_session()

    def _interval(self) -> float:
        acct = self.account
        if acct.imap is not None:
            return float(acct.imap.poll_interval)
        if acct.pop3 is not None:
            return float(acct.pop3.interval)
        return 300.0

    def _loop(self) -> None:
        # Two channels with their own backoff: syncing mail, and draining the outbox, so
        # an IMAP outage never holds mail back from a reachable SMTP server (or vice versa).
        while True:
            with self._cond:
                while True:
                    self.heartbeat = now = time.monotonic()
                    if self._stopping:
                        return
                    if now >= self._next_poll:
                        self._all = True
                        self._send = self._send or self.account.smtp is not None
                    if self._send_due is not None and now >= self._send_due:
                        self._send, self._send_due = True, None
                    for f, (due, held) in list(self._held.items()):
                        if now >= due:
                            self._folders.add(f)
                            self._held[f] = (float("inf"), held)
                    urgent = self._all or bool(self._urgent)
                    mail_work = urgent or bool(self._folders)
                    mail_due = (
                        self._not_before if urgent else max(self._not_before, self._debounce_until)
                    )
                    mail_ready = mail_work and now >= mail_due
                    send_ready = self._send and now >= self._send_not_before
                    if mail_ready or send_ready:
                        break
                    wake = self._next_poll
                    if mail_work:
                        wake = min(wake, mail_due)
                    if self._send:
                        wake = min(wake, self._send_not_before)
                    if self._send_due is not None:
                        wake = min(wake, self._send_due)
                    for due, _held in self._held.values():
                        wake = min(wake, due)
                    self._cond.wait(timeout=max(0.05, min(wake - now, 60.0)))
                do_all = folders = None
                watched: LocalChanges | None = None
                kicks = self._kicks
                if mail_ready:
                    do_all = self._all
                    urgent_folders = self._urgent
                    local = True
                    if do_all or now >= self._debounce_until:
                        folders = self._urgent | self._folders
                        self._folders = set()
                        self._first_request = None
                    else:
                        # Local changes still settling keep waiting (a burst of renames
                        # stays one sync); the server's change goes now. It takes along
                        # the local changes of its own folders, unless other folders have
                        # some too: a reader's move shows as a file gone here and one new
                        # there, and a sync that saw only one half would take the move
                        # for a deletion (or, with a server change, restore the message).
                        folders = set(self._urgent)
                        local = not any(f not in folders for f in self._names)
                        if local:
                            self._folders -= folders
                    if not do_all:
                        folders |= self._held.keys()
                    watched = self._take_changes(do_all, folders, urgent_folders, now, local)
                    self._all, self._urgent = False, set()
                    if do_all:
                        self._next_poll = time.monotonic() + self._interval()
                send = send_ready
                if send:
                    self._send = False
            self.busy = True
            try:
                if do_all is not None and folders is not None:
                    self._work(do_all, folders, kicks, watched)
                if send:
                    self._work_send(kicks)
            finally:
                self.busy = False
                self.heartbeat = time.monotonic()

    def _take_changes(
        self, do_all: bool, folders: set[str], urgent: set[str], now: float, local: bool = True
    ) -> LocalChanges | None:
        """What the file watch saw in the folders about to be synced (under ``_cond``).

        None for a full reconciliation: at start, after a reconnect or lost events, and
        every ``full_check_interval``; the folders are listed then, whatever the watch said.
        Without ``local``, the local changes are left for a later sync: this one syncs the
        server's changes, taking the local side to be as the last sync left it.
        """
        from syncd.engine.sync import LocalChanges

        names = {
            f: frozenset(self._names.pop(f))
            for f in list(self._names)
            if local and (do_all or f in folders)
        }
        for f, (_due, held) in self._held.items():
            names[f] = names.get(f, frozenset()) | held
        unknown = (set(self._unknown) if do_all else self._unknown & folders) if local else set()
        self._unknown -= unknown
        full = do_all and (self._full or now >= self._next_full)
        if full or not self._tracking:
            self._full = self._full or full
            return None
        quiet = frozenset() if do_all else frozenset(folders - urgent)
        seq, fence = self._local_seq, self.fence

        def since() -> list[str] | None:
            if fence is None or not fence():
                return None
            with self._cond:
                count = self._local_seq - seq
                later = [name for n, name in self._recent if n > seq] if count else []
            if len(later) < count or None in later:
                return None  # some fell out of the log, or were not one file's change
            return [name for name in later if name is not None]

        return LocalChanges(names, frozenset(unknown), quiet, since)

    def _classify(self, exc: BaseException, attempt: int) -> tuple[float, str]:
        """(delay, state) for a failure: never a hot loop, long waits for auth/TLS."""
        if isinstance(exc, AuthError | TLSError):
            return AUTH_BACKOFF, "auth-failed"
        if isinstance(exc, LockedError):
            return 5.0, "waiting"
        if isinstance(exc, TransientError):
            return backoff(attempt), "offline"
        if not isinstance(exc, SyncdError):
            log.error("%s: unexpected error", self.account.name, exc_info=exc)
        return backoff(attempt + 6), "error"

    def _work(
        self, do_all: bool, folders: set[str], kicks: int, watched: LocalChanges | None = None
    ) -> None:
        acct = self.account
        if acct.imap is None and acct.pop3 is None:
            return
        self.status.state = "syncing"
        self.status.pending = ["*"] if do_all else sorted(folders)
        full = do_all and watched is None
        with self._cond:
            losses = self._losses
        wall0, cpu0 = time.monotonic(), time.thread_time()
        try:
            if acct.imap is not None:
                self._sync_imap(None if do_all else folders, watched)
            if acct.pop3 is not None and do_all:
                self._poll_pop3()
        except Exception as exc:  # the daemon must outlive any failure of one sync
            if isinstance(exc, TransientError):
                self._drop_session(logout=False)  # the link is broken: no LOGOUT to wait for
            with self._cond:
                attempt = self._attempt
            delay, state = self._classify(exc, attempt)
            with self._cond:
                if self._kicks != kicks:
                    # A kick came during this job (and may have broken its connection on
                    # purpose): retry now, on a new connection, as the kick asked.
                    delay = 0.0
                else:
                    self._attempt += 1
                # Keep the work: local changes made while offline are pushed on reconnect.
                self._all = self._all or do_all
                self._folders |= folders
                if watched is not None:
                    for f, names in watched.names.items():
                        self._names.setdefault(f, set()).update(names)
                    self._unknown |= watched.unknown
                if isinstance(exc, TransientError):
                    # After a reconnect, everything is reconciled in full.
                    self._all = self._full = True
                self._not_before = time.monotonic() + delay
            log.warning("%s: %s; retrying in %.0f s", acct.name, exc, delay)
            self.status.state = state
            self.status.last_error = str(exc)
            self.status.next_retry = time.time() + delay
            return
        with self._cond:
            self._attempt = 0
            if full and self._losses == losses and self._kicks == kicks:
                # From now on the watch's word stands in for listing folders (until
                # events are lost, a reconnect, or the next full check). Events lost or a
                # kick while it ran leave the next sync a full one.
                self._tracking = self.watching
                self._full = False
                imap = acct.imap
                self._next_full = time.monotonic() + (
                    imap.full_check_interval if imap is not None else 0
                )
        log.debug(
            "%s: %s synced in %.0f ms (%.0f ms CPU)",
            acct.name,
            ("everything, in full" if full else "everything's changes")
            if do_all
            else ", ".join(sorted(folders)),
            (time.monotonic() - wall0) * 1000,
            (time.thread_time() - cpu0) * 1000,
        )
        self.status.state = "idle"
        self.status.last_sync = time.time()
        self.status.next_retry = None
        self.status.pending = []

    def _work_send(self, kicks: int) -> None:
        acct = self.account
        if acct.smtp is None:
            return
        try:
            due = self._drain_outbox()
        except Exception as exc:  # queued mail stays queued whatever happens
            with self._cond:
                attempt = self._send_attempt
            delay, _state = self._classify(exc, attempt)
            with self._cond:
                if self._kicks != kicks:
                    delay = 0.0  # the network came back meanwhile: try again now
                else:
                    self._send_attempt += 1
                self._send = True
                self._send_not_before = time.monotonic() + delay
            log.warning("%s: outbox: %s; retrying in %.0f s", acct.name, exc, delay)
            self.status.send_error = str(exc)
            self.status.send_next_retry = time.time() + delay
            return
        with self._cond:
            self._send_attempt = 0
        self.status.send_error = None
        self.status.send_next_retry = None
        if due is not None:
            # A message the server deferred (4xx): wake when its backoff ends.
            with self._cond:
                self._send_due = time.monotonic() + max(0.0, due - time.time())
                self._cond.notify()

    def _drop_session(self, *, logout: bool = True) -> None:
        """Close the worker's connection (worker thread only)."""
        session, self._session = self._session, None
        if session is not None:
            if not logout:
                session.interrupt()  # LOGOUT would fail at once instead of waiting
            with contextlib.suppress(Exception):
                session.close()

    def _imap_session(self) -> ImapSession:
        from syncd.drivers.imap import ImapSession

        acct = self.account
        assert acct.imap is not None
        with self._cond:
            kicks = self._kicks
        if self._session is not None and self._session_kicks != kicks:
            # kick(): the link may be dead (suspend, network change) and was shut down.
            self._drop_session(logout=False)
        now = time.monotonic()
        if self._session is not None and now - self._session_used > NOOP_AFTER:
            try:
                self._session.noop()
            except SyncdError:
                self._drop_session(logout=False)
        if self._session is None:
            session = ImapSession(acct.imap, self._secret_for(acct.imap))
            # Published before connecting, so that a kick can cut a login that hangs.
            self._session, self._session_kicks = session, kicks
            try:
                session.connect()
            except BaseException:
                self._session = None
                raise
            with self._cond:
                # Connected: a failure from here on is a new one, not the next of a series
                # (a connection that drops mid-sync is retried soon, not after minutes).
                self._attempt = 0
        self._session_used = now
        return self._session

    def _sync_imap(self, folders: set[str] | None, watched: LocalChanges | None = None) -> None:
        from syncd.engine import sync_account

        acct = self.account
        assert acct.imap is not None
        session = self._imap_session()

        def progress(folder: str, done: int, total: int) -> None:
            self.heartbeat = time.monotonic()

        report = sync_account(
            acct,
            self.config.state_dir,
            self._secret_for(acct.imap),
            folders=folders,
            session=session,
            progress=progress,
            lock_wait=60.0,
            watched=watched,
            hold_copies=HOLD_COPIES,
        )
        self._session_used = time.monotonic()
        self.status.folders = len(report.folders) if folders is None else self.status.folders
        self._synced(report)

    def _synced(self, report: SyncReport) -> None:
        """Take in what a sync of the IMAP folders left to do later."""
        acct = self.account
        errors = [f"{n}: {f.error}" for n, f in report.folders.items() if f.error]
        self.status.last_error = "; ".join(errors) if errors else None
        with self._cond:
            for name, fr in report.folders.items():
                if fr.held:
                    due = self._held.get(name, (time.monotonic() + HOLD_COPIES, None))[0]
                    self._held[name] = (
                        min(due, time.monotonic() + HOLD_COPIES),
                        frozenset(fr.held),
                    )
                elif not fr.error:
                    self._held.pop(name, None)
        for name, fr in report.folders.items():
            if fr.downloaded and acct.on_new_mail:
                run_hook(acct.on_new_mail, acct.name, name, fr.downloaded)
            if fr.relist:
                # A reader was busy in the folder: look again once it settles, even if no
                # further file event comes (a filesystem without inotify, a lost event),
                # and list it then (what was held back is not among the watch's names).
                self.request(name, debounce=True)

    def _poll_pop3(self) -> None:
        from syncd.engine.fetch import daemon_poll

        acct = self.account
        report = daemon_poll(self.config, acct)
        errors = [f"{n}: {f.error}" for n, f in report.folders.items() if f.error]
        self.status.last_error = "; ".join(errors) if errors else None
        for name, fr in report.folders.items():
            if fr.downloaded and acct.on_new_mail:
                run_hook(acct.on_new_mail, acct.name, name, fr.downloaded)

    def _drain_outbox(self) -> float | None:
        """Drain the outbox, respecting each message's backoff; returns when to try next."""
        from syncd.engine.send import daemon_drain

        report = daemon_drain(self.config, self.account)
        return report.next_due


def run_hook(argv: tuple[str, ...], account: str, folder: str, count: int) -> None:
    """Run ``on_new_mail`` without a shell; its failure is logged, never fatal.

    ``{account}``, ``{folder}`` and ``{count}`` in the arguments are replaced; when none
    appears, the folder and count are appended as two arguments.
    """
    values = {"account": account, "folder": folder, "count": str(count)}
    if any("{" in a for a in argv):
        args = [a.format(**values) for a in argv]
    else:
        args = [*argv, folder, str(count)]
    env = {**os.environ, "SYNCD_ACCOUNT": account, "SYNCD_FOLDER": folder, "SYNCD_NEW": str(count)}
    try:
        subprocess.Popen(  # noqa: S603 - the user's own configured command, no shell
            args, env=env, stdin=subprocess.DEVNULL, start_new_session=True
        )
    except (OSError, ValueError, KeyError, IndexError) as exc:
        log.warning("%s: on_new_mail hook %r failed to start: %s", account, argv[0], exc)


class Supervisor:
    """Runs the daemon until SIGTERM/SIGINT; see the package docstring."""

    def __init__(self, config_path: Path | None, *, tick: float = 5.0) -> None:
        self.config_path = config_path
        self.tick = tick
        self.notifier = Notifier()
        if self.notifier.watchdog_interval:
            self.tick = min(self.tick, self.notifier.watchdog_interval / 3)
        self.workers: dict[str, AccountWorker] = {}
        self.watcher: Watcher | None = None
        self.config: Config | None = None
        self._wake = threading.Event()
        self._signals: list[int] = []
        self._last_status = ""
        self.started = time.time()

    # -- signals ---------------------------------------------------------------------

    def _on_signal(self, signum: int, frame: FrameType | None) -> None:
        self._signals.append(signum)
        self._wake.set()

    def _install_signals(self) -> None:
        for sig in (signal.SIGTERM, signal.SIGINT, signal.SIGHUP, signal.SIGUSR1):
            signal.signal(sig, self._on_signal)

    # -- lifecycle -------------------------------------------------------------------

    def _start(self, config: Config) -> None:
        self.config = config
        self.watcher = Watcher(self._on_local_change, self._on_events_lost)
        for acct in config.accounts:
            worker = AccountWorker(config, acct)
            # What the last sync (this daemon's predecessor or `syncd sync`) left, so the
            # first STATUS= line is not "0 folders, last sync -" right after a sync.
            worker.status.folders, worker.status.last_sync = _saved_status(config, acct.name)
            self.workers[acct.name] = worker
            try:
                self.watcher.watch_maildir(acct.name, acct.maildir, acct.layout.value, acct.outbox)
                worker.watching = True
                worker.fence = functools.partial(self.watcher.fence, acct.maildir)
            except OSError as exc:
                log.warning("%s: cannot watch %s for changes: %s", acct.name, acct.maildir, exc)
        # The watch runs before the first sync starts: a change made during that full
        # sync is then reported, and later syncs may rely on the watch alone.
        self.watcher.start()
        for worker in self.workers.values():
            worker.start()

    def _stop_all(self) -> None:
        if self.watcher is not None:
            self.watcher.stop()
            self.watcher = None
        workers = list(self.workers.values())
        for w in workers:
            w.stop()
        deadline = time.monotonic() + 10
        for w in workers:
            w.join(timeout=max(0.1, deadline - time.monotonic()))
        self.workers = {}

    def _on_local_change(self, account: str, folder: str, name: str | None) -> None:
        worker = self.workers.get(account)
        if worker is not None:
            worker.request(folder, debounce=True, name=name)

    def _on_events_lost(self) -> None:
        log.warning("the file watch lost events; every folder is listed again")
        for worker in list(self.workers.values()):
            worker.events_lost()

    def run(self) -> int:
        from syncd.config import load_config

        try:
            config = load_config(self.config_path)
        except ConfigError as exc:
            log.error("config error: %s", exc)
            return 2
        from syncd.state import DaemonLock

        # One daemon per state directory: a second one would run its own IDLE connections
        # and syncs, and overwrite the first one's status file when it exits.
        lock = DaemonLock(config.state_dir)
        try:
            lock.acquire()
        except StateError as exc:
            log.error("%s", exc)
            return 1
        try:
            return self._run_locked(config)
        finally:
            lock.release()

    def _run_locked(self, config: Config) -> int:
        self._install_signals()
        self._start(config)
        self.notifier.ready(self.status_line())
        log.info("syncd started: %s", self.status_line())
        clock = _Clock()
        last_line = ""
        try:
            while True:
                self._wake.wait(self.tick)
                self._wake.clear()
                signals, self._signals = self._signals, []
                if any(s in (signal.SIGTERM, signal.SIGINT) for s in signals):
                    break
                if signal.SIGHUP in signals:
                    self._reload()
                if signal.SIGUSR1 in signals:
                    log.info("SIGUSR1: syncing everything now")
                    for w in self.workers.values():
                        w.kick()
                if clock.jumped():
                    log.info("the clock jumped (suspend/resume?): reconnecting everything")
                    for w in self.workers.values():
                        w.kick()
                line = self.status_line()
                self._write_status(line)
                if line != last_line:
                    self.notifier.status(line)
                    last_line = line
                if self.healthy():
                    self.notifier.watchdog()
        finally:
            self.notifier.stopping()
            log.info("stopping")
            self._stop_all()
            self._write_status(stopped=True)
            self.notifier.close()
        return 0

    def _reload(self) -> None:
        from syncd.config import load_config

        self.notifier.reloading()
        try:
            config = load_config(self.config_path)
        except ConfigError as exc:
            log.error("SIGHUP: the new config is invalid, keeping the old one: %s", exc)
            self.notifier.reloaded(self.status_line())
            return
        if self.config is not None and config.state_dir != self.config.state_dir:
            # The daemon lock and the status file live in the state directory.
            log.error(
                "SIGHUP: state_dir changed to %s; keeping %s until syncd is restarted",
                config.state_dir,
                self.config.state_dir,
            )
            self.notifier.reloaded(self.status_line())
            return
        log.info("SIGHUP: reloading the config")
        self._stop_all()
        self._start(config)
        self.notifier.reloaded(self.status_line())

    def healthy(self) -> bool:
        now = time.monotonic()
        return all(
            w.is_alive() and (not w.busy or now - w.heartbeat < STUCK_AFTER)
            for w in self.workers.values()
        )

    # -- status ----------------------------------------------------------------------

    def status_line(self) -> str:
        workers = list(self.workers.values())
        n = len(workers)
        folders = sum(w.status.folders for w in workers)
        states = {w.account.name: live_state(w) for w in workers}
        offline = [name for name, (state, _) in states.items() if state in _OFFLINE]
        last = max((w.status.last_sync or 0 for w in workers), default=0)
        parts = [f"{n} account{'s' if n != 1 else ''}", f"{folders} folders"]
        parts.append(f"outbox {self._outbox_depth()}")
        if offline:
            parts.append("offline: " + ", ".join(offline))
        for name, (_, error) in states.items():
            # What only the user can fix goes on the STATUS= line with the fix.
            command = login_command(error)
            if command is not None:
                parts.append(f"{name} needs a new OAuth2 login, run: {command}")
        parts.append("last sync " + (time.strftime("%H:%M", time.localtime(last)) if last else "-"))
        return ", ".join(parts)

    def _outbox_depth(self) -> int:
        n = 0
        for w in self.workers.values():
            new = w.account.outbox / "new"
            with contextlib.suppress(OSError):
                n += sum(1 for e in os.scandir(new) if not e.name.startswith("."))
        return n

    def _write_status(self, line: str | None = None, *, stopped: bool = False) -> None:
        if self.config is None:
            return
        # Written only when something changed: an idle daemon should not touch the disk.
        line = line or self.status_line()
        data: dict[str, Any] = {
            "pid": os.getpid(),
            "started": self.started,
            "updated": time.time(),
            "running": not stopped,
            "status": line,
            "accounts": {},
        }
        for name, w in self.workers.items():
            st = w.status
            state, error = live_state(w)
            data["accounts"][name] = {
                "state": state,
                "last_sync": st.last_sync,
                "last_error": error,
                "next_retry": st.next_retry,
                "pending": st.pending,
                "outbox_error": st.send_error,
                "outbox_next_try": _outbox_next_try(w),
                "idle": {i.folder: i.connected for i in w.idlers if not i.no_idle},
                "no_idle": sorted(i.folder for i in w.idlers if i.no_idle),
                "poll_interval": round(w._interval()),
            }
        key = json.dumps({**data, "updated": None}, sort_keys=True)
        if key == self._last_status and not stopped:
            return
        self._last_status = key
        write_status_file(self.config.state_dir, data)


_OFFLINE = ("offline", "auth-failed")
_LOGIN_COMMAND = re.compile(r"run: (syncd oauth login [A-Za-z0-9_-]+)")


def login_command(error: str | None) -> str | None:
    """The ``syncd oauth login ACCOUNT`` a LoginRequired error asks for, if ``error`` is one."""
    match = _LOGIN_COMMAND.search(error or "")
    return match.group(1) if match else None


def live_state(worker: AccountWorker) -> tuple[str, str | None]:
    """The account's state and error as ``syncd status`` shows them.

    The worker says "idle" between syncs, yet its IDLE connections notice a server that
    went away long before the next poll: while one of them cannot connect, the account is
    "offline" with that error, not idle.
    """
    st = worker.status
    if st.state == "idle":
        for idler in worker.idlers:
            if not idler.connected and idler.last_error:
                # An IDLE login refused for want of an OAuth2 grant is no network trouble.
                state = "auth-failed" if login_command(idler.last_error) else "offline"
                return state, f"IDLE on {idler.folder}: {idler.last_error}"
    if st.state != "auth-failed" and login_command(st.send_error):
        return "auth-failed", f"outbox: {st.send_error}"
    return st.state, st.last_error


def _outbox_next_try(worker: AccountWorker) -> float | None:
    """When the daemon next tries the outbox by itself (wall clock, whole seconds).

    After a connection failure, when its backoff ends; otherwise at the next poll, which
    also drains the outbox. None for an account that does not send.
    """
    if worker.account.smtp is None:
        return None
    if worker.status.send_next_retry is not None:
        return float(round(worker.status.send_next_retry))
    # The poll time is monotonic; whole seconds keep the status file from being rewritten
    # by the jitter of this conversion.
    now = time.time()
    return float(round(max(now, now - time.monotonic() + worker._next_poll)))


def _saved_status(config: Config, account: str) -> tuple[int, float | None]:
    """(folders, last sync time) from the account's state database, if it has one."""
    from syncd.state import State

    path = config.state_dir / f"{account}.sqlite3"
    if not path.exists():
        return 0, None
    try:
        with State(path) as st:
            last = st.get_meta("last_sync")
            return len(st.folders()), float(last) if last else None
    except (SyncdError, ValueError) as exc:
        log.warning("%s: cannot read the state database: %s", account, exc)
        return 0, None


class _Clock:
    """Notices suspend/resume: the boot-time clock runs on during suspend, monotonic not."""

    def __init__(self) -> None:
        self._offset = self._read()

    @staticmethod
    def _read() -> float:
        boot = getattr(time, "CLOCK_BOOTTIME", None)
        if boot is None:
            return time.time() - time.monotonic()
        return time.clock_gettime(boot) - time.monotonic()

    def jumped(self, threshold: float = 10.0) -> bool:
        now = self._read()
        jumped = abs(now - self._offset) > threshold
        self._offset = now
        return jumped
