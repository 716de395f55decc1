"""Local folder names against the server's personal namespace and separator."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from syncd.config import parse_config
from syncd.drivers.imap import FolderNames
from syncd.errors import ConfigError

COURIER = FolderNames("INBOX.", ".")
DOVECOT = FolderNames("", "/")


@pytest.mark.parametrize(
    ("names", "server", "local"),
    [
        (COURIER, "INBOX", "INBOX"),
        (COURIER, "inbox", "INBOX"),
        (COURIER, "INBOX.Archive", "Archive"),
        (COURIER, "INBOX.Lists.python", "Lists/python"),
        (COURIER, "INBOX.Sent Items", "Sent Items"),
        (DOVECOT, "Archive", "Archive"),
        (DOVECOT, "Lists/python", "Lists/python"),
        (FolderNames("", "."), "Lists.python", "Lists/python"),
        # Outside the personal namespace: the whole name, as before.
        (COURIER, "Other.Folder", "Other/Folder"),
        # No local name can stand for these.
        (COURIER, "INBOX.INBOX", None),
        (COURIER, "INBOX.", None),
        (COURIER, "INBOX.a/b", None),
        (COURIER, "INBOX.a..b", None),
    ],
)
def test_server_to_local(names, server, local):
    assert names.to_local(server) == local


@pytest.mark.parametrize(
    ("names", "local", "server"),
    [
        (COURIER, "INBOX", "INBOX"),
        (COURIER, "Projects", "INBOX.Projects"),
        (COURIER, "Lists/python", "INBOX.Lists.python"),
        (DOVECOT, "Lists/python", "Lists/python"),
        (FolderNames("INBOX/", "/"), "Archive", "INBOX/Archive"),
    ],
)
def test_local_to_server(names, local, server):
    assert names.to_server(local) == server


def test_a_local_component_with_the_server_separator_has_no_server_name():
    with pytest.raises(ValueError, match=r"separator '\.'"):
        COURIER.to_server("v1.2")


_component = st.text(
    st.characters(blacklist_categories=("Cs",), blacklist_characters="/."), min_size=1
).filter(lambda c: c.upper() != "INBOX")


@given(st.lists(_component, min_size=1, max_size=4), st.sampled_from(["", "INBOX.", "Mail."]))
def test_round_trip(parts, prefix):
    names = FolderNames(prefix, ".")
    local = "/".join(parts)
    assert names.to_local(names.to_server(local)) == local


BASE = "accounts:\n  a:\n    maildir: /tmp/m-ns\n    imap:\n      tunnel: imapd\n"


def test_config_keys():
    imap = parse_config(BASE + '      namespace: "INBOX."\n      separator: "."\n').accounts[0].imap
    assert imap is not None
    assert (imap.namespace, imap.separator) == ("INBOX.", ".")
    imap = parse_config(BASE + '      namespace: ""\n').accounts[0].imap
    assert imap is not None
    assert (imap.namespace, imap.separator) == ("", None)
    imap = parse_config(BASE).accounts[0].imap
    assert imap is not None
    assert (imap.namespace, imap.separator) == (None, None)


@pytest.mark.parametrize(
    ("extra", "error"),
    [
        ('      separator: ".."\n', r"imap\.separator: expected one character .* got '\.\.'"),
        ("      separator: a\n", r"imap\.separator: expected one character that is not a letter"),
        ("      separator: [x]\n", r"imap\.separator: expected one character, got a list"),
        ("      namespace: INBOX\n", r"imap\.namespace: 'INBOX' lacks the separator"),
        ("      namespace: true\n", r"imap\.namespace: expected the server's folder prefix"),
        (
            '      namespace: "INBOX/"\n      separator: "."\n',
            r"imap\.namespace: 'INBOX/' does not end with the separator '\.'; write 'INBOX/\.'",
        ),
    ],
)
def test_config_errors_name_the_key(extra, error):
    with pytest.raises(ConfigError, match=error):
        parse_config(BASE + extra)
