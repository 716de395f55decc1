"""The scenarios of issue 5, run against private servers on loopback.

Scenarios 1-4 are one chain per tool and repetition: a fresh server user (a clone of the loaded
corpus) and an empty Maildir; 1 is the initial sync into it, 2 a no-op resync of the result, 3 a
resync after another IMAP client changed the server, 4 a resync after local changes.  Within each
step the tools take turns (the order rotates with the repetition), so a noisy neighbour on the
machine hurts every tool of a repetition alike and the per-repetition ratios stay meaningful.

Before a resync each tool gets at least ``SETTLE`` seconds since it last wrote to its Maildir (or
since the benchmark changed it), as it would between two runs from cron or a mail reader: mbsync
deliberately sleeps a second when a Maildir directory changed within the last second, and syncd
does not trust a directory's mtime as a "nothing changed" stamp within two seconds of a change.

The no-op resync is measured twice per tool: the first resync after the initial sync (2a) and the
one after it (2, the steady state that a periodic sync mostly sees).  They differ for syncd: the
initial sync changed the Maildir while it ran, so it could not record a stamp of the directories,
and the first resync must list every folder once before later ones may skip it.
"""

from __future__ import annotations

import contextlib
import json
import os
import random
import shutil
import socket
import statistics
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from bench import anchors, verify
from bench.anchors import REPO, Login, Tool
from bench.measure import CountingProxy, Run, run
from bench.results import NOT_YET, SKIPPED, Measurement, Scenario
from bench.server import BenchServer
from tests.servers.corpus import make_corpus, make_message
from tests.servers.dovecot import User

SETTLE = 2.1
FOLDER_NAMES = [
    "INBOX",
    "Archive",
    "Sent",
    "Lists/python",
    "Lists/debian-devel",
    "Work",
    "Work/Projects",
    "Receipts",
    "Travel",
    "Newsletters",
]

TITLES = {
    "1": "Initial sync (empty Maildir -> full copy)",
    "2a": "First resync after the initial sync (nothing changed since; but the last sync "
    "changed the Maildir)",
    "2": "No-op resync (steady state: nothing changed since the last resync)",
    "3": "Resync after server changes (1% flags changed, 20 new, 10 expunged by another client)",
    "4": "Resync after local changes (1% marked seen by rename, 10 deleted), server checked",
    "5": "Scale: no-op resync by mailbox size",
    "6": "POP3: download into a Maildir",
    "7": "Outbox: queued messages to a local SMTP server",
    "8": "Daemon latencies (syncd run)",
    "9": "`syncd sendmail`: one process per message, as a mail reader or git send-email runs it",
}


@dataclass
class Options:
    messages: int = 10_000
    folders: int = 10
    reps: int = 3
    only: set[str] = field(default_factory=lambda: set("123456789"))
    scale: list[int] = field(default_factory=lambda: [1000, 10_000])
    offlineimap_reps: int = 3
    pop3_messages: int = 2000
    outbox_messages: int = 500
    sendmail_calls: int = 50
    work: Path = Path("/tmp")
    keep: bool = False
    seed: int = 1


def say(text: str) -> None:
    print(text, file=sys.stderr, flush=True)


def folder_names(n: int) -> list[str]:
    names = FOLDER_NAMES[:n]
    names += [f"Folder{i}" for i in range(len(names) + 1, n + 1)]
    return names


def rotate(items: Sequence[str], k: int) -> list[str]:
    k %= max(1, len(items))
    return [*items[k:], *items[:k]]


def _fmt(r: Run, v: verify.Verdict | None) -> str:
    state = "ok" if r.rc == 0 and (v is None or v.ok) else "FAILED"
    if r.rc != 0:
        state += f" (exit {r.rc})"
    elif v is not None and not v.ok:
        state += f" ({v.problems[0]})"
    return f"{r.wall:8.3f} s  cpu {r.cpu:7.3f} s  rss {r.maxrss_mb:6.1f} MB  {state}"


# -- one tool on one server user ---------------------------------------------------------------


@dataclass
class Seat:
    """A tool, the server user it syncs with, and when it last touched its Maildir."""

    tool: Tool
    user: User
    touched: float = 0.0

    def settle(self) -> None:
        wait = self.touched + SETTLE - time.monotonic()
        if wait > 0:
            time.sleep(wait)


def timed(srv: BenchServer, seat: Seat, port: int | None = None) -> Run:
    seat.settle()
    before = srv.cpu.total()
    r = seat.tool.run(port)
    after = srv.cpu.total()
    if before is not None and after is not None:
        r.server_cpu = after - before
    seat.touched = time.monotonic()
    return r


def check(srv: BenchServer, seat: Seat, **kw: Any) -> verify.Verdict:
    with srv.dovecot.imap(seat.user, timeout=300) as client:
        remote = verify.remote_snapshot(client)
        local = verify.local_snapshot(seat.tool.maildir)
        return verify.compare(client, remote, local, **kw)


def login(srv: BenchServer, user: User, port: int | None = None) -> Login:
    return Login(srv.host, port or srv.dovecot.imap_port, user.name, user.password)


# -- scenarios 1-4 -----------------------------------------------------------------------------


