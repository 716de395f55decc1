"""Did a tool get it right?  The server's view against a Maildir, message by message.

Messages are matched by Message-ID (every corpus message has a unique one).  A check covers:

- per folder, the same messages on both sides: no missing, extra or duplicated ones (so the
  counts per folder agree);
- the flags of *every* message (``\\Seen \\Flagged \\Answered \\Draft \\Deleted`` against the
  ``:2,`` letters; a file in ``new/`` without them has none);
- the bytes of a sample (three messages per folder chosen by a hash of their Message-ID, plus the
  folder's largest), compared in LF form: the file must equal the server's copy with CRLF turned
  into LF.  A copy that differs only by header lines the tool added (mbsync's ``X-TUID:``,
  fetchmail's ``Received:``) passes with a note that names them; any other difference fails.

It is a little slower than a sample of flags, but 10 000 messages are checked in well under a
second, and a wrong flag is exactly the kind of mis-sync a benchmark would otherwise hide.
"""

from __future__ import annotations

import hashlib
import os
import re
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

_MSGID = re.compile(rb"(?im)^message-id:[ \t]*(<[^>\r\n]*>)")
FLAG_LETTERS = {
    b"\\Draft": "D",
    b"\\Flagged": "F",
    b"\\Answered": "R",
    b"\\Seen": "S",
    b"\\Deleted": "T",
}
LETTER_FLAGS = {v: k for k, v in FLAG_LETTERS.items()}


@dataclass
class RemoteMsg:
    uid: int
    flags: frozenset[bytes]
    size: int


@dataclass
class LocalMsg:
    path: Path
    flags: frozenset[bytes]


Snapshot = dict[str, dict[bytes, list[Any]]]
"""folder -> Message-ID -> [RemoteMsg or LocalMsg, ...] (a list, so duplicates show)."""


@dataclass
class Verdict:
    problems: list[str] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)
    messages: int = 0
    folders: int = 0

    @property
    def ok(self) -> bool:
        return not self.problems

    def to_json(self) -> dict[str, Any]:
        return {
            "ok": self.ok,
            "problems": self.problems[:20],
            "notes": self.notes[:20],
            "messages": self.messages,
            "folders": self.folders,
        }


def remote_snapshot(client: Any, folders: list[str] | None = None) -> Snapshot:
    """Message-ID -> RemoteMsg per folder, read-only, from a logged-in IMAPClient."""
    if folders is None:
        folders = [name for _flags, _delim, name in client.list_folders()]
    snap: Snapshot = {}
    for folder in folders:
        info = client.select_folder(folder, readonly=True)
        msgs: dict[bytes, list[Any]] = {}
        uids = sorted(client.search("ALL")) if info.get(b"EXISTS", 0) else []
        data: dict[int, Any] = {}
        for i in range(0, len(uids), 2000):  # Dovecot limits the length of a command line
            data.update(
                client.fetch(
                    uids[i : i + 2000],
                    ["FLAGS", "RFC822.SIZE", "BODY.PEEK[HEADER.FIELDS (MESSAGE-ID)]"],
                )
            )
        if data:
            for uid, d in data.items():
                hdr = d.get(b"BODY[HEADER.FIELDS (MESSAGE-ID)]", b"")
                m = _MSGID.search(hdr)
                key = m.group(1) if m else f"<no-id-uid-{uid}>".encode()
                flags = frozenset(f for f in d[b"FLAGS"] if f in FLAG_LETTERS)
                msgs.setdefault(key, []).append(RemoteMsg(uid, flags, d[b"RFC822.SIZE"]))
        snap[folder] = msgs
    return snap


def _read_msgid(path: Path) -> bytes:
    with path.open("rb") as f:
        head = f.read(16384)
    end = head.find(b"\n\n")
    m = _MSGID.search(head if end < 0 else head[: end + 1])
    return m.group(1) if m else f"<no-id-{path.name}>".encode()


def local_flags(name: str, subdir: str) -> frozenset[bytes]:
    _, sep, info = name.partition(":2,")
    if not sep:
        return frozenset()
    return frozenset(LETTER_FLAGS[c] for c in info if c in LETTER_FLAGS)


def local_snapshot(root: Path) -> Snapshot:
    """Every Maildir folder under ``root`` (a directory with ``cur/``), named by its path."""
    snap: Snapshot = {}
    if not root.is_dir():
        return snap
    for dirpath, dirnames, _files in os.walk(root):
        dirnames[:] = sorted(d for d in dirnames if not d.startswith("."))
        here = Path(dirpath)
        if "cur" in dirnames and "new" in dirnames:
            folder = here.relative_to(root).as_posix()
            msgs: dict[bytes, list[Any]] = {}
            for sub in ("new", "cur"):
                for entry in os.scandir(here / sub):
                    if entry.name.startswith(".") or not entry.is_file():
                        continue
                    p = Path(entry.path)
                    msgs.setdefault(_read_msgid(p), []).append(
                        LocalMsg(p, local_flags(entry.name, sub))
                    )
            snap[folder] = msgs
            dirnames[:] = [d for d in dirnames if d not in ("cur", "new", "tmp")]
    return snap


