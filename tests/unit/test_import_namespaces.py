"""syncd import: mbsync's Path/PathDelimiter/UseNamespace and OfflineIMAP's reference and
nametrans become namespace:/separator:, where they can be expressed."""

from __future__ import annotations

import pytest

from syncd.importers.offlineimap import translate_nametrans_add, translate_nametrans_prefix
from tests.unit.test_importers import config_of, issues, mb, oi, one_issue

COURIER_MBSYNC = """\
IMAPAccount c
Host imap.example.org
User me
PassCmd "pass c"

IMAPStore c-remote
Account c
{store}

MaildirStore c-local
Path ~/Mail/c/
Inbox ~/Mail/c/INBOX
SubFolders Verbatim

Channel c
Far :c-remote:{far}
Near :c-local:
Patterns *
"""


def test_mbsync_path_is_the_namespace():
    result = mb(COURIER_MBSYNC.format(store="Path INBOX.\nPathDelimiter .", far=""))
    (acct,) = config_of(result).accounts
    assert acct.imap is not None
    assert (acct.imap.namespace, acct.imap.separator) == ("INBOX.", ".")
    assert "namespace: INBOX." in (result.text or "")
    assert not any("Path" in i or "PathDelimiter" in i for i in issues(result))


def test_mbsync_far_side_prefix_is_the_namespace():
    result = mb(COURIER_MBSYNC.format(store="", far="INBOX."))
    (acct,) = config_of(result).accounts
    assert acct.imap is not None
    assert (acct.imap.namespace, acct.imap.separator) == ("INBOX.", None)


def test_mbsync_usenamespace_no_keeps_full_names():
    result = mb(COURIER_MBSYNC.format(store="UseNamespace no", far=""))
    (acct,) = config_of(result).accounts
    assert acct.imap is not None
    assert acct.imap.namespace == ""


def test_mbsync_default_asks_the_server():
    result = mb(COURIER_MBSYNC.format(store="", far=""))
    (acct,) = config_of(result).accounts
    assert acct.imap is not None
    assert acct.imap.namespace is None
    assert "namespace" not in (result.text or "")


def test_mbsync_a_prefix_without_separator_is_reported():
    result = mb(COURIER_MBSYNC.format(store="Path Mail", far=""))
    assert "needs the prefix to end with the server's hierarchy separator" in one_issue(
        result, "Path Mail"
    )


OFFLINEIMAP = """\
[general]
accounts = c

[Account c]
localrepository = c-local
remoterepository = c-remote

[Repository c-local]
type = Maildir
localfolders = ~/Mail/c
sep = /
{local}

[Repository c-remote]
type = IMAP
remotehost = imap.example.org
remoteuser = me
remotepass = secret
{remote}
"""


def test_offlineimap_nametrans_that_strips_the_prefix_is_the_namespace():
    result = oi(
        OFFLINEIMAP.format(
            local="nametrans = lambda folder: 'INBOX.' + folder",
            remote="reference = INBOX\nnametrans = lambda folder: re.sub('^INBOX\\.', '', folder)",
        )
    )
    (acct,) = config_of(result).accounts
    assert acct.imap is not None
    assert acct.imap.namespace == "INBOX."
    assert not any("reference" in i for i in issues(result))
    assert "not needed" in one_issue(result, "nametrans = lambda folder: 'INBOX.'")


def test_offlineimap_without_nametrans_keeps_full_names():
    result = oi(OFFLINEIMAP.format(local="", remote="reference = Mail"))
    (acct,) = config_of(result).accounts
    assert acct.imap is not None
    assert acct.imap.namespace == ""
    assert "not only those under Mail" in one_issue(result, "reference = Mail")


def test_offlineimap_other_nametrans_is_listed():
    result = oi(OFFLINEIMAP.format(local="", remote="nametrans = lambda f: f.lower()"))
    (acct,) = config_of(result).accounts
    assert acct.imap is not None
    assert acct.imap.namespace == ""
    assert "not adopted" in one_issue(result, "nametrans = lambda f: f.lower()")


@pytest.mark.parametrize(
    ("expr", "prefix"),
    [
        (r"lambda folder: re.sub('^INBOX\.', '', folder)", "INBOX."),
        (r"lambda f: re.sub(r'^INBOX\.', '', f)", "INBOX."),
        ('lambda f: re.sub("^INBOX/", "", f)', "INBOX/"),
        ("lambda f: f.removeprefix('INBOX.')", "INBOX."),
        ("lambda f: re.sub('INBOX\\.', '', f)", None),  # not anchored
        ("lambda f: re.sub('^INBOX.*', '', f)", None),
        ("lambda f: re.sub('^INBOX\\.', 'X', f)", None),
        ("lambda f: f.replace('.', '/')", None),
        ("not python (", None),
    ],
)
def test_nametrans_prefix(expr, prefix):
    assert translate_nametrans_prefix(expr) == prefix


def test_nametrans_add():
    assert translate_nametrans_add("lambda f: 'INBOX.' + f") == "INBOX."
    assert translate_nametrans_add("lambda f: f + 'x'") is None