def imap_chain(opts: Options, out: dict[str, Scenario]) -> None:
    wanted = [k for k in "1234" if k in opts.only]
    if not wanted:
        return
    if "2" in wanted:
        wanted.insert(wanted.index("2"), "2a")
    for k in wanted:
        out[k] = Scenario(k, TITLES[k], tools=["syncd", "mbsync", "offlineimap"])
    tools = [t for t in ("syncd", "mbsync", "offlineimap") if anchors.installed(t)]
    for t in ("mbsync", "offlineimap"):
        if t not in tools:
            for k in wanted:
                out[k].tool_status[t] = "not installed"
    if "1" in wanted:
        out["1"].tools.append("ceiling")
    folders = folder_names(opts.folders)
    t0 = time.perf_counter()
    corpus = make_corpus(opts.messages, folders, seed=opts.seed)
    size = sum(len(raw) for msgs in corpus.values() for raw, _ in msgs)
    say(
        f"corpus: {opts.messages} messages, {size / 1e6:.0f} MB, {len(folders)} folders "
        f"in {time.perf_counter() - t0:.1f} s"
    )
    for k in wanted:
        out[k].extra["corpus"] = {"messages": opts.messages, "bytes": size, "folders": folders}

    base = opts.work / "imap"
    with BenchServer(base) as srv, CountingProxy(srv.host, srv.dovecot.imap_port) as proxy:
        say(f"server loaded in {srv.load(corpus):.1f} s")
        del corpus
        for rep in range(opts.reps):
            in_rep = [t for t in tools if t != "offlineimap" or rep < opts.offlineimap_reps]
            order = rotate(in_rep, rep)
            seats: dict[str, Seat] = {}
            for t in order:
                user = srv.clone()
                seats[t] = Seat(
                    anchors.IMAP_TOOLS[t](base / f"rep{rep}" / t, login(srv, user)), user
                )
            _chain_rep(opts, srv, proxy, rep, order, seats, wanted, out)
            if not opts.keep:
                shutil.rmtree(base / f"rep{rep}", ignore_errors=True)
    if opts.offlineimap_reps < opts.reps and "offlineimap" in tools:
        for k in wanted:
            out[k].notes.append(
                f"OfflineIMAP ran in {opts.offlineimap_reps} of {opts.reps} repetitions "
                "(its initial sync alone takes over a minute); its ratios are over those."
            )


def _chain_rep(
    opts: Options,
    srv: BenchServer,
    proxy: CountingProxy,
    rep: int,
    order: list[str],
    seats: dict[str, Seat],
    wanted: list[str],
    out: dict[str, Scenario],
) -> None:
    n = opts.reps
    # 1: initial sync (always run: the others start from it).
    if "1" in wanted:
        user = srv.clone()
        before = srv.cpu.total()
        r = run(
            [
                sys.executable,
                "-m",
                "bench.ceiling",
                srv.host,
                str(srv.dovecot.imap_port),
                user.name,
                user.password,
            ],
            cwd=REPO,
            log=opts.work / "ceiling.log",
        )
        after = srv.cpu.total()
        if before is not None and after is not None:
            r.server_cpu = after - before
        got = _last_json(opts.work / "ceiling.log")
        out["1"].add(Measurement("ceiling", rep, r, extra=got))
        say(f"[1] rep {rep + 1}/{n} ceiling      {_fmt(r, None)} ({got.get('messages')} msgs)")
    for t in order:
        r = timed(srv, seats[t])
        v = check(srv, seats[t])
        if "1" in wanted:
            out["1"].add(Measurement(t, rep, r, v))
        say(f"[1] rep {rep + 1}/{n} {t:12} {_fmt(r, v)}")

    # 2a, 2: no-op resyncs (the first after the initial sync, then the steady state), then
    # once more through the counting proxy for the bytes.
    if "2" in wanted:
        for t in order:
            r = timed(srv, seats[t])
            v = check(srv, seats[t])
            out["2a"].add(Measurement(t, rep, r, v))
            say(f"[2a] rep {rep + 1}/{n} {t:11} {_fmt(r, v)}")
        for t in order:
            seat = seats[t]
            r = timed(srv, seat)
            v = check(srv, seat)
            seat.settle()
            proxy.reset()
            rp = seat.tool.run(proxy.port)
            seat.touched = time.monotonic()
            proxy.wait_quiet()
            extra = {
                "bytes_down": proxy.down,
                "bytes_up": proxy.up,
                "proxied_rc": rp.rc,
                "proxied_wall": rp.wall,
            }
            out["2"].add(Measurement(t, rep, r, v, extra))
            say(f"[2] rep {rep + 1}/{n} {t:12} {_fmt(r, v)}  {proxy.down} bytes from server")

    # 3: another client changes the server; every tool's user gets the same changes.
    if "3" in wanted:
        for t in order:
            desc = server_changes(srv, seats[t].user, opts)
        out["3"].extra["changes"] = desc
        for t in order:
            r = timed(srv, seats[t])
            v = check(srv, seats[t])
            out["3"].add(Measurement(t, rep, r, v))
            say(f"[3] rep {rep + 1}/{n} {t:12} {_fmt(r, v)}")

    # 4: local changes by renames and deletions; then the server must show them.
    if "4" in wanted:
        plans = {t: local_changes(seats[t], opts) for t in order}
        for t in order:
            seat, (seen, deleted) = seats[t], plans[t]
            r = timed(srv, seat)
            v = check(srv, seat)
            _check_pushed(srv, seat, seen, deleted, v)
            out["4"].add(Measurement(t, rep, r, v))
            say(f"[4] rep {rep + 1}/{n} {t:12} {_fmt(r, v)}")
        out["4"].extra["changes"] = {
            "marked_seen": len(next(iter(plans.values()))[0]) if plans else 0,
            "deleted": len(next(iter(plans.values()))[1]) if plans else 0,
        }


