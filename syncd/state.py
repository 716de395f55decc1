"""The state database: one SQLite file per account, plus the account lock.

What it holds, per folder: UIDVALIDITY, UIDNEXT, HIGHESTMODSEQ and message count as last
seen on the server, the local change stamp, the last sync time and error; per message: the
pair (remote UID <-> local key) and the flags both sides agreed on (the merge base).

Why it can be lost without losing mail: every decision that deletes needs a pair in the
base, and a pair is written only after both copies are durable. A base that is older than
the mailboxes (a crash, a lost commit, a deleted database) only ever makes messages look
new, and new messages are first matched by header fingerprint before anything is copied.
So the worst a stale state does is cost a re-match, never a deletion or a duplicate.

``SYNCD_TEST_STOP_AFTER_COMMITS=N`` is a test-only hook (like isync's ``-Ts``): the process
kills itself with SIGKILL right after its N-th commit, so tests can crash a real sync at
every step and check that the next run converges.
"""

from __future__ import annotations

import contextlib
import errno
import fcntl
import os
import signal
import sqlite3
import time
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

from syncd.errors import LockedError, StateError
from syncd.model import Fingerprint, Flag, LocalKey, Pair, Uid

SCHEMA_VERSION = 1

_MIGRATIONS: dict[int, str] = {
    1: """
    CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);
    CREATE TABLE IF NOT EXISTS folders (
        name TEXT PRIMARY KEY,
        uidvalidity INTEGER,
        uidnext INTEGER,
        highestmodseq INTEGER,
        messages INTEGER,
        local_stamp TEXT,
        local_count INTEGER,
        last_sync REAL,
        last_error TEXT
    );
    CREATE TABLE IF NOT EXISTS pairs (
        folder TEXT NOT NULL,
        uid INTEGER NOT NULL,
        key TEXT NOT NULL,
        flags TEXT NOT NULL,
        fp TEXT,
        PRIMARY KEY (folder, uid)
    ) WITHOUT ROWID;
    CREATE INDEX IF NOT EXISTS pairs_by_key ON pairs (folder, key);
    -- POP3: every UIDL downloaded, so nothing is fetched twice (syncd.engine.fetch).
    -- state 'pending' is committed before the Maildir delivery (with the header fingerprint
    -- fp, to re-find the file after a crash), 'delivered' after it, with the file's key.
    -- gone_since: when the UIDL was first missing from the server's listing.
    CREATE TABLE IF NOT EXISTS pop3_seen (
        uidl TEXT PRIMARY KEY,
        state TEXT NOT NULL,
        first_seen REAL NOT NULL,
        folder TEXT NOT NULL,
        key TEXT,
        fp TEXT NOT NULL,
        size INTEGER NOT NULL,
        gone_since REAL
    ) WITHOUT ROWID;
    -- Outbox journal: one row per outbox message a drain has touched, keyed by the file's
    -- Maildir key (syncd.engine.send; phases in syncd.planner.outbox.Phase).
    CREATE TABLE IF NOT EXISTS outbox (
        name TEXT PRIMARY KEY,
        state TEXT NOT NULL,            -- queued | sending | sent | copied
        attempts INTEGER NOT NULL DEFAULT 0,
        next_attempt REAL,              -- after a temporary failure; NULL: due now
        last_error TEXT,
        message_id TEXT,
        delivered TEXT,                 -- JSON list: recipients the server accepted
        refused TEXT,                   -- JSON list of [recipient, the server's answer]
        updated REAL
    ) WITHOUT ROWID;
    """,
}

_PAIR_COUNTS = """
BEGIN IMMEDIATE;
CREATE TABLE IF NOT EXISTS pair_counts (folder TEXT PRIMARY KEY, n INTEGER NOT NULL)
    WITHOUT ROWID;
DELETE FROM pair_counts;
INSERT INTO pair_counts SELECT folder, count(*) FROM pairs GROUP BY folder;
CREATE TRIGGER IF NOT EXISTS pairs_counted_ins AFTER INSERT ON pairs BEGIN
    INSERT INTO pair_counts VALUES (NEW.folder, 1)
        ON CONFLICT (folder) DO UPDATE SET n = n + 1;
END;
CREATE TRIGGER IF NOT EXISTS pairs_counted_del AFTER DELETE ON pairs BEGIN
    UPDATE pair_counts SET n = n - 1 WHERE folder = OLD.folder;
END;
COMMIT;
"""
"""How many pairs each folder has, kept by triggers (an older syncd's writes included)."""

