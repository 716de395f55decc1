"""The real mutt, driven in tmux, beside the real daemon and Dovecot (issue 14).

mutt writes its own flags over a message it changed in memory (reading it is a change), so
a server change that syncd renamed in meanwhile is lost at mutt's next write. The README's
mutt section says which settings avoid that; this file holds it to its word, with the
settings taken from the README itself, and shows the loss they avoid.
"""

from __future__ import annotations

import shlex
import shutil
import subprocess
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from tests.integration.conftest import REPO, Account, msg
from tests.integration.test_daemon import Daemon
from tests.servers import skip_or_fail

pytestmark = [pytest.mark.dovecot, pytest.mark.slow]

SUBJECT = "Invoice 1"


def readme_settings() -> str:
    """The muttrc block of the README's "mutt and syncd changing the same message"."""
    text = (REPO / "README.md").read_text()
    start = text.index("**mutt and syncd changing the same message.**")
    block = text[text.index("```muttrc\n", start) + len("```muttrc\n") :]
    return block[: block.index("```")]


def wait(what: str, predicate: Callable[[], object], timeout: float, screen: Callable[[], str]):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = predicate()
        if value:
            return value
        time.sleep(0.05)
    raise AssertionError(f"waited {timeout} s for {what}; mutt's screen:\n{screen()}")


class Mutt:
    """mutt on the account's Maildir in a private tmux server; read with screen()."""

    def __init__(self, tmp: Path, maildir: Path, settings: str) -> None:
        self.socket = tmp / "tmux.sock"
        home = tmp / "home"
        home.mkdir()
        rc = tmp / "muttrc"
        rc.write_text(
            f"set mbox_type = Maildir\nset folder = {maildir}\nset spoolfile = +INBOX\n"
            "set header_cache =\nset mark_old = no\nset quit = yes\nset wait_key = no\n"
            f"{settings}\n"
        )
        command = f"env HOME={shlex.quote(str(home))} mutt -n -F {shlex.quote(str(rc))}"
        self.tmux("new-session", "-d", "-s", "mutt", "-x", "150", "-y", "40", command)

    def tmux(self, *args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            ["tmux", "-S", str(self.socket), *args], capture_output=True, text=True, check=False
        )

    def screen(self) -> str:
        return self.tmux("capture-pane", "-p", "-t", "mutt").stdout

    def in_index(self) -> bool:
        screen = self.screen()
        return "Mutt: " in screen and "Subject: " not in screen  # the pager shows headers

    def status(self) -> str:
        lines = self.screen().rstrip("\n").splitlines()
        return lines[-1].strip() if lines else ""

    def keys(self, *keys: str) -> None:
        self.tmux("send-keys", "-t", "mutt", *keys)

    def running(self) -> bool:
        return self.tmux("has-session", "-t", "mutt").returncode == 0

    def close(self) -> None:
        self.tmux("kill-server")


@pytest.fixture
def mutt_binaries() -> None:
    for binary, package in (("mutt", "mutt"), ("tmux", "tmux")):
        if shutil.which(binary) is None:
            skip_or_fail(f"{binary} is not installed (apt-get install {package})")


@pytest.fixture
def started(mutt_binaries, account: Account, dovecot, mail_user, tmp_path) -> Iterator[Daemon]:
    dovecot.append(mail_user, "INBOX", msg(1, subject="Invoice"))
    daemon = Daemon(account, tmp_path)
    try:
        daemon.wait_message("READY=1")
        yield daemon
    finally:
        daemon.stop()


def letters(account: Account) -> str:
    """The flag letters of the one message's file ("" in new/ without info).

    "?" when a listing does not show exactly one file (it raced a rename): ask again.
    """
    paths = account.local_files("INBOX")
    return paths[0].name.partition(":2,")[2] if len(paths) == 1 else "?"


def server_flags(dovecot, user) -> set[bytes]:
    ((_, flags),) = dovecot.messages(user, "INBOX").values()
    return flags


