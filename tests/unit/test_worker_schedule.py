"""When the daemon's account worker starts a sync: server changes at once, local ones debounced.

The worker's real thread and request queue run; only its ``_work`` (the sync itself) is
replaced by a recorder, so no server is needed. The lower bounds asserted are the debounce's
own deadlines, which the worker cannot pass early (monotonic clock); the upper bounds are
generous, so that only a wait in the scheduler can exceed them.
"""

from __future__ import annotations

import threading
import time
from pathlib import Path

from syncd.config import parse_config
from syncd.daemon.supervisor import DEBOUNCE, AccountWorker


class RecordingWorker(AccountWorker):
    """An AccountWorker whose syncs only record when they started and what they covered."""

    def __init__(self, *args: object) -> None:
        super().__init__(*args)  # type: ignore[arg-type]
        self.jobs: list[tuple[float, bool, set[str]]] = []
        self.job_done = threading.Condition()

    def _work(self, do_all: bool, folders: set[str], kicks: int) -> None:
        with self.job_done:
            self.jobs.append((time.monotonic(), do_all, set(folders)))
            self.job_done.notify_all()

    def wait_jobs(self, n: int, timeout: float = 10.0) -> list[tuple[float, bool, set[str]]]:
        with self.job_done:
            self.job_done.wait_for(lambda: len(self.jobs) >= n, timeout=timeout)
            return list(self.jobs)


def make_worker(tmp_path: Path) -> RecordingWorker:
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
    return RecordingWorker(config, account)


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
