"""Torture: a mail reader, another IMAP client and syncd, all at once, as real processes.

The reader (tests/hardening/torture_actors.py) renames, saves, moves and deletes files in
the Maildir without pause, the way mutt and notmuch do; the server client flags, delivers
and expunges. Meanwhile `syncd sync` runs in a loop (or `syncd run` runs as the daemon).
Then everyone stops, syncd syncs until it has nothing left to do, and the two sides must
tell one story:

- each message is there once on each side, in the same folder, with the same flags
  (save one case the README owns up to: a mutt save racing a server change may leave
  the original next to its copy, on both sides alike);
- every message still exists unless the reader deleted it or the server client expunged
  it (a deleted message may come back when the other side changed it meanwhile: changes
  win over deletions), and nothing exists that nobody created;
- nothing was expunged on the server that the reader had not deleted: a message the
  reader never moved or deleted and the server client never expunged still has the very
  UID it started with (an expunge followed by a re-upload would give it a new one).

Seeded: the actors' choices come from ``SYNCD_TORTURE_SEED`` (default: the parameter), and
a failure names the seed. The timing of three processes is not reproducible, so the
seeds are fixed and the test runs each for ~20 s.
"""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import sys
import time
from collections import Counter, defaultdict
from pathlib import Path

import pytest

from tests.integration.conftest import Account

pytestmark = [pytest.mark.dovecot, pytest.mark.slow]

REPO = Path(__file__).resolve().parents[2]
FOLDERS = ("INBOX", "Archive", "Lists/python")
SIZES = {"INBOX": 500, "Archive": 200, "Lists/python": 200}
SECONDS = float(os.environ.get("SYNCD_TORTURE_SECONDS", "20"))
_MID = re.compile(rb"^Message-ID:\s*(<[^>]+>)", re.IGNORECASE | re.MULTILINE)


def _mid(raw: bytes) -> str:
    m = _MID.search(raw.split(b"\n\n", 1)[0])
    assert m, raw[:200]
    return m.group(1).decode()


def _message(folder: str, i: int) -> bytes:
    return (
        f"From: Alice <alice@example.org>\r\nTo: bob@example.org\r\nSubject: {folder} {i}\r\n"
        f"Date: Mon, 02 Mar 2026 10:00:00 +0000\r\n"
        f"Message-ID: <t{i}.{folder.replace('/', '-')}@example.org>\r\n\r\nbody {i}\r\n"
    ).encode()


def _local(account: Account) -> dict[str, list[tuple[str, str]]]:
    """Message-ID -> [(folder, Maildir flag letters)] for every local file."""
    out: dict[str, list[tuple[str, str]]] = defaultdict(list)
    for folder in FOLDERS:
        for path in account.local_files(folder):
            letters = path.name.split(":2,", 1)[1] if ":2," in path.name else ""
            out[_mid(path.read_bytes())].append((folder, "".join(sorted(letters))))
    return out


_LETTERS = {
    b"\\Draft": "D",
    b"\\Flagged": "F",
    b"\\Answered": "R",
    b"\\Seen": "S",
    b"\\Deleted": "T",
}


def _remote(account: Account) -> dict[str, list[tuple[str, int, str]]]:
    """Message-ID -> [(folder, UID, flag letters)] on the server."""
    out: dict[str, list[tuple[str, int, str]]] = defaultdict(list)
    with account.server.imap(account.user) as c:  # type: ignore[attr-defined]
        for folder in FOLDERS:
            c.select_folder(folder, readonly=True)
            uids = c.search("ALL")
            rows = c.fetch(uids, ["BODY.PEEK[HEADER]", "FLAGS"]) if uids else {}
            for uid, row in rows.items():
                letters = "".join(sorted(_LETTERS[f] for f in row[b"FLAGS"] if f in _LETTERS))
                out[_mid(row[b"BODY[HEADER]"].replace(b"\r\n", b"\n"))].append(
                    (folder, uid, letters)
                )
    return out


def _read_log(path: Path) -> list[dict[str, object]]:
    if not path.exists():
        return []
    return [json.loads(line) for line in path.read_text().splitlines() if line.strip()]


