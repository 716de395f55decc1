"""The built-in OAuth2 flow end to end: `syncd oauth login`, then syncs, sends and a daemon.

Everything is real and on loopback: the authorization server is tests/servers/authserver.py
(Authlib: PKCE, device codes, rotating refresh tokens, revocation), Dovecot's oauth2 passdb
asks that server about every token it is given over IMAP and POP3, and the SMTP test server
asks it too. syncd runs as its own processes with a file-backed keyring, so what it prints,
logs, stores and shows in /proc can be searched for the tokens afterwards.
"""

from __future__ import annotations

import os
import queue
import re
import signal
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.integration.conftest import REPO, msg
from tests.integration.test_daemon import wait_for
from tests.servers import require_dovecot
from tests.servers.authserver import AuthServer, oauth_dovecot
from tests.servers.dovecot import Dovecot, User
from tests.servers.smtpd import Smtpd

pytestmark = [pytest.mark.dovecot, pytest.mark.smtp]

ACCOUNT = "work"
POP_ACCOUNT = "popwork"


class World:
    """An AuthServer, a Dovecot asking it about tokens, an SMTP server asking it too, and a
    syncd config with two accounts (IMAP+SMTP, POP3) using the built-in flow."""

    def __init__(
        self, tmp: Path, auth: AuthServer, dovecot: Dovecot, smtpd: Smtpd, *, pop: bool
    ) -> None:
        self.tmp = tmp
        self.auth = auth
        self.dovecot = dovecot
        self.smtpd = smtpd
        self.user = User(auth.user, "", dovecot.mail_root / auth.user)
        self.keyring = tmp / "keyring.json"
        self.state_dir = tmp / "state"
        self.config = tmp / "config.yaml"
        self.outputs: list[str] = []
        """Everything syncd printed, for the search for tokens at the end."""
        self.pids: list[int] = []
        self.cmdlines: list[bytes] = []
        scopes = ", ".join(f'"{s}"' for s in auth.scopes)
        oauth = f"""    oauth2:
      provider: custom
      client_id: {auth.client_id}
      auth_url: {auth.authorize_url}
      token_url: {auth.token_url}
      device_url: {auth.device_url}
      scopes: [{scopes}]
"""
        self.config.write_text(
            f"""state_dir: {self.state_dir}
accounts:
  {ACCOUNT}:
    maildir: {tmp / "Mail"}
{oauth}    imap:
      host: 127.0.0.1
      port: {dovecot.imap_port}
      tls: none
      username: {auth.user}
      auth: xoauth2
      idle: [INBOX]
      poll_interval: 600
    smtp:
      host: 127.0.0.1
      port: {smtpd.port}
      tls: none
      username: {auth.user}
      auth: xoauth2
"""
            + (
                f"""  {POP_ACCOUNT}:
    maildir: {tmp / "PopMail"}
{oauth}    pop3:
      host: 127.0.0.1
      port: {dovecot.pop3_port}
      tls: none
      username: {auth.user}
      auth: oauthbearer
"""
                if pop
                else ""
            )
        )

    @property
    def env(self) -> dict[str, str]:
        return {
            **os.environ,
            "PYTHON_KEYRING_BACKEND": "tests.servers.filekeyring.FileKeyring",
            "SYNCD_TEST_KEYRING_FILE": str(self.keyring),
            "PYTHONPATH": str(REPO),
            "BROWSER": "",
        }

    def argv(self, *args: str) -> list[str]:
        words = 2 if args[0] == "oauth" else 1  # -c after `oauth login`, as a user writes it
        return [sys.executable, "-m", "syncd", *args[:words], "-c", str(self.config), *args[words:]]

    def run(self, *args: str, expect: int | None = 0) -> subprocess.CompletedProcess[str]:
        done = subprocess.run(
            self.argv(*args), capture_output=True, text=True, env=self.env, cwd=REPO, timeout=120
        )
        self.outputs += [done.stdout, done.stderr]
        if expect is not None:
            assert done.returncode == expect, (args, done.stdout, done.stderr)
        return done

    def spawn(
        self, *args: str, env: dict[str, str] | None = None, **kwargs: object
    ) -> subprocess.Popen[str]:
        proc = subprocess.Popen(  # type: ignore[call-overload]
            self.argv(*args), text=True, env={**self.env, **(env or {})}, cwd=REPO, **kwargs
        )
        self.pids.append(proc.pid)
        return proc

    def remember_cmdline(self, pid: int) -> None:
        try:
            self.cmdlines.append(Path(f"/proc/{pid}/cmdline").read_bytes())
        except OSError:
            pass

    def login(self, account: str = ACCOUNT, *, device: bool = False, act: str = "approve") -> str:
        """`syncd oauth login` as the user would run it; the test plays browser and user."""
        flags = ["--device"] if device else ["--no-browser", "--timeout", "60"]
        proc = self.spawn(
            "oauth", "login", account, *flags, stdout=subprocess.PIPE, stderr=subprocess.PIPE
        )
        self.remember_cmdline(proc.pid)
        lines: queue.Queue[str] = queue.Queue()
        assert proc.stdout is not None

        def read() -> None:
            assert proc.stdout is not None
            for line in proc.stdout:
                lines.put(line)

        reader = threading.Thread(target=read, daemon=True)
        reader.start()
        seen: list[str] = []
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            try:
                line = lines.get(timeout=1)
            except queue.Empty:
                if proc.poll() is not None and lines.empty():
                    break
                continue
            seen.append(line)
            text = line.strip()
            if device and re.fullmatch(r"[A-Z0-9-]{4,}", text):
                self.remember_cmdline(proc.pid)
                (self.auth.approve_device if act == "approve" else self.auth.deny_device)(text)
                break
            if not device and text.startswith(self.auth.authorize_url):
                self.remember_cmdline(proc.pid)
                self.auth.browse(text)
                break
        else:
            proc.kill()
            proc.wait()
            err = proc.stderr.read() if proc.stderr else ""
            for pipe in (proc.stdout, proc.stderr):
                if pipe is not None:
                    pipe.close()
            raise AssertionError(f"syncd oauth login printed no URL or code: {seen} {err}")
        assert proc.wait(timeout=60) is not None
        reader.join(timeout=5)
        while not lines.empty():
            seen.append(lines.get())
        err = proc.stderr.read() if proc.stderr else ""
        for pipe in (proc.stdout, proc.stderr):
            if pipe is not None:
                pipe.close()
        out = "".join(seen)
        self.outputs += [out, err]
        return f"{proc.returncode}\n{out}\n{err}"

    def stored_refresh_token(self, account: str = ACCOUNT) -> str | None:
        import json

        if not self.keyring.exists():
            return None
        return json.loads(self.keyring.read_text()).get(f"syncd\0{account}/oauth2-refresh")

    def local_bodies(self, root: str = "Mail", folder: str = "INBOX") -> list[bytes]:
        base = self.tmp / root / folder
        return [
            p.read_bytes()
            for sub in ("new", "cur")
            if (base / sub).is_dir()
            for p in sorted((base / sub).iterdir())
        ]

    def assert_no_token_leaked(self) -> None:
        """No issued token in any output, log, state file, config, keyring-less file or argv."""
        tokens = [*self.auth.issued_refresh_tokens, *self.auth.issued_access_tokens]
        assert tokens
        places: dict[str, bytes] = {f"output {i}": o.encode() for i, o in enumerate(self.outputs)}
        for path in self.tmp.rglob("*"):
            if path.is_file() and path != self.keyring:
                places[str(path)] = path.read_bytes()
        for i, cmdline in enumerate(self.cmdlines):
            places[f"/proc/PID/cmdline {i}"] = cmdline
        for token in tokens:
            for where, data in places.items():
                assert token.encode() not in data, f"a token is in {where}"


