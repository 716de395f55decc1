"""The long-running process: ``syncd run``.

Theory of operation
-------------------
One :class:`~syncd.daemon.supervisor.Supervisor` owns everything. Per account it runs one
worker thread that does all syncing for that account, one job at a time, over its own
IMAP connection. Work reaches a worker as *requests* ("sync these folders", "sync
everything", "drain the outbox", "poll POP3"), which it merges while it is busy, so a burst
of a hundred file renames from mutt becomes one sync.

Requests come from:

* IDLE watchers, one thread and connection per folder in ``idle:``, which request a folder
  sync when the server reports a change, and re-IDLE before the server's 30-minute limit;
* the poller, every ``poll_interval``, which requests a full sync: folders whose STATUS and
  local directories are unchanged cost one STATUS command each and nothing else;
* the file watcher (inotify through watchdog) on the Maildir tree and the outbox, which
  requests the folders whose files changed, after a short debounce;
* signals: SIGUSR1 reconnects and syncs everything now, SIGHUP reloads the config;
* the clock: a jump between the boot-time clock and the monotonic clock means the machine
  was suspended, so every connection is re-made and everything synced.

Each connection belongs to the thread that reads it: the worker's to the worker, each
IDLE connection to its watcher. Other threads (the supervisor on a resume or SIGUSR1, a
watcher reporting a change) only set flags under the worker's lock, which nobody holds
during I/O, and at most shut a socket down (``ImapSession.interrupt``), which ends a
command stuck on a dead link at once; the owner then closes its session and makes a new
one. So a kick returns at once even when a worker is stuck mid-APPEND.

Failures never spin. A worker that hits a network error marks the account offline and
retries with exponential backoff and jitter, capped at five minutes; an authentication or
TLS failure waits much longer and says so in the status. Every connection that succeeds
(for a watcher: login and EXAMINE) starts the backoff over, so routine drops are followed
by a prompt reconnect. Local changes made while offline
are not lost: they are in the Maildir, and the next successful sync pushes them.

The main thread only waits for signals and ticks every few seconds: it writes the status
file, sends systemd its STATUS= line and, while every worker is alive, WATCHDOG=1.
"""
