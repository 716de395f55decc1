"""Daemon latencies against a private Dovecot, 50 samples each.

1. mail delivered by LMTP -> file in the local Maildir (the INBOX IDLE connection);
2. a local flag change (file renamed to :2,S) -> \\Seen on the server.

Run from the repository root: ``.venv/bin/python -m bench.daemon.latency``
"""

from __future__ import annotations

import json
import os
import signal
import statistics
import subprocess
import tempfile
import time
from pathlib import Path

from tests.servers.dovecot import Dovecot

REPO = Path(__file__).resolve().parents[2]
SAMPLES = 50


def message(i: int) -> bytes:
    return (
        f"From: a@example.org\r\nTo: b@example.org\r\nSubject: latency {i}\r\n"
        f"Message-ID: <lat{i}@example.org>\r\n\r\nbody {i}\r\n"
    ).encode()


def summary(xs: list[float]) -> dict[str, float]:
    xs = sorted(xs)
    return {
        "median": round(statistics.median(xs), 3),
        "p90": round(xs[int(len(xs) * 0.9)], 3),
        "max": round(xs[-1], 3),
    }


def main() -> None:
    tmp = Path(tempfile.mkdtemp(prefix="syncd-latency-"))
    with Dovecot(tmp / "server") as server:
        user = server.add_user()
        (tmp / "pw").write_text(user.password)
        config = tmp / "config.yaml"
        config.write_text(
            f"state_dir: {tmp / 'state'}\naccounts:\n  a:\n    maildir: {tmp / 'Mail'}\n"
            f"    imap:\n      host: 127.0.0.1\n      port: {server.imap_port}\n"
            f"      tls: none\n      username: {user.name}\n"
            f"      password_command: cat {tmp / 'pw'}\n"
        )
        daemon = subprocess.Popen(
            [str(REPO / ".venv/bin/syncd"), "run", "-c", str(config)],
            stderr=subprocess.DEVNULL,
        )
        inbox = tmp / "Mail" / "INBOX"
        while not (inbox / "new").exists():
            time.sleep(0.05)
        time.sleep(1)
        delivery = []
        for i in range(SAMPLES):
            start = time.monotonic()
            server.deliver(user, message(i))
            while len(os.listdir(inbox / "new")) + len(os.listdir(inbox / "cur")) <= i:
                time.sleep(0.002)
            delivery.append(time.monotonic() - start)
            time.sleep(0.3)
        rename = []
        client = server.imap(user)
        client.select_folder("INBOX", readonly=True)
        for i, name in enumerate(sorted(os.listdir(inbox / "new"))[:SAMPLES]):
            time.sleep(0.3)
            start = time.monotonic()
            os.rename(inbox / "new" / name, inbox / "cur" / (name.split(":")[0] + ":2,S"))
            while True:
                client.noop()
                if len(client.search(["SEEN"])) > i:
                    break
                time.sleep(0.002)
            rename.append(time.monotonic() - start)
        client.logout()
        daemon.send_signal(signal.SIGTERM)
        daemon.wait()
    print(
        json.dumps(
            {"delivery_to_file_s": summary(delivery), "rename_to_server_flag_s": summary(rename)}
        )
    )


if __name__ == "__main__":
    main()
