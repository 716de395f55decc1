"""Uploads reach the server byte for byte, as ``to_remote_bytes`` defines the CRLF form.

Against real Dovecots that differ in the extensions an upload uses: LITERAL+ (literals sent
without waiting for the server's "+") and MULTIAPPEND (several messages in one APPEND).
Small messages are sent from memory; messages over 1 MiB are streamed from their file a
chunk at a time. Both must produce the same bytes on the server, including a bare CR (which
imaplib's own ``append`` used to turn into CRLF, so the server's header no longer matched
the local one and matching by header failed: issue 12).
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from syncd.model import CHUNK_BYTES, to_remote_bytes
from tests.integration.conftest import Account
from tests.servers.dovecot import Dovecot, missing_binaries

pytestmark = pytest.mark.dovecot

_CAPS = (
    "IMAP4rev1 SASL-IR LOGIN-REFERRALS ID ENABLE IDLE SORT SORT=DISPLAY THREAD=REFERENCES "
    "THREAD=REFS THREAD=ORDEREDSUBJECT URL-PARTIAL CATENATE UNSELECT CHILDREN NAMESPACE "
    "UIDPLUS LIST-EXTENDED I18NLEVEL=1 CONDSTORE QRESYNC ESEARCH ESORT SEARCHRES WITHIN "
    "CONTEXT=SEARCH LIST-STATUS BINARY MOVE STATUS=SIZE SAVEDATE NOTIFY"
)
PROFILES = {
    "literal+,multiappend": None,  # Dovecot as it comes
    "multiappend": _CAPS + " MULTIAPPEND",  # every literal waits for the continuation
    "plain": _CAPS,  # one APPEND per message, each waiting for the continuation
}


@pytest.fixture(scope="module", params=list(PROFILES))
def server(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Dovecot]:
    missing = missing_binaries()
    if missing:
        pytest.skip(missing)
    base = tmp_path_factory.mktemp("dovecot-" + request.param.replace(",", "-").replace("+", "p"))
    with Dovecot(base, imap_capability=PROFILES[request.param]) as srv:
        yield srv


@pytest.fixture
def acct(server: Dovecot, tmp_path: Path) -> Account:
    return Account(server, server.add_user(), tmp_path)


def _put(acct: Account, folder: str, files: dict[str, bytes]) -> None:
    box = acct.maildir / folder
    for sub in ("cur", "new", "tmp"):
        (box / sub).mkdir(parents=True, exist_ok=True)
    for name, data in files.items():
        (box / "cur" / f"{name}.M1P1.local:2,S").write_bytes(data)


def _served(acct: Account, folder: str) -> list[bytes]:
    """The server's bytes of every message in ``folder``, exactly as it serves them."""
    srv: Dovecot = acct.server  # type: ignore[assignment]
    return sorted(raw for raw, _flags in srv.messages(acct.user, folder).values())  # type: ignore[arg-type]


def _bare_cr(i: int, body: bytes = b"") -> bytes:
    return (
        b"From: a@example.org\nSubject: bare\rCR " + str(i).encode() + b"\n"
        b"X-Mixed: crlf\r\nMessage-ID: <cr" + str(i).encode() + b"@example.org>\n\n"
        b"body \r with a bare CR\n" + body + b"last line without a newline"
    )


def _big(i: int) -> bytes:
    """Over 1 MiB (streamed), with a CRLF split exactly at the first chunk boundary."""
    head = _bare_cr(i)[:-27]
    pad = b"x" * (CHUNK_BYTES - len(head) - 1)
    # (No bare CR at the very end or before a CRLF: Dovecot drops those when it stores.)
    tail = b"\r\n\xff\xfe 8-bit \r x\r\n" + b"line\n" * 300_000 + b"\r end\n"
    data = head + pad + tail
    assert data[CHUNK_BYTES - 1 : CHUNK_BYTES + 1] == b"\r\n"
    return data


def test_a_bare_cr_in_a_header_uploads_once_exactly_and_stays_paired(acct: Account) -> None:
    one = {"1700000001": _bare_cr(1)}
    many = {f"170000001{i}": _bare_cr(10 + i) for i in range(3)} | {"1700000020": _big(20)}
    _put(acct, "One", one)
    _put(acct, "Many", many)
    r = acct.sync()
    assert "One: created on the server, 1 uploaded" in r.out, r.out
    assert "Many: created on the server, 4 uploaded" in r.out, r.out
    assert _served(acct, "One") == sorted(to_remote_bytes(m) for m in one.values())
    assert _served(acct, "Many") == sorted(to_remote_bytes(m) for m in many.values())

    # Paired: nothing to do, nothing duplicated on either side.
    r = acct.sync()
    assert r.out == "", r.out
    assert len(acct.local_files("One")) == 1 and len(acct.local_files("Many")) == 4

    # Paired by header bytes too: after a UIDVALIDITY change every pair is matched again
    # by its header fingerprint; a header changed in transit would upload a duplicate.
    srv: Dovecot = acct.server  # type: ignore[assignment]
    for folder in ("One", "Many"):
        srv.set_uidvalidity(acct.user, folder, 777)  # type: ignore[arg-type]
    r = acct.sync()
    assert "uploaded" not in r.out and "downloaded" not in r.out, r.out
    assert _served(acct, "One") == sorted(to_remote_bytes(m) for m in one.values())
    assert _served(acct, "Many") == sorted(to_remote_bytes(m) for m in many.values())
    assert sorted(p.read_bytes() for p in acct.local_files("Many")) == sorted(many.values())
    assert acct.sync().out == ""


def test_small_and_streamed_messages_in_one_batch_arrive_byte_exact(acct: Account) -> None:
    files = {
        "1700000100": _bare_cr(100),
        "1700000101": _big(101),
        "1700000102": b"Subject: crlf file\r\n\r\nalready\r\nCRLF\r\n",
        "1700000103": _big(103) + b"\n\n\r\n",
    }
    _put(acct, "Mixed", files)
    r = acct.sync()
    assert "Mixed: created on the server, 4 uploaded" in r.out, r.out
    assert _served(acct, "Mixed") == sorted(to_remote_bytes(m) for m in files.values())
    assert acct.sync().out == ""
