"""Profile syncd in the benchmark's scenarios: ``python -m bench.profile [--messages N]``.

Sets up the same server and corpus as scenarios 1-4, then runs ``syncd sync`` under cProfile
for the initial sync, a no-op, a resync after server changes and one after local changes, and
once with ``-X importtime`` (the no-op's start-up).  Prints the top functions of each profile
and keeps the ``.prof`` files (for snakeviz, or ``python -m pstats``) in ``--output``.
"""

from __future__ import annotations

import argparse
import io
import pstats
import re
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from bench import anchors, measure, scenarios
from bench.server import BenchServer
from tests.servers.corpus import make_corpus


def top(prof: Path, n: int = 25) -> str:
    out = io.StringIO()
    st = pstats.Stats(str(prof), stream=out)
    st.strip_dirs()
    st.sort_stats("tottime").print_stats(n)
    st.sort_stats("cumulative").print_stats(n)
    return out.getvalue()


def importtime(text: str, n: int = 15) -> str:
    rows = []
    for line in text.splitlines():
        m = re.match(r"import time:\s+(\d+) \|\s+(\d+) \|(\s*)(\S+)", line)
        if m:
            rows.append((int(m.group(2)), int(m.group(1)), len(m.group(3)), m.group(4)))
    total = sum(r[1] for r in rows)
    lines = [f"total import time {total / 1000:.1f} ms; top-level imports by cumulative time:"]
    first = min((r[2] for r in rows), default=0)
    for cum, _self, depth, name in sorted((r for r in rows if r[2] <= first + 1), reverse=True)[:n]:
        lines.append(f"  {cum / 1000:7.1f} ms  {'  ' * (depth - first)}{name}")
    return "\n".join(lines)


def main() -> int:
    p = argparse.ArgumentParser(prog="python -m bench.profile")
    p.add_argument("--messages", type=int, default=10_000)
    p.add_argument("--folders", type=int, default=10)
    p.add_argument("--output", type=Path, default=Path(tempfile.gettempdir()) / "syncd-profile")
    p.add_argument("--top", type=int, default=25)
    args = p.parse_args()
    args.output.mkdir(parents=True, exist_ok=True)
    work = Path(tempfile.mkdtemp(prefix="syncd-profile-"))
    measure.setup(work / "runner")
    anchors.prepare_syncd(work)
    opts = scenarios.Options(messages=args.messages, folders=args.folders, work=work)
    corpus = make_corpus(args.messages, scenarios.folder_names(args.folders), seed=opts.seed)
    with BenchServer(work / "srv") as srv:
        srv.load(corpus)
        del corpus
        user = srv.clone()
        tool = anchors.SyncdImap(work / "syncd", scenarios.login(srv, user))
        seat = scenarios.Seat(tool, user)
        argv = tool.argv()
        cfg = argv[argv.index("-c") + 1]
        py = anchors.SYNCD.with_name("python")

        def profiled(name: str) -> None:
            seat.settle()
            prof = args.output / f"{name}.prof"
            t0 = time.perf_counter()
            done = subprocess.run(
                [
                    str(py),
                    "-m",
                    "cProfile",
                    "-o",
                    str(prof),
                    "-m",
                    "syncd",
                    "sync",
                    "-q",
                    "-c",
                    cfg,
                ],
                capture_output=True,
                text=True,
                check=False,
                cwd=work,
            )
            wall = time.perf_counter() - t0
            seat.touched = time.monotonic()
            print(f"\n===== {name}: exit {done.returncode}, {wall:.2f} s under cProfile =====")
            if done.returncode:
                print(done.stderr[-2000:])
            print(top(prof, args.top))

        profiled("initial")
        profiled("noop-first")
        profiled("noop-steady")
        seat.settle()
        done = subprocess.run(
            [str(py), "-X", "importtime", "-m", "syncd", "sync", "-q", "-c", cfg],
            capture_output=True,
            text=True,
            check=False,
            cwd=work,
        )
        seat.touched = time.monotonic()
        (args.output / "importtime.txt").write_text(done.stderr)
        print("\n===== no-op start-up (-X importtime) =====")
        print(importtime(done.stderr))
        scenarios.server_changes(srv, user, opts)
        profiled("server-change")
        scenarios.local_changes(seat, opts)
        profiled("local-change")
    print(f"\nprofiles in {args.output}")
    subprocess.run(["rm", "-rf", str(work)], check=False)
    return 0


if __name__ == "__main__":
    sys.exit(main())
