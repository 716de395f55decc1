"""Drain one account's outbox: submit, record, copy to Sent, take the message out.

Theory of operation
-------------------
A drain holds the account lock, so it is the only consumer of the outbox (the lock, not a
rename, is what "claims" a message); writers (``syncd sendmail``, a mail reader) only ever
add files through ``tmp/`` and may keep doing so meanwhile. The journal is the ``outbox``
table of the account's state database, one row per message the drain has touched, keyed by
the file's Maildir key. For each message, in this order:

1. ``sending`` is committed once the server accepted at least one recipient, right before
   DATA.
2. DATA. On the server's 250, ``sent`` is committed (with ``synchronous=FULL``, so it also
   survives a power failure), together with the recipients that got it and the ones the
   server refused for good.
3. When all messages of the run are submitted, the Sent copies are made in one batch (IMAP
   APPEND with ``\\Seen`` to ``sent_folder``, or the local Maildir folder for POP3
   accounts) and ``copied`` is committed.
4. The outbox files go (``fsync`` of the directories first), then the rows.

All messages of a drain share one SMTP connection.

What a crash leaves, and what the next drain does (:func:`~syncd.planner.outbox.plan_drain`):

- no row, or ``queued``: nothing reached the server; send.
- ``sending``: **the one window left.** The process died after the server accepted the
  recipients and before the 250 to DATA was recorded: the server may or may not have the
  message. It is sent again, once, with the same Message-ID (a missing one is derived from
  the file's key, so it is the same on every try), which lets receivers and mail readers
  drop the duplicate; a warning says so. A lost message cannot be undone, a duplicate can.
  The same holds when the connection breaks or times out after the message was written
  and before the server's answer arrived.
- ``sent``: never sent again; the Sent copy is made, after looking in the Sent folder for
  the Message-ID in case the copy was made before the crash.
- ``copied``: only the file and the row are removed.
- a row without its file: forgotten.

A message the server answered with a temporary failure (4xx, or no answer) stays queued
with its attempt count, the error, and a next attempt time
(:func:`~syncd.planner.outbox.next_attempt`); ``force`` (``syncd send``) ignores that time.
A connection that cannot be opened at all records the error on every due message without a
backoff: the daemon retries the account as a whole. Recipients already served are
remembered, so a retry goes only to those still pending. A message refused for good goes
to ``failed/`` beside a ``.error`` file; a partly refused one is sent to the rest, then
moved to ``failed/`` with its envelope narrowed to the refused recipients and a report.
"""

from __future__ import annotations

import contextlib
import email.utils
import json
import logging
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

from syncd.drivers.outbox import (
    FailedEntry,
    Malformed,
    Outbox,
    Prepared,
    QueueEntry,
    prepare,
    readable,
)
from syncd.errors import MessageError, SyncdError, TransientError
from syncd.planner.outbox import (
    Action,
    Attempt,
    JournalRow,
    Outcome,
    Phase,
    Reply,
    next_attempt,
    plan_drain,
)
from syncd.state import AccountLock, State

if TYPE_CHECKING:
    from syncd.config import AccountConfig, Config, SmtpConfig
    from syncd.drivers.smtp import SmtpReply, SmtpSession, Submission
    from syncd.model import Uid

__all__ = ["OutboxItem", "OutboxStatus", "SendReport", "daemon_drain", "drain", "outbox_status"]

log = logging.getLogger(__name__)

COPY_BATCH_BYTES = 16 * 1024 * 1024


@dataclass(slots=True)
class SendReport:
    """What one drain did; texts are meant for the user."""

    account: str
    sent: list[str] = field(default_factory=list)
    retrying: list[str] = field(default_factory=list)
    failed: list[str] = field(default_factory=list)
    partial: list[str] = field(default_factory=list)
    waiting: int = 0
    """Queued messages left alone because their backoff has not expired."""
    errors: list[tuple[str, bool]] = field(default_factory=list)
    """(text, temporary) for problems that are not one message's: connection, Sent copy."""
    cause: SyncdError | None = None
    """The first of those as an exception, for the daemon's backoff (:func:`daemon_drain`)."""
    next_due: float | None = None
    """The earliest next attempt of a message left waiting for its backoff, if any."""

    @property
    def ok(self) -> bool:
        """Nothing needs the user: no message failed, no error that retrying cannot fix."""
        return not self.failed and not self.partial and all(temp for _, temp in self.errors)

    @property
    def changed(self) -> bool:
        return bool(self.sent or self.retrying or self.failed or self.partial or self.errors)