@pytest.mark.parametrize("settings", ["readme", "defaults"])
def test_a_flag_set_on_the_server_while_mutt_has_the_message_open(
    settings, started, account, dovecot, mail_user, tmp_path
):
    """Read a message in mutt, flag it on the server (the phone), then `$` and quit.

    With the README's settings the message ends read and flagged on both sides. With
    mutt's defaults mutt writes back the flags it had (read, not flagged), and syncd
    cannot tell that from you removing the flag: the flag is lost on both sides. That
    is mutt's design (it does not merge other programs' changes into a message it
    changed); the second case is here so the README's warning stays true.
    """
    readme = settings == "readme"
    wait("syncd to download the message", lambda: account.local_files("INBOX"), 15, str)
    mutt = Mutt(tmp_path, account.maildir, readme_settings() if readme else "")
    try:
        wait("mutt's index", lambda: mutt.in_index() and SUBJECT in mutt.screen(), 15, mutt.screen)
        mutt.keys("Enter")
        wait("mutt's pager", lambda: f"Subject: {SUBJECT}" in mutt.screen(), 15, mutt.screen)
        mutt.keys("i")
        wait("mutt's index again", mutt.in_index, 15, mutt.screen)
        if readme:
            # The pager macro wrote "read" on the way out, and the daemon pushed it.
            wait("mutt to write S", lambda: letters(account) == "S", 15, mutt.screen)
            wait(
                "the daemon to push \\Seen",
                lambda: server_flags(dovecot, mail_user) == {b"\\Seen"},
                15,
                mutt.screen,
            )
        else:
            assert letters(account) == "", "mutt wrote before its time"

        with dovecot.imap(mail_user) as client:
            client.select_folder("INBOX")
            client.add_flags(client.search(), [b"\\Flagged"])
        wait("syncd to rename the file", lambda: "F" in letters(account), 15, mutt.screen)
        if readme:
            # timeout = 5: mutt, idle in the index, shows the server's flag by itself.
            def shown() -> bool:
                line = next((x for x in mutt.screen().splitlines() if SUBJECT in x), "")
                return "!" in line

            wait("mutt to show the flag", shown, 15, mutt.screen)

        mutt.keys("$")
        if not readme:
            wait("mutt's write", lambda: letters(account) == "S", 15, mutt.screen)
        # Quitting writes too, and would stop at a folder changed since mutt's last look
        # ("Unable to write"): mutt's exit is the proof that it has written everything.
        mutt.keys("q")
        wait("mutt to quit", lambda: not mutt.running(), 15, mutt.screen)
    finally:
        mutt.close()
    started.stop()
    account.sync()  # whatever the daemon had not pushed yet

    if readme:
        assert letters(account) == "FS"
        assert server_flags(dovecot, mail_user) == {b"\\Seen", b"\\Flagged"}
    else:
        assert letters(account) == "S"
        assert server_flags(dovecot, mail_user) == {b"\\Seen"}


def test_saving_to_another_folder_in_mutt_is_one_move_keeping_keywords(
    mutt_binaries, account, dovecot, mail_user, tmp_path
):
    """mutt's `s` (save) writes a copy into the other folder at once and deletes the original
    only at `$`. The running daemon sees the two halves in separate syncs and must still
    make them one MOVE on the server, which keeps the message's IMAP keywords (a label set
    on another client), instead of uploading the copy and expunging the original."""
    keywords = {b"$label1", b"Work"}
    dovecot.append(mail_user, "INBOX", msg(1, subject="Invoice"), flags=[b"\\Seen", *keywords])
    dovecot.append(mail_user, "Archive", msg(2, subject="Older"))
    daemon = Daemon(account, tmp_path)
    try:
        daemon.wait_message("READY=1")
        wait("the download", lambda: account.local_files("Archive"), 15, daemon.text)
        mutt = Mutt(tmp_path, account.maildir, "set delete = yes\nset confirmappend = no\n")
        try:
            wait(
                "mutt's index",
                lambda: mutt.in_index() and SUBJECT in mutt.screen(),
                15,
                mutt.screen,
            )
            mutt.keys("s")
            wait("the save prompt", lambda: "Save to mailbox" in mutt.status(), 15, mutt.screen)
            mutt.keys("C-u", "=Archive", "Enter")
            wait("mutt's copy", lambda: len(account.local_files("Archive")) == 2, 15, mutt.screen)
            time.sleep(1.5)  # the daemon syncs the copy alone (its debounce is at most 1 s)
            mutt.keys("$")
            wait("mutt's deletion", lambda: not account.local_files("INBOX"), 15, mutt.screen)
            mutt.keys("q")
            wait("mutt to quit", lambda: not mutt.running(), 15, mutt.screen)
        finally:
            mutt.close()

        def moved() -> bool:
            archive = dovecot.messages(mail_user, "Archive")
            return not dovecot.messages(mail_user, "INBOX") and len(archive) == 2

        wait("the daemon's move", moved, 20, daemon.text)
    finally:
        daemon.stop()
    (kept,) = [f for raw, f in dovecot.messages(mail_user, "Archive").values() if b"Invoice" in raw]
    log = daemon.text()
    assert keywords <= kept, f"the move lost the keywords: {kept}\n{log}"
    assert "1 moved" in log, log
    assert "uploaded" not in log and "deleted on server" not in log, log
