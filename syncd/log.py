"""Logging for syncd: one stderr handler on the ``syncd`` logger, journald-aware, redacting.

Theory of operation: every module logs through ``logging.getLogger(__name__)``, so everything
syncd says flows through the ``syncd`` logger, which :func:`setup_logging` gives exactly one
handler. Under systemd (``JOURNAL_STREAM`` names our stderr) each line starts with a ``<N>``
syslog priority, which journald strips and records, and carries no timestamp (the journal has
one). Elsewhere lines read ``HH:MM:SS LEVEL message``.

Every secret syncd obtains is passed to :func:`register_secret`; the :class:`RedactingFilter` on
the handler replaces each one with ``***`` in the formatted message, traceback and stack, so a
password that reaches a log call by accident (an exception text, a protocol trace) is not written.
"""

from __future__ import annotations

import logging
import os
import sys
import threading
from typing import Final, TextIO

__all__ = ["RedactingFilter", "redact", "register_secret", "setup_logging"]

_MIN_SECRET_LENGTH: Final = 4
_MASK: Final = "***"

_lock = threading.Lock()
# Replaced, never mutated, so redact() can read it without the lock from any thread.
# Longest first, so a secret that contains another is masked whole.
_secrets: tuple[str, ...] = ()


def register_secret(secret: str) -> None:
    """Remember ``secret`` so that :func:`redact` masks it; shorter than 4 characters is ignored.

    Short strings would mask ordinary words and numbers all over the log; a secret that short
    protects nothing anyway.
    """
    global _secrets
    if len(secret) < _MIN_SECRET_LENGTH:
        return
    with _lock:
        if secret not in _secrets:
            _secrets = tuple(sorted({*_secrets, secret}, key=len, reverse=True))


def redact(text: str) -> str:
    """``text`` with every registered secret replaced by ``***``."""
    for secret in _secrets:
        if secret in text:
            text = text.replace(secret, _MASK)
    return text


class RedactingFilter(logging.Filter):
    """Formats each record's message once, masks secrets in it, and freezes it (``args=()``).

    The traceback and stack text are formatted and masked too, so the formatter uses them as
    they are. Never drops a record.
    """

    def filter(self, record: logging.LogRecord) -> bool:
        try:
            message = record.getMessage()
        except Exception:  # a bad format string must not cost us the log line
            message = f"{record.msg!r} % {record.args!r}"
        record.msg = redact(message)
        record.args = ()
        if record.exc_info and not record.exc_text:
            record.exc_text = logging.Formatter().formatException(record.exc_info)
        if record.exc_text:
            record.exc_text = redact(record.exc_text)
        if record.stack_info:
            record.stack_info = redact(record.stack_info)
        return True


def _priority(levelno: int) -> int:
    """The syslog priority journald reads from a ``<N>`` prefix."""
    if levelno >= logging.CRITICAL:
        return 2
    if levelno >= logging.ERROR:
        return 3
    if levelno >= logging.WARNING:
        return 4
    if levelno >= logging.INFO:
        return 6
    return 7


class _JournalFormatter(logging.Formatter):
    """``<N>name: message``, with the prefix on every line so a traceback keeps its priority."""

    def __init__(self) -> None:
        super().__init__("%(name)s: %(message)s")

    def format(self, record: logging.LogRecord) -> str:
        prefix = f"<{_priority(record.levelno)}>"
        return "\n".join(prefix + line for line in super().format(record).split("\n"))


def _under_journald(stream: TextIO) -> bool:
    """True when ``JOURNAL_STREAM`` is set and, where we can check, names ``stream``.

    systemd sets ``JOURNAL_STREAM=DEV:INODE`` for a service whose stderr is the journal; a
    child of such a service (a shell in a terminal started by a user unit) inherits the
    variable with a different stderr, so the device and inode are compared when the stream
    has a file descriptor.
    """
    value = os.environ.get("JOURNAL_STREAM")
    if not value:
        return False
    try:
        fd = stream.fileno()
    except (AttributeError, OSError, ValueError):
        return True
    try:
        dev, ino = (int(part) for part in value.split(":", 1))
        st = os.fstat(fd)
    except (ValueError, OSError):
        return True
    return (st.st_dev, st.st_ino) == (dev, ino)


_HANDLER_MARK: Final = "_syncd_handler"


def setup_logging(verbosity: int = 0, *, stream: TextIO | None = None) -> None:
    """Give the ``syncd`` logger its one handler (replacing an earlier one) and level.

    ``verbosity``: -1 (``-q``) warnings and errors, 0 informational summaries, 1+ debug
    detail. ``stream`` defaults to ``sys.stderr`` as it is at call time.
    """
    target = stream if stream is not None else sys.stderr
    logger = logging.getLogger("syncd")
    for old in list(logger.handlers):
        if getattr(old, _HANDLER_MARK, False):
            logger.removeHandler(old)
            old.close()
    handler = logging.StreamHandler(target)
    setattr(handler, _HANDLER_MARK, True)
    if _under_journald(target):
        handler.setFormatter(_JournalFormatter())
    else:
        handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(message)s", "%H:%M:%S"))
    handler.addFilter(RedactingFilter())
    logger.addHandler(handler)
    if verbosity < 0:
        logger.setLevel(logging.WARNING)
    elif verbosity == 0:
        logger.setLevel(logging.INFO)
    else:
        logger.setLevel(logging.DEBUG)
