"""Server profiles side by side with mbsync: the same mailbox, the same relay, both tools.

    .venv/bin/python -m bench.server_profiles_mbsync [--messages N] [--reps R]
        [--profiles exchange,bare] [--json PATH] [--work DIR] [--keep]

For each profile of tests/servers/profiles.py: one private Dovecot advertising the profile's
capabilities, behind the profile's :class:`CapabilityGuard` (the relay the test suite uses: it
refuses every command the profile does not advertise and strips APPENDUID/COPYUID without
UIDPLUS). syncd and mbsync both connect through that relay, and the relay counts the bytes the
server sends, for either tool alike.

A template user holds N tiny messages (9/10 in INBOX, 1/10 in Archive; about 30% \\Seen and 5%
\\Flagged); per repetition each tool gets a fresh clone of it (``bench.server.BenchServer``) and
an empty Maildir, and runs, taking turns (the order rotates with the repetition):

- ``initial``: the initial sync;
- ``first``: the first resync after it (nothing changed; the initial sync wrote the Maildir);
- ``noop``: a no-op resync in the steady state;
- ``server``: a resync after another client changed the server (scenario 3 of the main bench:
  1% of the messages get \\Seen or \\Flagged toggled, 10 are expunged, 20 delivered);
- ``local``: a resync after local changes (1% marked seen by renaming, 10 files deleted, one new
  file in INBOX/new); the server is then checked for all three.

Before every resync the tool's Maildir has been left alone for ``SETTLE`` (2.1) seconds, as
between two runs from cron: mbsync sleeps when a directory changed within the last second, and
syncd trusts its saved stamp of a folder (and plans it from the server's delta alone) only when
the directories had not changed for 2 s before the sync that saved it. After every run the
Maildir is compared with the server (``bench/verify.py``: messages by Message-ID, every flag, a
byte sample); a run that does not match is marked in the table.

Prints a Markdown table: per profile and step, the medians of bytes from the server and wall
time for each tool, and the syncd/mbsync ratios (taken per repetition, then median and range).
Commands the relay refused are reported per tool: that a tool needed them is a finding.
"""

from __future__ import annotations

import argparse
import json
import os
import random
import shutil
import statistics
import sys
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from bench import anchors, measure, scenarios, verify
from bench.anchors import Login
from bench.scenarios import Seat
from bench.server import BenchServer
from tests.servers.corpus import make_message
from tests.servers.profiles import PROFILES, CapabilityGuard, Profile

TOOLS = ("syncd", "mbsync")
STEPS = {
    "initial": "initial sync",
    "first": "first resync after it (no change)",
    "noop": "no-op resync (steady state)",
    "server": "after server changes (1% flags, 20 new, 10 expunged)",
    "local": "after local changes (1% seen by rename, 10 deleted, 1 new file)",
}


@dataclass
class Cell:
    """One run of one tool: wall seconds, bytes from the server, verdict."""

    wall: float
    cpu: float
    down: int
    rc: int
    problems: list[str] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)
    refused: list[str] = field(default_factory=list)
    retry: dict[str, Any] | None = None
    """When the run failed: a second run's wall, bytes and verdict (does the tool recover?)."""

    @property
    def ok(self) -> bool:
        return self.rc == 0 and not self.problems