@dataclass(frozen=True, slots=True)
class _Row:
    key: str
    phase: Phase
    attempts: int = 0
    next_attempt: float | None = None
    last_error: str | None = None
    message_id: str | None = None
    delivered: tuple[str, ...] = ()
    refused: tuple[tuple[str, str], ...] = ()

    @property
    def journal(self) -> JournalRow:
        return JournalRow(self.key, self.phase, self.attempts, self.next_attempt)


def _read_rows(st: State) -> dict[str, _Row]:
    rows = st.db.execute(
        "SELECT name, state, attempts, next_attempt, last_error, message_id, delivered, refused "
        "FROM outbox"
    ).fetchall()
    out: dict[str, _Row] = {}
    for name, phase, attempts, nxt, error, mid, delivered, refused in rows:
        try:
            parsed = Phase(phase)
        except ValueError:
            parsed = Phase.QUEUED  # unknown (newer syncd?): resending is the safe reading
        out[name] = _Row(
            name,
            parsed,
            int(attempts),
            nxt,
            error,
            mid,
            tuple(json.loads(delivered)) if delivered else (),
            tuple((str(r), str(w)) for r, w in json.loads(refused)) if refused else (),
        )
    return out


def _reply(r: SmtpReply | None) -> Reply | None:
    return None if r is None else Reply(r.code, r.text)


def _attempt(recipients: Sequence[str], sub: Submission) -> Attempt:
    return Attempt(
        tuple(recipients),
        mail=_reply(sub.mail),
        rcpt={a: Reply(r.code, r.text) for a, r in sub.rcpt.items()},
        data=_reply(sub.data),
        lost=sub.lost,
    )


def _server_deferred(sub: Submission) -> bool:
    """True when the server itself answered 4xx (about this message), not a lost line."""
    replies = [sub.mail, sub.data, *sub.rcpt.values()]
    return any(r is not None and 400 <= r.code < 500 for r in replies)


def _describe(entry: QueueEntry, prepared: Prepared | None) -> str:
    if prepared is not None and prepared.subject:
        return f"{entry.key} ({prepared.subject!r} to {', '.join(prepared.recipients)})"
    return entry.key