_commits = 0


def _count_commit() -> None:
    """The crash-test hook: see the module docstring."""
    global _commits
    limit = os.environ.get("SYNCD_TEST_STOP_AFTER_COMMITS")
    if not limit:
        return
    _commits += 1
    if _commits >= int(limit):
        os.kill(os.getpid(), signal.SIGKILL)


WAL_ATTEMPTS = 200
"""How often opening retries the switch to WAL while another process holds the database."""


def _enable_wal(db: sqlite3.Connection) -> None:
    """Switch the database to WAL mode, waiting for another process doing the same.

    On a new database (still in rollback mode), ``PRAGMA journal_mode=WAL`` turns a read
    lock into a write lock. When two processes do that at once, SQLite answers BUSY at
    once instead of calling the busy handler (either waiting would deadlock), so the
    busy timeout does not help here: the loser retries until the winner is done, and
    then finds the database already in WAL mode. Bounded: about 2 s in all.
    """
    for attempt in range(WAL_ATTEMPTS):
        try:
            db.execute("PRAGMA journal_mode=WAL")
            return
        except sqlite3.OperationalError as exc:
            if exc.sqlite_errorcode != sqlite3.SQLITE_BUSY or attempt == WAL_ATTEMPTS - 1:
                raise
            time.sleep(0.01)


@dataclass(frozen=True, slots=True)
class FolderState:
    name: str
    uidvalidity: int | None = None
    uidnext: int | None = None
    highestmodseq: int | None = None
    messages: int | None = None
    local_stamp: str | None = None
    local_count: int | None = None
    last_sync: float | None = None
    last_error: str | None = None


