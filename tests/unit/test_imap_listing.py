"""The IMAP driver's start-up shortcut and its lean parser of flag listings."""

from __future__ import annotations

import imaplib
import subprocess
import sys

import pytest

from syncd.drivers.imap import (
    _fetch_by_uid,
    _flag_rows,
    _lean_bodies,
    _lean_flag_rows,
    _listing,
)
from syncd.model import Flag


def test_imapclient_version_without_importlib_metadata() -> None:
    # A fresh interpreter: what a one-shot `syncd sync` imports.
    code = (
        "import sys\n"
        "import syncd.drivers.imap\n"
        "import imapclient\n"
        "print(imapclient.__version__, imapclient.version_info)\n"
        "print('importlib.metadata' in sys.modules)\n"
        "import importlib.metadata\n"
        "print(importlib.metadata.version('imapclient'))\n"
    )
    out = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True
    ).stdout.split("\n")
    version, info = out[0].split(" ", 1)
    assert out[1] == "False"
    assert version == out[2]
    assert info == repr((*(int(x) for x in version.split(".")), "final"))


# -- the flag listing's parser ------------------------------------------------------------


def _generic(data: list[object]) -> tuple[dict[int, Flag], dict[int, int]]:
    listing = _listing(_fetch_by_uid(data), None, False)
    return dict(listing.flags), dict(listing.sizes)


PLAIN = [
    b"1 (UID 5 FLAGS (\\Seen \\Flagged) RFC822.SIZE 1234)",
    b"2 (UID 6 FLAGS () RFC822.SIZE 99)",
    b"3 (UID 9 FLAGS ($label1 Work \\Answered) RFC822.SIZE 7 MODSEQ (41))",
    b"4 (UID 12 FLAGS (\\Draft \\Deleted $Forwarded \\Recent))",
]


def test_lean_parse_matches_imapclient_on_plain_lines() -> None:
    rows = _lean_flag_rows(PLAIN)
    assert rows is not None
    assert (rows.flags, rows.sizes) == _generic(PLAIN)
    assert rows.flags[5] == Flag.S | Flag.F
    assert rows.flags[6] == Flag.NONE
    assert rows.flags[9] == Flag.R  # keywords are not Maildir flags
    assert rows.flags[12] == Flag.D | Flag.T | Flag.P
    assert rows.modseq == 41


def test_lean_parse_takes_any_order_and_case() -> None:
    data = [
        b"7 (FLAGS (\\Seen) UID 20)",
        b"8 (RFC822.SIZE 5 uid 21 flags (\\seen \\FLAGGED) MODSEQ (3))",
        b"9 (MODSEQ (8) UID 22 FLAGS ())",
    ]
    rows = _lean_flag_rows(data)
    assert rows is not None
    assert rows.flags == {20: Flag.S, 21: Flag.S | Flag.F, 22: Flag.NONE}
    assert rows.sizes == {21: 5}
    assert rows.modseq == 8
    assert (rows.flags, rows.sizes) == _generic(data)


def test_fetch_without_uid_is_left_out() -> None:
    # The server's own report of another client's change, between ours (no UID without
    # QRESYNC): its sequence number is not a UID.
    data = [PLAIN[0], b"2 (FLAGS (\\Deleted))", PLAIN[1]]
    rows = _lean_flag_rows(data)
    assert rows is not None
    assert rows.flags == {5: Flag.S | Flag.F, 6: Flag.NONE}
    assert (rows.flags, rows.sizes) == _generic(data)


@pytest.mark.parametrize(
    "data",
    [
        # a response split around a literal: imaplib gives a tuple
        [PLAIN[0], (b"2 (UID 6 RFC822.SIZE 3 BODY[HEADER] {3}", b"a\r\n"), b" FLAGS (\\Seen))"],
        # an item a flag listing does not ask for
        [b'1 (UID 5 FLAGS (\\Seen) INTERNALDATE "01-Jan-2024 10:00:00 +0000")'],
    ],
)
def test_anything_else_goes_to_imapclient(data: list[object]) -> None:
    assert _lean_flag_rows(data) is None
    rows = _flag_rows(data)
    assert (rows.flags, rows.sizes) == _generic(data)


def test_no_fetch_responses() -> None:
    rows = _flag_rows([None])
    assert (rows.flags, rows.sizes, rows.modseq) == ({}, {}, None)


def test_malformed_is_an_error_as_before() -> None:
    data = [b"1 (UID 5 FLAGS (\\Seen) X)"]
    assert _lean_flag_rows(data) is None
    with pytest.raises(imaplib.IMAP4.error, match="malformed FETCH"):
        _flag_rows(data)


# -- whole messages -------------------------------------------------------------------------

HEAD = b'%d (UID %d FLAGS (%s) INTERNALDATE "04-Dec-2026 05:31:43 %s" BODY[] {%d}'


def _body(seq: int, uid: int, flags: bytes, zone: bytes, raw: bytes) -> list[object]:
    return [(HEAD % (seq, uid, flags, zone, len(raw)), raw), b")"]


def test_lean_bodies_match_imapclient() -> None:
    data = [
        *_body(1, 5, b"\\Seen $label1", b"+0000", b"From: a\r\n\r\nbody (with) {3}\r\n"),
        b"4 (FLAGS (\\Deleted))",  # the server's news about another message: left out
        *_body(2, 9, b"", b"-0130", b"x"),
    ]
    rows = _lean_bodies(data)
    assert rows is not None
    assert rows == _fetch_by_uid(data)
    assert rows[5][b"BODY[]"] is data[0][1]  # type: ignore[index]  # not copied
    assert set(rows) == {5, 9}


@pytest.mark.parametrize(
    "data",
    [
        [(b"1 (UID 5 BODY[] {1} FLAGS ()", b"x"), b")"],  # another order
        [*_body(1, 5, b"", b"+0000", b"x")[:1], b" MODSEQ (3))"],  # more after the literal
        [*_body(1, 5, b"", b"+0000", b"x"), b"1 (UID 5 FLAGS (\\Seen))"],  # a flag update
    ],
)
def test_other_shapes_of_bodies_go_to_imapclient(data: list[object]) -> None:
    assert _lean_bodies(data) is None
