"""systemd's sd_notify protocol through sdnotify: READY, STATUS, WATCHDOG, RELOADING, STOPPING."""

from __future__ import annotations

import logging
import os
import time

log = logging.getLogger(__name__)


class Notifier:
    """Talks to systemd when ``NOTIFY_SOCKET`` is set; silent otherwise."""

    def __init__(self) -> None:
        self._notifier = None
        if os.environ.get("NOTIFY_SOCKET"):
            import sdnotify

            self._notifier = sdnotify.SystemdNotifier()
            sock = getattr(self._notifier, "socket", None)
            if sock is not None:
                # Never let a slow reader of the socket stall the daemon's main loop.
                sock.setblocking(False)
        usec = os.environ.get("WATCHDOG_USEC")
        pid = os.environ.get("WATCHDOG_PID")
        self.watchdog_interval: float | None = None
        if usec and (not pid or pid == str(os.getpid())):
            self.watchdog_interval = int(usec) / 1_000_000

    def close(self) -> None:
        sock = getattr(self._notifier, "socket", None)
        if sock is not None:
            sock.close()
        self._notifier = None

    @property
    def active(self) -> bool:
        return self._notifier is not None

    def _send(self, text: str) -> None:
        if self._notifier is not None:
            self._notifier.notify(text)

    def ready(self, status: str) -> None:
        self._send(f"READY=1\nSTATUS={status}")

    def status(self, status: str) -> None:
        self._send(f"STATUS={status}")

    def watchdog(self) -> None:
        self._send("WATCHDOG=1")

    def reloading(self) -> None:
        # systemd >= 253 wants MONOTONIC_USEC with RELOADING=1 for Type=notify-reload.
        usec = int(time.clock_gettime(time.CLOCK_MONOTONIC) * 1_000_000)
        self._send(f"RELOADING=1\nMONOTONIC_USEC={usec}")

    def reloaded(self, status: str) -> None:
        self._send(f"READY=1\nSTATUS={status}")

    def stopping(self) -> None:
        self._send("STOPPING=1\nSTATUS=stopping")