class _Drain:
    def __init__(
        self,
        account: AccountConfig,
        smtp: SmtpConfig,
        st: State,
        outbox: Outbox,
        smtp_secret: Callable[[], str],
        imap_secret: Callable[[], str] | None,
        force: bool,
    ) -> None:
        self.account = account
        self.smtp = smtp
        self.st = st
        self.outbox = outbox
        self.smtp_secret = smtp_secret
        self.imap_secret = imap_secret
        self.force = force
        self.report = SendReport(account.name)
        self.rows: dict[str, _Row] = {}
        self.accepted: list[str] = []
        self.gone: set[str] = set()
        """Keys that left the queue during this run (failed, or taken out by the user)."""
        self.session: SmtpSession | None = None
        self.where = f"account {account.name}, outbox {outbox.path}"

    # -- journal -------------------------------------------------------------------------

    @contextlib.contextmanager
    def _durable(self) -> Iterator[None]:
        # The project's WAL setting (synchronous=NORMAL) survives a killed process but may
        # lose the last commits to a power failure; for "the server has it" that loss would
        # mean sending the message twice, so this one commit is synced to disk.
        self.st.db.execute("PRAGMA synchronous=FULL")
        try:
            yield
        finally:
            self.st.db.execute("PRAGMA synchronous=NORMAL")

    def _save(self, row: _Row) -> None:
        self.st.db.execute(
            "INSERT INTO outbox (name, state, attempts, next_attempt, last_error, message_id, "
            "delivered, refused, updated) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?) "
            "ON CONFLICT(name) DO UPDATE SET state = excluded.state, "
            "attempts = excluded.attempts, next_attempt = excluded.next_attempt, "
            "last_error = excluded.last_error, message_id = excluded.message_id, "
            "delivered = excluded.delivered, refused = excluded.refused, "
            "updated = excluded.updated",
            (
                row.key,
                row.phase.value,
                row.attempts,
                row.next_attempt,
                row.last_error,
                row.message_id,
                json.dumps(list(row.delivered)) if row.delivered else None,
                json.dumps([list(r) for r in row.refused]) if row.refused else None,
                time.time(),
            ),
        )
        self.rows[row.key] = row

    def _delete(self, keys: Sequence[str]) -> None:
        if not keys:
            return
        with self.st.transaction():
            self.st.db.executemany("DELETE FROM outbox WHERE name = ?", ((k,) for k in keys))
        for key in keys:
            self.rows.pop(key, None)

    def _row(self, key: str) -> _Row:
        return self.rows.get(key) or _Row(key, Phase.QUEUED)

    # -- the run -------------------------------------------------------------------------

    def run(self) -> SendReport:
        now = time.time()
        self.outbox.clean(now)
        entries = {e.key: e for e in self.outbox.entries()}
        self.rows = _read_rows(self.st)
        plan = plan_drain(
            list(entries), {k: r.journal for k, r in self.rows.items()}, now, force=self.force
        )
        if plan.forget:
            log.debug("%s: forgetting %d journal rows without a file", self.where, len(plan.forget))
            self._delete(plan.forget)
        for key in plan.resend:
            log.warning(
                "%s: message %s was being sent when syncd stopped; the server may have it "
                "already. Sending it again with the same Message-ID %s, so a receiver may see "
                "it twice",
                self.where,
                key,
                self.rows[key].message_id or "(derived from its file name)",
            )
        self.report.waiting = len(plan.waiting)
        try:
            self._submit_all([entries[k] for k in plan.send])
        finally:
            if self.session is not None:
                self.session.close()
        to_copy = [*plan.copy, *self.accepted]
        copied = self._copy([entries[k] for k in to_copy], recovered=set(plan.copy))
        self._finish([entries[k] for k in [*plan.finish, *copied]])
        due = [r.next_attempt for r in self.rows.values() if r.next_attempt is not None]
        self.report.next_due = min(due, default=None)
        return self.report

    # -- submitting ------------------------------------------------------------------------

    def _prepare(self, entry: QueueEntry) -> Prepared | None:
        """The message ready to send, or None once it was moved to failed/ as malformed."""
        try:
            raw = self.outbox.read(entry)
            envelope = self.outbox.envelope(entry.key)
            queued_at = envelope.queued if envelope and envelope.queued else entry.mtime
            return prepare(raw, envelope, key=entry.key, queued_at=queued_at)
        except Malformed as exc:
            self._fail(entry, None, f"it cannot be sent as it is: {exc}", tried=False)
            return None

    def _still_queued(self, entry: QueueEntry) -> bool:
        try:
            return self._prepare(entry) is not None
        except MessageError:
            self.gone.add(entry.key)
            return False

    def _connect(self) -> SmtpSession:
        if self.session is None or not self.session.connected:
            from syncd.drivers.smtp import SmtpSession  # not for `syncd status`

            session = SmtpSession(self.smtp, self.smtp_secret)
            session.connect()
            self.session = session
        return self.session

    def _submit_all(self, entries: Sequence[QueueEntry]) -> None:
        for i, entry in enumerate(entries):
            try:
                prepared = self._prepare(entry)
            except MessageError as exc:  # vanished: the user took it out of the queue
                log.info("%s: %s", self.where, exc)
                self.gone.add(entry.key)
                continue
            if prepared is None:
                continue
            try:
                self._submit(entry, prepared)
            except SyncdError as exc:
                # Messages not looked at yet are still checked, so a malformed one goes to
                # failed/ now rather than whenever the server can be reached again.
                rest = [e for e in entries[i + 1 :] if self._still_queued(e)]
                self._connection_failed([entry, *rest], exc)
                return

    def _submit(self, entry: QueueEntry, prepared: Prepared) -> None:
        row = self._row(entry.key)
        done = {a.casefold() for a in row.delivered} | {a.casefold() for a, _ in row.refused}
        recipients = [r for r in prepared.recipients if r.casefold() not in done]
        if not recipients:  # every recipient was dealt with by earlier attempts
            self._accepted(entry, prepared, row, Outcome(Action.DONE))
            return

        def before_data() -> None:
            with self.st.transaction():
                self._save(
                    _Row(
                        entry.key,
                        Phase.SENDING,
                        row.attempts,
                        row.next_attempt,
                        row.last_error,
                        prepared.message_id,
                        row.delivered,
                        row.refused,
                    )
                )

        for fresh in (False, True):
            session = self._connect()
            sub = session.submit(
                prepared.sender, recipients, prepared.wire, before_data=before_data
            )
            # A connection that died while idle, or a server that takes only so many
            # messages per connection (421), says nothing about this message: once more
            # on a new connection before counting it as a failed attempt.
            closing = sub.mail is None or sub.mail.code == 421
            if fresh or not closing or sub.data_sent:
                break
            log.debug("%s: connection closed by the server; connecting again", self.where)
            session.close()
        outcome = self._decide(recipients, sub, row)
        if outcome.action is Action.FAIL:
            reason = outcome.error or "refused"
            self._fail(entry, prepared, f"the server refused it: {reason}", tried=True)
        elif outcome.action is Action.DONE:
            self._accepted(entry, prepared, row, outcome)
        else:
            self._retry(entry, prepared, row, outcome, sub)

    def _decide(self, recipients: Sequence[str], sub: Submission, row: _Row) -> Outcome:
        from syncd.planner.outbox import decide

        outcome = decide(_attempt(recipients, sub), row.delivered)
        if sub.lost and sub.data_sent and outcome.action is Action.RETRY:
            log.warning(
                "%s: the connection broke after the message was handed over (%s); the server "
                "may have it, and it will be sent again",
                self.where,
                sub.lost,
            )
        return outcome

    def _accepted(self, entry: QueueEntry, prepared: Prepared, row: _Row, out: Outcome) -> None:
        refused = (*row.refused, *out.refused)
        with self._durable(), self.st.transaction():
            self._save(
                _Row(
                    entry.key,
                    Phase.SENT,
                    row.attempts,
                    None,
                    None,
                    prepared.message_id,
                    (*row.delivered, *out.accepted),
                    refused,
                )
            )
        self.accepted.append(entry.key)
        if refused:
            who = "; ".join(f"{r}: {why}" for r, why in refused)
            log.info(
                "%s: sent %s, but some recipients were refused: %s",
                self.where,
                _describe(entry, prepared),
                who,
            )
        else:
            log.info("%s: sent %s", self.where, _describe(entry, prepared))
        self.report.sent.append(_describe(entry, prepared))

    def _retry(
        self, entry: QueueEntry, prepared: Prepared, row: _Row, out: Outcome, sub: Submission
    ) -> None:
        attempts = row.attempts + 1
        now = time.time()
        # Only the server's own 4xx about this message earns it a backoff; a lost line is
        # the connection's problem, retried as soon as the account is tried again.
        when = next_attempt(attempts, now) if _server_deferred(sub) else None
        error = out.error or "temporary failure"
        new = _Row(
            entry.key,
            Phase.QUEUED,
            attempts,
            when,
            error,
            prepared.message_id,
            (*row.delivered, *out.accepted),
            (*row.refused, *out.refused),
        )
        if out.accepted:
            with self._durable(), self.st.transaction():
                self._save(new)
        else:
            with self.st.transaction():
                self._save(new)
        later = (
            f"next try after {time.strftime('%H:%M:%S', time.localtime(when))}"
            if when is not None
            else "will retry"
        )
        log.warning(
            "%s: %s not sent yet (attempt %d): %s; %s",
            self.where,
            _describe(entry, prepared),
            attempts,
            error,
            later,
        )
        self.report.retrying.append(f"{_describe(entry, prepared)}: {error}")

    def _connection_failed(self, entries: Sequence[QueueEntry], exc: SyncdError) -> None:
        temporary = isinstance(exc, TransientError)
        self.report.errors.append((str(exc), temporary))
        self.report.cause = self.report.cause or exc
        log.log(
            logging.WARNING if temporary else logging.ERROR,
            "%s: cannot send: %s; %d message(s) stay queued",
            self.where,
            exc,
            len(entries),
        )
        with self.st.transaction():
            for entry in entries:
                if entry.key in self.accepted or entry.key in self.gone:
                    continue
                row = self._row(entry.key)
                if row.phase is not Phase.QUEUED and row.phase is not Phase.SENDING:
                    continue
                self._save(
                    _Row(
                        entry.key,
                        Phase.QUEUED,
                        row.attempts + 1,
                        None,
                        str(exc),
                        row.message_id,
                        row.delivered,
                        row.refused,
                    )
                )
                self.report.retrying.append(f"{entry.key}: {exc}")

    def _fail(self, entry: QueueEntry, prepared: Prepared | None, reason: str, tried: bool) -> None:
        lines = [
            f"Not sent: {reason}",
            "",
            f"Account:    {self.account.name}",
        ]
        if prepared is not None:
            lines += [
                f"Subject:    {prepared.subject}",
                f"From:       {prepared.sender}",
                f"To:         {', '.join(prepared.recipients)}",
                f"Message-ID: {prepared.message_id}",
            ]
        if tried:
            lines.append(f"Server:     {self.smtp.host}:{self.smtp.port}")
        lines += [
            f"Failed at:  {email.utils.formatdate(localtime=True)}",
            "",
            "Nobody received it. syncd keeps it here and will not try again by itself.",
            "Fix what is wrong, then move the file back into the outbox to send it again:",
            f"    mv '{self.outbox.failed_dir}/{entry.key}' '{self.outbox.new}/'",
            "or delete it if it is not needed.",
            "",
        ]
        target = self.outbox.fail(entry, "\n".join(lines))
        self.gone.add(entry.key)
        self._delete([entry.key])
        log.error(
            "%s: not sent: %s: %s; kept in %s",
            self.where,
            _describe(entry, prepared),
            reason,
            target,
        )
        self.report.failed.append(f"{_describe(entry, prepared)}: {reason} (kept in {target})")

    # -- Sent copies -----------------------------------------------------------------------

    def _copy(self, entries: Sequence[QueueEntry], recovered: set[str]) -> list[str]:
        """Make the Sent copies; returns the keys now COPIED (all of them, or none)."""
        if not entries:
            return []
        folder = self.smtp.sent_folder
        keys = [e.key for e in entries]
        if folder is None:
            self._mark_copied(keys)
            return keys
        copies: list[tuple[str, Prepared]] = []
        for entry in entries:
            try:
                raw = self.outbox.read(entry)
                envelope = self.outbox.envelope(entry.key)
                queued_at = envelope.queued if envelope and envelope.queued else entry.mtime
                copies.append(
                    (entry.key, prepare(raw, envelope, key=entry.key, queued_at=queued_at))
                )
            except (Malformed, MessageError) as exc:
                log.warning(
                    "%s: no Sent copy of %s, which was sent: %s", self.where, entry.key, exc
                )
        try:
            if self.account.imap is not None:
                self._copy_imap(folder, copies, recovered)
            else:
                self._copy_local(folder, copies, recovered)
        except SyncdError as exc:
            temporary = isinstance(exc, TransientError)
            text = f"the Sent copy in {folder} could not be made (will retry): {exc}"
            log.warning("%s: %s", self.where, text)
            self.report.errors.append((text, temporary))
            self.report.cause = self.report.cause or exc
            return []
        self._mark_copied(keys)
        return keys

    def _mark_copied(self, keys: Sequence[str]) -> None:
        with self.st.transaction():
            for key in keys:
                row = self._row(key)
                self._save(
                    _Row(
                        key,
                        Phase.COPIED,
                        row.attempts,
                        None,
                        None,
                        row.message_id,
                        row.delivered,
                        row.refused,
                    )
                )

    def _copy_imap(
        self, folder: str, copies: Sequence[tuple[str, Prepared]], recovered: set[str]
    ) -> None:
        from syncd.drivers.imap import ImapSession, map_errors
        from syncd.model import Flag, to_remote_bytes
        from syncd.planner.folders import folder_selected

        assert self.account.imap is not None
        if self.imap_secret is None:
            raise SyncdError("no IMAP secret to make the Sent copy with")
        with ImapSession(self.account.imap, self.imap_secret) as session:
            if folder not in session.list_folders():
                session.create_folder(folder)
                session.list_folders()
            if recovered:
                session.select(folder)
                with map_errors("SEARCH", folder=folder):
                    copies = [
                        (key, p)
                        for key, p in copies
                        if key not in recovered
                        or not session.client.search(["HEADER", "Message-ID", p.message_id])
                    ]
            made: list[tuple[Prepared, bytes, Uid | None]] = []
            for batch in _batches(copies):
                wire = [to_remote_bytes(p.copy) for p in batch]
                uids = session.append(folder, [(w, Flag.S, None) for w in wire])
                made.extend(zip(batch, wire, uids, strict=True))
            if made and folder_selected(folder, self.account.imap.folders):
                uidvalidity = session.status(folder).uidvalidity
                try:
                    self._copy_imap_locally(folder, made, uidvalidity)
                except SyncdError as exc:
                    # The server has the copies; the next sync brings them down instead.
                    log.warning(
                        "%s: the local copy in %s could not be made now (%s); the next sync "
                        "downloads it",
                        self.where,
                        folder,
                        exc,
                    )

    def _copy_imap_locally(
        self, folder: str, made: Sequence[tuple[Prepared, bytes, Uid | None]], uidvalidity: int
    ) -> None:
        """Write the Sent copies just appended to the server into the local folder too,
        paired with their server copies, so mail readers see them at once and the next sync
        never downloads them.

        The local bytes are what a download would write (the server's CRLF form back to
        LF). A copy whose UID the server did not say (no UIDPLUS) is left unpaired: the
        next sync matches it with the server copy by header fingerprint, as after a crash
        between the delivery and the commit of the pairs. Pairs are written only in the
        UIDVALIDITY the state knows for the folder (recorded first if it knows none).
        """
        from syncd.drivers.maildir import MaildirStore
        from syncd.model import Flag, Pair, fingerprint, to_local_bytes
        from syncd.state import FolderState

        store = MaildirStore(
            self.account.maildir, self.account.layout.value, exclude=[self.outbox.path]
        )
        target = store.create_folder(folder)
        fs = self.st.folder(folder)
        pair_ok = fs is None or fs.uidvalidity in (None, uidvalidity)
        if fs is None or fs.uidvalidity is None:
            # As the sync does before its first pairs: the next run can check them.
            last_error = fs.last_error if fs is not None else None
            self.st.save_folder(FolderState(folder, uidvalidity=uidvalidity, last_error=last_error))
        entries = target.deliver([(to_local_bytes(wire), Flag.S, None) for _, wire, _ in made])
        pairs = [
            Pair(uid, entry.key, Flag.S, fingerprint(wire))
            for (_, wire, uid), entry in zip(made, entries, strict=True)
            if uid is not None
        ]
        if pairs and pair_ok:
            self.st.put_pairs(folder, pairs)

    def _copy_local(
        self, folder: str, copies: Sequence[tuple[str, Prepared]], recovered: set[str]
    ) -> None:
        from syncd.drivers.maildir import MaildirStore
        from syncd.model import Flag

        store = MaildirStore(self.account.maildir, self.account.layout, exclude=[self.outbox.path])
        target = store.create_folder(folder)
        if recovered:
            ids = {p.message_id for key, p in copies if key in recovered}
            found: set[str] = set()
            for entry in target.scan().values():
                header = target.read_header(entry).decode("utf-8", "replace")
                found.update(i for i in ids if i in header)
            copies = [(k, p) for k, p in copies if k not in recovered or p.message_id not in found]
        for batch in _batches(copies):
            target.deliver([(p.copy, Flag.S, None) for p in batch])

    # -- taking messages out ---------------------------------------------------------------

    def _finish(self, entries: Sequence[QueueEntry]) -> None:
        done: list[QueueEntry] = []
        for entry in entries:
            row = self._row(entry.key)
            if not row.refused:
                done.append(entry)
                continue
            refused = "\n".join(f"  {r}: {why}" for r, why in row.refused)
            report = "\n".join(
                [
                    f"Partly sent: the server refused {len(row.refused)} of the recipients "
                    "for good.",
                    "",
                    f"Account:      {self.account.name}",
                    f"Message-ID:   {row.message_id}",
                    f"Delivered to: {', '.join(row.delivered)}",
                    "Refused:",
                    refused,
                    "",
                    "The others got it and a copy is in the Sent folder. This file's envelope now",
                    "names only the refused recipients: moving it back into the outbox,",
                    f"    mv '{self.outbox.failed_dir}/{entry.key}' '{self.outbox.new}/'",
                    "sends it to them again (correct the addresses first, or write anew).",
                    "",
                ]
            )
            target = self.outbox.fail(entry, report, recipients=[r for r, _ in row.refused])
            log.error(
                "%s: %s was sent, but refused for good for %s; report in %s.error",
                self.where,
                entry.key,
                "; ".join(f"{r} ({why})" for r, why in row.refused),
                target,
            )
            self.report.partial.append(
                f"{entry.key}: refused for {', '.join(r for r, _ in row.refused)} "
                f"(report in {target}.error)"
            )
        self.outbox.remove(done)
        self._delete([e.key for e in entries])