def _last_json(path: Path) -> dict[str, Any]:
    for line in reversed(path.read_text(errors="replace").splitlines()):
        with contextlib.suppress(ValueError):
            data = json.loads(line)
            if isinstance(data, dict):
                return data
    return {}


def server_changes(srv: BenchServer, user: User, opts: Options, salt: int = 0) -> dict[str, int]:
    """1% of the messages get \\Seen or \\Flagged toggled, 10 are expunged, 20 delivered.

    Chosen by Message-ID with a fixed seed, so every clone gets exactly the same changes.
    """
    rng = random.Random(opts.seed * 1000 + 3 + salt * 100)
    with srv.dovecot.imap(user, timeout=300) as c:
        snap = verify.remote_snapshot(c)
        everything = sorted((f, k) for f, msgs in snap.items() for k in msgs)
        n_flags = max(1, round(len(everything) * 0.01))
        chosen = rng.sample(everything, min(len(everything), n_flags + 10))
        toggles, doomed = chosen[:n_flags], chosen[n_flags:]
        by_folder: dict[str, list[tuple[int, bytes, bool]]] = {}
        for i, (f, k) in enumerate(toggles):
            msg = snap[f][k][0]
            flag = b"\\Seen" if i % 2 == 0 else b"\\Flagged"
            by_folder.setdefault(f, []).append((msg.uid, flag, flag in msg.flags))
        expunge: dict[str, list[int]] = {}
        for f, k in doomed:
            expunge.setdefault(f, []).append(snap[f][k][0].uid)
        for f in sorted(set(by_folder) | set(expunge)):
            c.select_folder(f)
            for uid, flag, has in by_folder.get(f, []):
                (c.remove_flags if has else c.add_flags)([uid], [flag], silent=True)
            if f in expunge:
                c.delete_messages(expunge[f], silent=True)
                if c.has_capability("UIDPLUS"):
                    c.uid_expunge(expunge[f])
                else:  # a server profile without it (bench.server_profiles_mbsync)
                    c.expunge()
    folders = list(snap)
    new_rng = random.Random(opts.seed * 1000 + 33 + salt * 100)
    for i in range(20):
        folder = "INBOX" if i < 14 else folders[(i * 3) % len(folders)]
        raw = make_message(new_rng, 50_000_000 + salt * 1000 + i)
        srv.dovecot.deliver(user, raw, folder)
    return {"flags_changed": len(toggles), "expunged": len(doomed), "delivered": 20}


def local_changes(seat: Seat, opts: Options, salt: int = 0) -> tuple[set[bytes], set[bytes]]:
    """1% of the messages marked seen by renaming (as mutt does), 10 others deleted."""
    rng = random.Random(opts.seed * 1000 + 4 + salt * 100)
    snap = verify.local_snapshot(seat.tool.maildir)
    unseen = sorted(
        (f, k) for f, msgs in snap.items() for k, x in msgs.items() if b"\\Seen" not in x[0].flags
    )
    total = sum(len(msgs) for msgs in snap.values())
    n_seen = max(1, round(total * 0.01))
    chosen = rng.sample(unseen, min(len(unseen), n_seen + 10))
    to_see, to_delete = chosen[:n_seen], chosen[n_seen:]
    for f, k in to_see:
        path = snap[f][k][0].path
        base, _, info = path.name.partition(":2,")
        letters = "".join(sorted(set(info) | {"S"}))
        path.rename(path.parent.parent / "cur" / f"{base}:2,{letters}")
    for f, k in to_delete:
        snap[f][k][0].path.unlink()
    seat.touched = time.monotonic()
    return {k for _, k in to_see}, {k for _, k in to_delete}


def _check_pushed(
    srv: BenchServer, seat: Seat, seen: set[bytes], deleted: set[bytes], v: verify.Verdict
) -> None:
    with srv.dovecot.imap(seat.user, timeout=300) as c:
        remote = verify.remote_snapshot(c)
    flags = {k: x[0].flags for msgs in remote.values() for k, x in msgs.items()}
    not_seen = [k for k in seen if b"\\Seen" not in flags.get(k, {b"\\Seen"})]
    still = [k for k in deleted if k in flags]
    if not_seen:
        v.problems.append(
            f"server: {len(not_seen)} of {len(seen)} messages marked seen "
            f"locally are not \\Seen, e.g. {not_seen[0].decode()}"
        )
    if still:
        v.problems.append(
            f"server: {len(still)} of {len(deleted)} messages deleted locally "
            f"are still there, e.g. {still[0].decode()}"
        )


# -- scenario 5 --------------------------------------------------------------------------------