def _syncd(account: Account, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "syncd", args[0], "-c", str(account.config), *args[1:]],
        capture_output=True,
        text=True,
        cwd=REPO,
        timeout=120,
    )


@pytest.fixture
def account(dovecot: object, mail_user: object, tmp_path: Path) -> Account:
    (tmp_path / "acct").mkdir()
    return Account(dovecot, mail_user, tmp_path / "acct")


@pytest.mark.parametrize(("variant", "default_seed"), [("sync-loop", 1), ("daemon", 2)])
def test_reader_server_client_and_syncd_at_once(
    account: Account, tmp_path: Path, variant: str, default_seed: int
) -> None:
    seed = int(os.environ.get("SYNCD_TORTURE_SEED", default_seed))
    why = f"torture {variant}, seed {seed} (rerun with SYNCD_TORTURE_SEED={seed})"
    server, user = account.server, account.user
    uids = server.fill(  # type: ignore[attr-defined]
        user,
        {
            f: [(_message(f, i), [b"\\Seen"] if i % 4 else []) for i in range(n)]
            for f, n in SIZES.items()
        },
    )
    start_uid = {
        _mid(_message(f, i).replace(b"\r\n", b"\n")): (f, uids[f][i])
        for f, n in SIZES.items()
        for i in range(n)
    }
    account.extra = "      idle: [INBOX]\n      poll_interval: 5\n" if variant == "daemon" else ""
    account.write_config()
    first = _syncd(account, "sync")
    assert first.returncode == 0, first.stderr
    universe = set(start_uid)

    reader_log, server_log = tmp_path / "reader.jsonl", tmp_path / "server.jsonl"
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    actors = [
        subprocess.Popen(
            [
                sys.executable,
                "-m",
                "tests.hardening.torture_actors",
                "reader",
                str(account.maildir),
                ",".join(FOLDERS),
                str(seed),
                str(SECONDS),
                str(reader_log),
            ],
            cwd=REPO,
            env=env,
        ),
        subprocess.Popen(
            [
                sys.executable,
                "-m",
                "tests.hardening.torture_actors",
                "server",
                str(server.imap_port),  # type: ignore[attr-defined]
                user.name,  # type: ignore[attr-defined]
                user.password,  # type: ignore[attr-defined]
                ",".join(FOLDERS),
                str(seed),
                str(SECONDS),
                str(server_log),
            ],
            cwd=REPO,
            env=env,
        ),
    ]
    runs: list[subprocess.CompletedProcess[str]] = []
    daemon: subprocess.Popen[str] | None = None
    try:
        if variant == "daemon":
            # Its debug log stays in tmp_path, to read when a seed fails.
            with (tmp_path / "daemon.log").open("w") as daemon_log:
                daemon = subprocess.Popen(
                    [sys.executable, "-m", "syncd", "run", "-v", "-c", str(account.config)],
                    cwd=REPO,
                    stdout=daemon_log,
                    stderr=subprocess.STDOUT,
                    text=True,
                )
            while any(a.poll() is None for a in actors):
                time.sleep(0.2)
            daemon.send_signal(signal.SIGTERM)
            daemon.wait(timeout=60)
            out = (tmp_path / "daemon.log").read_text()
            at = out.find("Traceback") if "Traceback" in out else len(out)
            tail = out[max(0, at - 10000) :][:20000]  # what led to it
            assert daemon.returncode == 0, f"{why}: daemon exited {daemon.returncode}\n{tail}"
            assert "Traceback" not in out, f"{why}\n{tail}"
        else:
            with (tmp_path / "syncs.log").open("w") as trace:
                while any(a.poll() is None for a in actors):
                    runs.append(_syncd(account, "sync", "-v"))
                    trace.write(f"--- run {len(runs)}\n{runs[-1].stdout}{runs[-1].stderr}")
                    trace.flush()
    finally:
        for proc in actors:
            if proc.poll() is None:
                proc.kill()
            proc.wait()
        if daemon is not None and daemon.poll() is None:
            daemon.kill()
            daemon.wait()
    assert all(a.returncode == 0 for a in actors), why
    for r in runs:
        assert r.returncode == 0 and "Traceback" not in r.stderr, f"{why}\n{r.stdout}{r.stderr}"

    # Quiet now: syncd must settle, and then have nothing more to do.
    for _ in range(4):
        settle = _syncd(account, "sync")
        assert settle.returncode == 0, f"{why}\n{settle.stdout}{settle.stderr}"
        if not settle.stdout.strip():
            break
    else:
        pytest.fail(f"{why}: syncd did not settle: {settle.stdout}")

    reader_ops = _read_log(reader_log)
    server_ops = _read_log(server_log)
    assert len(reader_ops) > 200 and len(server_ops) > 50, why  # the actors really worked
    deleted = {str(o["mid"]) for o in reader_ops if o["op"] == "delete"}
    moved = {str(o["mid"]) for o in reader_ops if o["op"] in ("save", "move")}
    expunged = {str(o["mid"]) for o in server_ops if o["op"] == "expunge"}
    for o in server_ops:
        if o["op"] == "deliver":
            universe.add(str(o["mid"]))
            if o.get("uid") is not None:
                start_uid[str(o["mid"])] = (str(o["folder"]), int(o["uid"]))  # type: ignore[call-overload]

    local, remote = _local(account), _remote(account)
    twice_local = {m: w for m, w in local.items() if len(w) > 1}
    twice_remote = {m: w for m, w in remote.items() if len(w) > 1}

    def history(mids: object) -> str:
        return "\n".join(
            f"{m}: reader {[o['op'] for o in reader_ops if o['mid'] == m]}, "
            f"server {[o['op'] for o in server_ops if o['mid'] == m]}"
            for m in sorted(mids)  # type: ignore[call-overload]
        )

    # The one duplicate the README owns up to ("What can still surprise you"): mutt's save
    # whose two halves (the copy, then the original's deletion) reached syncd in
    # different syncs while the server changed the original. The change wins over the
    # deletion, so the original comes back next to the copy: twice, never lost.
    saved = {str(o["mid"]) for o in reader_ops if o["op"] == "save"}
    changed_remotely = {str(o["mid"]) for o in server_ops if o["op"] == "flag"}
    owned_up = {
        m
        for m, w in twice_local.items()
        if m in saved and m in changed_remotely and len(w) == 2 and len(remote.get(m, ())) == 2
    }
    twice_local = {m: w for m, w in twice_local.items() if m not in owned_up}
    twice_remote = {m: w for m, w in twice_remote.items() if m not in owned_up}
    assert not twice_local, f"{why}: duplicated locally: {twice_local}\n{history(twice_local)}"
    assert not twice_remote, f"{why}: duplicated on the server: {twice_remote}"
    assert len(owned_up) <= 3, f"{why}: too many saves came back twice: {history(owned_up)}"
    local_view = {m: sorted(w) for m, w in local.items()}
    remote_view = {m: sorted((f, letters) for f, _, letters in w) for m, w in remote.items()}
    differ = {
        m: (local_view.get(m), remote_view.get(m))
        for m in set(local_view) | set(remote_view)
        if local_view.get(m) != remote_view.get(m)
    }
    assert not differ, f"{why}: the sides disagree (local, server): {differ}"
    present = set(local_view)
    assert present <= universe, f"{why}: messages nobody created: {present - universe}"
    lost = universe - present - deleted - expunged
    assert not lost, f"{why}: lost without anyone deleting them: {sorted(lost)}"
    # Nothing expunged behind the reader's back: the untouched keep their UIDs.
    untouched = universe - deleted - moved - expunged
    changed_uid = {
        m: (start_uid[m], (remote[m][0][0], remote[m][0][1]))
        for m in untouched
        if m in start_uid and (remote[m][0][0], remote[m][0][1]) != start_uid[m]
    }
    assert not changed_uid, (
        f"{why}: expunged on the server and uploaded again although the reader never "
        f"deleted or moved them: {changed_uid}"
    )
    counts = Counter(str(o["op"]) for o in reader_ops)
    print(f"{why}: reader {dict(counts)}, server {Counter(str(o['op']) for o in server_ops)}")
    if owned_up:
        print(f"{why}: saves that came back next to their copy:\n{history(owned_up)}")
