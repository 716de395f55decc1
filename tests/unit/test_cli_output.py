"""The CLI's output as a shell pipeline sees it: real processes, real pipes."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]


def _config(tmp_path: Path) -> Path:
    config = tmp_path / "config.yaml"
    config.write_text(
        f"""state_dir: {tmp_path}/state
accounts:
  demo:
    maildir: {tmp_path}/Mail
    imap:
      host: 127.0.0.1
      tls: none
      username: me
      password_command: echo x
"""
    )
    return config


def test_status_into_a_pipe_whose_reader_is_gone_ends_quietly(tmp_path: Path) -> None:
    # `syncd status | head -1`: head exits after its line; syncd's next write meets a
    # closed pipe. Closing the read end before syncd starts makes that certain.
    read_end, write_end = os.pipe()
    os.close(read_end)
    try:
        done = subprocess.run(
            [sys.executable, "-m", "syncd", "status", "-c", str(_config(tmp_path))],
            stdout=write_end,
            stderr=subprocess.PIPE,
            text=True,
            cwd=REPO,
            timeout=60,
        )
    finally:
        os.close(write_end)
    assert "BrokenPipeError" not in done.stderr
    assert "Traceback" not in done.stderr
    assert done.stderr == ""
    assert done.returncode == 141  # 128 + SIGPIPE, as for cat in the same place


def test_status_into_head_prints_its_first_line(tmp_path: Path) -> None:
    done = subprocess.run(
        f"{sys.executable} -m syncd status -c {_config(tmp_path)} | head -1",
        shell=True,
        capture_output=True,
        text=True,
        cwd=REPO,
        timeout=60,
    )
    assert done.stdout == "daemon: not running\n"
    assert done.stderr == ""