def scale(opts: Options, out: dict[str, Scenario]) -> None:
    """Resyncs at each size: steady no-op (5@N), no-op right after a resync that changed the
    Maildir (5f@N), after server changes (5s@N) and after local changes (5l@N).

    At the chain's own size the chain's runs (2, 2a, 3, 4) are reused.  Otherwise one initial
    sync per tool and its first resync, then per repetition the changes of scenario 3 and a
    resync, the changes of scenario 4 and a resync, a no-op, another no-op.  Above 20 000
    messages only the last repetition is verified (a check reads every header on both sides).
    """
    if "5" not in opts.only:
        return
    tools = [t for t in ("syncd", "mbsync") if anchors.installed(t)]
    for n in opts.scale:
        kinds = {
            "": "no-op (steady state)",
            "f": "no-op right after a resync that changed the Maildir",
            "s": "after server changes",
            "l": "after local changes",
        }
        scs = {}
        for k, what in kinds.items():
            key = f"5{k}@{n}"
            scs[k] = out[key] = Scenario(
                key, f"Scale: {what}, {n} messages", tools=["syncd", "mbsync"]
            )
            scs[k].extra["messages"] = n
        reuse = {"": out.get("2"), "f": out.get("2a"), "s": out.get("3"), "l": out.get("4")}
        if (
            n == opts.messages
            and opts.folders == 10
            and all(r is not None and all(r.of(t) for t in tools) for r in reuse.values())
        ):
            for k, sc in scs.items():
                src = reuse[k]
                assert src is not None
                sc.measurements = [m for m in src.measurements if m.tool in tools]
                sc.notes.append(f"The same runs as scenario {src.key}.")
            continue
        sc = scs[""]
        t0 = time.perf_counter()
        corpus = make_corpus(n, folder_names(opts.folders), seed=opts.seed)
        size = sum(len(raw) for msgs in corpus.values() for raw, _ in msgs)
        sc.extra["bytes"] = size
        base = opts.work / f"scale{n}"
        with BenchServer(base) as srv:
            srv.load(corpus)
            del corpus
            say(
                f"[5] {n} messages ({size / 1e6:.0f} MB) loaded in {time.perf_counter() - t0:.1f} s"
            )
            seats = {}
            initial: dict[str, Any] = {}
            for t in tools:
                user = srv.clone()
                seat = Seat(anchors.IMAP_TOOLS[t](base / t, login(srv, user)), user)
                r = timed(srv, seat)
                v = check(srv, seat)
                initial[t] = {
                    "wall": r.wall,
                    "cpu": r.cpu,
                    "maxrss_mb": r.maxrss_mb,
                    "ok": r.rc == 0 and v.ok,
                }
                say(f"[5] {n} initial {t:12} {_fmt(r, v)}")
                seats[t] = seat
            for t in tools:  # the first resync after the initial one (see 2a)
                r = timed(srv, seats[t])
                v = check(srv, seats[t])
                initial[t]["first_resync"] = r.wall
                initial[t]["first_resync_ok"] = r.rc == 0 and v.ok
                say(f"[5] {n} first resync {t:12} {_fmt(r, v)}")
            sc.extra["initial"] = initial
            for rep in range(opts.reps):
                verify_now = n <= 20_000 or rep == opts.reps - 1

                for t in tools:
                    server_changes(srv, seats[t].user, opts, salt=rep)
                at = (srv, seats, tools, n, rep, opts.reps, verify_now)
                _scale_step(*at, scs["s"], "server")
                plans = {t: local_changes(seats[t], opts, salt=rep) for t in tools}
                _scale_step(*at, scs["l"], "local", plans)
                _scale_step(*at, scs["f"], "after")
                _scale_step(*at, scs[""], "no-op")
            note = (
                "One initial sync per tool and its first resync, then per repetition: server "
                "changes (as in 3) and a resync, local changes (as in 4) and a resync, a no-op "
                "right after that, and a second no-op (the steady state)"
                + (", verified in the last repetition." if n > 20_000 else ", each verified.")
            )
            for x in scs.values():
                x.notes.append(note)
        if not opts.keep:
            shutil.rmtree(base, ignore_errors=True)


def _scale_step(
    srv: BenchServer,
    seats: dict[str, Seat],
    tools: list[str],
    n: int,
    rep: int,
    reps: int,
    verify_now: bool,
    sc: Scenario,
    label: str,
    plans: dict[str, tuple[set[bytes], set[bytes]]] | None = None,
) -> None:
    for t in rotate(tools, rep):
        r = timed(srv, seats[t])
        v = None
        if verify_now:
            v = check(srv, seats[t])
            if plans is not None:
                _check_pushed(srv, seats[t], *plans[t], v)
        sc.add(Measurement(t, rep, r, v))
        say(f"[5] {n} rep {rep + 1}/{reps} {label:6} {t:12} {_fmt(r, v)}")


# -- scenario 6 --------------------------------------------------------------------------------


