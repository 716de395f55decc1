"""The Maildir side of streaming big messages: delivering chunks, reading for upload.

``deliver`` takes a message as an iterable of chunks and keeps its all-or-nothing
promise when that iterable fails half-way. ``read_remote`` gives a small file as CRLF
bytes and a big one as an open :class:`UploadFile` whose chunks add up to its announced
size, and which refuses to finish when the file changed after it was measured.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path

import pytest

from syncd.drivers.maildir import MaildirFolder, MaildirStore, UploadFile
from syncd.errors import MessageError
from syncd.model import CHUNK_BYTES, Flag, chunks_of, fingerprint, to_local_chunks, to_remote_bytes

BIG = (
    b"From: a@example.org\nSubject: big\rone\n\n"
    + b"x" * (CHUNK_BYTES - 40)
    + b"\r\n"  # a CRLF near the first chunk boundary
    + b"line \r bare\n" * 300_000
)


@pytest.fixture
def inbox(tmp_path: Path) -> MaildirFolder:
    return MaildirStore(tmp_path / "mail").create_folder("INBOX")


def _files(folder: MaildirFolder) -> list[str]:
    return sorted(
        f"{sub}/{name}" for sub in ("tmp", "new", "cur") for name in os.listdir(folder.path / sub)
    )


def test_deliver_writes_chunk_iterables_like_bytes(inbox: MaildirFolder) -> None:
    raw = BIG.replace(b"\n", b"\r\n")
    (small, big) = inbox.deliver(
        [(b"Subject: s\n\nx\n", Flag.NONE, None), (to_local_chunks(chunks_of(raw)), Flag.S, 5.0)]
    )
    assert inbox.read(small) == b"Subject: s\n\nx\n"
    assert inbox.read(big) == raw.replace(b"\r\n", b"\n")
    assert os.stat(inbox.path_of(big)).st_mtime == 5.0


def test_deliver_takes_the_whole_batch_back_when_a_chunk_iterable_fails(
    inbox: MaildirFolder,
) -> None:
    def broken() -> Iterator[bytes]:
        yield b"Subject: half\n\n"
        raise MessageError("the server went away mid-message")

    with pytest.raises(MessageError):
        inbox.deliver([(b"Subject: ok\n\n", Flag.NONE, None), (broken(), Flag.NONE, None)])
    assert _files(inbox) == []


def test_read_remote_gives_small_files_as_bytes_and_big_ones_as_open_files(
    inbox: MaildirFolder,
) -> None:
    small, big = inbox.deliver([(b"Subject: s\n\nx\r\n", Flag.NONE, None), (BIG, Flag.NONE, None)])
    assert inbox.read_remote(small) == b"Subject: s\r\n\r\nx\r\n"
    up = inbox.read_remote(big)
    assert isinstance(up, UploadFile)
    try:
        assert up.size == len(to_remote_bytes(BIG))
        assert fingerprint(up.head) == fingerprint(to_remote_bytes(BIG))
        # A reader renaming the file meanwhile changes nothing: it is open already.
        os.rename(inbox.path_of(big), inbox.path / "cur" / (big.name + ":2,S"))
        for _ in range(2):  # and it can be sent again (a retried APPEND)
            assert b"".join(up.chunks()) == to_remote_bytes(BIG)
    finally:
        up.close()


@pytest.mark.parametrize("change", ["grown", "shrunk"])
def test_an_upload_file_changed_after_measuring_fails_before_its_last_chunk(
    inbox: MaildirFolder, change: str
) -> None:
    (entry,) = inbox.deliver([(BIG, Flag.NONE, None)])
    up = inbox.read_remote(entry)
    assert isinstance(up, UploadFile)
    with inbox.path_of(entry).open("r+b") as f:
        if change == "grown":
            f.seek(0, os.SEEK_END)
            f.write(b"appended by an editor\n" * CHUNK_BYTES)  # more than a chunk more
        else:
            f.truncate(len(BIG) - 100)
    sent = 0
    with pytest.raises(MessageError, match="changed while it was being uploaded"):
        for chunk in up.chunks():
            sent += len(chunk)
    assert sent < up.size  # the literal is never completed
    up.close()