def _batches(copies: Sequence[tuple[str, Prepared]]) -> Iterator[list[Prepared]]:
    batch: list[Prepared] = []
    size = 0
    for _key, p in copies:
        batch.append(p)
        size += len(p.copy)
        if size >= COPY_BATCH_BYTES:
            yield batch
            batch, size = [], 0
    if batch:
        yield batch


def drain(
    account: AccountConfig,
    state_dir: Path,
    smtp_secret: Callable[[], str],
    *,
    imap_secret: Callable[[], str] | None = None,
    force: bool = False,
    lock_wait: float = 0.0,
) -> SendReport:
    """Send what is due in ``account``'s outbox, over one connection; see the module doc.

    ``force`` sends messages still in their backoff (a user asking to send now). Secrets
    are fetched only when a connection needs them. Problems with single messages and with
    the connection are in the report; raises SyncdError only when the outbox or the state
    cannot be used at all (LockedError when another syncd holds the account).
    """
    if account.smtp is None:
        raise SyncdError(f"account {account.name} has no smtp: section; it cannot send mail")
    outbox = Outbox(account.outbox)
    report = SendReport(account.name)
    # The common case, an empty outbox, costs one directory listing and no lock.
    if not outbox.entries() and not (state_dir / f"{account.name}.sqlite3").exists():
        return report
    lock = AccountLock(state_dir, account.name)
    lock.acquire(wait=lock_wait)
    try:
        with State.for_account(state_dir, account.name) as st:
            run = _Drain(account, account.smtp, st, outbox, smtp_secret, imap_secret, force)
            if not outbox.entries() and not _read_rows(st):
                return report
            return run.run()
    finally:
        lock.release()