def pop3(opts: Options, out: dict[str, Scenario]) -> None:
    if "6" not in opts.only:
        return
    sc = out["6"] = Scenario("6", TITLES["6"], tools=["syncd", "getmail", "fetchmail"])
    tools = [t for t in sc.tools if anchors.installed(t)]
    for t in sc.tools:
        if t not in tools:
            sc.tool_status[t] = "not installed"
    n = opts.pop3_messages
    corpus = make_corpus(n, ["INBOX"], seed=opts.seed + 5)
    sc.extra["corpus"] = {"messages": n, "bytes": sum(len(r) for r, _ in corpus["INBOX"])}
    base = opts.work / "pop3"
    with BenchServer(base) as srv:
        srv.load(corpus)
        del corpus
        for rep in range(opts.reps):
            for t in rotate(tools, rep):
                if sc.tool_status.get(t):
                    continue
                user = srv.clone()
                lg = Login(srv.host, srv.dovecot.pop3_port, user.name, user.password)
                seat = Seat(anchors.POP3_TOOLS[t](base / f"rep{rep}" / t, lg), user)
                r = timed(srv, seat)
                if t == "syncd" and r.rc != 0:
                    sc.tool_status[t] = NOT_YET
                    sc.notes.append(
                        f"syncd sync on a pop3: account failed (exit {r.rc}): "
                        f"{_last_line(r.stderr)}"
                    )
                    say(f"[6] syncd POP3: {NOT_YET} ({_last_line(r.stderr)})")
                    continue
                v = check(srv, seat, check_flags=False)
                # POP3 downloads only INBOX; other local folders would be a fault anyway.
                sc.add(Measurement(t, rep, r, v))
                say(f"[6] rep {rep + 1}/{opts.reps} {t:12} {_fmt(r, v)}")
            if not opts.keep:
                shutil.rmtree(base / f"rep{rep}", ignore_errors=True)
    if "fetchmail" in tools:
        sc.notes.append(
            "fetchmail delivers through an MDA, one process per message: a /bin/sh script that "
            "writes into Maildir tmp/ with cat and renames into new/ with mv (what procmail or "
            "maildrop do, without their fsync)."
        )
    if sc.tool_status.get("syncd") == NOT_YET:
        sc.status = f"syncd: {NOT_YET}"


def _last_line(text: str) -> str:
    lines = [x for x in text.strip().splitlines() if x.strip()]
    return lines[-1][:300] if lines else "no output"


# -- scenario 7 --------------------------------------------------------------------------------


class SmtpSink:
    """aiosmtpd on a free loopback port, AUTH PLAIN/LOGIN accepted without TLS; keeps what it got.

    ``received`` maps Message-ID to the DATA received (CRLF), ``count`` counts messages.
    """

    def __init__(self) -> None:
        self.received: dict[bytes, bytes] = {}
        self.count = 0
        self.arrivals: dict[bytes, float] = {}
        self._lock = threading.Lock()
        self.port = _free_port()
        self.controller: Any = None

    def __enter__(self) -> SmtpSink:
        from aiosmtpd.controller import Controller
        from aiosmtpd.smtp import AuthResult

        sink = self

        class Handler:
            async def handle_DATA(self, server: Any, session: Any, envelope: Any) -> str:
                data = envelope.original_content or envelope.content
                if isinstance(data, str):
                    data = data.encode()
                m = verify._MSGID.search(data)
                key = m.group(1) if m else b"<none>"
                with sink._lock:
                    sink.received[key] = data
                    sink.arrivals[key] = time.monotonic()
                    sink.count += 1
                return "250 OK"

        def authenticator(*args: Any) -> AuthResult:
            return AuthResult(success=True)

        self.controller = Controller(
            Handler(),
            hostname="127.0.0.1",
            port=self.port,
            authenticator=authenticator,
            auth_require_tls=False,
            decode_data=False,
        )
        self.controller.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.controller.stop()


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def outbox(opts: Options, out: dict[str, Scenario]) -> None:
    if "7" not in opts.only:
        return
    sc = out["7"] = Scenario("7", TITLES["7"], tools=["syncd", "msmtp"])
    if not anchors.installed("msmtp"):
        sc.tool_status["msmtp"] = "not installed"
    n = opts.outbox_messages
    msgs = [raw for raw, _ in make_corpus(n, ["INBOX"], seed=opts.seed + 6)["INBOX"]]
    # A mail reader hands sendmail LF line ends.
    msgs = [raw.replace(b"\r\n", b"\n") for raw in msgs]
    rcpt = "rcpt@example.net"
    sc.extra["corpus"] = {"messages": n, "bytes": sum(len(m) for m in msgs)}
    base = opts.work / "outbox"
    with BenchServer(base) as srv, SmtpSink() as sink:
        for rep in range(opts.reps):
            for t in rotate(["syncd", "msmtp"], rep):
                if sc.tool_status.get(t):
                    continue
                work = base / f"rep{rep}" / t
                before = sink.count
                smtp = Login("127.0.0.1", sink.port, "bench", "secret")
                if t == "msmtp":
                    tool = anchors.Msmtp(work, smtp)
                    runs = [run(tool.send_argv(rcpt), stdin=m, log=tool.log) for m in msgs]
                    r = Run.combine(runs, sum(x.wall for x in runs))
                else:
                    user = srv.dovecot.add_user()
                    box = anchors.SyncdOutbox(work, smtp, login(srv, user))
                    queued = _queue(box, msgs, rcpt)
                    if queued.rc != 0:
                        sc.tool_status[t] = NOT_YET
                        sc.notes.append(
                            f"syncd sendmail failed (exit {queued.rc}): {_last_line(queued.stderr)}"
                        )
                        say(f"[7] syncd outbox: {NOT_YET} ({_last_line(queued.stderr)})")
                        continue
                    say(f"[7] rep {rep + 1}/{opts.reps} syncd sendmail x{n} {_fmt(queued, None)}")
                    r = box.run()
                    if r.rc != 0 and sink.count == before:
                        sc.tool_status[t] = NOT_YET
                        sc.notes.append(f"syncd send failed (exit {r.rc}): {_last_line(r.stderr)}")
                        say(f"[7] syncd send: {NOT_YET} ({_last_line(r.stderr)})")
                        continue
                v = _check_sent(sink, before, msgs)
                extra: dict[str, Any] = {}
                if t == "syncd":
                    extra = {
                        "queue_wall": queued.wall,
                        "queue_cpu": queued.cpu,
                        "queue_maxrss_mb": queued.maxrss_mb,
                    }
                    left = list((box.maildir / ".outbox" / "new").glob("*")) + list(
                        (box.maildir / ".outbox" / "cur").glob("*")
                    )
                    if left:
                        v.problems.append(f"{len(left)} messages left in the outbox")
                sc.add(Measurement(t, rep, r, v, extra))
                say(f"[7] rep {rep + 1}/{opts.reps} {t:12} {_fmt(r, v)}")
            if not opts.keep:
                shutil.rmtree(base / f"rep{rep}", ignore_errors=True)
    if sc.tool_status.get("syncd") == NOT_YET:
        sc.status = f"syncd: {NOT_YET}"
    sc.notes.append(
        "The server is aiosmtpd in the benchmark process, AUTH PLAIN without TLS on loopback. "
        "msmtp runs once per message with -oi and the recipient as an argument, as mutt (and, "
        "one message at a time, msmtpq) runs it. syncd's time is `syncd send` draining a queue "
        "filled beforehand by one `syncd sendmail` per message (that queueing is shown apart); "
        "its sent_folder is off, as msmtp keeps no copy either."
    )


