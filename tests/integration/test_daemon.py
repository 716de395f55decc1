"""`syncd run` as a real process against a real Dovecot, talking sd_notify to the test."""

from __future__ import annotations

import json
import os
import re
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest

from tests.integration.conftest import REPO, Account, msg
from tests.servers import require_dovecot
from tests.servers.dovecot import Dovecot

pytestmark = [pytest.mark.dovecot, pytest.mark.slow]


def lf(raw: bytes) -> bytes:
    return raw.replace(b"\r\n", b"\n")


def wait_for(predicate, timeout: float = 10.0, step: float = 0.05):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = predicate()
        if value:
            return value
        time.sleep(step)
    return predicate()


class Daemon:
    """A running `syncd run` with its sd_notify socket and log."""

    def __init__(self, account: Account, tmp: Path, *, watchdog: bool = False) -> None:
        self.account = account
        self.sock_path = tmp / "notify.sock"
        self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
        self.sock.bind(str(self.sock_path))
        self.sock.settimeout(0.2)
        self.messages: list[str] = []
        self.log = tmp / "daemon.log"
        env = {**os.environ, "NOTIFY_SOCKET": str(self.sock_path)}
        if watchdog:
            env["WATCHDOG_USEC"] = "1500000"  # 1.5 s: the daemon ticks every 0.5 s
        account.write_config()
        self.logf = self.log.open("w")
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "syncd", "run", "-c", str(account.config), "-v"],
            stdout=self.logf,
            stderr=subprocess.STDOUT,
            env=env,
            cwd=REPO,
        )

    def receive(self, timeout: float = 10.0) -> list[str]:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            try:
                self.messages.append(self.sock.recv(4096).decode())
                return self.messages
            except TimeoutError:
                if self.proc.poll() is not None:
                    break
        return self.messages

    def wait_message(self, needle: str, timeout: float = 10.0) -> str:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            for m in self.messages:
                if needle in m:
                    return m
            self.receive(timeout=0.3)
        raise AssertionError(f"no {needle!r} from the daemon; got {self.messages}\n{self.text()}")

    def text(self) -> str:
        return self.log.read_text()

    def stop(self) -> int:
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout=15)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        self.sock.close()
        self.logf.close()
        return self.proc.returncode


@pytest.fixture
def daemon(account, tmp_path):
    account.extra = ""
    d = Daemon(account, tmp_path)
    yield d
    d.stop()


def files_with(account: Account, body: bytes, folder: str = "INBOX") -> list[Path]:
    return [p for p in account.local_files(folder) if p.read_bytes() == body]


def test_ready_then_idle_delivery_reaches_maildir(daemon, dovecot, mail_user):
    ready = daemon.wait_message("READY=1")
    assert "STATUS=1 account" in ready
    dovecot.deliver(mail_user, msg(1))
    assert wait_for(lambda: files_with(daemon.account, lf(dovecot_stored(dovecot, mail_user, 1))))
    assert daemon.proc.poll() is None


def dovecot_stored(dovecot, user, i: int) -> bytes:
    """LMTP adds a Return-Path line; the local copy must equal what the server stores."""
    for body, _ in dovecot.messages(user, "INBOX").values():
        if f"hello {i}".encode() in body:
            return body
    return b"\0never"


def test_local_rename_reaches_server(daemon, dovecot, mail_user):
    dovecot.append(mail_user, "INBOX", msg(2))
    daemon.wait_message("READY=1")
    path = wait_for(lambda: files_with(daemon.account, lf(msg(2))))
    assert path
    (p,) = path
    p.rename(p.parent.parent / "cur" / (p.name.split(":")[0] + ":2,FS"))

    def server_flags():
        ((_, flags),) = dovecot.messages(mail_user, "INBOX").values()
        return flags == {b"\\Seen", b"\\Flagged"}

    assert wait_for(server_flags), daemon.text()


