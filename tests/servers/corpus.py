"""Deterministic, realistic sample mail for tests, benchmarks and the demo.

Everything comes from a seeded ``random.Random``: the same seed gives the same bytes on every
machine and Python version that keeps ``random``'s sequence (CPython does).  Messages are RFC 5322
with CRLF line ends and unique Message-IDs.  The mix:

- plain text of 2-20 KB, mostly ASCII, some UTF-8 with ``Content-Transfer-Encoding: 8bit``,
  some quoted-printable, some ``multipart/alternative`` with an HTML part;
- subjects and display names that are sometimes non-ASCII, as RFC 2047 encoded words;
- "big" messages: ``multipart/mixed`` with a base64 attachment of 100 KB-1 MB;
- "tiny" messages (a few hundred bytes) for tests that only need something to move.

Speed: bodies are drawn from a pool of prepared lines rather than word by word, so
``make_corpus(10_000, ...)`` takes about a second.
"""

from __future__ import annotations

import base64
import functools
import quopri
import random
from collections.abc import Sequence
from datetime import UTC, datetime, timedelta
from email.charset import BASE64, QP, Charset
from email.header import Header
from email.utils import format_datetime
from typing import Literal

__all__ = ["SizeClass", "make_corpus", "make_message"]

SizeClass = Literal["tiny", "normal", "big"]
Message = tuple[bytes, tuple[bytes, ...]]

_WORD_TEXT = (
    "the of and to in is that for it as was with be by on not he this are or his from at which "
    "but have an they you were her she there one all we their can has been if more when will "
    "would who so no sync mail folder server message daemon maildir imap flag state release "
    "patch review build test queue thread python rust kernel network offline laptop weekend "
    "meeting budget invoice report draft schedule project deadline coffee garden travel"
)
_UTF8_TEXT = (
    "Grüße Ärger Straße naïve café façade smørrebrød Köln Zürich déjà vu Ελλάδα привет мир "
    "こんにちは 日本語 中文 emoji 🎉 ✓ — “quoted” €100"
)
_WORDS = _WORD_TEXT.split()
_UTF8_WORDS = _UTF8_TEXT.split()
_PEOPLE = [
    ("Alice Example", "alice@example.org"),
    ("Bob Builder", "bob@example.net"),
    ("Carol Müller", "carol@example.de"),
    ("Dmitri Иванов", "dmitri@example.ru"),
    ("Erin O'Brien", "erin@example.ie"),
    ("François Dupont", "francois@example.fr"),
    ("Grace Hopper", "grace@example.com"),
    ("Hiro 山田", "hiro@example.jp"),
    ("python-list", "python-list@python.example"),
    ("Notifications", "noreply@service.example"),
]
_SUBJECTS = [
    "Re: weekly sync",
    "Invoice {n}",
    "[python-list] Question about asyncio #{n}",
    "Your order {n} has shipped",
    "Fwd: photos from the trip",
    "Meeting notes {n}",
    "Build failed on main ({n})",
    "Lunch?",
]
_UTF8_SUBJECTS = [
    "Grüße aus Köln {n}",
    "Ärger mit dem Server",
    "Réunion de l'équipe n° {n}",
    "Привет, как дела? {n}",
    "会議の議事録 {n}",
    "🎉 Party on Friday {n}",
]
_ATTACHMENTS = [
    ("application/pdf", "report-{n}.pdf"),
    ("image/jpeg", "IMG_{n}.jpg"),
    ("application/zip", "archive-{n}.zip"),
    ("application/octet-stream", "data-{n}.bin"),
]
_EPOCH = datetime(2024, 1, 1, 8, 0, tzinfo=UTC)
_B_CHARSET = Charset("utf-8")
_B_CHARSET.header_encoding = BASE64
_Q_CHARSET = Charset("utf-8")
_Q_CHARSET.header_encoding = QP