def _queue(box: anchors.SyncdOutbox, msgs: list[bytes], rcpt: str) -> Run:
    runs = []
    for m in msgs:
        r = run(box.queue_argv(rcpt), stdin=m, log=box.log, env=box.env())
        runs.append(r)
        if r.rc != 0:
            break
    return Run.combine(runs, sum(x.wall for x in runs))


def _check_sent(sink: SmtpSink, before: int, msgs: list[bytes]) -> verify.Verdict:
    v = verify.Verdict()
    got = sink.count - before
    v.messages = got
    if got != len(msgs):
        v.problems.append(f"server accepted {got} messages, {len(msgs)} were sent")
    rng = random.Random(7)
    for raw in rng.sample(msgs, min(5, len(msgs))):
        m = verify._MSGID.search(raw)
        assert m is not None
        data = sink.received.get(m.group(1))
        if data is None:
            v.problems.append(f"{m.group(1).decode()} never arrived")
        elif data.replace(b"\r\n", b"\n") != raw:
            v.problems.append(f"{m.group(1).decode()} arrived changed ({len(data)} bytes)")
    return v


# -- scenario 9 --------------------------------------------------------------------------------

MSMTP_ENQUEUE = Path("/usr/libexec/msmtp/msmtpqueue/msmtp-enqueue.sh")
"""msmtp's queueing script (Debian's msmtp package): the message and its arguments into
``~/.msmtpqueue``, with no fsync."""


SENDMAIL_FLOORS = {
    "python": "python -c pass (the floor: the same interpreter and venv as syncd)",
    "python -S": "python -S -c pass (the interpreter without site; not an option for users)",
    "python dev": "python -c pass in the repository's .venv (the floor of `syncd dev`)",
    "msmtp --version": "msmtp --version (a C tool's start)",
}