def sendmail(world: World, i: int) -> None:
    raw = msg(i, subject="outgoing").replace(b"\r\n", b"\n")
    done = subprocess.run(
        world.argv("sendmail", "-a", ACCOUNT, "bob@example.org"),
        input=raw,
        capture_output=True,
        env=world.env,
        cwd=REPO,
        timeout=60,
    )
    assert done.returncode == 0, done.stderr


@pytest.fixture
def world_factory(tmp_path: Path) -> Iterator[object]:
    require_dovecot()
    stack: list[object] = []

    def make(*, pop: bool = False, **auth_kwargs: object) -> World:
        cm = oauth_dovecot(tmp_path / "servers", **auth_kwargs)
        auth, dovecot = cm.__enter__()
        stack.append(cm)
        smtpd = Smtpd(tls="none", mechanisms=("XOAUTH2",), token_check=auth.check).start()
        stack.append(smtpd)
        home = tmp_path / "home"
        home.mkdir()
        return World(home, auth, dovecot, smtpd, pop=pop)

    yield make
    for item in reversed(stack):
        if isinstance(item, Smtpd):
            item.stop()
        else:
            item.__exit__(None, None, None)  # type: ignore[attr-defined]


def test_browser_login_then_sync_and_send_over_imap_and_smtp(world_factory) -> None:
    world: World = world_factory()
    world.dovecot.deliver(world.user, msg(1))
    result = world.login()
    assert result.startswith("0\n"), result
    assert "Signed in" in result and "system keyring" in result
    assert world.auth.grants_seen == ["authorization_code"]
    assert world.stored_refresh_token() == world.auth.issued_refresh_tokens[-1]

    sendmail(world, 2)
    done = world.run("sync", "-a", ACCOUNT, "-v")
    assert "1 downloaded" in done.stdout + done.stderr, done
    assert any(b"hello 1" in body for body in world.local_bodies())
    assert [m.rcpt_tos for m in world.smtpd.messages()] == [("bob@example.org",)]
    assert "XOAUTH2" in world.smtpd.logins
    # One refresh for the whole process: IMAP, SMTP and the Sent copy shared the token.
    assert world.auth.grants_seen == ["authorization_code", "refresh_token"]

    check = world.run("check")
    line = next(li for li in check.stdout.splitlines() if li.startswith(f"{ACCOUNT}/oauth2"))
    assert "system keyring" in line and "access token expires at" in line
    world.assert_no_token_leaked()


