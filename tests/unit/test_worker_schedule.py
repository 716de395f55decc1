"""When the daemon's account worker starts a sync: server changes at once, local ones debounced;
and what it tells each sync about the local changes the file watch reported.

The worker's real thread, request queue and bookkeeping run; only its ``_sync_imap`` (the
sync itself) is replaced by a recorder, so no server is needed. The lower bounds asserted are
the debounce's own deadlines, which the worker cannot pass early (monotonic clock); the upper
bounds are generous, so that only a wait in the scheduler can exceed them.
"""

from __future__ import annotations

import dataclasses
import threading
import time
from pathlib import Path

import pytest

from syncd.config import parse_config
from syncd.daemon.supervisor import DEBOUNCE, AccountWorker
from syncd.engine.sync import FolderReport, LocalChanges, SyncReport
from syncd.errors import TransientError


class RecordingWorker(AccountWorker):
    """An AccountWorker whose syncs only record when they started and what they covered."""

    def __init__(self, *args: object) -> None:
        super().__init__(*args)  # type: ignore[arg-type]
        self.jobs: list[tuple[float, bool, set[str]]] = []
        self.watched: list[LocalChanges | None] = []
        """What each sync was told, without its ``since`` callback (compared by value)."""
        self.fail_next = False
        self.lose_events_in_next = False
        self.next_report: SyncReport | None = None
        """What the next sync reports (taken in as a real one's report is)."""
        self.job_done = threading.Condition()

    def _sync_imap(self, folders: set[str] | None, watched: LocalChanges | None = None) -> None:
        with self.job_done:
            self.jobs.append((time.monotonic(), folders is None, set(folders or ())))
            self.watched.append(
                None if watched is None else dataclasses.replace(watched, since=None)
            )
            self.job_done.notify_all()
        if self.lose_events_in_next:
            self.lose_events_in_next = False
            self.events_lost()  # the inotify queue overflowed while this sync ran
        if self.fail_next:
            self.fail_next = False
            raise TransientError("connection lost")
        report, self.next_report = self.next_report, None
        if report is not None:
            self._synced(report)

    def wait_jobs(self, n: int, timeout: float = 10.0) -> list[tuple[float, bool, set[str]]]:
        with self.job_done:
            self.job_done.wait_for(lambda: len(self.jobs) >= n, timeout=timeout)
            return list(self.jobs)


def make_worker(tmp_path: Path, *, watching: bool = True) -> RecordingWorker:
    config = parse_config(
        f"""state_dir: {tmp_path / "state"}
accounts:
  acct:
    maildir: {tmp_path / "Mail"}
    imap:
      host: 127.0.0.1
      port: 1
      tls: none
      username: u
      password_command: "true"
      idle: []
""",
        tmp_path / "config.yaml",
    )
    (account,) = config.accounts
    worker = RecordingWorker(config, account)
    worker.watching = watching
    return worker


def test_a_server_change_is_synced_at_once_while_local_changes_settle(tmp_path: Path) -> None:
    """An IDLE report must not wait for the debounce of unrelated local changes.

    Before, both went through one ``_not_before``: a new mail reported while the user's
    mail reader was renaming files (or right after syncd's own download was seen by
    inotify) waited up to DEBOUNCE, or DEBOUNCE_MAX during a long burst.
    """
    worker = make_worker(tmp_path)
    worker.start()
    try:
        assert worker.wait_jobs(1)[0][1] is True  # the first job is the full sync
        local_at = time.monotonic()
        worker.request("Archive", debounce=True)  # a mail reader renamed a file
        worker.request("INBOX")  # IDLE: new mail
        jobs = worker.wait_jobs(3)
        assert len(jobs) == 3, jobs
        (t_server, all_server, server_folders), (t_local, all_local, local_folders) = jobs[1:]
        assert (all_server, server_folders) == (False, {"INBOX"})
        # The debounce would have held it until local_at + DEBOUNCE at the earliest.
        assert t_server - local_at < DEBOUNCE, "the server's change waited for the debounce"
        # The local change still waited for its debounce, and was synced on its own.
        assert (all_local, local_folders) == (False, {"Archive"})
        assert t_local - local_at >= DEBOUNCE
    finally:
        worker.stop()
        worker.join(timeout=10)
    assert not worker.is_alive()