def sendmail_calls(opts: Options, out: dict[str, Scenario]) -> None:
    """What a mail reader waits for per message: one whole process per call, median.

    syncd queues into its outbox (message and envelope fsync'ed with their directories):
    through its console script, through ``python -m syncd`` and, when the repository has one,
    through the development venv's console script (an editable install). Beside it, in the
    same repetition: the floors (``python -c pass`` and ``python -S -c pass`` on the same
    interpreter, ``msmtp --version``), msmtp sending the message to the SMTP server before it
    returns (what a reader waits for with msmtp as its sendmail) and msmtp-enqueue.sh only
    queueing (no fsync). Every call gets the message on stdin and the recipient as an
    argument.
    """
    if "9" not in opts.only:
        return
    python = anchors.SYNCD.with_name("python")
    dev = anchors.REPO / ".venv" / "bin" / "syncd"
    tools = ["syncd", "syncd -m", "syncd dev", *SENDMAIL_FLOORS, "msmtp", "msmtp-enqueue"]
    sc = out["9"] = Scenario("9", TITLES["9"], tools=tools)
    if not dev.exists() or dev == anchors.SYNCD:
        sc.tool_status["syncd dev"] = "no separate development install"
        sc.tool_status["python dev"] = "no separate development install"
    if not anchors.installed("msmtp"):
        sc.tool_status["msmtp"] = sc.tool_status["msmtp --version"] = "not installed"
    if not MSMTP_ENQUEUE.exists():
        sc.tool_status["msmtp-enqueue"] = "not installed"
    n = opts.sendmail_calls
    msgs = [raw for raw, _ in make_corpus(n, ["INBOX"], seed=opts.seed + 9)["INBOX"]]
    msgs = [raw.replace(b"\r\n", b"\n") for raw in msgs]
    rcpt = "rcpt@example.net"
    sc.extra["corpus"] = {"messages": n, "bytes": sum(len(m) for m in msgs)}
    base = opts.work / "sendmail"
    with SmtpSink() as sink:
        smtp = Login("127.0.0.1", sink.port, "bench", "secret")
        imap = Login("127.0.0.1", 1, "bench", "unused")
        for rep in range(opts.reps):
            for t in rotate(tools, rep):
                if sc.tool_status.get(t):
                    continue
                work = base / f"rep{rep}" / t.replace(" ", "_")
                v = verify.Verdict()
                if t.startswith("syncd"):
                    box = anchors.SyncdOutbox(work, smtp, imap)
                    argv = box.queue_argv(rcpt)
                    if t == "syncd -m":
                        argv = [str(python), "-m", "syncd", *argv[1:]]
                    elif t == "syncd dev":
                        argv = [str(dev), *argv[1:]]
                    # Each its own notes (they name the installed config parser), and
                    # bytecode as an installed package has it.
                    env = {**box.env(), "XDG_CACHE_HOME": str(work / "cache")}
                    env.pop("PYTHONDONTWRITEBYTECODE", None)
                    runs = [run(argv, stdin=m, log=box.log, env=env) for m in msgs]
                    queued = sorted((box.maildir / ".outbox" / "new").iterdir())
                    done = len(queued)
                    if {p.read_bytes() for p in queued} != set(msgs):
                        v.problems.append("the queued files differ from the messages given")
                elif t in SENDMAIL_FLOORS:
                    work.mkdir(parents=True, exist_ok=True)
                    argv = {
                        "python": [str(python), "-c", "pass"],
                        "python -S": [str(python), "-S", "-c", "pass"],
                        "python dev": [str(dev.with_name("python")), "-c", "pass"],
                        "msmtp --version": [shutil.which("msmtp") or "msmtp", "--version"],
                    }[t]
                    runs = [run(argv, stdin=m, log=work / "log") for m in msgs]
                    done = sum(r.rc == 0 for r in runs)
                elif t == "msmtp":
                    tool = anchors.Msmtp(work, smtp)
                    before = sink.count
                    runs = [run(tool.send_argv(rcpt), stdin=m, log=tool.log) for m in msgs]
                    done = sink.count - before
                else:
                    work.mkdir(parents=True, exist_ok=True)
                    env = {**os.environ, "HOME": str(work)}
                    argv = ["sh", str(MSMTP_ENQUEUE), "-oi", "--", rcpt]
                    runs = [run(argv, stdin=m, env=env, log=work / "log") for m in msgs]
                    done = len(list((work / ".msmtpqueue").glob("*.mail")))
                v.messages = done
                if done != n or any(r.rc != 0 for r in runs):
                    v.problems.append(
                        f"{done} of {n} calls done; exit codes {sorted({r.rc for r in runs})}"
                    )
                per_call = Run(
                    wall=statistics.median(r.wall for r in runs),
                    user=statistics.median(r.cpu for r in runs),
                    sys=0.0,
                    maxrss_kb=max(r.maxrss_kb for r in runs),
                    rc=max(r.rc for r in runs),
                )
                first = {"first_call_wall": runs[0].wall, "first_call_cpu": runs[0].cpu}
                sc.add(Measurement(t, rep, per_call, v, first))
                say(f"[9] rep {rep + 1}/{opts.reps} {t:15} {_fmt(per_call, v)} per call")
            if not opts.keep:
                shutil.rmtree(base / f"rep{rep}", ignore_errors=True)
    sc.notes.append(
        f"Per call, the median of {n} calls in a row (wall and CPU of the whole process). syncd "
        "queues into its outbox, the message and its envelope each fsync'ed with their "
        "directory, and the queued files are compared with the messages; its first call "
        "after a config change parses the config, the others find it unchanged "
        "(`first_call_*` in results.json). `syncd` is the console script of a snapshot "
        "installed as `pip install .` would, `syncd -m` is `python -m syncd` there, `syncd "
        "dev` the repository's .venv (an editable install, whose import hook every start of "
        "that interpreter pays). msmtp sends each message to the benchmark's aiosmtpd before "
        "it returns; msmtp-enqueue.sh (msmtp's queue script) only writes the message into "
        "~/.msmtpqueue, without fsync."
    )
    sc.notes += [f"`{k}`: {v}" for k, v in SENDMAIL_FLOORS.items()]


# -- scenario 8 --------------------------------------------------------------------------------


def daemon(opts: Options, out: dict[str, Scenario]) -> None:
    if "8" not in opts.only:
        return
    sc = out["8"] = Scenario("8", TITLES["8"], tools=["syncd"])
    help_text = subprocess.run(
        [str(anchors.SYNCD), "--help"], capture_output=True, text=True, check=False
    ).stdout
    if " run " not in help_text and "{run" not in help_text and ",run" not in help_text:
        sc.status = NOT_YET
        sc.reason = "`syncd run` does not exist yet (issue 3)."
        say(f"[8] {NOT_YET}: syncd run does not exist yet")
        return
    try:
        _daemon_latencies(opts, sc)
    except Exception as exc:
        sc.status = NOT_YET
        sc.reason = f"`syncd run` is there but the measurement failed: {exc}"
        say(f"[8] failed: {exc}")


