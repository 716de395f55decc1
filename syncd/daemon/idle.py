"""One IDLE connection per watched folder: tells the account worker when the server changed."""

from __future__ import annotations

import contextlib
import logging
import random
import threading
import time
from collections.abc import Callable
from typing import TYPE_CHECKING

from syncd.drivers.imap import ImapSession, map_errors
from syncd.errors import AuthError, SyncdError, TLSError, TransientError

if TYPE_CHECKING:
    from syncd.config import ImapConfig

log = logging.getLogger(__name__)

BACKOFF_START = 1.0
BACKOFF_CAP = 300.0
AUTH_BACKOFF = 1800.0


def backoff(attempt: int, *, cap: float = BACKOFF_CAP, start: float = BACKOFF_START) -> float:
    """Exponential backoff with full jitter in [delay/2, delay], capped."""
    delay: float = min(cap, start * (2 ** min(attempt, 20)))
    return delay / 2 + random.random() * delay / 2  # noqa: S311 - jitter, not crypto


class IdleWatcher(threading.Thread):
    """Holds IDLE on ``folder`` and calls ``on_change(folder)`` when the server reports one.

    Re-issues IDLE every ``cfg.idle_interval`` seconds (RFC 2177 asks for less than 29
    minutes), and sends a NOOP after ``keepalive`` seconds without any traffic, so a TCP
    connection that died silently (suspend, Wi-Fi change) is noticed within about
    ``keepalive + cfg.timeout`` seconds. Reconnects with backoff; ``kick()`` reconnects now.
    """

    def __init__(
        self,
        account: str,
        cfg: ImapConfig,
        folder: str,
        secret: Callable[[], str],
        on_change: Callable[[str], None],
        *,
        on_connect: Callable[[], None] | None = None,
        keepalive: float = 240.0,
        check: float = 2.0,
    ) -> None:
        super().__init__(name=f"idle-{account}-{folder}", daemon=True)
        self.account = account
        self.cfg = cfg
        self.folder = folder
        self._secret = secret
        self._on_change = on_change
        self._on_connect = on_connect
        self.keepalive = keepalive
        self.check = check
        self._stop_event = threading.Event()
        self._kick = threading.Event()
        self._session: ImapSession | None = None
        self._attempt = 0
        """Failed connections since the last good one (this watcher's thread only)."""
        self.connected = False
        self.no_idle = False
        """The server does not advertise IDLE: this watcher has ended; the worker polls."""
        self.last_error: str | None = None
        self.last_error_before_connect = False

    def stop(self) -> None:
        self._stop_event.set()
        self._interrupt()

    def kick(self) -> None:
        """Drop the connection and reconnect at once (after a suspend or network change)."""
        self._kick.set()
        self._interrupt()

    def _interrupt(self) -> None:
        # Only a shutdown of the socket, never a LOGOUT or close: the session belongs to
        # this watcher's thread, which closes it once its blocking read has returned.
        session = self._session
        if session is not None:
            session.interrupt()

    def run(self) -> None:
        while not self._stop_event.is_set():
            self._kick.clear()
            try:
                self._serve()
                self._attempt = 0
                if self.no_idle:
                    return
                continue
            except (AuthError, TLSError) as exc:
                delay = AUTH_BACKOFF
                self.last_error = str(exc)
            except SyncdError as exc:
                delay = backoff(self._attempt)
                self.last_error = str(exc)
            except Exception as exc:  # a watcher must survive anything
                log.exception("%s: IDLE on %s failed unexpectedly", self.account, self.folder)
                delay = backoff(self._attempt)
                self.last_error = f"unexpected error: {exc}"
            finally:
                self.connected = False
                session, self._session = self._session, None
                if session is not None:
                    with contextlib.suppress(Exception):
                        session.close()
            if self._stop_event.is_set():
                break
            if self._kick.is_set():
                self._attempt = 0
                continue
            log.info(
                "%s: IDLE on %s: %s; reconnecting in %.0f s",
                self.account,
                self.folder,
                self.last_error,
                delay,
            )
            self._attempt += 1
            deadline = time.monotonic() + delay
            while not (self._stop_event.is_set() or self._kick.is_set()):
                left = deadline - time.monotonic()
                if left <= 0:
                    break
                self._stop_event.wait(min(left, 1.0))

    @staticmethod
    def _pending_change(client: object) -> bool:
        untagged = client._imap.untagged_responses  # type: ignore[attr-defined]
        return any([untagged.pop(key, None) is not None for key in _CHANGE_KEYS])

    def _serve(self) -> None:
        session = ImapSession(self.cfg, self._secret)
        self._session = session
        session.connect()
        if not session.strategy.idle:
            # IDLE that is not advertised is not used, even if the server would take it.
            self.no_idle = True
            log.info(
                "%s: the server does not offer IDLE; new mail in %s is noticed by polling "
                "every %d s (poll_interval)",
                self.account,
                self.folder,
                self.cfg.poll_interval,
            )
            return
        self.last_error_before_connect = self.last_error is not None
        client = session.client
        session.list_folders()
        with map_errors("EXAMINE", folder=self.folder):
            client.select_folder(session.server_name(self.folder), readonly=True)
        self._pending_change(client)  # EXAMINE's own EXISTS is no news: the sync below covers it
        self.connected = True
        # Connected: the next drop is a fresh failure. Servers drop IDLE connections
        # routinely (restarts, NAT timeouts, their own limits), so a backoff that only
        # grew would end in minutes without push after a few of them.
        self._attempt = 0
        self.last_error = None
        log.debug("%s: IDLE on %s", self.account, self.folder)
        # Whatever happened while we were not listening is caught up by a sync; after an
        # outage the account's pending work goes now rather than at its backoff time.
        if self._on_connect is not None and self.last_error_before_connect:
            self._on_connect()
        self._on_change(self.folder)
        while not self._stop_event.is_set():
            if self._kick.is_set():
                raise TransientError("reconnect requested")
            with map_errors("IDLE", folder=self.folder):
                client.idle()
                # A change reported just before the server's "+ idling" goes into imaplib's
                # untagged responses, not to idle_check(): look there too.
                if self._pending_change(client):
                    self._on_change(self.folder)
                started = last_traffic = time.monotonic()
                while not self._stop_event.is_set() and not self._kick.is_set():
                    t0 = time.monotonic()
                    responses = client.idle_check(timeout=self.check)
                    now = time.monotonic()
                    if not responses and now - t0 < self.check / 2:
                        # Readable yet nothing parsed: imapclient swallows EOF here.
                        raise TransientError("server closed the IDLE connection")
                    if responses:
                        last_traffic = now
                        if any(_is_change(r) for r in responses):
                            self._on_change(self.folder)
                    if now - started >= self.cfg.idle_interval:
                        break
                    if now - last_traffic >= self.keepalive:
                        break
                if self._stop_event.is_set() or self._kick.is_set():
                    return
                _text, responses = client.idle_done()
                # A NOOP with the socket timeout proves the connection is alive.
                _text, more = client.noop()
                if any(_is_change(r) for r in [*responses, *more]):
                    self._on_change(self.folder)


_CHANGE_KEYS = ("EXISTS", "EXPUNGE", "FETCH", "VANISHED")


def _is_change(response: object) -> bool:
    if not isinstance(response, tuple) or len(response) < 2:
        return False
    kind = response[1] if isinstance(response[0], int) else response[0]
    return kind in (b"EXISTS", b"EXPUNGE", b"FETCH", b"VANISHED")
