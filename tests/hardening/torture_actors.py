"""The two actors of the torture test, each run as a real process.

``python -m tests.hardening.torture_actors reader ROOT FOLDERS SEED SECONDS LOG``
    works in the Maildir like mutt and notmuch do: toggles flags by renaming files in cur/,
    reads new mail (new/ to cur/ with S), saves to another folder the mutt way (a copy in
    the target at once, the original deleted a moment later), moves the notmuch way (a
    rename into the other folder, same name) and deletes files.

``python -m tests.hardening.torture_actors server PORT USER PASSWORD FOLDERS SEED SECONDS LOG``
    is another IMAP client (the phone): flags and unflags, delivers new mail with APPEND
    and expunges.

Each writes one JSON line per completed action to LOG: ``op`` and the Message-ID ``mid``
(plus ``folder`` and ``uid`` for a delivery), so the test can tell who deleted what. An
action whose file or message disappeared under it (syncd renamed it first) is simply not
done, as mutt reports "Unable to write" and moves on. Both stop by themselves after
SECONDS, finishing what they started (the reader's pending deletes of saved originals).
"""

from __future__ import annotations

import json
import os
import random
import re
import sys
import time
from pathlib import Path
from typing import Any

_MID = re.compile(rb"^Message-ID:\s*(<[^>]+>)", re.IGNORECASE | re.MULTILINE)


def message_id(raw: bytes) -> str | None:
    m = _MID.search(raw.split(b"\n\n", 1)[0])
    return m.group(1).decode() if m else None


def new_message(mid: str, n: int) -> bytes:
    return (
        f"From: Phone <phone@example.org>\r\nTo: bob@example.org\r\nSubject: delivered {n}\r\n"
        f"Date: Tue, 03 Mar 2026 10:00:00 +0000\r\nMessage-ID: {mid}\r\n\r\nbody {n}\r\n"
    ).encode()


class Log:
    def __init__(self, path: str) -> None:
        self._f = Path(path).open("a", encoding="utf-8")  # noqa: SIM115 - lives as long as the actor

    def __call__(self, **fields: Any) -> None:
        self._f.write(json.dumps(fields) + "\n")
        self._f.flush()


def _flags_of(name: str) -> str:
    return name.split(":2,", 1)[1] if ":2," in name else ""


def _with_flags(name: str, letters: str) -> str:
    return f"{name.split(':', 1)[0]}:2,{''.join(sorted(set(letters)))}"


