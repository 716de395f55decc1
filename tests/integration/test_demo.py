"""scripts/demo --keep: what it prints is enough to use the server it leaves running."""

from __future__ import annotations

import contextlib
import os
import re
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest

from tests.integration.conftest import REPO
from tests.servers import require_dovecot

pytestmark = [pytest.mark.dovecot, pytest.mark.slow]


def _shell(command: str, *, capture: bool = True) -> subprocess.CompletedProcess[str]:
    # A daemon started by the command keeps its output open: capture=False for that one.
    out = subprocess.PIPE if capture else subprocess.DEVNULL
    return subprocess.run(
        ["bash", "-c", command], stdout=out, stderr=out, text=True, cwd=REPO, timeout=60
    )


def _greeting(port: int) -> bytes | None:
    with contextlib.suppress(OSError), socket.create_connection(("127.0.0.1", port), 1) as s:
        s.settimeout(5)
        return s.recv(64)
    return None


def _until(predicate, timeout: float = 20.0):
    deadline = time.monotonic() + timeout
    while not (value := predicate()) and time.monotonic() < deadline:
        time.sleep(0.05)
    return value


def test_demo_keep_prints_what_it_takes_to_use_the_server(tmp_path: Path) -> None:
    require_dovecot()
    demo = tmp_path / "demo"
    done = subprocess.run(
        [sys.executable, "scripts/demo.py", "--keep", "--messages", "5", "--dir", str(demo)],
        capture_output=True,
        text=True,
        cwd=REPO,
        timeout=300,
    )
    out = done.stdout
    pid = re.search(r"Dovecot keeps running \(pid (\d+)", out)
    commands = [line.strip()[2:] for line in out.splitlines() if line.strip().startswith("$ ")]
    stop = next((c for c in commands if c.endswith(" stop")), None)
    try:
        assert done.returncode == 0, out + done.stderr
        assert pid and stop, out
        ports = re.search(
            r"IMAP 127\.0\.0\.1:(\d+), POP3 127\.0\.0\.1:\d+, LMTP 127\.0\.0\.1:(\d+)", out
        )
        assert ports, out
        imap_port, lmtp_port = int(ports[1]), int(ports[2])
        conf = re.search(r"Dovecot's config, for doveadm -c: (\S+)", out)
        assert conf and Path(conf[1]).is_file(), out
        status, deliver, start = (
            next(c for c in commands if "mailbox status" in c),
            next(c for c in commands if "LMTP" in c),
            next(c for c in commands if re.search(r"dovecot -c \S+$", c)),
        )
        assert f"-c {conf[1]}" in status and str(lmtp_port) in deliver, out

        def inbox() -> int:
            r = _shell(status)
            assert r.returncode == 0, r.stderr
            return int(re.search(r"^INBOX messages=(\d+)$", r.stdout, re.M)[1])  # type: ignore[index]

        before = inbox()
        message = tmp_path / "message.eml"
        message.write_bytes(b"From: a@example.org\nTo: demo@example.org\nSubject: hi\n\nhello\n")
        r = _shell(deliver.replace("message.eml", str(message)))
        assert r.returncode == 0, r.stderr
        assert inbox() == before + 1

        assert _shell(stop).returncode == 0
        assert _until(lambda: _greeting(imap_port) is None), "still answering after stop"
        assert _shell(start, capture=False).returncode == 0
        greeting = _until(lambda: _greeting(imap_port))
        assert greeting and greeting.startswith(b"* OK"), greeting
        assert inbox() == before + 1  # the same mail, on the same port
    finally:
        if stop:
            _shell(stop)
        if pid:
            with contextlib.suppress(ProcessLookupError, PermissionError):
                os.killpg(int(pid[1]), signal.SIGTERM)
