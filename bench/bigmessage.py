"""Peak RSS of ``syncd sync`` moving one big message down, then up (issue 11, item 6).

    .venv/bin/python -m bench.bigmessage                      # 200 MB, this working tree
    .venv/bin/python -m bench.bigmessage --size-mb 100        # another size
    .venv/bin/python -m bench.bigmessage --source /tmp/old    # another checkout's syncd

A private loopback Dovecot gets one user holding one message of ``--size-mb`` (CRLF lines,
8-bit bytes, a bare CR and a CRLF straddling every 1 MiB boundary). ``syncd sync`` runs
once to download it into an empty Maildir; then a file of the same size in LF form is put
in a new local folder and ``syncd sync`` runs again to upload it. Each run is one process
started through the benchmark's launcher (``measure.run``: ``runner.c``, peak RSS from
``wait4``), so the figure is syncd's own peak, not the benchmark's. Both results are then
checked byte for byte (LF in the Maildir, CRLF on the server).

The target: peak RSS below the message size plus 100 MB, both ways. ``--source`` runs
``python -m syncd`` with that directory first on ``sys.path`` (for before/after numbers
from a ``git archive`` of an older commit). Prints one JSON object; exit status 1 when a
target or a byte check fails.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import sys
import tempfile
from pathlib import Path
from typing import Any

from bench import measure
from syncd.model import CHUNK_BYTES, to_local_bytes, to_remote_bytes
from tests.servers.dovecot import Dovecot

MB = 1024 * 1024
REPO = Path(__file__).resolve().parents[1]


def message(size: int, eol: bytes, head: bytes) -> bytes:
    """``head`` plus filler lines ending in ``eol``, with a bare CR and a CRLF at every
    1 MiB boundary (where syncd cuts the message into chunks)."""
    line = b"0123456789abcdefghijklmnopqrstuvwxyz \xc3\xa4\xff ABCDEFGHIJKLMNOPQRSTUVWXYZ" + eol
    data = bytearray(head + line * ((size - len(head)) // len(line)))
    for at in range(CHUNK_BYTES, len(data) - 10, CHUNK_BYTES):
        data[at - 3 : at + 1] = b"\r \r\n"
    return bytes(data)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m bench.bigmessage", description=__doc__)
    p.add_argument("--size-mb", type=int, default=200, help="message size (default 200)")
    p.add_argument("--source", type=Path, default=REPO, help="tree whose syncd runs")
    p.add_argument("--workdir", type=Path, default=None, help="scratch directory")
    p.add_argument("--keep", action="store_true", help="keep the scratch directory")
    args = p.parse_args(argv)
    size = args.size_mb * MB
    work = Path(tempfile.mkdtemp(prefix="bench-big-", dir=args.workdir))
    measure.setup(work / "runner")
    env = {**os.environ, "PYTHONPATH": str(args.source.resolve())}
    out: dict[str, Any] = {"size_mb": args.size_mb, "source": str(args.source)}
    ok = True
    try:
        with Dovecot(work / "dovecot", fsync=False) as server:
            user = server.add_user()
            down = message(size, b"\r\n", b"Subject: big down\r\nMessage-ID: <down@bench>\r\n\r\n")
            server.fill(user, {"INBOX": [(down, ())]})
            maildir = work / "Mail"
            (work / "pw").write_text(user.password + "\n")
            config = work / "config.yaml"
            config.write_text(
                f"""state_dir: {work / "state"}
accounts:
  big:
    maildir: {maildir}
    layout: verbatim
    imap:
      host: {server.host}
      port: {server.imap_port}
      tls: none
      username: {user.name}
      password_command: cat {work / "pw"}
      timeout: 300
"""
            )
            argv_sync = [sys.executable, "-m", "syncd", "sync", "-q", "-c", str(config)]
            log = work / "syncd.log"

            run = measure.run(argv_sync, cwd=args.source, env=env, log=log)
            (path,) = (maildir / "INBOX" / "new").iterdir()
            exact = run.rc == 0 and path.read_bytes() == to_local_bytes(down)
            out["down"] = {"maxrss_mb": round(run.maxrss_mb, 1), "wall": round(run.wall, 2)}
            out["down"]["byte_exact"] = exact
            ok &= exact and run.maxrss_kb * 1024 < size + 100 * MB
            del down
            path.unlink()  # the disk holds the message a few times already

            up = message(size, b"\n", b"Subject: big up\nMessage-ID: <up@bench>\n\n")
            box = maildir / "Up"
            for sub in ("cur", "new", "tmp"):
                (box / sub).mkdir(parents=True)
            (box / "cur" / "1700000000.M1P1.bench:2,S").write_bytes(up)
            run = measure.run(argv_sync, cwd=args.source, env=env, log=log)
            served = [raw for raw, _ in server.messages(user, "Up").values()]
            exact = run.rc == 0 and served == [to_remote_bytes(up)]
            out["up"] = {"maxrss_mb": round(run.maxrss_mb, 1), "wall": round(run.wall, 2)}
            out["up"]["byte_exact"] = exact
            ok &= exact and run.maxrss_kb * 1024 < size + 100 * MB
            if not ok and log.exists():
                out["log"] = log.read_text(errors="replace")[-2000:]
    finally:
        if not args.keep:
            shutil.rmtree(work, ignore_errors=True)
    out["limit_mb"] = args.size_mb + 100
    out["ok"] = ok
    print(json.dumps(out, indent=2))
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