def test_device_login_then_pop3(world_factory) -> None:
    world: World = world_factory(pop=True)
    world.dovecot.deliver(world.user, msg(3))
    result = world.login(POP_ACCOUNT, device=True)
    assert result.startswith("0\n"), result
    assert world.auth.device_url in result or world.auth.verification_uri in result
    assert world.auth.grants_seen == ["urn:ietf:params:oauth:grant-type:device_code"]
    assert world.stored_refresh_token(POP_ACCOUNT) is not None
    assert world.stored_refresh_token(ACCOUNT) is None

    world.run("sync", "-a", POP_ACCOUNT)
    assert any(b"hello 3" in body for body in world.local_bodies("PopMail"))
    world.assert_no_token_leaked()


def test_denied_device_login_stores_nothing(world_factory) -> None:
    world: World = world_factory()
    result = world.login(device=True, act="deny")
    assert result.startswith("1\n"), result
    assert "declined" in result
    assert world.stored_refresh_token() is None


def test_without_a_stored_token_sync_says_to_log_in(world_factory) -> None:
    world: World = world_factory()
    done = world.run("sync", "-a", ACCOUNT, expect=1)
    assert f"no OAuth2 token for {ACCOUNT}" in done.stderr
    assert f"run: syncd oauth login {ACCOUNT}" in done.stderr
    assert world.auth.grants_seen == []  # nothing to refresh with: the provider is not asked


