"""Command line of the benchmark: ``python -m bench --help``."""

from __future__ import annotations

import argparse
import json
import os
import shlex
import subprocess
import sys
import tempfile
import time
import traceback
from collections.abc import Callable
from pathlib import Path
from typing import Any

from bench import anchors, measure, report, results, scenarios
from bench.results import Scenario

HERE = Path(__file__).resolve().parent


def _ints(text: str) -> list[int]:
    return [int(x.replace("_", "")) for x in text.split(",") if x.strip()]


def parse(argv: list[str]) -> argparse.Namespace:
    p = argparse.ArgumentParser(
        prog="python -m bench",
        description="syncd side by side with mbsync, OfflineIMAP, getmail6, fetchmail and msmtp "
        "on a private loopback Dovecot. Writes RESULTS.md and results.json.",
    )
    p.add_argument("--messages", type=int, default=10_000, help="corpus size (default 10000)")
    p.add_argument("--folders", type=int, default=10, help="folders (default 10)")
    p.add_argument("--reps", type=int, default=3, help="repetitions (default 3)")
    p.add_argument(
        "--only", default="1,2,3,4,5,6,7,8,9", help="scenarios to run, e.g. 1,2 (default all)"
    )
    p.add_argument(
        "--scale",
        type=_ints,
        default=[1000, 10_000],
        help="mailbox sizes for scenario 5 (default 1000,10000; add 100000 for the 2.7 GB run)",
    )
    p.add_argument(
        "--offlineimap-reps",
        type=int,
        default=None,
        help="repetitions that include OfflineIMAP (default: 2 of 3 for 10000 messages or more, "
        "else all)",
    )
    p.add_argument("--pop3-messages", type=int, default=2000, help="scenario 6 (default 2000)")
    p.add_argument("--outbox-messages", type=int, default=500, help="scenario 7 (default 500)")
    p.add_argument("--quick", action="store_true", help="smoke run: 1000 messages, 1 repetition")
    p.add_argument(
        "--output",
        type=Path,
        default=None,
        help="where RESULTS.md and results.json go (default bench/, or bench/quick/ with --quick)",
    )
    p.add_argument("--workdir", type=Path, default=None, help="scratch space (default: a temp dir)")
    p.add_argument("--keep", action="store_true", help="keep the scratch directory")
    p.add_argument(
        "--render",
        action="store_true",
        help="run nothing: write RESULTS.md again from the existing results.json",
    )
    p.add_argument(
        "--merge",
        action="store_true",
        help="keep the scenarios of the existing results.json that this run does not measure "
        "(e.g. add the 100000-message scale run to a default run's results)",
    )
    args = p.parse_args(argv)
    if args.quick:
        args.messages = min(args.messages, 1000)
        args.reps = 1
        args.scale = [n for n in args.scale if n <= 1000] or [1000]
        args.pop3_messages = min(args.pop3_messages, 200)
        args.outbox_messages = min(args.outbox_messages, 50)
    return args


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    args = parse(argv)
    only = {x.strip() for x in args.only.split(",") if x.strip()}
    if bad := only - set("123456789"):
        print(f"bench: unknown scenario(s) {', '.join(sorted(bad))}", file=sys.stderr)
        return 2
    out_dir = args.output or (HERE / "quick" if args.quick else HERE)
    if args.render:
        return _render(out_dir)
    oi_reps = args.offlineimap_reps
    if oi_reps is None:
        oi_reps = min(args.reps, 2) if args.messages >= 10_000 else args.reps
    scratch = args.workdir or Path(tempfile.mkdtemp(prefix="syncd-bench-"))
    scratch.mkdir(parents=True, exist_ok=True)
    launcher = measure.setup(scratch / "runner")
    install = anchors.prepare_syncd(scratch)
    opts = scenarios.Options(
        messages=args.messages,
        folders=args.folders,
        reps=args.reps,
        only=only,
        scale=args.scale,
        offlineimap_reps=oi_reps,
        pop3_messages=args.pop3_messages,
        outbox_messages=args.outbox_messages,
        work=scratch.resolve(),
        keep=args.keep,
    )
    meta: dict[str, Any] = {
        "command": "scripts/bench " + shlex.join(argv) if argv else "scripts/bench",
        "date": report.now(),
        "machine": report.machine(),
        "git": _git(),
        "options": {
            k: (sorted(v) if isinstance(v, set) else str(v) if isinstance(v, Path) else v)
            for k, v in vars(opts).items()
        },
        "load_before": _load(),
        "launcher": launcher,
        "syncd_install": install,
    }
    scenarios.say(f"bench: scratch {scratch}, results to {out_dir}")
    t0 = time.monotonic()
    scs: dict[str, Scenario] = {}
    steps: list[tuple[str, Callable[[], None]]] = [
        ("scenarios 1-4", lambda: scenarios.imap_chain(opts, scs)),
        ("scenario 5", lambda: scenarios.scale(opts, scs)),
        ("scenario 6", lambda: scenarios.pop3(opts, scs)),
        ("scenario 7", lambda: scenarios.outbox(opts, scs)),
        ("scenario 8", lambda: scenarios.daemon(opts, scs)),
        ("scenario 9", lambda: scenarios.sendmail_calls(opts, scs)),
    ]
    errors: list[str] = meta.setdefault("errors", [])
    try:
        for name, step in steps:
            try:
                step()
            except Exception as exc:  # one broken scenario must not cost the others' results
                traceback.print_exc()
                errors.append(f"{name} stopped with {type(exc).__name__}: {exc}")
                scenarios.say(f"bench: {errors[-1]}")
    finally:
        meta["duration_s"] = time.monotonic() - t0
        meta["load_after"] = _load()
        if args.merge:
            _merge(out_dir / "results.json", scs, meta)
        if scs:
            ordered = dict(sorted(scs.items(), key=lambda kv: _order(kv[0])))
            md, js = report.write(out_dir, meta, ordered)
            scenarios.say(f"bench: wrote {md} and {js}")
        if not args.keep and args.workdir is None:
            subprocess.run(["rm", "-rf", str(scratch)], check=False)
    print((out_dir / "RESULTS.md").read_text() if (out_dir / "RESULTS.md").exists() else "")
    return 0