class State:
    """An account's state database. Use as a context manager; not shared across threads."""

    def __init__(self, path: Path) -> None:
        self.path = path
        path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
        try:
            if not path.exists():
                # Created 0600 by us, never opened here again: closing any descriptor of
                # a database file drops the POSIX locks that other connections of this
                # process hold on it (the daemon has one per thread).
                with contextlib.suppress(FileExistsError):
                    os.close(os.open(path, os.O_RDWR | os.O_CREAT | os.O_EXCL, 0o600))
            self._db = sqlite3.connect(path, isolation_level=None, check_same_thread=False)
            _enable_wal(self._db)
            self._db.execute("PRAGMA synchronous=NORMAL")
            self._db.execute("PRAGMA busy_timeout=5000")
            self._migrate()
        except (OSError, sqlite3.Error) as exc:
            raise StateError(f"cannot open the state database {path}: {exc}") from exc
        self._in_tx = False

    @classmethod
    def for_account(cls, state_dir: Path, account: str) -> State:
        return cls(state_dir / f"{account}.sqlite3")

    def _migrate(self) -> None:
        version = self._db.execute("PRAGMA user_version").fetchone()[0]
        if version > SCHEMA_VERSION:
            raise StateError(
                f"{self.path} was written by a newer syncd (schema {version}); "
                "upgrade syncd or move the file away"
            )
        for v in range(version + 1, SCHEMA_VERSION + 1):
            # Two processes may open a new database at once (the daemon and `syncd
            # status`): IMMEDIATE serialises them, and IF NOT EXISTS makes the loser's
            # run of the same migration a no-op instead of an error.
            script = _MIGRATIONS[v]
            self._db.executescript(f"BEGIN IMMEDIATE;\n{script}\nPRAGMA user_version={v};\nCOMMIT;")
        # Not a schema version: an index and a count change no meaning, and an older syncd
        # opens the file as before. Looking messages up by fingerprint (moves between
        # folders that the daemon sees in separate syncs) must not read every pair of the
        # account, nor must counting a folder's pairs (each delta sync checks the count).
        self._db.execute("CREATE INDEX IF NOT EXISTS pairs_by_fp ON pairs (fp)")
        # INSERT OR REPLACE then fires the DELETE trigger for the row it replaces.
        self._db.execute("PRAGMA recursive_triggers = ON")
        if not self._db.execute(
            "SELECT 1 FROM sqlite_master WHERE type = 'trigger' AND name = 'pairs_counted_del'"
        ).fetchone():
            self._db.executescript(_PAIR_COUNTS)

    def close(self) -> None:
        self._db.close()

    def __enter__(self) -> State:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    @contextlib.contextmanager
    def transaction(self) -> Iterator[None]:
        """One atomic unit of state change; nested calls join the outer one."""
        if self._in_tx:
            yield
            return
        self._db.execute("BEGIN IMMEDIATE")
        self._in_tx = True
        try:
            yield
        except BaseException:
            self._db.execute("ROLLBACK")
            raise
        else:
            self._db.execute("COMMIT")
            _count_commit()
        finally:
            self._in_tx = False

    # -- meta ----------------------------------------------------------------------------

    def get_meta(self, key: str) -> str | None:
        row = self._db.execute("SELECT value FROM meta WHERE key = ?", (key,)).fetchone()
        return None if row is None else str(row[0])

    def set_meta(self, key: str, value: str | None) -> None:
        with self.transaction():
            if value is None:
                self._db.execute("DELETE FROM meta WHERE key = ?", (key,))
            else:
                self._db.execute(
                    "INSERT INTO meta (key, value) VALUES (?, ?) "
                    "ON CONFLICT(key) DO UPDATE SET value = excluded.value",
                    (key, value),
                )

    # -- folders -------------------------------------------------------------------------

    def folders(self) -> dict[str, FolderState]:
        rows = self._db.execute(
            "SELECT name, uidvalidity, uidnext, highestmodseq, messages, local_stamp, "
            "local_count, last_sync, last_error FROM folders"
        ).fetchall()
        return {r[0]: FolderState(*r) for r in rows}

    def folder(self, name: str) -> FolderState | None:
        return self.folders().get(name)

    def save_folder(self, fs: FolderState) -> None:
        with self.transaction():
            self._db.execute(
                "INSERT OR REPLACE INTO folders VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)",
                (
                    fs.name,
                    fs.uidvalidity,
                    fs.uidnext,
                    fs.highestmodseq,
                    fs.messages,
                    fs.local_stamp,
                    fs.local_count,
                    fs.last_sync,
                    fs.last_error,
                ),
            )

    def update_folder(self, name: str, **changes: object) -> FolderState:
        fs = replace(self.folder(name) or FolderState(name), **changes)  # type: ignore[arg-type]
        self.save_folder(fs)
        return fs

    def forget_folder(self, name: str) -> None:
        with self.transaction():
            self._db.execute("DELETE FROM folders WHERE name = ?", (name,))
            self._db.execute("DELETE FROM pairs WHERE folder = ?", (name,))

    # -- pairs ---------------------------------------------------------------------------

    def pairs(self, folder: str) -> dict[Uid, Pair]:
        # What _pair() does, inline: a full sync loads every pair of a folder, and the
        # NewType calls and the call per row were a fifth of it (100 000 pairs: 0.24 s).
        parse = Flag.parse
        rows = self._db.execute("SELECT uid, key, flags, fp FROM pairs WHERE folder = ?", (folder,))
        return {uid: Pair(uid, key, parse(flags), fp or None) for uid, key, flags, fp in rows}

    def _rows_in(
        self, sql: str, first: Sequence[object], values: Iterable[object]
    ) -> Iterator[Any]:
        """Rows of ``sql`` (its ``IN ({})`` filled with placeholders) for every value,
        500 at a time (SQLite limits a statement's parameters)."""
        wanted = sorted(set(values))  # type: ignore[type-var]
        for i in range(0, len(wanted), 500):
            chunk = wanted[i : i + 500]
            yield from self._db.execute(sql.format(",".join("?" * len(chunk))), [*first, *chunk])

    def pairs_with_fps(self, fps: Iterable[Fingerprint]) -> dict[Fingerprint, set[tuple[str, Uid]]]:
        """(folder, UID) of every pair whose message has one of these fingerprints."""
        out: dict[Fingerprint, set[tuple[str, Uid]]] = {}
        rows = self._rows_in("SELECT fp, folder, uid FROM pairs WHERE fp IN ({})", (), fps)
        for fp, folder, uid in rows:
            out.setdefault(Fingerprint(fp), set()).add((str(folder), Uid(uid)))
        return out

    def pairs_of(self, folder: str, uids: Iterable[Uid]) -> dict[Uid, Pair]:
        """The pairs of just these UIDs (a primary-key lookup each, whatever the folder's size)."""
        sql = "SELECT uid, key, flags, fp FROM pairs WHERE folder = ? AND uid IN ({})"
        return {Uid(r[0]): _pair(r) for r in self._rows_in(sql, (folder,), uids)}

    def pairs_of_keys(self, folder: str, keys: Iterable[str]) -> dict[Uid, Pair]:
        """The pairs of these Maildir keys (an index lookup each, whatever the folder's size)."""
        sql = (
            "SELECT uid, key, flags, fp FROM pairs INDEXED BY pairs_by_key"
            " WHERE folder = ? AND key IN ({})"
        )
        return {Uid(r[0]): _pair(r) for r in self._rows_in(sql, (folder,), keys)}

    def count_pairs(self, folder: str) -> int:
        """How many pairs ``folder`` has (one row read, whatever the folder's size)."""
        row = self._db.execute("SELECT n FROM pair_counts WHERE folder = ?", (folder,)).fetchone()
        return int(row[0]) if row else 0

    def recount_pairs(self, folder: str, n: int) -> None:
        """Correct the kept count of ``folder``'s pairs to ``n``, counted by the caller.

        An older syncd's INSERT OR REPLACE, without recursive triggers, counts a replaced
        pair twice; a full sync, which reads every pair anyway, puts the count right.
        """
        if self.count_pairs(folder) != n:
            with self.transaction():
                self._db.execute("INSERT OR REPLACE INTO pair_counts VALUES (?, ?)", (folder, n))

    def put_pairs(self, folder: str, pairs: Iterable[Pair]) -> None:
        with self.transaction():
            self._db.executemany(
                "INSERT OR REPLACE INTO pairs (folder, uid, key, flags, fp) VALUES (?, ?, ?, ?, ?)",
                ((folder, p.uid, p.key, p.flags.letters, p.fp) for p in pairs),
            )

    def drop_pairs(self, folder: str, uids: Iterable[Uid]) -> None:
        with self.transaction():
            self._db.executemany(
                "DELETE FROM pairs WHERE folder = ? AND uid = ?", ((folder, u) for u in uids)
            )

    @property
    def db(self) -> sqlite3.Connection:
        """The raw connection, for the POP3 and outbox tables; wrap writes in transaction()."""
        return self._db

    def clear_pairs(self, folder: str) -> None:
        with self.transaction():
            self._db.execute("DELETE FROM pairs WHERE folder = ?", (folder,))