def test_refused_access_token_is_refreshed_once_and_the_login_retried(world_factory) -> None:
    world: World = world_factory()
    assert world.login().startswith("0\n")
    world.dovecot.deliver(world.user, msg(4))
    # A daemon holds a token the server stops accepting early (a password change, say).
    daemon = Daemon(world)
    try:
        daemon.wait_status("1 account", timeout=30)
        assert wait_for(lambda: any(b"hello 4" in b for b in world.local_bodies()), 30)
        world.auth.expire_access_tokens()
        world.dovecot.deliver(world.user, msg(5))
        daemon.kick()  # every connection is made anew, with the refused token first
        assert wait_for(lambda: any(b"hello 5" in b for b in world.local_bodies()), 30), (
            daemon.text()
        )
        assert world.auth.grants_seen.count("refresh_token") == 2
    finally:
        daemon.stop()
    world.assert_no_token_leaked()


class Daemon:
    """`syncd run` as a process, with the sd_notify socket systemd would give it."""

    def __init__(self, world: World) -> None:
        self.world = world
        self.log = world.tmp / "daemon.log"
        self.logf = self.log.open("w")
        sock_path = world.tmp / "notify.sock"
        self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
        self.sock.bind(str(sock_path))
        self.sock.settimeout(0.2)
        self.notes: list[str] = []
        self.proc = world.spawn(
            "run",
            "-v",
            env={"NOTIFY_SOCKET": str(sock_path)},
            stdout=self.logf,
            stderr=subprocess.STDOUT,
        )
        time.sleep(0.3)
        world.remember_cmdline(self.proc.pid)

    def notified(self, needle: str, timeout: float = 15) -> str:
        """The first STATUS= (or other) message from the daemon that holds ``needle``."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            for note in self.notes:
                if needle in note:
                    return note
            try:
                self.notes.append(self.sock.recv(4096).decode())
            except TimeoutError:
                pass
        raise AssertionError(f"no {needle!r} from sd_notify: {self.notes}\n{self.text()}")

    def text(self) -> str:
        return self.log.read_text()

    def status(self) -> str:
        return self.world.run("status").stdout

    def wait_status(self, needle: str, timeout: float) -> str:
        found = wait_for(lambda: needle in self.status(), timeout)
        assert found, f"no {needle!r} in syncd status:\n{self.status()}\n{self.text()}"
        return self.status()

    def kick(self) -> None:
        self.proc.send_signal(signal.SIGUSR1)

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout=15)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        self.logf.close()
        self.sock.close()
        self.world.outputs.append(self.text())


LIFETIME = 4


@pytest.mark.slow
def test_daemon_renews_across_token_lifetimes(world_factory) -> None:
    world: World = world_factory(access_lifetime=LIFETIME)
    assert world.login().startswith("0\n")
    daemon = Daemon(world)
    try:
        for i in range(10, 14):
            # After each expiry: a resume (every connection anew), new mail, a message to send.
            time.sleep(LIFETIME + 0.5)
            world.dovecot.deliver(world.user, msg(i))
            sendmail(world, 100 + i)
            daemon.kick()
            assert wait_for(
                lambda i=i: any(f"hello {i}".encode() in b for b in world.local_bodies()), 30
            ), daemon.text()
            assert wait_for(lambda i=i: len(world.smtpd.messages()) == i - 9, 30), daemon.text()
        refreshes = world.auth.grants_seen.count("refresh_token")
        # One refresh per lifetime that needed a login, never one per connection.
        assert 5 <= refreshes <= 8, world.auth.grants_seen  # at start, then once per cycle
        assert world.auth.failed_token_requests == []
        # Each rotation replaced the stored refresh token.
        assert world.stored_refresh_token() == world.auth.issued_refresh_tokens[-1]
        assert "auth-failed" not in daemon.status()
    finally:
        daemon.stop()
    world.assert_no_token_leaked()


@pytest.mark.slow
def test_revoked_refresh_token_puts_the_daemon_in_auth_failed_without_a_loop(
    world_factory,
) -> None:
    world: World = world_factory()
    assert world.login().startswith("0\n")
    daemon = Daemon(world)
    try:
        daemon.wait_status("now: idle", timeout=30)
        world.auth.revoke_refresh_tokens()
        world.auth.expire_access_tokens()
        sendmail(world, 20)
        daemon.kick()
        status = daemon.wait_status("auth-failed", timeout=30)
        assert f"syncd oauth login {ACCOUNT}" in status, status
        note = daemon.notified(f"run: syncd oauth login {ACCOUNT}")
        assert note.startswith("STATUS=") or "\nSTATUS=" in note, note
        time.sleep(5)  # would a loop hammer the token endpoint?
        failed = len(world.auth.failed_token_requests)
        assert 1 <= failed <= 2, world.auth.failed_token_requests
        daemon.kick()
        time.sleep(2)
        # A kick retries, but the refused token is not sent again until it changes.
        assert len(world.auth.failed_token_requests) == failed
        assert world.smtpd.messages() == []

        # The fix the status names: log in again; the daemon is told and catches up.
        result = world.login()
        assert result.startswith("0\n") and "Told the running daemon" in result, result
        assert wait_for(lambda: len(world.smtpd.messages()) == 1, 30), daemon.text()
        daemon.wait_status("now: idle", timeout=30)
    finally:
        daemon.stop()
    assert f"run: syncd oauth login {ACCOUNT}" in daemon.text()
    world.assert_no_token_leaked()


def test_init_reads_the_login_mechanisms_before_any_login(world_factory) -> None:
    from syncd.config import load_config
    from syncd.drivers.probe import login_mechanisms

    world: World = world_factory()
    imap = load_config(world.config).accounts[0].imap
    assert imap is not None
    ways = login_mechanisms(imap)
    # Dovecot with its oauth2 passdb: both tokens and passwords (so init asks for one).
    assert {"XOAUTH2", "OAUTHBEARER", "PLAIN", "LOGIN"} <= set(ways), ways
    assert world.auth.grants_seen == []  # nothing was logged in, no token asked for


@pytest.mark.parametrize("role", ["imap", "pop3", "smtp"])
def test_each_driver_renews_a_refused_token_once_and_logs_in(world_factory, role) -> None:
    """In one process, as in the daemon: the cached token stops working early (password
    change, admin revocation of sessions), the server refuses it, the driver asks for a
    fresh one and logs in again."""
    import keyring

    from syncd.config import load_config
    from syncd.credentials import secret_for
    from syncd.drivers.imap import ImapSession
    from syncd.drivers.pop3 import Pop3Session
    from syncd.drivers.smtp import SmtpSession
    from tests.servers.filekeyring import FileKeyring

    world: World = world_factory(pop=True)
    account = POP_ACCOUNT if role == "pop3" else ACCOUNT
    assert world.login(account).startswith("0\n")
    cfg = next(a for a in load_config(world.config).accounts if a.name == account)
    server = {"imap": cfg.imap, "pop3": cfg.pop3, "smtp": cfg.smtp}[role]
    assert server is not None
    previous = keyring.get_keyring()
    keyring.set_keyring(FileKeyring(world.keyring))
    try:
        secret = secret_for(server)
        stale = secret()
        world.auth.expire_access_tokens()
        assert world.auth.check(stale) is None
        session = {"imap": ImapSession, "pop3": Pop3Session, "smtp": SmtpSession}[role]
        with session(server, secret):  # type: ignore[arg-type]
            pass
        assert secret() != stale and world.auth.check(secret()) == world.auth.user
        assert world.auth.grants_seen.count("refresh_token") == 2
    finally:
        keyring.set_keyring(previous)