def _render(out_dir: Path) -> int:
    data = json.loads((out_dir / "results.json").read_text())
    scs = {k: results.scenario_from_json(d) for k, d in data.pop("scenarios").items()}
    data.pop("targets", None)
    md, _ = report.write(out_dir, data, scs)
    scenarios.say(f"bench: wrote {md} from {out_dir / 'results.json'}")
    return 0


def _merge(path: Path, scs: dict[str, Scenario], meta: dict[str, Any]) -> None:
    """Add the scenarios of an earlier run that this run did not measure, saying so."""
    try:
        old = json.loads(path.read_text())
    except (OSError, ValueError):
        return
    kept = []
    for key, d in old.get("scenarios", {}).items():
        if key in scs:
            continue
        sc = results.scenario_from_json(d)
        if not any(n.startswith("From the run of") for n in sc.notes):
            sc.notes.insert(0, f"From the run of {old.get('date')} (`{old.get('command')}`).")
        scs[key] = sc
        kept.append(key)
    if kept:
        earlier = [m for m in old.get("merged", []) if set(m["scenarios"]) & set(kept)]
        meta["merged"] = [
            *earlier,
            {
                "date": old.get("date"),
                "command": old.get("command"),
                "git": old.get("git"),
                "scenarios": kept,
            },
        ]


def _order(key: str) -> tuple[int, str, int]:
    k, _, n = key.partition("@")
    return int(k[0]), k[1:] or "~", int(n or 0)


def _load() -> str:
    return " ".join(f"{x:.2f}" for x in os.getloadavg())


def _git() -> str:
    try:
        done = subprocess.run(
            ["git", "-C", str(HERE.parent), "describe", "--always", "--dirty"],
            capture_output=True,
            text=True,
            check=False,
        )
        return done.stdout.strip() or "?"
    except OSError:
        return "?"


if __name__ == "__main__":
    sys.exit(main())