def _daemon_latencies(opts: Options, sc: Scenario) -> None:
    base = opts.work / "daemon"
    samples = max(5, opts.reps * 3)
    corpus = make_corpus(200, folder_names(3), seed=opts.seed + 8)
    with BenchServer(base) as srv, SmtpSink() as sink:
        srv.load(corpus)
        user = srv.clone()
        work = base / "syncd"
        tool = anchors.SyncdOutbox(
            work, Login("127.0.0.1", sink.port, "bench", "x"), login(srv, user)
        )
        cfg = tool.config.read_text().replace(
            "      password_command: cat", "      idle: [INBOX]\n      password_command: cat", 1
        )
        tool.config.write_text(cfg)
        first = run([str(anchors.SYNCD), "sync", "-q", "-c", str(tool.config)], log=tool.log)
        if first.rc != 0:
            raise RuntimeError(f"initial sync failed: {_last_line(first.stderr)}")
        with tool.log.open("ab") as logf:
            proc = subprocess.Popen(
                [str(anchors.SYNCD), "run", "-c", str(tool.config)], stdout=logf, stderr=logf
            )
        try:
            time.sleep(3)
            if proc.poll() is not None:
                raise RuntimeError(f"syncd run exited with {proc.returncode}")
            lat = _lat_delivery(srv, user, tool, samples)
            sc.extra["delivery_to_file"] = lat
            sc.extra["rename_to_server_flag"] = _lat_flag(srv, user, tool, samples)
            sc.extra["outbox_to_250"] = _lat_outbox(sink, tool, samples)
            time.sleep(10)  # let it finish what the latency tests started
            sc.extra["idle_cpu_per_10min"] = _idle_cpu(proc.pid, 60 if opts.reps >= 3 else 20)
        finally:
            proc.terminate()
            try:
                proc.wait(20)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()


def _poll(cond: Callable[[], bool], timeout: float = 10.0, every: float = 0.005) -> float | None:
    t0 = time.monotonic()
    while time.monotonic() - t0 < timeout:
        if cond():
            return time.monotonic() - t0
        time.sleep(every)
    return None


def _lat_stats(values: list[float | None]) -> dict[str, Any]:
    got = sorted(v for v in values if v is not None)
    return {
        "samples": values,
        "median": got[len(got) // 2] if got else None,
        "timeouts": sum(v is None for v in values),
    }


def _lat_delivery(srv: BenchServer, user: User, tool: Tool, n: int) -> dict[str, Any]:
    rng = random.Random(81)
    inbox = tool.maildir / "INBOX"
    out: list[float | None] = []
    for i in range(n):
        raw = make_message(rng, 60_000_000 + i, size_class="tiny")
        before = {p.name for sub in ("new", "cur") for p in (inbox / sub).iterdir()}
        srv.dovecot.deliver(user, raw)  # returns once Dovecot has stored it
        t0 = time.monotonic()

        def arrived(before: set[str] = before) -> bool:
            return any(
                p.name not in before for sub in ("new", "cur") for p in (inbox / sub).iterdir()
            )

        lat = _poll(arrived)
        out.append(None if lat is None else time.monotonic() - t0)
        time.sleep(0.3)
    return _lat_stats(out)


def _lat_flag(srv: BenchServer, user: User, tool: Tool, n: int) -> dict[str, Any]:
    snap = verify.local_snapshot(tool.maildir)
    inbox = snap.get("INBOX", {})
    candidates = sorted(k for k, x in inbox.items() if b"\\Flagged" not in x[0].flags)[:n]
    out: list[float | None] = []
    with srv.dovecot.imap(user) as c:
        c.select_folder("INBOX", readonly=True)
        remote = verify.remote_snapshot(c, ["INBOX"])["INBOX"]
        c.select_folder("INBOX", readonly=True)
        for k in candidates:
            path = inbox[k][0].path
            b, _, info = path.name.partition(":2,")
            uid = remote[k][0].uid
            t0 = time.monotonic()
            path.rename(path.parent.parent / "cur" / f"{b}:2,{''.join(sorted(set(info) | {'F'}))}")

            def flagged(uid: int = uid) -> bool:
                c.noop()
                return b"\\Flagged" in c.get_flags([uid]).get(uid, ())

            lat = _poll(flagged, every=0.01)
            out.append(None if lat is None else time.monotonic() - t0)
            time.sleep(0.3)
    return _lat_stats(out)


def _lat_outbox(sink: SmtpSink, tool: anchors.SyncdOutbox, n: int) -> dict[str, Any]:
    rng = random.Random(82)
    box = tool.maildir / ".outbox"
    for sub in ("tmp", "new", "cur"):
        (box / sub).mkdir(parents=True, exist_ok=True)
    out: list[float | None] = []
    for i in range(n):
        raw = make_message(rng, 70_000_000 + i, size_class="tiny").replace(b"\r\n", b"\n")
        m = verify._MSGID.search(raw)
        assert m is not None
        key = m.group(1)
        tmp = box / "tmp" / f"bench{i}"
        tmp.write_bytes(raw)
        t0 = time.monotonic()
        tmp.rename(box / "new" / f"bench{i}")
        lat = _poll(lambda key=key: key in sink.arrivals)
        out.append(None if lat is None else sink.arrivals[key] - t0)
        time.sleep(0.3)
    return _lat_stats(out)


def _idle_cpu(pid: int, seconds: float) -> dict[str, Any]:
    def cpu() -> float:
        from bench.measure import _TICK, _stat_fields

        f = _stat_fields(pid)
        return 0.0 if f is None else (int(f[11]) + int(f[12]) + int(f[13]) + int(f[14])) / _TICK

    c0 = cpu()
    time.sleep(seconds)
    used = cpu() - c0
    return {"window_s": seconds, "cpu_s": used, "per_10min": used * 600 / seconds}


__all__ = [
    "SKIPPED",
    "Options",
    "daemon",
    "imap_chain",
    "outbox",
    "pop3",
    "scale",
]