def _pair(row: Sequence[Any]) -> Pair:
    return Pair(
        Uid(row[0]), LocalKey(row[1]), Flag.parse(row[2]), Fingerprint(row[3]) if row[3] else None
    )


class _FileLock:
    """An exclusive, kernel-released lock (``flock`` on a file) holding its owner's pid.

    A crashed holder never leaves a stale lock: the kernel drops it with the process.
    """

    def __init__(self, path: Path) -> None:
        self.path = path
        self._fd: int | None = None

    def _busy(self, holder: str) -> str:
        raise NotImplementedError

    def acquire(self, wait: float = 0.0) -> None:
        """Take the lock, waiting up to ``wait`` s; LockedError names the holder's pid."""
        self.path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
        fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o600)
        deadline = time.monotonic() + wait
        while True:
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
                break
            except OSError as exc:
                if exc.errno not in (errno.EWOULDBLOCK, errno.EAGAIN):
                    os.close(fd)
                    raise StateError(f"cannot lock {self.path}: {exc}") from exc
                if time.monotonic() >= deadline:
                    holder = os.pread(fd, 32, 0).decode(errors="replace").strip()
                    os.close(fd)
                    raise LockedError(self._busy(holder or "?")) from None
                time.sleep(0.05)
        os.ftruncate(fd, 0)
        os.pwrite(fd, f"{os.getpid()}\n".encode(), 0)
        self._fd = fd

    def release(self) -> None:
        if self._fd is not None:
            os.close(self._fd)
            self._fd = None

    def __enter__(self) -> _FileLock:
        self.acquire()
        return self

    def __exit__(self, *exc: object) -> None:
        self.release()


class AccountLock(_FileLock):
    """The lock on one account: one sync, send or poll of it at a time."""

    def __init__(self, state_dir: Path, account: str) -> None:
        super().__init__(state_dir / f"{account}.lock")
        self.account = account

    def _busy(self, holder: str) -> str:
        return (
            f"account {self.account} is busy: another syncd process "
            f"(pid {holder}) is syncing it; try again when it is done"
        )


DAEMON_LOCK = "daemon.lock"


class DaemonLock(_FileLock):
    """The lock that makes one daemon per state directory (so per config).

    Held for the daemon's whole life; only the holder writes ``daemon.json``.
    """

    def __init__(self, state_dir: Path) -> None:
        super().__init__(state_dir / DAEMON_LOCK)

    def _busy(self, holder: str) -> str:
        return (
            f"another syncd daemon (pid {holder}) is already running with the "
            f"state directory {self.path.parent}; stop it first "
            "(systemctl --user stop syncd, or kill that pid)"
        )
