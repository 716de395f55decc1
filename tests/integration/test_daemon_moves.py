"""A mail reader's move seen by the running daemon in two halves (issue 13, item 3).

mutt's ``s`` (save to another folder) writes the copy at once and deletes the original only
at its next sync (``$``), seconds or minutes later: the daemon syncs the halves separately.
They must still become one MOVE on the server, which keeps the message's keywords, never
an upload of the copy plus an expunge of the original. The file operations are mutt's own:
the copy written in ``tmp/`` under a new unique name and renamed into ``cur/`` with the same
flags, the original unlinked later.
"""

from __future__ import annotations

import os
import re
import time
from pathlib import Path

import pytest

from syncd.daemon.supervisor import HOLD_COPIES
from tests.integration.conftest import msg
from tests.integration.test_daemon import Daemon, files_with, lf, wait_for

pytestmark = [pytest.mark.dovecot, pytest.mark.slow]

KEYWORDS = {b"$label1", b"Work"}


def mutt_copy(src: Path, folder_dir: Path) -> Path:
    """Write ``src`` into another Maildir folder the way mutt's save does."""
    flags = src.name.partition(":2,")[2]
    name = f"{time.time_ns()}.M{os.getpid()}P1.mutt"
    tmp = folder_dir / "tmp" / name
    tmp.write_bytes(src.read_bytes())
    dest = folder_dir / "cur" / f"{name}:2,{flags}"
    tmp.rename(dest)
    return dest


def synced(d: Daemon, folder: str, after: int) -> bool:
    """Whether a sync that covered ``folder`` ended after offset ``after`` of the log."""
    return any(
        folder in m.group(1).split(", ")
        for m in re.finditer(r"acct: (.+) synced in", d.text()[after:])
    )


@pytest.fixture
def two_folders(account, dovecot, mail_user, tmp_path):
    dovecot.append(mail_user, "INBOX", msg(5), flags=[b"\\Seen", *KEYWORDS])
    dovecot.append(mail_user, "Archive", msg(6))
    account.extra = ""
    d = Daemon(account, tmp_path)
    try:
        d.wait_message("READY=1")
        assert wait_for(lambda: files_with(account, lf(msg(5)))), d.text()
        assert wait_for(lambda: files_with(account, lf(msg(6)), "Archive")), d.text()
        yield d
    finally:
        d.stop()


def test_save_then_delete_in_separate_syncs_is_one_move_keeping_keywords(
    two_folders, account, dovecot, mail_user
):
    d = two_folders
    (original,) = files_with(account, lf(msg(5)))
    start = len(d.text())
    copy = mutt_copy(original, original.parent.parent.parent / "Archive")
    # Long enough for the copy to be synced on its own (the debounce ends within 1 s).
    assert wait_for(lambda: synced(d, "Archive", start), timeout=5), d.text()
    time.sleep(1.0)
    assert copy.exists()
    archive = dovecot.messages(mail_user, "Archive")
    assert len(archive) == 1, "the fresh copy was uploaded before its original went"
    original.unlink()  # mutt's $

    def moved():
        inbox = dovecot.messages(mail_user, "INBOX")
        archive = dovecot.messages(mail_user, "Archive")
        return not inbox and len(archive) == 2

    assert wait_for(moved, timeout=15), d.text()
    (kept,) = [
        f for body, f in dovecot.messages(mail_user, "Archive").values() if b"hello 5" in body
    ]
    assert kept >= KEYWORDS, f"the move lost the keywords: {kept}"
    assert "1 moved" in d.text()
    assert "uploaded" not in d.text() and "deleted on server" not in d.text(), d.text()
    # Nothing comes of the copy once its hold is over: one message, one file.
    time.sleep(HOLD_COPIES + 1.5)
    assert len(dovecot.messages(mail_user, "Archive")) == 2
    assert len(files_with(account, lf(msg(5)), "Archive")) == 1
    assert not files_with(account, lf(msg(5)))


def test_a_copy_whose_original_stays_is_uploaded_once_its_hold_is_over(
    two_folders, account, dovecot, mail_user
):
    d = two_folders
    (original,) = files_with(account, lf(msg(5)))
    copied_at = time.monotonic()
    mutt_copy(original, original.parent.parent.parent / "Archive")

    def uploaded():
        return any(
            b"hello 5" in body for body, _ in dovecot.messages(mail_user, "Archive").values()
        )

    assert wait_for(uploaded, timeout=HOLD_COPIES + 15), d.text()
    assert time.monotonic() - copied_at >= HOLD_COPIES - 1
    assert len(dovecot.messages(mail_user, "INBOX")) == 1  # the original stays where it was
    assert len(dovecot.messages(mail_user, "Archive")) == 2
    assert "1 uploaded" in d.text()