@functools.cache
def _line_pool() -> tuple[tuple[str, ...], tuple[str, ...]]:
    """~3000 ASCII and ~500 UTF-8 lines of 40-76 characters, made once from a fixed seed."""
    rng = random.Random(0x5EED)

    def line(words: Sequence[str]) -> str:
        out: list[str] = []
        width = rng.randint(40, 76)
        n = 0
        while n < width:
            w = rng.choice(words)
            out.append(w)
            n += len(w) + 1
        return " ".join(out)[:76].rstrip()

    ascii_lines = tuple(line(_WORDS) for _ in range(3000))
    mixed = _WORDS + _UTF8_WORDS * 3
    utf8_lines = tuple(line(mixed) for _ in range(500))
    return ascii_lines, utf8_lines


def _encoded_word(text: str, rng: random.Random) -> str:
    """RFC 2047: ASCII stays as is; otherwise B or Q encoded words, folded with CRLF SP."""
    if text.isascii():
        return text
    charset = _B_CHARSET if rng.random() < 0.5 else _Q_CHARSET
    return Header(text, charset).encode(linesep="\r\n")


def _address(person: tuple[str, str], rng: random.Random) -> str:
    name, addr = person
    if name.isascii():
        if any(c in name for c in "'.,"):
            return f'"{name}" <{addr}>'
        return f"{name} <{addr}>"
    return f"{_encoded_word(name, rng)} <{addr}>"


