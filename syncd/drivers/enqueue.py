"""The writing half of the outbox: one message in, durably; and reading a message's header.

:mod:`syncd.drivers.outbox` describes the layout and the crash guarantees, and uses this
module for both jobs. It is apart because ``syncd sendmail`` runs it as a whole process per
message (a mail reader's ``sendmail``): it imports only ``os``, ``re`` and ``json`` of the
standard library, and paths are plain strings (no pathlib, dataclasses, logging or email).
"""

from __future__ import annotations

import contextlib
import json
import os
import re
import time

from syncd.drivers.files import fsync_dir, hostname
from syncd.errors import StoreError

TYPE_CHECKING = False
if TYPE_CHECKING:
    from collections.abc import Iterable, Sequence

ENVELOPE_DIR = ".envelope"
ENVELOPE_SUFFIX = ".json"
TMP_SUFFIX = ".syncd-tmp"
ENVELOPE_VERSION = 1
DIR_MODE = 0o700
FILE_MODE = 0o600
O_NEW = os.O_WRONLY | os.O_CREAT | os.O_EXCL | getattr(os, "O_CLOEXEC", 0)
# In an address field after unfolding: anything but HTAB below space, and DEL.
_CONTROL = re.compile(r"[\x00-\x08\x0a-\x1f\x7f]")
_FIELD_NAME = re.compile(rb"[\x21-\x39\x3b-\x7e]+")
_FOLD = re.compile(rb"\r?\n(?=[ \t])")


class Malformed(Exception):
    """The queued input is not a message syncd can send; the text says why, for a user."""


# -- reading a message's header ------------------------------------------------------------


def split_header(raw: bytes) -> tuple[list[bytes], bytes]:
    """(header fields, each with its continuation lines and line ends; the rest).

    The rest starts with the blank line that ends the header (or is empty). A leading mbox
    ``From `` line (``git format-patch`` output) is dropped. Malformed when it is not a
    message.
    """
    if not raw.strip():
        raise Malformed("the message is empty (0 bytes)" if not raw else "the message is blank")
    pos = 0
    if raw.startswith(b"From "):
        end = raw.find(b"\n")
        pos = len(raw) if end < 0 else end + 1
    fields: list[bytes] = []
    number = 0
    while pos < len(raw):
        end = raw.find(b"\n", pos)
        nxt = len(raw) if end < 0 else end + 1
        line = raw[pos:nxt]
        number += 1
        if line in (b"\n", b"\r\n"):
            break
        if line[:1] in (b" ", b"\t"):
            if not fields:
                raise Malformed("not a message: it starts with an indented line")
            fields[-1] += line
        else:
            name, colon, _ = line.partition(b":")
            if not colon or not _FIELD_NAME.fullmatch(name.rstrip(b" \t")):
                shown = line[:60].decode("utf-8", "replace").rstrip()
                raise Malformed(
                    f"not a message: line {number} of the header ({shown!r}) is not a "
                    "header field, and no blank line separates a header from a body before it"
                )
            fields.append(line)
        pos = nxt
    if not fields:
        raise Malformed("not a message: it has no header")
    return fields, raw[pos:]


def field_name(field: bytes) -> bytes:
    return field.partition(b":")[0].rstrip(b" \t").lower()


def field_value(field: bytes) -> str:
    value = field.partition(b":")[2]
    value = _FOLD.sub(b"", value).strip()
    return value.decode("utf-8", "replace")


def field_values(fields: Iterable[bytes], name: bytes) -> list[str]:
    return [field_value(f) for f in fields if field_name(f) == name]


def check_address_values(values: Sequence[str]) -> None:
    """Malformed for a line break or control character left in an address field.

    ``getaddresses`` would read "a@x\\rBcc: evil@y" as two addresses (a group named
    "Bcc"), so a bare CR or LF left after unfolding would add a recipient nobody meant.
    """
    for value in values:
        if _CONTROL.search(value):
            raise Malformed(
                f"an address field holds a line break or control character: {value[:80]!r}"
            )


# Shapes whose reading by email.utils.getaddresses is known without asking it: a bare
# dot-atom address, or one in angle brackets after a name of plain words. The tests compare
# this with getaddresses itself.
_ATOM = r"[A-Za-z0-9!#$%&'*+/=?^_`{|}~-]+"
_ADDR_SPEC = rf"{_ATOM}(?:\.{_ATOM})*@[A-Za-z0-9-]+(?:\.[A-Za-z0-9-]+)*"
_SIMPLE = re.compile(
    rf"[ \t]*(?:{_ATOM}(?:[ \t]+{_ATOM})*[ \t]*<({_ADDR_SPEC})>|({_ADDR_SPEC}))[ \t]*"
)


def simple_address(value: str) -> str | None:
    """The address in ``value`` when it is ``local@domain`` or ``Plain Name <local@domain>``
    (what ``email.utils.getaddresses`` finds in it); None for anything else."""
    m = _SIMPLE.fullmatch(value)
    return None if m is None else m.group(1) or m.group(2)