def test_local_changes_in_a_burst_still_become_one_sync(tmp_path: Path) -> None:
    worker = make_worker(tmp_path)
    worker.start()
    try:
        worker.wait_jobs(1)
        first = time.monotonic()
        for folder in ("INBOX", "Archive", "INBOX", "Lists/python"):
            worker.request(folder, debounce=True)
        jobs = worker.wait_jobs(2)
        assert [(a, f) for _, a, f in jobs[1:]] == [(False, {"INBOX", "Archive", "Lists/python"})]
        assert jobs[1][0] - first >= DEBOUNCE
        # A server change for a folder with local changes pending takes that folder along.
        worker.request("Archive", debounce=True)
        worker.request("Sent", debounce=True)
        worker.request("Archive")
        jobs = worker.wait_jobs(4)
        assert [(a, f) for _, a, f in jobs[2:]] == [(False, {"Archive"}), (False, {"Sent"})]
    finally:
        worker.stop()
        worker.join(timeout=10)


@pytest.fixture
def worker(tmp_path: Path):
    w = make_worker(tmp_path)
    w.start()
    yield w
    w.stop()
    w.join(timeout=10)
    assert not w.is_alive()


def test_the_watch_names_the_changes_once_a_full_sync_has_run(worker: RecordingWorker) -> None:
    worker.request("INBOX", debounce=True, name="cur/1.a:2,S")  # before the first sync ends
    worker.wait_jobs(1)
    assert worker.watched[0] is None  # the first sync lists everything
    jobs = worker.wait_jobs(2)
    assert jobs[1][1:] == (False, {"INBOX"})
    # Reported during the full sync: it may have been listed already, or not.
    assert worker.watched[1] == LocalChanges(
        {"INBOX": frozenset({"cur/1.a:2,S"})}, frozenset(), frozenset({"INBOX"})
    )
    worker.request("INBOX", debounce=True, name="cur/2.b:2,")
    worker.request("INBOX", debounce=True, name="cur/2.b:2,F")
    worker.request("Archive", debounce=True)  # a change the watch could not name
    worker.wait_jobs(3)
    assert worker.watched[2] == LocalChanges(
        {"INBOX": frozenset({"cur/2.b:2,", "cur/2.b:2,F"})},
        frozenset({"Archive"}),
        frozenset({"INBOX", "Archive"}),
    )


def test_a_server_report_asks_the_server_and_still_takes_the_watchs_names(
    worker: RecordingWorker,
) -> None:
    worker.wait_jobs(1)
    worker.request("INBOX", debounce=True, name="new/3.c")
    worker.request("INBOX")  # IDLE: the server changed it too
    worker.wait_jobs(2)
    assert worker.watched[1] == LocalChanges(
        {"INBOX": frozenset({"new/3.c"})}, frozenset(), frozenset()
    )


def test_lost_events_make_the_next_sync_a_full_one(worker: RecordingWorker) -> None:
    worker.wait_jobs(1)
    worker.request("INBOX", debounce=True, name="cur/1.a:2,S")
    worker.wait_jobs(2)
    worker.events_lost()
    jobs = worker.wait_jobs(3)
    assert jobs[2][1] is True and worker.watched[2] is None
    worker.request("INBOX", debounce=True, name="cur/1.a:2,")
    worker.wait_jobs(4)
    assert worker.watched[3] is not None  # the full sync re-established the watch's word


def test_after_a_failed_sync_the_names_are_kept_and_the_retry_is_full(
    worker: RecordingWorker,
) -> None:
    worker.wait_jobs(1)
    worker.fail_next = True
    worker.request("INBOX", debounce=True, name="cur/1.a:2,S")
    worker.wait_jobs(2)
    assert worker.watched[1] is not None
    worker.kick()  # the network is back: retry now, not after the backoff
    jobs = worker.wait_jobs(3)
    # Reconnected: a full reconciliation, which lists what the lost job would have synced.
    assert jobs[2][1] is True and worker.watched[2] is None


