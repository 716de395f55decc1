"""bench/RESULTS.md and bench/results.json from the scenarios' results.

The section "What limits it" of an existing RESULTS.md is written by hand (profiles and their
reading) and kept as it is when the tables are regenerated.
"""

from __future__ import annotations

import datetime as dt
import itertools
import json
import os
import platform
import re
import sys
import tempfile
from pathlib import Path
from typing import Any

from bench import anchors
from bench.results import NOT_YET, OK, Scenario, Stat

ANALYSIS_START = "<!-- analysis: kept by the generator -->"
ANALYSIS_END = "<!-- end of analysis -->"
LABELS = {"ceiling": "raw fetch (ceiling)"}


def _filesystem(path: Path) -> str:
    """The type of the file system holding ``path``, from /proc/mounts (longest mount point)."""
    best, kind = -1, ""
    try:
        for line in Path("/proc/mounts").read_text().splitlines():
            parts = line.split()
            if len(parts) > 2 and str(path).startswith(parts[1]) and len(parts[1]) > best:
                best, kind = len(parts[1]), parts[2]
    except OSError:
        pass
    return kind


def machine() -> dict[str, Any]:
    cpu = ""
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    mem = ""
    try:
        kb = int(Path("/proc/meminfo").read_text().split()[1])
        mem = f"{kb / 1024 / 1024:.1f} GiB"
    except (OSError, ValueError, IndexError):
        pass
    os_name = ""
    try:
        m = re.search(r'PRETTY_NAME="([^"]*)"', Path("/etc/os-release").read_text())
        os_name = m.group(1) if m else ""
    except OSError:
        pass
    fs = _filesystem(Path(tempfile.gettempdir()))
    return {
        "nproc": os.cpu_count(),
        "cpu": cpu,
        "memory": mem,
        "os": os_name,
        "kernel": platform.release(),
        "python": sys.version.split()[0],
        "filesystem": fs,
        "versions": anchors.versions(),
    }


# -- formatting --------------------------------------------------------------------------------


def _s(x: float | None, digits: int = 3) -> str:
    if x is None or x != x:
        return "–"
    if digits == 3 and x >= 100:
        return f"{x:.1f}"
    return f"{x:.{digits}f}"


def _stat(s: Stat | None, digits: int = 3, unit: str = "") -> str:
    if s is None:
        return "–"
    if s.n == 1 or s.min == s.max:
        return f"{_s(s.median, digits)}{unit}"
    return f"{_s(s.median, digits)}{unit} ({_s(s.min, digits)}–{_s(s.max, digits)})"


def _ratio(s: Stat | None) -> str:
    if s is None:
        return "–"
    if s.n == 1:
        return f"**{s.median:.2f}x**"
    return f"**{s.median:.2f}x** ({s.min:.2f}–{s.max:.2f})"


def _bytes(n: float | None) -> str:
    if n is None or n != n:
        return "–"
    if n < 10_000:
        return f"{n:.0f} B"
    if n < 10_000_000:
        return f"{n / 1000:.0f} kB"
    return f"{n / 1e6:.0f} MB"


def tool_table(sc: Scenario, *, bytes_col: bool = False) -> list[str]:
    base = sc.tools[0]
    head = ["tool", "wall s", "CPU s", "peak RSS MB", "Dovecot CPU s"]
    if bytes_col:
        head.append("bytes from server")
    head += ["verified", f"{base}/tool wall", f"{base}/tool CPU"]
    rows = ["| " + " | ".join(head) + " |", "|" + " --- |" * len(head)]
    for t in sc.tools:
        ms = sc.of(t)
        label = LABELS.get(t, t)
        if not ms:
            why = sc.tool_status.get(t, "not run")
            rows.append(f"| {label} | {why} |" + " |" * (len(head) - 2))
            continue
        good, total = sc.verified(t)
        ver = "yes" if good == total else f"**MIS-SYNC {total - good}/{total}**"
        if t == "ceiling":
            ver = "n/a"
        cells = [
            label,
            _stat(sc.stat(t, "wall")),
            _stat(sc.stat(t, "cpu")),
            _stat(sc.stat(t, "maxrss_mb"), 1),
            _stat(sc.stat(t, "server_cpu"), 2),
        ]
        if bytes_col:
            s = sc.stat(t, "bytes_down")
            cells.append(_bytes(s.median if s else None))
        cells.append(ver)
        if t == base:
            cells += ["", ""]
        else:
            cells += [_ratio(sc.ratio(base, t, "wall")), _ratio(sc.ratio(base, t, "cpu"))]
        rows.append("| " + " | ".join(cells) + " |")
    return rows


