"""The chunked line-ending conversions equal the whole-buffer ones, however bytes are cut.

Big messages are converted a chunk at a time (syncd never holds a second full copy of a
200 MB attachment), so a CR at the end of one chunk and the LF at the start of the next
must come out exactly as ``to_local_bytes`` / ``to_remote_bytes`` would have made them.
"""

from __future__ import annotations

import itertools

from hypothesis import given
from hypothesis import strategies as st

from syncd.model import (
    chunks_of,
    remote_size,
    to_local_bytes,
    to_local_chunks,
    to_remote_bytes,
    to_remote_chunks,
)

# Mostly line-ending bytes, so bare CR, bare LF, CRLF, CRCRLF and LFCR all occur often.
_BYTES = st.lists(
    st.sampled_from([b"\r", b"\n", b"\r\n", b"a", b"\r\r", b"\n\r", b"\x00", b"\xff"])
    | st.binary(max_size=8),
    max_size=60,
).map(b"".join)


@st.composite
def _cuts(draw: st.DrawFn) -> tuple[bytes, list[bytes]]:
    """Arbitrary bytes and an arbitrary cut of them into chunks (empty chunks included)."""
    data = draw(_BYTES | st.binary(max_size=200))
    points = sorted(draw(st.lists(st.integers(0, len(data)), max_size=12)))
    bounds = [0, *points, len(data)]
    return data, [data[a:b] for a, b in itertools.pairwise(bounds)]


@given(_cuts())
def test_chunked_local_conversion_equals_the_whole_buffer_one(
    case: tuple[bytes, list[bytes]],
) -> None:
    data, chunks = case
    assert b"".join(to_local_chunks(chunks)) == to_local_bytes(data)


@given(_cuts())
def test_chunked_remote_conversion_equals_the_whole_buffer_one(
    case: tuple[bytes, list[bytes]],
) -> None:
    data, chunks = case
    assert b"".join(to_remote_chunks(chunks)) == to_remote_bytes(data)


@given(_cuts())
def test_remote_size_is_the_length_of_the_remote_form(case: tuple[bytes, list[bytes]]) -> None:
    data, chunks = case
    assert remote_size(chunks) == len(to_remote_bytes(data))


@given(_BYTES, st.integers(1, 9))
def test_fixed_chunk_sizes_give_the_same_bytes(data: bytes, size: int) -> None:
    assert list(chunks_of(data, size)) == [data[i : i + size] for i in range(0, len(data), size)]
    assert b"".join(to_local_chunks(chunks_of(data, size))) == to_local_bytes(data)
    assert b"".join(to_remote_chunks(chunks_of(data, size))) == to_remote_bytes(data)
    assert remote_size(chunks_of(data, size)) == len(to_remote_bytes(data))


def test_the_awkward_cuts_by_hand() -> None:
    cases = [
        (b"a\r", [b"a\r"]),  # a bare CR at the very end stays
        (b"a\r\nb", [b"a\r", b"\nb"]),  # CRLF split across two chunks
        (b"a\r\r\nb", [b"a\r", b"\r", b"\nb"]),  # CR CR LF: only the second CR goes
        (b"\r\n", [b"\r", b"", b"\n"]),  # an empty chunk between CR and LF
        (b"x\ny", [b"x", b"\n", b"y"]),  # bare LF alone in a chunk
        (b"\r", [b"\r", b""]),
    ]
    for data, chunks in cases:
        assert b"".join(to_local_chunks(chunks)) == to_local_bytes(data), data
        assert b"".join(to_remote_chunks(chunks)) == to_remote_bytes(data), data
        assert remote_size(chunks) == len(to_remote_bytes(data)), data