def parse_addresses(values: Sequence[str]) -> list[str]:
    """The address part of each entry ``email.utils.getaddresses(values)`` returns.

    When every value is one simple address (:func:`simple_address`) the answer is known
    without the ``email`` package, whose import costs ``syncd sendmail`` about 10 ms.
    """
    found = [simple_address(v) for v in values]
    if all(a is not None for a in found):
        return [a for a in found if a is not None]
    from email.utils import getaddresses

    return [a for _, a in getaddresses(list(values))]


def unique_addresses(values: Sequence[str]) -> list[str]:
    """The unique addresses in header values; Malformed for a line break inside one."""
    check_address_values(values)
    out: list[str] = []
    seen: set[str] = set()
    for address in parse_addresses(values):
        address = address.strip()
        if address and address.casefold() not in seen:
            seen.add(address.casefold())
            out.append(address)
    return out


def header_addresses(raw: bytes) -> tuple[list[str], list[str]]:
    """(From addresses, To/Cc/Bcc addresses) of a message; Malformed if not a message."""
    fields, _ = split_header(raw)
    senders = unique_addresses(field_values(fields, b"from"))
    to_cc_bcc = [v for n in (b"to", b"cc", b"bcc") for v in field_values(fields, n)]
    return senders, unique_addresses(to_cc_bcc)


# -- writing -----------------------------------------------------------------------------------


def envelope_json(
    sender: str | None, recipients: Sequence[str] | None, queued: float | None
) -> bytes:
    """The ``.envelope/KEY.json`` sidecar (:class:`syncd.drivers.outbox.Envelope`)."""
    data = {
        "version": ENVELOPE_VERSION,
        "sender": sender,
        "recipients": list(recipients) if recipients is not None else None,
        "queued": queued,
    }
    return json.dumps(data, ensure_ascii=False, indent=1).encode("utf-8") + b"\n"


def oserror_text(exc: OSError) -> str:
    where = f" ({exc.filename})" if exc.filename else ""
    return f"{exc.strerror or exc}{where}"


def unique_key() -> str:
    # sendmail runs as its own process: a random part besides pid and time keeps two
    # messages queued in the same microsecond apart without a shared counter.
    sec, rest = divmod(time.time_ns(), 1_000_000_000)
    return f"{sec}.M{rest // 1000}P{os.getpid()}R{os.urandom(4).hex()}.{hostname()}"


def write_durably(path: str | os.PathLike[str], data: bytes) -> None:
    """Write ``data`` to the new file ``path`` and fsync it; removed again on failure."""
    fd = os.open(path, O_NEW, FILE_MODE)
    try:
        view = memoryview(data)
        while view:
            view = view[os.write(fd, view) :]
        os.fsync(fd)
    except BaseException:
        os.close(fd)
        with contextlib.suppress(OSError):
            os.unlink(path)
        raise
    os.close(fd)


def _mkdir(path: str) -> None:
    try:
        os.mkdir(path, DIR_MODE)
    except FileExistsError:
        if not os.path.isdir(path):
            raise


def ensure(outbox: str) -> None:
    """Create the outbox's Maildir and envelope directory if missing; StoreError if not."""
    try:
        # Missing parents too (the Maildir root, when sendmail runs before any sync) get
        # 0700: os.makedirs would give them the umask's mode.
        chain = [outbox]
        while (parent := os.path.dirname(chain[-1])) and parent != chain[-1]:
            chain.append(parent)
        missing = [p for p in chain if not os.path.exists(p)]
        subdirs = [os.path.join(outbox, d) for d in ("tmp", "new", "cur", ENVELOPE_DIR)]
        for d in (*reversed(missing), *subdirs):
            if not os.path.isdir(d):
                _mkdir(d)
    except OSError as exc:
        raise StoreError(f"cannot create the outbox {outbox}: {oserror_text(exc)}") from exc


def enqueue(outbox: str, raw: bytes, envelope: bytes) -> tuple[str, str]:
    """Queue one message durably; (its key, its path in ``new/``). StoreError if impossible.

    The envelope first (tmp file, fsync, rename, fsync of ``.envelope/``), then the message
    (``tmp/``, fsync, rename into ``new/``, fsync of ``new/``), so a message never appears
    in ``new/`` without its envelope. On failure nothing is left behind, so the caller may
    report "not queued".
    """
    ensure(outbox)
    key = unique_key()
    envelopes = os.path.join(outbox, ENVELOPE_DIR)
    new = os.path.join(outbox, "new")
    env_tmp = os.path.join(envelopes, key + TMP_SUFFIX)
    env_path = os.path.join(envelopes, key + ENVELOPE_SUFFIX)
    msg_tmp = os.path.join(outbox, "tmp", key)
    target = os.path.join(new, key)
    try:
        write_durably(env_tmp, envelope)
        os.rename(env_tmp, env_path)
        fsync_dir(envelopes)
        write_durably(msg_tmp, raw)
        os.rename(msg_tmp, target)
        fsync_dir(new)
    except OSError as exc:
        for leftover in (target, msg_tmp, env_tmp, env_path):
            with contextlib.suppress(OSError):
                os.unlink(leftover)
        raise StoreError(f"cannot queue the message in {outbox}: {oserror_text(exc)}") from exc
    return key, target