def _problems(sc: Scenario) -> list[str]:
    out = []
    for m in sc.measurements:
        if not m.ok:
            why = m.verdict.problems[:3] if m.verdict and m.verdict.problems else []
            if m.run.rc != 0:
                why.insert(0, f"exit status {m.run.rc}: {_tail(m.run.stderr)}")
            out.append(f"- {m.tool}, repetition {m.rep + 1}: " + "; ".join(why))
    notes = sorted(
        {f"- {m.tool}: {n}" for m in sc.measurements if m.verdict for n in m.verdict.notes}
    )
    return out + notes


def _tail(text: str) -> str:
    lines = [x.strip() for x in text.strip().splitlines() if x.strip()]
    return lines[-1][:200] if lines else ""


# -- targets -----------------------------------------------------------------------------------


def targets(scs: dict[str, Scenario]) -> list[tuple[str, str, str]]:
    rows: list[tuple[str, str, str]] = []

    def verdict(ok: bool | None) -> str:
        return "–" if ok is None else ("met" if ok else "**missed**")

    def r(key: str, other: str, attr: str = "wall") -> Stat | None:
        sc = scs.get(key)
        return sc.ratio("syncd", other, attr) if sc else None

    if (s := r("1", "mbsync")) is not None:
        rows.append(
            (
                "initial sync <= 0.75x mbsync (stretch 0.5x)",
                f"{s.median:.2f}x",
                verdict(s.median <= 0.75) + (" (stretch met)" if s.median <= 0.5 else ""),
            )
        )
    if (s := r("1", "ceiling")) is not None:
        rows.append(
            (
                "initial sync within 1.5x of the raw-fetch ceiling",
                f"{s.median:.2f}x",
                verdict(s.median <= 1.5),
            )
        )
    if (s := r("2", "mbsync")) is not None:
        n = scs["2"].extra.get("corpus", {}).get("messages")
        rows.append(
            (
                f"no-op resync <= 3x mbsync ({n} messages)",
                f"{s.median:.2f}x",
                verdict(s.median <= 3),
            )
        )
    if (s := r("2", "mbsync", "bytes_down")) is not None:
        rows.append(
            (
                "no-op bytes from server <= 5% of mbsync's",
                f"{s.median * 100:.1f}%",
                verdict(s.median <= 0.05),
            )
        )
    for key, what in (("3", "server-change"), ("4", "local-change")):
        if (s := r(key, "mbsync")) is not None:
            rows.append((f"{what} resync <= 2x mbsync", f"{s.median:.2f}x", verdict(s.median <= 2)))
    scale = sorted((sc.extra["messages"], sc) for k, sc in scs.items() if k.startswith("5@"))
    for n, sc in scale:
        if (rss := sc.stat("syncd", "maxrss_mb")) is not None and n in (10_000, 100_000):
            limit = 60 if n == 10_000 else 100
            rows.append(
                (
                    f"no-op peak RSS <= {limit} MB at {n}",
                    f"{rss.median:.0f} MB",
                    verdict(rss.median <= limit),
                )
            )
        if n >= 100_000 and (s := sc.ratio("syncd", "mbsync")) is not None:
            rows.append(
                (f"no-op <= 1.0x mbsync at {n}", f"{s.median:.2f}x", verdict(s.median <= 1.0))
            )
    for kind, what in (("s", "server-change"), ("l", "local-change")):
        for key, sc in scs.items():
            n = sc.extra.get("messages", 0)
            s = sc.ratio("syncd", "mbsync") if key.startswith(f"5{kind}@") else None
            if s is not None and n >= 100_000:
                rows.append(
                    (
                        f"{what} resync <= 1.0x mbsync at {n}",
                        f"{s.median:.2f}x",
                        verdict(s.median <= 1.0),
                    )
                )
    for n, sc in scale:
        init = sc.extra.get("initial", {}).get("syncd", {})
        other = sc.extra.get("initial", {}).get("mbsync", {})
        if n >= 100_000 and init.get("wall") and other.get("wall"):
            x = init["wall"] / other["wall"]
            rows.append(
                (
                    f"initial sync <= 0.75x mbsync at {n} (one run each)",
                    f"{x:.2f}x",
                    verdict(x <= 0.75),
                )
            )
        if n >= 100_000 and "maxrss_mb" in init:
            rows.append(
                (
                    f"initial sync peak RSS <= 100 MB at {n}",
                    f"{init['maxrss_mb']:.0f} MB",
                    verdict(init["maxrss_mb"] <= 100),
                )
            )
    by_n = {n: sc.stat("syncd", "wall") for n, sc in scale}
    if 10_000 in by_n and 100_000 in by_n and by_n[10_000] and by_n[100_000]:
        g = by_n[100_000].median / by_n[10_000].median
        rows.append(
            ("no-op flat (within 20%) from 10 000 to 100 000", f"{g:.2f}x", verdict(g <= 1.2))
        )
    if (rss := (scs["1"].stat("syncd", "maxrss_mb") if "1" in scs else None)) is not None:
        rows.append(
            (
                f"initial sync peak RSS <= 60 MB ({scs['1'].extra['corpus']['messages']} messages)",
                f"{rss.median:.0f} MB",
                verdict(rss.median <= 60),
            )
        )
    for other in ("getmail", "fetchmail"):
        if "6" in scs:
            s = r("6", other)
            st = scs["6"].tool_status.get("syncd")
            rows.append(
                (
                    f"POP3 <= 0.25x {other}",
                    f"{s.median:.2f}x" if s else (st or "–"),
                    verdict(s.median <= 0.25) if s else "–",
                )
            )
    if "7" in scs:
        s = r("7", "msmtp")
        st = scs["7"].tool_status.get("syncd")
        rows.append(
            (
                "outbox drain >= 5x faster than msmtp per message",
                f"{1 / s.median:.1f}x faster" if s else (st or "–"),
                verdict(1 / s.median >= 5) if s else "–",
            )
        )
    if "9" in scs and (s9 := scs["9"].stat("syncd", "wall")) is not None:
        rows.append(
            (
                "`syncd sendmail` <= 50 ms per call (issue 13)",
                f"{s9.median * 1000:.0f} ms",
                verdict(s9.median <= 0.050),
            )
        )
    if "8" in scs:
        sc = scs["8"]
        if sc.status != OK:
            rows.append(("daemon latencies < 1 s, idle CPU < 1 s / 10 min", sc.status, "–"))
        else:
            for k in ("delivery_to_file", "rename_to_server_flag", "outbox_to_250"):
                med = sc.extra.get(k, {}).get("median")
                rows.append(
                    (
                        f"daemon {k.replace('_', ' ')} median < 1 s",
                        f"{med:.3f} s" if med is not None else "timed out",
                        verdict(med is not None and med < 1),
                    )
                )
            idle = sc.extra.get("idle_cpu_per_10min", {}).get("per_10min")
            if idle is not None:
                rows.append(
                    ("daemon idle CPU < 1 s per 10 min", f"{idle:.2f} s", verdict(idle < 1))
                )
    return rows