def _sample(msgs: dict[bytes, list[Any]], n: int = 3) -> list[bytes]:
    keys = sorted(msgs, key=lambda k: hashlib.sha1(k).digest())[:n]
    if msgs:
        biggest = max(msgs, key=lambda k: msgs[k][0].size)
        if biggest not in keys:
            keys.append(biggest)
    return keys


def compare(
    client: Any,
    remote: Snapshot,
    local: Snapshot,
    *,
    check_flags: bool = True,
) -> Verdict:
    """Check ``local`` against ``remote``; ``client`` (logged in) serves the byte sample."""
    v = Verdict()
    for folder, rmsgs in remote.items():
        if not rmsgs:
            continue
        v.folders += 1
        lmsgs = local.get(folder)
        if lmsgs is None:
            v.problems.append(f"{folder}: missing locally ({len(rmsgs)} messages on the server)")
            continue
        nr = sum(len(x) for x in rmsgs.values())
        nl = sum(len(x) for x in lmsgs.values())
        v.messages += nl
        if nr != nl:
            v.problems.append(f"{folder}: {nl} messages locally, {nr} on the server")
        missing = [k for k in rmsgs if k not in lmsgs]
        extra = [k for k in lmsgs if k not in rmsgs]
        dups = [k for k, x in lmsgs.items() if len(x) > 1]
        for what, keys in (
            ("missing locally", missing),
            ("only local", extra),
            ("duplicated locally", dups),
        ):
            if keys:
                v.problems.append(f"{folder}: {len(keys)} {what}, e.g. {keys[0].decode()}")
        if check_flags:
            wrong = [k for k, x in rmsgs.items() if k in lmsgs and lmsgs[k][0].flags != x[0].flags]
            if wrong:
                k = wrong[0]
                v.problems.append(
                    f"{folder}: flags differ on {len(wrong)} messages, e.g. {k.decode()}: "
                    f"server {sorted(rmsgs[k][0].flags)} local {sorted(lmsgs[k][0].flags)}"
                )
        sample = [k for k in _sample(rmsgs) if k in lmsgs]
        if sample:
            client.select_folder(folder, readonly=True)
            bodies = client.fetch([rmsgs[k][0].uid for k in sample], ["BODY.PEEK[]"])
            for k in sample:
                want = bodies[rmsgs[k][0].uid][b"BODY[]"].replace(b"\r\n", b"\n")
                got = lmsgs[k][0].path.read_bytes()
                if got == want:
                    continue
                if b"\r\n" in got and got.replace(b"\r\n", b"\n") == want:
                    _note(v, "stores CRLF line ends")
                    continue
                added = added_headers(got.replace(b"\r\n", b"\n"), want)
                if added is not None:
                    _note(v, "adds header lines of its own: " + ", ".join(added))
                    continue
                v.problems.append(
                    f"{folder}: {k.decode()} differs from the server's copy "
                    f"({len(got)} bytes locally, {len(want)} on the server in LF form)"
                )
    for folder, lmsgs in local.items():
        if lmsgs and not remote.get(folder):
            n = sum(len(x) for x in lmsgs.values())
            v.problems.append(f"{folder}: {n} local messages, folder empty or absent on server")
    return v


def added_headers(got: bytes, want: bytes) -> list[str] | None:
    """The names of header fields ``got`` has on top of ``want``, if that is the only difference.

    mbsync puts an ``X-TUID:`` line into every message it copies, fetchmail a ``Received:``;
    such a copy is not a mis-sync but it is not byte-exact either, and the report says so.
    """
    g_head, sep_g, g_body = got.partition(b"\n\n")
    w_head, sep_w, w_body = want.partition(b"\n\n")
    if g_body != w_body or sep_g != sep_w:
        return None
    g_lines, w_lines = g_head.split(b"\n"), w_head.split(b"\n")
    extra: list[str] = []
    i = 0
    for line in g_lines:
        if i < len(w_lines) and line == w_lines[i]:
            i += 1
        elif line[:1] in (b" ", b"\t"):
            continue  # continuation of an added field
        else:
            extra.append(line.split(b":", 1)[0].decode("ascii", "replace"))
    if i != len(w_lines) or not extra:
        return None
    return sorted(set(extra))


def _note(v: Verdict, text: str) -> None:
    if text not in v.notes:
        v.notes.append(text)


def flat(snap: Snapshot) -> Counter[bytes]:
    """All Message-IDs of a snapshot with their multiplicity."""
    c: Counter[bytes] = Counter()
    for msgs in snap.values():
        for k, x in msgs.items():
            c[k] += len(x)
    return c