def _body_lines(rng: random.Random, target: int, utf8: bool) -> list[str]:
    ascii_lines, utf8_lines = _line_pool()
    n = max(1, target // 60)
    lines = rng.choices(ascii_lines, k=n)
    if utf8:
        for i in rng.sample(range(n), k=max(1, n // 4)):
            lines[i] = rng.choice(utf8_lines)
    # Paragraph breaks, and a quoted reply now and then.
    for i in range(rng.randint(4, 9), n, rng.randint(5, 12)):
        lines[i] = ""
    if n > 20 and rng.random() < 0.3:
        start = rng.randrange(n // 2, n - 5)
        for i in range(start, start + 5):
            lines[i] = "> " + lines[i]
    return lines


def make_message(rng: random.Random, i: int, *, size_class: SizeClass = "normal") -> bytes:
    """One RFC 5322 message (CRLF line ends) numbered ``i``; the Message-ID contains ``i``.

    ``size_class``: "tiny" (a few hundred bytes), "normal" (2-20 KB text, sometimes UTF-8 8bit,
    quoted-printable or multipart/alternative) or "big" (multipart/mixed with one base64
    attachment of 100 KB-1 MB).
    """
    sender, rcpt = rng.sample(_PEOPLE, 2)
    utf8_subject = rng.random() < 0.2
    subject = rng.choice(_UTF8_SUBJECTS if utf8_subject else _SUBJECTS).format(n=i)
    date = _EPOCH + timedelta(minutes=37 * i, seconds=rng.randrange(3600))
    token = f"{rng.getrandbits(48):012x}"
    headers = [
        f"From: {_address(sender, rng)}",
        f"To: {_address(rcpt, rng)}",
        f"Subject: {_encoded_word(subject, rng)}",
        f"Date: {format_datetime(date)}",
        f"Message-ID: <{i}.{token}@corpus.syncd.test>",
    ]
    if rng.random() < 0.3:
        headers.append(f"In-Reply-To: <{max(0, i - rng.randint(1, 50))}.0@corpus.syncd.test>")
    headers.append("MIME-Version: 1.0")

    if size_class == "tiny":
        headers.append("Content-Type: text/plain; charset=us-ascii")
        body = [f"Message {i}.", "", *_body_lines(rng, rng.randint(100, 400), utf8=False)]
        return _join(headers, body)

    if size_class == "big":
        boundary = f"=_mixed_{token}"
        ctype, fname = rng.choice(_ATTACHMENTS)
        fname = fname.format(n=i)
        payload = rng.randbytes(rng.randint(100_000, 1_000_000))
        encoded = base64.b64encode(payload).decode("ascii")
        b64 = [encoded[k : k + 76] for k in range(0, len(encoded), 76)]
        text = _body_lines(rng, rng.randint(500, 3000), utf8=False)
        headers.append(f'Content-Type: multipart/mixed; boundary="{boundary}"')
        body = [
            "This is a multi-part message in MIME format.",
            f"--{boundary}",
            "Content-Type: text/plain; charset=us-ascii",
            "",
            f"Attached: {fname}",
            "",
            *text,
            f"--{boundary}",
            f'Content-Type: {ctype}; name="{fname}"',
            "Content-Transfer-Encoding: base64",
            f'Content-Disposition: attachment; filename="{fname}"',
            "",
            *b64,
            f"--{boundary}--",
            "",
        ]
        return _join(headers, body)

    target = rng.randint(2_000, 20_000)
    kind = rng.random()
    if kind < 0.15:  # UTF-8, 8bit
        headers.append("Content-Type: text/plain; charset=utf-8")
        headers.append("Content-Transfer-Encoding: 8bit")
        body = [f"Nachricht {i} — grüße!", "", *_body_lines(rng, target, utf8=True)]
        return _join(headers, body)
    if kind < 0.25:  # UTF-8, quoted-printable
        headers.append("Content-Type: text/plain; charset=utf-8")
        headers.append("Content-Transfer-Encoding: quoted-printable")
        plain = "\n".join([f"Message {i} ✓", "", *_body_lines(rng, target, utf8=True)])
        qp = quopri.encodestring(plain.encode()).decode("ascii").split("\n")
        return _join(headers, qp)
    if kind < 0.35:  # multipart/alternative
        boundary = f"=_alt_{token}"
        text = _body_lines(rng, target // 2, utf8=False)
        html = ["<html><body>", *(f"<p>{t}</p>" if t else "" for t in text), "</body></html>"]
        headers.append(f'Content-Type: multipart/alternative; boundary="{boundary}"')
        body = [
            f"--{boundary}",
            "Content-Type: text/plain; charset=us-ascii",
            "",
            f"Message {i}.",
            *text,
            f"--{boundary}",
            "Content-Type: text/html; charset=us-ascii",
            "",
            *html,
            f"--{boundary}--",
            "",
        ]
        return _join(headers, body)
    headers.append("Content-Type: text/plain; charset=us-ascii")
    body = [f"Message {i}.", "", *_body_lines(rng, target, utf8=False)]
    return _join(headers, body)


def _join(headers: list[str], body: list[str]) -> bytes:
    return ("\r\n".join(headers) + "\r\n\r\n" + "\r\n".join(body) + "\r\n").encode()


def _flags(rng: random.Random) -> tuple[bytes, ...]:
    flags: list[bytes] = []
    if rng.random() < 0.30:
        flags.append(b"\\Seen")
    if rng.random() < 0.05:
        flags.append(b"\\Flagged")
    return tuple(flags)


def make_corpus(
    n_messages: int,
    folders: Sequence[str],
    seed: int = 0,
    big_share: float = 0.02,
    *,
    size_class: SizeClass = "normal",
) -> dict[str, list[Message]]:
    """``n_messages`` messages spread over ``folders``: folder -> [(raw, flags), ...].

    The first folder gets the most (shares fall off as 1, 1/2, 1/3, ...); every folder gets at
    least one message when there are enough.  ``big_share`` of the messages are "big" (with an
    attachment), the rest are ``size_class``.  About 30% carry ``\\Seen`` and 5% ``\\Flagged``.
    Message numbers (and so Message-IDs) are unique across the whole corpus.
    """
    if not folders:
        raise ValueError("make_corpus needs at least one folder")
    rng = random.Random(seed)
    weights = [1 / (k + 1) for k in range(len(folders))]
    total = sum(weights)
    counts = [int(n_messages * w / total) for w in weights]
    if n_messages >= len(folders):
        counts = [max(1, c) for c in counts]
    while sum(counts) > n_messages:
        counts[counts.index(max(counts))] -= 1
    counts[0] += n_messages - sum(counts)

    corpus: dict[str, list[Message]] = {}
    i = 0
    for folder, count in zip(folders, counts, strict=True):
        messages: list[Message] = []
        for _ in range(count):
            cls: SizeClass = "big" if rng.random() < big_share else size_class
            messages.append((make_message(rng, i, size_class=cls), _flags(rng)))
            i += 1
        corpus[folder] = messages
    return corpus