def daemon_drain(config: Config, account: AccountConfig) -> SendReport:
    """The daemon's entry point (syncd.daemon.supervisor): drain, respecting the backoff.

    A connection or Sent-copy problem is raised after it was recorded, so the supervisor
    backs off the account as a whole (TransientError: offline; AuthError/TLSError: wait for
    a fix); the messages themselves stay queued either way.
    """
    from syncd.credentials import secret_for

    smtp, imap = account.smtp, account.imap
    if smtp is None:
        raise SyncdError(f"account {account.name} has no smtp: section; it cannot send mail")
    report = drain(
        account,
        config.state_dir,
        secret_for(smtp),
        imap_secret=secret_for(imap) if imap is not None else None,
        lock_wait=10.0,
    )
    if report.cause is not None:
        raise report.cause
    return report


# -- status ----------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class OutboxItem:
    key: str
    subject: str
    attempts: int
    next_attempt: float | None
    last_error: str | None


@dataclass(frozen=True, slots=True)
class OutboxStatus:
    queued: int
    """Waiting to be sent, never tried (or tried without an error yet)."""
    retrying: tuple[OutboxItem, ...]
    """Tried and deferred: the attempt count, next try and last error."""
    unfinished: int
    """Accepted by the server; the Sent copy or the clean-up is still to do."""
    failed: tuple[FailedEntry, ...]