def test_signals_and_status(daemon, dovecot, mail_user, account):
    daemon.wait_message("READY=1")

    # Status reads the live state of the running daemon: IDLE up on INBOX, synced.
    def live():
        data = json.loads(account.run("status", "--json").out)
        acct = (data["accounts"]["acct"].get("live") or {}) if data["daemon"] else {}
        return data if acct.get("idle") == {"INBOX": True} and acct["state"] == "idle" else None

    data = wait_for(live)
    assert data, account.run("status", "--json").out
    assert data["daemon"]["pid"] == daemon.proc.pid
    text = account.run("status").out
    assert "daemon: running" in text
    # SIGUSR1 syncs a folder that is neither IDLEd nor due for a poll.
    dovecot.create_folder(mail_user, "Other")
    dovecot.append(mail_user, "Other", msg(3))
    time.sleep(0.5)
    daemon.proc.send_signal(signal.SIGUSR1)
    assert wait_for(lambda: files_with(account, lf(msg(3)), "Other")), daemon.text()
    # SIGHUP with a broken config keeps the old one running.
    good = account.config.read_text()
    account.config.write_text(good + "  broken: [\n")
    daemon.proc.send_signal(signal.SIGHUP)
    daemon.wait_message("RELOADING=1")
    assert wait_for(lambda: "keeping the old one" in daemon.text())
    assert daemon.proc.poll() is None
    account.config.write_text(good)
    # SIGTERM: clean exit 0, STOPPING=1 sent.
    daemon.proc.send_signal(signal.SIGTERM)
    assert daemon.proc.wait(timeout=10) == 0
    daemon.wait_message("STOPPING=1", timeout=2)
    assert "daemon: not running" in account.run("status").out


def test_a_second_daemon_on_the_same_config_refuses(daemon, account):
    daemon.wait_message("READY=1")

    def status_pid():
        live = json.loads(account.run("status", "--json").out)["daemon"]
        return live["pid"] if live else None

    assert wait_for(lambda: status_pid() == daemon.proc.pid)
    second = subprocess.run(
        [sys.executable, "-m", "syncd", "run", "-c", str(account.config)],
        capture_output=True,
        text=True,
        cwd=REPO,
        timeout=30,
    )
    assert second.returncode == 1, second.stderr
    assert f"another syncd daemon (pid {daemon.proc.pid}) is already running" in second.stderr
    # The second process never touched the first one's status.
    assert status_pid() == daemon.proc.pid
    assert f"daemon: running (pid {daemon.proc.pid}" in account.run("status").out
    assert daemon.proc.poll() is None


def test_the_first_status_line_after_a_sync_names_its_folders(
    account, dovecot, mail_user, tmp_path
):
    # `syncd sync`, then the daemon starts: its READY STATUS= line must already say what
    # that sync left, not "0 folders, last sync -".
    dovecot.deliver(mail_user, msg(1))
    account.sync()
    d = Daemon(account, tmp_path)
    try:
        ready = d.wait_message("READY=1")
        assert "0 folders" not in ready and "last sync -" not in ready, ready
        assert re.search(r"STATUS=1 account, [1-9]\d* folders, .*last sync \d\d:\d\d$", ready)
    finally:
        assert d.stop() == 0


def test_status_says_offline_while_the_server_is_down(tmp_path):
    require_dovecot()
    with Dovecot(tmp_path / "server") as server:
        user = server.add_user()
        (tmp_path / "acct").mkdir()
        account = Account(server, user, tmp_path / "acct")
        d = Daemon(account, tmp_path)

        def live():
            data = json.loads(account.run("status", "--json").out)
            return (data["accounts"]["acct"].get("live") or {}) if data["daemon"] else {}

        try:
            d.wait_message("READY=1")

            def up() -> bool:
                now = live()
                return now.get("idle") == {"INBOX": True} and now.get("state") == "idle"

            assert wait_for(up), d.text()
            server.stop()
            assert wait_for(lambda: live().get("state") == "offline", timeout=30), d.text()
            assert "IDLE on INBOX" in live()["last_error"]
            text = account.run("status").out
            assert "now: offline" in text and "now: idle" not in text, text
            assert "error now: IDLE on INBOX" in text, text
            d.wait_message("offline: acct", timeout=15)
            server.start()
            d.proc.send_signal(signal.SIGUSR1)  # as the network coming back would
            assert wait_for(up, timeout=30), d.text()
            assert live()["last_error"] is None
        finally:
            d.stop()


