"""syncd.log: redaction, journald prefixes, idempotent setup."""

from __future__ import annotations

import io
import logging
import os
import re
from collections.abc import Iterator
from pathlib import Path

import pytest

from syncd.log import RedactingFilter, redact, register_secret, setup_logging

log = logging.getLogger("syncd.test")


@pytest.fixture(autouse=True)
def restore_syncd_logger(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    monkeypatch.delenv("JOURNAL_STREAM", raising=False)
    logger = logging.getLogger("syncd")
    handlers, level = list(logger.handlers), logger.level
    yield
    logger.handlers[:] = handlers
    logger.setLevel(level)


def test_a_registered_secret_is_redacted_in_log_lines() -> None:
    register_secret("s3cr3t-in-log")
    stream = io.StringIO()
    setup_logging(0, stream=stream)
    log.info("login as %s with %s", "me", "s3cr3t-in-log")
    out = stream.getvalue()
    assert "s3cr3t-in-log" not in out
    assert out.rstrip("\n").endswith("INFO login as me with ***")


def test_secrets_in_tracebacks_are_redacted() -> None:
    register_secret("s3cr3t-in-traceback")
    stream = io.StringIO()
    setup_logging(0, stream=stream)
    try:
        raise RuntimeError("server said: bad password s3cr3t-in-traceback")
    except RuntimeError:
        log.exception("login failed")
    out = stream.getvalue()
    assert "RuntimeError: server said: bad password ***" in out
    assert "s3cr3t-in-traceback" not in out


def test_redact() -> None:
    register_secret("abc")  # too short to be worth masking
    register_secret("outer-secret-inner")
    register_secret("inner")
    assert redact("abc") == "abc"
    assert redact("x outer-secret-inner y inner") == "x *** y ***"


def test_filter_freezes_the_message() -> None:
    register_secret("frozen-secret")
    record = logging.LogRecord(
        "syncd.t", logging.INFO, __file__, 1, "pw=%s", ("frozen-secret",), None
    )
    assert RedactingFilter().filter(record) is True
    assert (record.msg, record.args) == ("pw=***", ())
    assert record.getMessage() == "pw=***"


def test_plain_format_has_a_short_time_and_the_level() -> None:
    stream = io.StringIO()
    setup_logging(0, stream=stream)
    log.info("hello")
    log.debug("not shown at verbosity 0")
    assert re.fullmatch(r"\d\d:\d\d:\d\d INFO hello\n", stream.getvalue())


def test_verbosity_levels() -> None:
    for verbosity, expected in [(-1, logging.WARNING), (0, logging.INFO), (1, logging.DEBUG)]:
        setup_logging(verbosity, stream=io.StringIO())
        assert logging.getLogger("syncd").level == expected
    setup_logging(3, stream=io.StringIO())
    assert logging.getLogger("syncd").level == logging.DEBUG


def test_journal_format_under_systemd(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("JOURNAL_STREAM", "8:123456")
    stream = io.StringIO()
    setup_logging(1, stream=stream)
    log.debug("detail")
    log.info("hello")
    log.warning("careful")
    log.error("broken")
    assert stream.getvalue().splitlines() == [
        "<7>syncd.test: detail",
        "<6>syncd.test: hello",
        "<4>syncd.test: careful",
        "<3>syncd.test: broken",
    ]


def test_journal_format_prefixes_every_line(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("JOURNAL_STREAM", "8:123456")
    stream = io.StringIO()
    setup_logging(0, stream=stream)
    try:
        raise ValueError("boom")
    except ValueError:
        log.exception("failed")
    lines = stream.getvalue().splitlines()
    assert lines[0] == "<3>syncd.test: failed"
    assert len(lines) > 2
    assert all(line.startswith("<3>") for line in lines)


def test_journal_stream_naming_another_file_is_ignored(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # A shell started from a systemd unit inherits JOURNAL_STREAM with a different stderr.
    with (tmp_path / "err.log").open("w") as stream:
        st = os.fstat(stream.fileno())
        monkeypatch.setenv("JOURNAL_STREAM", f"{st.st_dev}:{st.st_ino + 1}")
        setup_logging(0, stream=stream)
        log.info("plain")
        monkeypatch.setenv("JOURNAL_STREAM", f"{st.st_dev}:{st.st_ino}")
        setup_logging(0, stream=stream)
        log.info("journal")
    lines = (tmp_path / "err.log").read_text().splitlines()
    assert re.fullmatch(r"\d\d:\d\d:\d\d INFO plain", lines[0])
    assert lines[1] == "<6>syncd.test: journal"


def test_setup_logging_twice_keeps_one_handler() -> None:
    root_handlers = list(logging.getLogger().handlers)
    first, second = io.StringIO(), io.StringIO()
    setup_logging(0, stream=first)
    count = len(logging.getLogger("syncd").handlers)
    setup_logging(0, stream=second)
    assert len(logging.getLogger("syncd").handlers) == count
    log.warning("once")
    assert first.getvalue() == ""
    assert second.getvalue().count("once") == 1
    assert logging.getLogger().handlers == root_handlers  # "syncd" is configured, not root