def _subject(path: Path) -> str:
    with contextlib.suppress(OSError, Malformed):
        with path.open("rb") as f:
            head = f.read(16384)
        for line in head.split(b"\n"):
            if not line.strip():
                break
            if line[:8].lower() == b"subject:":
                return readable(line[8:].strip().decode("utf-8", "replace"))
    return ""


def outbox_status(account: AccountConfig, state_dir: Path) -> OutboxStatus:
    """The queue as ``syncd status`` shows it; reads the journal only if it exists."""
    outbox = Outbox(account.outbox)
    entries = outbox.entries()
    rows: dict[str, _Row] = {}
    db = state_dir / f"{account.name}.sqlite3"
    if db.exists():
        with State(db) as st:
            rows = _read_rows(st)
    queued = 0
    unfinished = 0
    retrying: list[OutboxItem] = []
    for entry in entries:
        row = rows.get(entry.key)
        if row is not None and row.phase in (Phase.SENT, Phase.COPIED):
            unfinished += 1
        elif row is not None and row.last_error:
            retrying.append(
                OutboxItem(
                    entry.key, _subject(entry.path), row.attempts, row.next_attempt, row.last_error
                )
            )
        else:
            queued += 1
    return OutboxStatus(queued, tuple(retrying), unfinished, tuple(outbox.failed()))