# -- the documents -----------------------------------------------------------------------------


def markdown(meta: dict[str, Any], scs: dict[str, Scenario], analysis: str) -> str:
    m = meta["machine"]
    v = m["versions"]
    out = [
        "# syncd benchmark results",
        "",
        f"Generated by `{meta['command']}` on {meta['date']} in {meta['duration_s'] / 60:.1f} "
        "minutes. Regenerate with `scripts/bench` (the tables and results.json are rewritten; "
        'the section "What limits it" is kept).',
        *[
            f"Kept from an earlier run with `--merge`: {', '.join(m['scenarios'])} "
            f"(`{m['command']}`, {m['date']}, syncd git {m.get('git', '?')})."
            for m in meta.get("merged", [])
        ],
        "",
        "## Machine",
        "",
        "| | |",
        "| --- | --- |",
        f"| CPU | {m['nproc']} x {m['cpu']} |",
        f"| memory | {m['memory']} |",
        f"| system | {m['os']}, kernel {m['kernel']}, {m['filesystem']} |",
        f"| Python | {m['python']} |",
        f"| Dovecot | {v.get('dovecot')} (private instance on 127.0.0.1, `mail_fsync = never`) |",
        f"| syncd | {v.get('syncd')} (git {meta.get('git', '?')}), "
        f"{meta.get('syncd_install', 'the development install')} |",
        f"| process measurement | `bench/{meta.get('launcher', 'runner.c')}` (fork, exec, wait4) |",
        f"| anchors | mbsync (isync) {v.get('mbsync')}, OfflineIMAP {v.get('offlineimap')}, "
        f"getmail6 {v.get('getmail')}, fetchmail {v.get('fetchmail')}, msmtp {v.get('msmtp')} |",
        f"| load average | {meta['load_before']} before, {meta['load_after']} after |",
        "",
        "Other work ran on this machine at the same time, so absolute times are noisy. The tools "
        "take turns within each repetition (the order rotates), and every ratio is taken within "
        "a repetition and then summarised: median (min–max) over repetitions.",
        "",
        "How to read the tables: times are the whole process, interpreter start included (wall "
        "clock; CPU = user + system of the process and everything it waited for; peak RSS of the "
        "largest process). *Dovecot CPU* is what the server's mail processes spent serving the "
        "run. *verified*: after every run the Maildir is compared with the server, message by "
        "message (see `bench/verify.py`); a run that does not match is shown but marked.",
        "",
        *[f"**Error: {e}** (see the benchmark's output)" for e in meta.get("errors", [])],
        "",
        "## Targets of issue 5",
        "",
        "| target | measured (median ratio) | |",
        "| --- | --- | --- |",
    ]
    out += [f"| {a} | {b} | {c} |" for a, b, c in targets(scs)]
    out.append("")
    for key in ("1", "2a", "2", "3", "4"):
        if key in scs:
            out += _imap_section(scs[key])
    if any(k.startswith("5") for k in scs):
        out += _scale_section(scs)
    for key in ("6", "7"):
        if key in scs:
            out += _simple_section(scs[key])
    if "8" in scs:
        out += _daemon_section(scs["8"])
    if "9" in scs:
        out += _simple_section(scs["9"])
    out += ["", ANALYSIS_START, analysis.strip(), ANALYSIS_END, ""]
    return "\n".join(out)


