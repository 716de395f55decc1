"""sd_notify messages as systemd receives them: a real unix datagram socket."""

from __future__ import annotations

import shutil
import socket
import subprocess
import sys
from pathlib import Path

import pytest

from syncd.daemon.notify import Notifier

REPO = Path(__file__).resolve().parents[2]


@pytest.fixture
def systemd_socket(tmp_path, monkeypatch):
    path = tmp_path / "notify"
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    sock.bind(str(path))
    sock.settimeout(2)
    monkeypatch.setenv("NOTIFY_SOCKET", str(path))
    yield sock
    sock.close()


def test_messages_on_the_socket(systemd_socket, monkeypatch):
    monkeypatch.setenv("WATCHDOG_USEC", "30000000")
    n = Notifier()
    assert n.active and n.watchdog_interval == 30.0
    n.ready("2 accounts, 14 folders, outbox 0, last sync 12:04")
    assert systemd_socket.recv(4096) == (
        b"READY=1\nSTATUS=2 accounts, 14 folders, outbox 0, last sync 12:04"
    )
    n.watchdog()
    assert systemd_socket.recv(4096) == b"WATCHDOG=1"
    n.reloading()
    got = systemd_socket.recv(4096)
    assert got.startswith(b"RELOADING=1\nMONOTONIC_USEC=")
    n.reloaded("ok")
    assert systemd_socket.recv(4096) == b"READY=1\nSTATUS=ok"
    n.stopping()
    assert systemd_socket.recv(4096) == b"STOPPING=1\nSTATUS=stopping"
    n.close()


def test_watchdog_for_another_pid_is_ignored(systemd_socket, monkeypatch):
    monkeypatch.setenv("WATCHDOG_USEC", "30000000")
    monkeypatch.setenv("WATCHDOG_PID", "1")
    n = Notifier()
    assert n.watchdog_interval is None
    n.close()


def test_a_full_socket_never_blocks(systemd_socket):
    n = Notifier()
    for _ in range(1000):  # far beyond the datagram queue; must return at once
        n.status("x" * 100)
    n.close()


def test_silent_without_systemd(monkeypatch):
    monkeypatch.delenv("NOTIFY_SOCKET", raising=False)
    n = Notifier()
    assert not n.active
    n.ready("nothing happens")


@pytest.mark.skipif(shutil.which("systemd-analyze") is None, reason="no systemd-analyze")
def test_unit_file_verifies(tmp_path):
    unit = (REPO / "systemd" / "syncd.service").read_text()
    # systemd-analyze checks that ExecStart exists; point it at a real executable.
    unit = unit.replace("%h/.local/bin/syncd", "/bin/true")
    path = tmp_path / "syncd.service"
    path.write_text(unit)
    done = subprocess.run(["systemd-analyze", "verify", str(path)], capture_output=True, text=True)
    problems = [
        line
        for line in done.stderr.splitlines()
        if "syncd.service" in line and "Documentation" not in line
    ]
    assert problems == [], done.stderr
    assert "Type=notify" in unit and "WatchdogSec=" in unit and "ExecReload=" in unit


def _unit_settings() -> dict[str, list[str]]:
    settings: dict[str, list[str]] = {}
    for line in (REPO / "systemd" / "syncd.service").read_text().splitlines():
        if "=" in line and not line.lstrip().startswith(("#", ";")):
            key, value = line.split("=", 1)
            settings.setdefault(key.strip(), []).extend(value.split())
    return settings


def test_a_config_error_is_not_restarted_forever(tmp_path):
    # `syncd run` exits 2 on a config error, and the unit must not restart that.
    config = tmp_path / "config.yaml"
    config.write_text("accounts:\n  demo:\n    maildir: [\n")
    done = subprocess.run(
        [sys.executable, "-m", "syncd", "run", "-c", str(config)],
        capture_output=True,
        text=True,
        cwd=REPO,
        timeout=60,
    )
    assert done.returncode == 2, done.stderr
    assert "config error" in done.stderr
    settings = _unit_settings()
    assert settings["Restart"] == ["on-failure"]
    assert "2" in settings["RestartPreventExitStatus"]


def test_the_unit_names_no_target_a_user_manager_lacks():
    # network-online.target exists only in the system manager: in a user unit,
    # Wants=/After= on it order nothing.
    settings = _unit_settings()
    for key in ("Wants", "After", "Requires"):
        assert "network-online.target" not in settings.get(key, [])