def reader(root: str, folders: str, seed: str, seconds: str, log_path: str) -> None:
    rng = random.Random(int(seed))
    names = folders.split(",")
    log = Log(log_path)
    # (when, folder, original, mid): mutt's delete of a saved original on its next sync.
    pending: list[tuple[float, str, Path, str]] = []
    deadline = time.monotonic() + float(seconds)
    counter = 0

    def files(folder: str) -> list[Path]:
        out: list[Path] = []
        for sub in ("new", "cur"):
            try:
                out += [Path(root, folder, sub, n) for n in os.listdir(Path(root, folder, sub))]
            except FileNotFoundError:
                pass
        return out

    def finish_pending(now: float) -> None:
        for item in [p for p in pending if p[0] <= now]:
            pending.remove(item)
            _, folder, original, mid = item
            try:
                original.unlink()
            except FileNotFoundError:
                # Renamed meanwhile (a flag from the server, or ours): mutt's next sync of
                # the folder finds the message by its new name and deletes that.
                key = original.name.split(":", 1)[0]
                for path in files(folder):
                    if path.name.split(":", 1)[0] == key:
                        path.unlink(missing_ok=True)
            log(op="saved", mid=mid)

    while time.monotonic() < deadline:
        finish_pending(time.monotonic())
        folder = rng.choice(names)
        candidates = files(folder)
        if not candidates:
            continue
        path = rng.choice(candidates)
        if any(p[2].name.split(":", 1)[0] == path.name.split(":", 1)[0] for p in pending):
            continue  # marked deleted in mutt: not touched again
        try:
            mid = message_id(path.read_bytes())
        except FileNotFoundError:
            continue
        if mid is None:
            continue
        roll = rng.random()
        try:
            if path.parent.name == "new":
                # Reading it: mutt moves it to cur/ and marks it seen.
                os.rename(path, path.parent.parent / "cur" / _with_flags(path.name, "S"))
                log(op="read", mid=mid)
            elif roll < 0.90:
                letters = _flags_of(path.name)
                flag = rng.choice("FFFRS")
                letters = letters.replace(flag, "") if flag in letters else letters + flag
                os.rename(path, path.with_name(_with_flags(path.name, letters)))
                log(op="flag", mid=mid)
            elif roll < 0.94 and len(names) > 1:
                target = rng.choice([n for n in names if n != folder])
                counter += 1
                data = path.read_bytes()
                unique = f"{int(time.time())}.R{counter}P{os.getpid()}.reader"
                tmp = Path(root, target, "tmp", unique)
                tmp.write_bytes(data)
                os.rename(tmp, Path(root, target, "cur", f"{unique}:2,{_flags_of(path.name)}"))
                pending.append((time.monotonic() + rng.uniform(0.1, 1.5), folder, path, mid))
                log(op="save", mid=mid, folder=target)
            elif roll < 0.97 and len(names) > 1:
                target = rng.choice([n for n in names if n != folder])
                os.rename(path, Path(root, target, "cur", path.name))
                log(op="move", mid=mid, folder=target)
            else:
                path.unlink()
                log(op="delete", mid=mid)
        except FileNotFoundError:
            continue  # syncd renamed it first: "Unable to write", as in mutt
        time.sleep(rng.uniform(0.002, 0.015))
    finish_pending(float("inf"))


def server(
    port: str, user: str, password: str, folders: str, seed: str, seconds: str, log_path: str
) -> None:
    from imapclient import IMAPClient

    rng = random.Random(int(seed) + 1)
    names = folders.split(",")
    log = Log(log_path)
    deadline = time.monotonic() + float(seconds)
    n = 0
    with IMAPClient("127.0.0.1", port=int(port), ssl=False, timeout=30) as c:
        c.login(user, password)
        while time.monotonic() < deadline:
            folder = rng.choice(names)
            roll = rng.random()
            if roll < 0.25:
                n += 1
                mid = f"<delivered{n}.{seed}@example.org>"
                resp = c.append(folder, new_message(mid, n))
                m = re.search(rb"APPENDUID \d+ (\d+)", resp)
                log(op="deliver", mid=mid, folder=folder, uid=int(m.group(1)) if m else None)
                continue
            c.select_folder(folder)
            uids = c.search("ALL")
            if not uids:
                continue
            uid = rng.choice(uids)
            try:
                got = c.fetch([uid], ["BODY.PEEK[HEADER.FIELDS (MESSAGE-ID)]"]).get(uid, {})
                header = next((v for k, v in got.items() if k.startswith(b"BODY")), None)
                if not isinstance(header, bytes):
                    continue  # expunged by syncd a moment ago (Dovecot answers NIL)
                mid = message_id(header + b"\n")
                if roll < 0.93:
                    flag = rng.choice([b"\\Flagged", b"\\Seen", b"\\Answered", b"$label1"])
                    flags = c.get_flags([uid]).get(uid, ())
                    if flag in flags:
                        c.remove_flags([uid], [flag])
                    else:
                        c.add_flags([uid], [flag])
                    log(op="flag", mid=mid)
                else:
                    c.add_flags([uid], [b"\\Deleted"])
                    c.uid_expunge([uid])
                    log(op="expunge", mid=mid)
            except IMAPClient.Error:
                continue  # it went away meanwhile: another client's expunge
            time.sleep(rng.uniform(0.005, 0.03))


if __name__ == "__main__":
    role, args = sys.argv[1], sys.argv[2:]
    if role == "reader":
        reader(*args)
    else:
        server(*args)