def make_template(n: int, seed: int) -> dict[str, list[tuple[bytes, tuple[bytes, ...]]]]:
    rng = random.Random(seed)
    counts = {"INBOX": n - n // 10, "Archive": n // 10}
    corpus: dict[str, list[tuple[bytes, tuple[bytes, ...]]]] = {}
    i = 0
    for folder, count in counts.items():
        msgs = []
        for _ in range(count):
            flags: list[bytes] = []
            if rng.random() < 0.30:
                flags.append(b"\\Seen")
            if rng.random() < 0.05:
                flags.append(b"\\Flagged")
            msgs.append((make_message(rng, i, size_class="tiny"), tuple(flags)))
            i += 1
        corpus[folder] = msgs
    return corpus


def _fill(srv: BenchServer, corpus: dict[str, list[tuple[bytes, tuple[bytes, ...]]]]) -> None:
    """Straight into the template user's Maildir (LAYOUT=fs): the poorer profiles have no
    MULTIAPPEND. A SELECT of each folder then makes Dovecot index it, before any clone."""
    user = srv.template
    assert user is not None
    letters = {b"\\Seen": "S", b"\\Flagged": "F"}
    for folder, msgs in corpus.items():
        d = user.maildir if folder == "INBOX" else user.maildir / folder
        for sub in ("cur", "new", "tmp"):
            (d / sub).mkdir(parents=True, exist_ok=True)
        for i, (raw, flags) in enumerate(msgs):
            info = "".join(sorted(letters[f] for f in flags))
            name = f"{1700000000 + i}.M{i}P1.bench:2,{info}"
            (d / "cur" / name).write_bytes(raw.replace(b"\r\n", b"\n"))
    uid, gid = srv.dovecot.mail_uid, srv.dovecot.mail_gid
    for path in [user.maildir, *user.maildir.rglob("*")]:
        os.chown(path, uid, gid)
    with srv.dovecot.imap(user, timeout=600) as c:
        for folder in corpus:
            c.select_folder(folder, readonly=True)
    srv.cpu.idle()


def _quiet(guard: CapabilityGuard, timeout: float = 5.0) -> None:
    """Wait until the relay has closed every connection, so its count is complete."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        with guard._lock:
            if not guard._socks:
                return
        time.sleep(0.01)


def _run(srv: BenchServer, guard: CapabilityGuard, seat: Seat) -> Cell:
    _quiet(guard)
    down0, refused0 = guard.bytes_to_client, len(guard.violations)
    r = scenarios.timed(srv, seat)
    _quiet(guard)
    return Cell(
        wall=r.wall,
        cpu=r.cpu,
        down=guard.bytes_to_client - down0,
        rc=r.rc,
        problems=[f"exit {r.rc}: {r.stderr.strip()[-300:]}"] if r.rc else [],
        refused=guard.violations[refused0:],
    )


def _verify(srv: BenchServer, seat: Seat, cell: Cell) -> None:
    v = scenarios.check(srv, seat)
    cell.problems += v.problems
    cell.notes += v.notes


def _new_local_file(seat: Seat, rep: int) -> bytes:
    """One new message in INBOX/new, as a mail reader's "save a copy" would leave it."""
    raw = make_message(random.Random(rep), 90_000_000 + rep, size_class="tiny")
    raw = raw.replace(b"\r\n", b"\n")
    path = seat.tool.maildir / "INBOX" / "new" / f"{int(time.time())}.M{rep}P1.bench-local"
    path.write_bytes(raw)
    msgid = verify._MSGID.search(raw)
    assert msgid is not None
    return msgid.group(1)


def _check_uploaded(srv: BenchServer, seat: Seat, msgid: bytes, cell: Cell) -> None:
    with srv.dovecot.imap(seat.user, timeout=300) as c:
        remote = verify.remote_snapshot(c, ["INBOX"])
    if msgid not in remote["INBOX"]:
        cell.problems.append(f"server: the new local file {msgid.decode()} was not uploaded")


def run_profile(
    profile: Profile, opts: scenarios.Options, base: Path
) -> dict[str, dict[str, list[Cell]]]:
    """results[step][tool] = one Cell per repetition."""
    results: dict[str, dict[str, list[Cell]]] = {s: {t: [] for t in TOOLS} for s in STEPS}
    with BenchServer(base, imap_capability=profile.capability) as srv:
        guard = CapabilityGuard(srv.dovecot, profile)
        try:
            t0 = time.perf_counter()
            srv.template = srv.dovecot.add_user()
            _fill(srv, make_template(opts.messages, opts.seed))
            scenarios.say(f"[{profile.name}] template filled in {time.perf_counter() - t0:.1f} s")
            for rep in range(opts.reps):
                order = scenarios.rotate(list(TOOLS), rep)
                seats: dict[str, Seat] = {}
                for t in order:
                    user = srv.clone()
                    login = Login(srv.host, guard.port, user.name, user.password)
                    tool = anchors.IMAP_TOOLS[t](base / f"rep{rep}" / t, login)
                    seats[t] = Seat(tool, user)
                _rep(srv, guard, profile, opts, rep, order, seats, results)
                if not opts.keep:
                    shutil.rmtree(base / f"rep{rep}", ignore_errors=True)
        finally:
            guard.close()
    return results


def _rep(
    srv: BenchServer,
    guard: CapabilityGuard,
    profile: Profile,
    opts: scenarios.Options,
    rep: int,
    order: list[str],
    seats: dict[str, Seat],
    results: dict[str, dict[str, list[Cell]]],
) -> None:
    def step(name: str, t: str, check: Callable[[Cell], None] | None = None) -> Cell:
        cell = _run(srv, guard, seats[t])
        _verify(srv, seats[t], cell)
        if check is not None:
            check(cell)
        results[name][t].append(cell)
        state = "ok" if cell.ok else f"FAILED {cell.problems[:1]}"
        refused = f" refused {cell.refused[:2]}" if cell.refused else ""
        scenarios.say(
            f"[{profile.name}] rep {rep + 1} {name:8} {t:7} {cell.wall:7.3f} s "
            f"{cell.down:9} bytes  {state}{refused}"
        )
        if not cell.ok:
            # Does a second run finish the job? Its cost is reported beside the first's.
            again = _run(srv, guard, seats[t])
            _verify(srv, seats[t], again)
            if check is not None:
                check(again)
            cell.retry = {
                "wall": again.wall,
                "down": again.down,
                "ok": again.ok,
                "problems": again.problems[:3],
            }
            scenarios.say(
                f"  second run: {again.wall:.3f} s {again.down} bytes "
                f"{'ok' if again.ok else again.problems[:1]}"
            )
        return cell

    for name in ("initial", "first", "noop"):
        for t in order:
            step(name, t)
    for t in order:
        scenarios.server_changes(srv, seats[t].user, opts, salt=rep)
    for t in order:
        step("server", t)
    plans = {}
    for t in order:
        seen, deleted = scenarios.local_changes(seats[t], opts, salt=rep)
        plans[t] = (seen, deleted, _new_local_file(seats[t], rep))
    for t in order:

        def pushed(cell: Cell, t: str = t) -> None:
            seen, deleted, new = plans[t]
            v = verify.Verdict()
            scenarios._check_pushed(srv, seats[t], seen, deleted, v)
            cell.problems += v.problems
            _check_uploaded(srv, seats[t], new, cell)

        step("local", t, pushed)


# -- report ------------------------------------------------------------------------------------


def _med(values: list[float]) -> float:
    return statistics.median(values) if values else float("nan")


def _ratio(a: list[float], b: list[float]) -> str:
    rs = [x / y for x, y in zip(a, b, strict=True) if y > 0]
    if not rs:
        return "-"
    return f"**{statistics.median(rs):.2f}x** ({min(rs):.2f}–{max(rs):.2f})"


def _kb(n: float) -> str:
    return f"{n / 1000:.1f} kB" if n < 10_000_000 else f"{n / 1e6:.1f} MB"


def table(all_results: dict[str, dict[str, dict[str, list[Cell]]]], n: int) -> str:
    out = [
        f"| profile | step ({n} messages) | syncd bytes | mbsync bytes | syncd/mbsync bytes "
        "| syncd wall s | mbsync wall s | syncd/mbsync wall | verified |",
        "| --- | --- | --- | --- | --- | --- | --- | --- | --- |",
    ]
    for prof, res in all_results.items():
        for s, what in STEPS.items():
            sy, mb = res[s]["syncd"], res[s]["mbsync"]
            if not sy or not mb:
                continue
            ok = [sum(c.ok for c in cs) for cs in (sy, mb)]
            verified = "yes" if ok == [len(sy), len(mb)] else f"syncd {ok[0]}/{len(sy)}, "
            if verified != "yes":
                verified += f"mbsync {ok[1]}/{len(mb)}"
            out.append(
                f"| {prof} | {what} | {_kb(_med([c.down for c in sy]))} "
                f"| {_kb(_med([c.down for c in mb]))} "
                f"| {_ratio([c.down for c in sy], [c.down for c in mb])} "
                f"| {_med([c.wall for c in sy]):.3f} | {_med([c.wall for c in mb]):.3f} "
                f"| {_ratio([c.wall for c in sy], [c.wall for c in mb])} | {verified} |"
            )
    return "\n".join(out)


def findings(all_results: dict[str, dict[str, dict[str, list[Cell]]]]) -> list[str]:
    out = []
    for prof, res in all_results.items():
        for t in TOOLS:
            refused = sorted({r for s in STEPS for c in res[s][t] for r in c.refused})
            if refused:
                out.append(f"{prof}: the relay refused {t}'s " + "; ".join(refused[:5]))
            for s in STEPS:
                bad = [c for c in res[s][t] if not c.ok]
                if not bad:
                    continue
                again = [c.retry for c in bad if c.retry]
                fixed = sum(1 for r in again if r["ok"])
                text = (
                    f"{prof}, {s}: {t} failed in {len(bad)} of {len(res[s][t])} runs: "
                    + "; ".join(sorted({p[:200] for c in bad for p in c.problems})[:3])
                )
                if again:
                    text += (
                        f". A second run completed the sync in {fixed} of {len(again)} "
                        f"(median {_med([r['wall'] for r in again]):.3f} s, "
                        f"{_kb(_med([r['down'] for r in again]))} more)"
                    )
                out.append(text)
            notes = sorted({x for s in STEPS for c in res[s][t] for x in c.notes})
            if notes:
                out.append(f"{prof}: {t}: " + "; ".join(notes))
    return out


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(prog="python -m bench.server_profiles_mbsync")
    ap.add_argument("--messages", type=int, default=10_000)
    ap.add_argument("--reps", type=int, default=3)
    ap.add_argument("--profiles", default=",".join(PROFILES))
    ap.add_argument("--json", type=Path, help="write every run here")
    ap.add_argument("--work", type=Path, help="scratch directory (default: a temporary one)")
    ap.add_argument("--keep", action="store_true", help="keep the Maildirs and servers")
    args = ap.parse_args(argv)
    if shutil.which("mbsync") is None:
        sys.exit("mbsync is not installed (scripts/setup-env installs isync)")
    names = [p.strip() for p in args.profiles.split(",") if p.strip()]
    unknown = [p for p in names if p not in PROFILES]
    if unknown:
        sys.exit(f"unknown profile(s): {', '.join(unknown)}; known: {', '.join(PROFILES)}")
    work = args.work or Path(tempfile.mkdtemp(prefix="bench-profiles-mbsync-"))
    work.mkdir(parents=True, exist_ok=True)
    scenarios.say(f"launcher: {measure.setup(work / 'scratch')}")
    scenarios.say(f"syncd: {anchors.prepare_syncd(work / 'scratch')}")
    opts = scenarios.Options(messages=args.messages, reps=args.reps, work=work, keep=args.keep)
    started = time.time()
    all_results = {name: run_profile(PROFILES[name], opts, work / name) for name in names}
    print(table(all_results, args.messages))
    for line in findings(all_results):
        print(f"- {line}")
    print(f"\n{time.time() - started:.0f} s; versions: {anchors.versions()}")
    if args.json:
        args.json.write_text(
            json.dumps(
                {
                    "messages": args.messages,
                    "reps": args.reps,
                    "results": {
                        p: {
                            s: {t: [c.__dict__ for c in cs] for t, cs in r.items()}
                            for s, r in res.items()
                        }
                        for p, res in all_results.items()
                    },
                },
                indent=1,
            )
        )
    if args.work is None and not args.keep:
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
