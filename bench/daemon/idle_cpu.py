"""CPU and memory of an idle daemon: 3 IDLE folders, 10 folders, 3 000 messages, 10 minutes.

Run from the repository root: ``.venv/bin/python -m bench.daemon.idle_cpu [SECONDS]``
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from tests.servers.corpus import make_corpus
from tests.servers.dovecot import Dovecot

REPO = Path(__file__).resolve().parents[2]


def cpu_seconds(pid: int) -> float:
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def rss(pid: int) -> str:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS"):
            return line.split(":", 1)[1].strip()
    return "?"


def main() -> None:
    seconds = float(sys.argv[1]) if len(sys.argv) > 1 else 600.0
    tmp = Path(tempfile.mkdtemp(prefix="syncd-idlecpu-"))
    with Dovecot(tmp / "server") as server:
        user = server.add_user()
        folders = ["INBOX"] + [f"F{i}" for i in range(9)]
        server.fill(user, make_corpus(3000, folders, big_share=0))
        (tmp / "pw").write_text(user.password)
        config = tmp / "config.yaml"
        config.write_text(
            f"state_dir: {tmp / 'state'}\naccounts:\n  a:\n    maildir: {tmp / 'Mail'}\n"
            f"    imap:\n      host: 127.0.0.1\n      port: {server.imap_port}\n"
            f"      tls: none\n      username: {user.name}\n"
            f"      password_command: cat {tmp / 'pw'}\n      idle: [INBOX, F1, F2]\n"
        )
        daemon = subprocess.Popen(
            [str(REPO / ".venv/bin/syncd"), "run", "-c", str(config)],
            stderr=subprocess.DEVNULL,
        )
        time.sleep(20)  # the initial sync
        before = cpu_seconds(daemon.pid)
        time.sleep(seconds)
        used = cpu_seconds(daemon.pid) - before
        memory = rss(daemon.pid)
        daemon.send_signal(signal.SIGTERM)
        daemon.wait()
    print(json.dumps({"seconds": seconds, "cpu_seconds": round(used, 2), "rss": memory}))


if __name__ == "__main__":
    main()