def _imap_section(sc: Scenario) -> list[str]:
    out = [f"## {sc.key}. {sc.title}", ""]
    c = sc.extra.get("corpus")
    if c:
        out.append(
            f"{c['messages']} messages, {c['bytes'] / 1e6:.0f} MB in {len(c['folders'])} folders."
        )
    if "changes" in sc.extra:
        out.append(
            "Changes: "
            + ", ".join(f"{v} {k.replace('_', ' ')}" for k, v in sc.extra["changes"].items())
            + "."
        )
    out.append("")
    out += tool_table(sc, bytes_col=sc.key == "2")
    out.append("")
    out += [f"- {n}" for n in sc.notes]
    out += _problems(sc)
    out.append("")
    return out


def _scale_section(all_scs: dict[str, Scenario]) -> list[str]:
    sizes = sorted({sc.extra["messages"] for k, sc in all_scs.items() if k.startswith("5")})
    out = [
        "## 5. Scale: resyncs by mailbox size",
        "",
        "| messages | tool | no-op s | no-op after a changing sync s | after server changes s "
        "| after local changes s | peak RSS MB (no-op / others) | CPU s (no-op) | verified "
        "| initial sync s (RSS MB) | first resync s |",
        "|" + " --- |" * 11,
    ]
    ratio_rows = []
    notes: list[str] = []
    for n in sizes:
        noop, after, srv, loc = (all_scs.get(f"5{k}@{n}") for k in ("", "f", "s", "l"))
        if noop is None:
            continue
        parts = [x for x in (noop, after, srv, loc) if x is not None]
        for t in noop.tools:
            if not noop.of(t):
                out.append(f"| {n} | {t} | {noop.tool_status.get(t, 'not run')} |" + " |" * 9)
                continue
            good = sum(x.verified(t)[0] for x in parts)
            total = sum(x.verified(t)[1] for x in parts)
            checked = sum(1 for x in parts for m in x.of(t) if m.verdict is not None)
            ver = "yes" if good == total else f"**MIS-SYNC {total - good}/{total}**"
            if checked < total and good == total:
                ver = f"yes ({checked} of {total} checked)"
            info = noop.extra.get("initial", {}).get(t, {})
            init = (
                f"{_s(info['wall'], 2)} ({info['maxrss_mb']:.0f})" if "wall" in info else "see 1."
            )
            first = _s(info["first_resync"]) if "first_resync" in info else "see 2a."
            rss_resync = max(
                (s.max for x in (after, srv, loc) if x and (s := x.stat(t, "maxrss_mb"))),
                default=None,
            )
            out.append(
                f"| {n} | {t} | {_stat(noop.stat(t, 'wall'))} | "
                f"{_stat(after.stat(t, 'wall')) if after else '–'} | "
                f"{_stat(srv.stat(t, 'wall')) if srv else '–'} | "
                f"{_stat(loc.stat(t, 'wall')) if loc else '–'} | "
                f"{_s(noop.stat(t, 'maxrss_mb').median, 1)} / {_s(rss_resync, 1)} | "
                f"{_stat(noop.stat(t, 'cpu'))} | {ver} | {init} | {first} |"
            )
        ratio_rows.append(
            f"| {n} | "
            + " | ".join(
                _ratio(x.ratio("syncd", "mbsync")) if x else "–" for x in (noop, after, srv, loc)
            )
            + " |"
        )
        for x in parts:
            notes += [f"- {n}: {y}" for y in x.notes if f"- {n}: {y}" not in notes]
            notes += [y for y in _problems(x) if y not in notes]
    walls = {
        sc.extra["messages"]: sc.stat("syncd", "wall")
        for k, sc in all_scs.items()
        if k.startswith("5@")
    }
    pts = sorted((n, s.median) for n, s in walls.items() if s)
    if len(pts) > 1:
        growth = ", ".join(
            f"{b[1] / a[1]:.2f}x from {a[0]} to {b[0]}" for a, b in itertools.pairwise(pts)
        )
        notes.append(f"- syncd's no-op time grows {growth} messages.")
    out += [
        "",
        "syncd/mbsync wall time, per repetition, median (min–max):",
        "",
        "| messages | no-op | no-op after a changing sync | after server changes "
        "| after local changes |",
        "| --- | --- | --- | --- | --- |",
        *ratio_rows,
        "",
        *notes,
        "- OfflineIMAP is left out of the scale runs: its initial sync of "
        "100 000 messages alone would take a quarter of an hour.",
        "",
    ]
    return out


