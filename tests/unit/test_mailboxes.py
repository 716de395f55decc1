"""syncd mailboxes: the local folder list in mutt, neomutt and aerc syntax (like mbnames)."""

from __future__ import annotations

import io
from contextlib import redirect_stderr, redirect_stdout
from pathlib import Path, PurePath

import pytest

from syncd import cli
from syncd.drivers.maildir import MaildirStore
from syncd.mailboxes import FORMATS, MailboxAccount, folder_path, render
from tests.integration.conftest import Result

ROOT = PurePath("/home/me/Mail/personal")
VERBATIM = MailboxAccount("personal", ROOT, "verbatim", ("Sent", "INBOX", "Lists/python"))
PLUSPLUS = MailboxAccount(
    "isp", PurePath("/home/me/Maildir"), "maildir++", ("Lists/python", "INBOX")
)


def test_formats_match_the_command_line():
    assert FORMATS == cli._MAILBOX_FORMATS


def test_folder_paths_follow_the_layout():
    assert folder_path(ROOT, "verbatim", "Lists/python") == ROOT / "Lists/python"
    assert folder_path(ROOT, "verbatim", "INBOX") == ROOT / "INBOX"
    assert folder_path(ROOT, "maildir++", "INBOX") == ROOT
    assert folder_path(ROOT, "maildir++", "Lists/python") == ROOT / ".Lists.python"


def test_mutt_one_account_relative_to_folder():
    assert render([VERBATIM], "mutt") == (
        "# syncd account personal: names relative to $folder, so: set folder = "
        '"/home/me/Mail/personal"\n'
        'mailboxes "+INBOX" "+Lists/python" "+Sent"\n'
    )
    assert render([PLUSPLUS], "mutt").splitlines()[1] == 'mailboxes "+" "+.Lists.python"'


def test_mutt_several_accounts_use_full_paths():
    lines = render([VERBATIM, PLUSPLUS], "mutt").splitlines()
    assert lines[1] == (
        'mailboxes "/home/me/Mail/personal/INBOX" "/home/me/Mail/personal/Lists/python" '
        '"/home/me/Mail/personal/Sent"'
    )
    assert lines[3] == 'mailboxes "/home/me/Maildir" "/home/me/Maildir/.Lists.python"'


def test_mutt_quotes_what_it_would_expand():
    odd = MailboxAccount("a", ROOT, "verbatim", ('Cost $HOME "x" `id`\\',))
    assert render([odd], "mutt").splitlines()[1] == (
        'mailboxes "+Cost \\$HOME \\"x\\" \\`id\\`\\\\"'
    )


def test_neomutt_names_its_mailboxes():
    assert render([VERBATIM], "neomutt").splitlines()[1] == (
        'named-mailboxes "INBOX" "+INBOX" "Lists/python" "+Lists/python" "Sent" "+Sent"'
    )
    both = render([VERBATIM, PLUSPLUS], "neomutt").splitlines()
    assert both[3] == (
        'named-mailboxes "isp/INBOX" "/home/me/Maildir" '
        '"isp/Lists/python" "/home/me/Maildir/.Lists.python"'
    )


def test_aerc_fragment():
    assert render([VERBATIM, PLUSPLUS], "aerc") == (
        "# syncd account personal: in its [section] of aerc's accounts.conf\n"
        "source = maildir:///home/me/Mail/personal\n"
        "folders = INBOX,Lists/python,Sent\n"
        "default = INBOX\n"
        "\n"
        "# syncd account isp: in its [section] of aerc's accounts.conf\n"
        "source = maildirpp:///home/me/Maildir\n"
        "folders = INBOX,Lists/python\n"
        "default = INBOX\n"
    )
    odd = MailboxAccount("a", ROOT, "verbatim", ("Sent, old", "Archive"))
    text = render([odd], "aerc")
    assert "folders = Archive\ndefault = Archive\n" in text
    assert "# left out, as aerc's list is comma-separated: Sent, old" in text


def test_list_and_empty_accounts():
    assert render([PLUSPLUS], "list") == "/home/me/Maildir\n/home/me/Maildir/.Lists.python\n"
    empty = MailboxAccount("new", ROOT, "verbatim", ())
    assert "no local folders yet" in render([empty], "mutt")
    assert "no local folders yet" in render([empty], "aerc")
    assert render([empty], "list") == ""
    with pytest.raises(ValueError, match="unknown format"):
        render([empty], "pine")


def run(*argv: str) -> Result:
    out, err = io.StringIO(), io.StringIO()
    with redirect_stdout(out), redirect_stderr(err):
        try:
            code = cli.main(list(argv))
        except SystemExit as exc:
            code = int(exc.code or 0)
    return Result(code, out.getvalue(), err.getvalue())


def test_command_lists_the_real_maildirs(tmp_path):
    personal, isp = tmp_path / "personal", tmp_path / "isp"
    for name in ("INBOX", "Lists/python", "Sent"):
        MaildirStore(personal).create_folder(name)
    for name in ("INBOX", "Work"):
        MaildirStore(isp, "maildir++").create_folder(name)
    (personal / ".outbox" / "cur").mkdir(parents=True)  # the outbox is not a mailbox
    config = tmp_path / "config.yaml"
    config.write_text(
        f"""accounts:
  personal:
    maildir: {personal}
    imap: {{host: 127.0.0.1, tls: none, username: u, password_command: "true"}}
  isp:
    maildir: {isp}
    layout: maildir++
    imap: {{host: 127.0.0.1, tls: none, username: u, password_command: "true"}}
"""
    )
    r = run("mailboxes", "-c", str(config), "-a", "personal")
    assert r.code == 0, r.err
    assert r.out.splitlines()[1] == 'mailboxes "+INBOX" "+Lists/python" "+Sent"'
    r = run("mailboxes", "-c", str(config), "--format", "list")
    assert r.out.splitlines() == [
        f"{personal}/INBOX",
        f"{personal}/Lists/python",
        f"{personal}/Sent",
        f"{isp}",
        f"{isp}/.Work",
    ]
    assert all(Path(line, "cur").is_dir() for line in r.out.splitlines())
    assert "named-mailboxes" in run("mailboxes", "-c", str(config), "--format", "neomutt").out
    unknown = run("mailboxes", "-c", str(config), "-a", "nope")
    assert unknown.code == 2 and "no account named" in unknown.err
    assert run("mailboxes", "--format", "pine").code == 2
    missing = run("mailboxes", "-c", str(tmp_path / "none.yaml"))
    assert missing.code == 2 and "config error" in missing.err