def test_verbose_lists_the_capabilities_once_per_server(account):
    # -v in a daemon means many connections (worker, IDLE, reconnects): the long list once.
    first = account.run("sync", "-vv")
    second = account.run("sync", "-vv")
    assert first.code == second.code == 0, first.err + second.err
    assert "connected to IMAP" in second.err, second.err
    assert "capabilities:" not in second.err, second.err
    assert first.err.count("capabilities:") <= 1


def test_watchdog_pings_while_healthy(account, tmp_path):
    d = Daemon(account, tmp_path, watchdog=True)
    try:
        d.wait_message("READY=1")
        d.wait_message("WATCHDOG=1", timeout=5)
    finally:
        assert d.stop() == 0


def test_on_new_mail_hook(account, dovecot, mail_user, tmp_path):
    out = tmp_path / "hook.txt"
    script = tmp_path / "hook.sh"
    script.write_text(f'#!/bin/sh\necho "$1 $2 $SYNCD_ACCOUNT" >> {out}\n')
    script.chmod(0o755)
    account.extra = f"    on_new_mail: [{script}]\n"
    d = Daemon(account, tmp_path)
    try:
        d.wait_message("READY=1")
        dovecot.deliver(mail_user, msg(4))
        assert wait_for(lambda: out.exists() and "INBOX 1 acct" in out.read_text()), d.text()
    finally:
        d.stop()


def test_survives_server_outage(tmp_path):
    """Dovecot stopped for 30 s and restarted: changes made meanwhile are pushed,
    later mail still arrives, and the daemon never busy-loops while waiting."""
    require_dovecot()
    with Dovecot(tmp_path / "server") as server:
        user = server.add_user()
        server.append(user, "INBOX", msg(1))
        (tmp_path / "acct").mkdir()
        account = Account(server, user, tmp_path / "acct")
        d = Daemon(account, tmp_path)
        try:
            d.wait_message("READY=1")
            assert wait_for(lambda: files_with(account, lf(msg(1))))
            server.stop()
            (p,) = files_with(account, lf(msg(1)))
            p.rename(p.parent.parent / "cur" / (p.name.split(":")[0] + ":2,S"))
            cpu_before = _cpu_seconds(d.proc.pid)
            time.sleep(30)
            cpu = _cpu_seconds(d.proc.pid) - cpu_before
            assert cpu < 1.5, f"the daemon used {cpu:.2f} CPU-s while the server was down"
            assert d.proc.poll() is None
            server.start()
            d.proc.send_signal(signal.SIGUSR1)  # as the network coming back would

            def pushed():
                ((_, flags),) = server.messages(user, "INBOX").values()
                return b"\\Seen" in flags

            assert wait_for(pushed, timeout=30), d.text()
            server.deliver(user, msg(2))
            assert wait_for(lambda: len(account.local_files()) == 2, timeout=30), d.text()
        finally:
            d.stop()


def _cpu_seconds(pid: int) -> float:
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    ticks = os.sysconf("SC_CLK_TCK")
    return (int(fields[11]) + int(fields[12])) / ticks


def test_the_first_start_writes_no_python_warnings(account, dovecot, mail_user, tmp_path):
    """The first start creates the local folders while the file watch runs; watchdog used to
    print a RuntimeWarning per new folder's doubled watch, a screenful in the journal."""
    for folder in ("Archive", "Lists/python", "Sent"):
        dovecot.append(mail_user, folder, msg(len(folder)))
    d = Daemon(account, tmp_path)
    try:
        d.wait_message("READY=1")
        assert wait_for(lambda: files_with(account, lf(msg(len("Sent"))), "Sent")), d.text()
    finally:
        assert d.stop() == 0
    assert "Warning" not in d.text(), d.text()