def _simple_section(sc: Scenario) -> list[str]:
    out = [f"## {sc.key}. {sc.title}", ""]
    c = sc.extra.get("corpus")
    if c:
        out.append(f"{c['messages']} messages, {c['bytes'] / 1e6:.0f} MB.")
    if sc.status != OK:
        out.append(f"**{sc.status}.**")
    out.append("")
    out += tool_table(sc)
    if sc.key == "7":
        q = sc.stat("syncd", "queue_wall")
        if q is not None:
            qc = sc.stat("syncd", "queue_cpu")
            out.append(
                f"| syncd sendmail x{c['messages'] if c else '?'} (queueing, apart) | "
                f"{_stat(q)} | {_stat(qc)} | {_stat(sc.stat('syncd', 'queue_maxrss_mb'), 1)}"
                " | | | | |"
            )
    out.append("")
    out += [f"- {n}" for n in sc.notes]
    out += _problems(sc)
    out.append("")
    return out


def _daemon_section(sc: Scenario) -> list[str]:
    out = [f"## 8. {sc.title}", ""]
    if sc.status != OK:
        return [*out, f"**{sc.status}**: {sc.reason}", ""]
    out += ["| path | median s | samples | timeouts |", "| --- | --- | --- | --- |"]
    for k in ("delivery_to_file", "rename_to_server_flag", "outbox_to_250"):
        d = sc.extra.get(k, {})
        out.append(
            f"| {k.replace('_', ' ')} | {_s(d.get('median'))} | "
            f"{len(d.get('samples', []))} | {d.get('timeouts')} |"
        )
    idle = sc.extra.get("idle_cpu_per_10min")
    if idle:
        out += [
            "",
            f"Idle CPU: {idle['cpu_s']:.3f} s in {idle['window_s']} s, "
            f"{idle['per_10min']:.2f} s per 10 minutes.",
        ]
    return [*out, ""]


def existing_analysis(path: Path) -> str:
    try:
        text = path.read_text()
    except OSError:
        return DEFAULT_ANALYSIS
    a, b = text.find(ANALYSIS_START), text.find(ANALYSIS_END)
    if a < 0 or b < 0:
        return DEFAULT_ANALYSIS
    return text[a + len(ANALYSIS_START) : b]


DEFAULT_ANALYSIS = """## What limits it

(Not written yet: profile the scenarios that miss a target and explain here.)"""


def write(out_dir: Path, meta: dict[str, Any], scs: dict[str, Scenario]) -> tuple[Path, Path]:
    out_dir.mkdir(parents=True, exist_ok=True)
    md = out_dir / "RESULTS.md"
    js = out_dir / "results.json"
    analysis = existing_analysis(md)
    md.write_text(markdown(meta, scs, analysis))
    data = {
        **meta,
        "scenarios": {k: sc.to_json() for k, sc in scs.items()},
        "targets": [{"target": a, "measured": b, "verdict": c} for a, b, c in targets(scs)],
    }
    js.write_text(json.dumps(data, indent=1, default=str) + "\n")
    return md, js


def now() -> str:
    return dt.datetime.now(dt.UTC).strftime("%Y-%m-%d %H:%M UTC")


__all__ = ["NOT_YET", "machine", "markdown", "now", "write"]
