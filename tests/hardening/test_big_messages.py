"""A big message moves both ways in bounded memory, byte for byte (issue 11, item 6).

``syncd sync`` runs as a real process against the real Dovecot, and its own peak RSS is
measured (see :func:`tests.hardening.test_hostile.run_measured`). A download may hold the
one copy imaplib reads from the socket, and converts CRLF to LF into the file a chunk at a
time; an upload holds no copy at all, it streams the file's CRLF form into the APPEND
literal. Before, a 100 MB message peaked at 227 MB down and 599 MB up. bench/bigmessage.py
measures the same at 200 MB.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from syncd.model import CHUNK_BYTES, to_local_bytes, to_remote_bytes
from tests.hardening import Rig
from tests.hardening.test_hostile import run_measured
from tests.servers.dovecot import Dovecot, User

pytestmark = pytest.mark.dovecot

MB = 1024 * 1024
SIZE = 40 * MB
# The process itself (Python, syncd's modules, SQLite) is about 35 MB; the chunks being
# converted add a few MB. The bound is size + 100 MB; this one also fails a
# download that builds a full LF copy next to the CRLF one, or that still holds one big
# message while it fetches the next, and an upload that holds any copy of the message.
DOWN_LIMIT = SIZE + 50 * MB
UP_LIMIT = SIZE + 25 * MB


def _filler(size: int, eol: bytes) -> bytes:
    line = b"0123456789abcdefghijklmnopqrstuvwxyz \xc3\xa4\xff ABCDEFGHIJKLMNOPQRSTUVWXYZ" + eol
    return line * (size // len(line))


def _with_crlf_at(data: bytearray, offsets: range) -> bytes:
    """``data`` with a CRLF straddling each offset (a chunk boundary) and a bare CR before."""
    for at in offsets:
        data[at - 3 : at + 1] = b"\r \r\n"
    return bytes(data)


def test_a_big_message_syncs_down_and_up_in_bounded_memory_byte_exact(
    dovecot: Dovecot, mail_user: User, tmp_path: Path
) -> None:
    # Two big messages in a row: each is fetched alone, and let go before the next.
    downs = [
        _with_crlf_at(
            bytearray(
                b"From: a@example.org\r\nSubject: big down %d\r\n\r\n" % i + _filler(SIZE, b"\r\n")
            ),
            range(CHUNK_BYTES, SIZE - 10, CHUNK_BYTES),
        )
        for i in range(2)
    ]
    dovecot.fill(mail_user, {"INBOX": [(down, ()) for down in downs]})
    rig = Rig(dovecot, mail_user, tmp_path, timeout=120)

    result, peak = run_measured(rig, "sync")
    assert result.code == 0, result.text
    assert peak < DOWN_LIMIT, f"download peaked at {peak / MB:.0f} MB for 2 x {SIZE / MB:.0f} MB"
    got = sorted(path.read_bytes() for path in (rig.folder_path() / "new").iterdir())
    assert got == [to_local_bytes(down) for down in downs]  # LF, byte for byte
    del downs, got

    # Upload: the Maildir's LF form, with CRLF lines and bare CRs at chunk boundaries too.
    up = _with_crlf_at(
        bytearray(b"Subject: big up\nMessage-ID: <bigup@example.org>\n\n" + _filler(SIZE, b"\n")),
        range(CHUNK_BYTES, SIZE - 10, CHUNK_BYTES),
    )
    box = rig.maildir / "Big"
    for sub in ("cur", "new", "tmp"):
        (box / sub).mkdir(parents=True)
    (box / "cur" / "1700000000.M1P1.local:2,S").write_bytes(up)

    result, peak = run_measured(rig, "sync")
    assert result.code == 0, result.text
    assert "Big: created on the server, 1 uploaded" in result.out, result.out
    assert peak < UP_LIMIT, f"upload peaked at {peak / MB:.0f} MB for {SIZE / MB:.0f} MB"
    ((served, _flags),) = dovecot.messages(mail_user, "Big").values()
    assert served == to_remote_bytes(up)  # CRLF, byte for byte

    # Paired both ways: nothing moves again.
    result, _ = run_measured(rig, "sync")
    assert result.code == 0 and result.out == "", result.text