def test_a_poll_is_a_check_of_the_changes_until_the_full_check_is_due(
    worker: RecordingWorker,
) -> None:
    worker.wait_jobs(1)
    worker.request()  # the poll timer: everything, server side included
    worker.wait_jobs(2)
    assert worker.jobs[1][1] is True
    assert worker.watched[1] == LocalChanges({}, frozenset(), frozenset())
    worker._next_full = 0.0  # full_check_interval has passed
    worker.request()
    worker.wait_jobs(3)
    assert worker.watched[2] is None


def test_without_a_file_watch_every_folder_is_listed(tmp_path: Path) -> None:
    w = make_worker(tmp_path, watching=False)
    w.start()
    try:
        w.wait_jobs(1)
        w.request("INBOX", debounce=True, name="cur/1.a:2,S")
        w.wait_jobs(2)
        w.request()
        w.wait_jobs(3)
        assert w.watched == [None, None, None]
    finally:
        w.stop()
        w.join(timeout=10)


def test_events_lost_during_the_full_sync_make_the_next_one_full_too(tmp_path: Path) -> None:
    w = make_worker(tmp_path)
    w.lose_events_in_next = True
    w.start()
    try:
        jobs = w.wait_jobs(2)
        assert [j[1] for j in jobs[:2]] == [True, True]
        assert w.watched[:2] == [None, None]  # the first full sync no longer counts
        w.request("INBOX", debounce=True, name="cur/1.a:2,S")
        w.wait_jobs(3)
        assert w.watched[2] is not None
    finally:
        w.stop()
        w.join(timeout=10)


def test_a_folder_a_reader_kept_busy_is_listed_next(worker: RecordingWorker) -> None:
    """A sync that held something back (a file renamed or gone while it was applied, or
    folders that changed while they were looked at) used up the watch's names for it: the
    next sync must list that folder, or the change would wait for the full check, hours
    later, and the sync would try the same thing again and again meanwhile."""
    worker.wait_jobs(1)
    busy = SyncReport("acct", {"Archive": FolderReport("Archive", relist=True)})
    busy.folders["INBOX"] = FolderReport("INBOX", flags_local=1)
    worker.next_report = busy
    worker.request("INBOX", debounce=True, name="cur/1.a:2,S")
    worker.request("Archive", debounce=True, name="cur/2.b:2,")
    worker.wait_jobs(2)
    jobs = worker.wait_jobs(3)  # no further event: the worker looks again by itself
    assert jobs[2][1:] == (False, {"Archive"})
    assert worker.watched[2] == LocalChanges({}, frozenset({"Archive"}), frozenset({"Archive"}))


def test_a_server_report_leaves_a_move_to_another_folder_for_one_sync(
    worker: RecordingWorker,
) -> None:
    """A reader's move is a file gone in one folder and one new in another. A server report
    for the first folder while the move settles must not take that folder's half alone: it
    would look like a deletion (or, as the server changed the message, be downloaded again
    next to the moved copy). Both halves go to the debounced sync together."""
    worker.wait_jobs(1)
    worker.request("Lists/python", debounce=True, name="cur/1.a:2,S")
    worker.request("Archive", debounce=True, name="cur/1.a:2,S")
    worker.request("Lists/python")  # IDLE: another client flagged the message
    jobs = worker.wait_jobs(3)
    assert jobs[1][1:] == (False, {"Lists/python"})
    assert worker.watched[1] == LocalChanges({}, frozenset(), frozenset())
    assert jobs[2][1:] == (False, {"Lists/python", "Archive"})
    assert worker.watched[2] == LocalChanges(
        {"Lists/python": frozenset({"cur/1.a:2,S"}), "Archive": frozenset({"cur/1.a:2,S"})},
        frozenset(),
        frozenset({"Lists/python", "Archive"}),
    )
