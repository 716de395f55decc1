"""Secrets never leave syncd; what syncd writes is private to the user whatever the umask.

A known IMAP and SMTP password (from ``password_command``) goes through every command at
``-vv``, including failed logins with a known wrong password and a short daemon run that
gets SIGUSR1 and SIGTERM; then every output, log, state file, ``daemon.json``, message and
outbox file is searched for the secrets, as text and in the base64 forms SASL uses.
"""

from __future__ import annotations

import base64
import dataclasses
import datetime
import io
import os
import signal
import socket
import ssl
import stat
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from contextlib import redirect_stderr, redirect_stdout
from pathlib import Path

import pytest
import trustme

from syncd import cli
from tests.hardening import REPO, Result, Rig, lf, message, wait_for
from tests.servers.dovecot import Dovecot
from tests.servers.smtpd import Smtpd

IMAP_SECRET = "Imap-Pa55-s3cret-Q7x"
SMTP_SECRET = "Smtp-Pa55-s3cret-K9z"
WRONG_SECRET = "Wrong-Pa55-s3cret-J4w"


def _forms(user: str, secret: str) -> list[bytes]:
    """The secret as text and in the base64 forms AUTH PLAIN and AUTH LOGIN send."""
    raw, name = secret.encode(), user.encode()
    return [
        raw,
        base64.b64encode(raw),
        base64.b64encode(b"\0" + name + b"\0" + raw),
        base64.b64encode(name + b"\0" + name + b"\0" + raw),
    ]


@pytest.fixture
def smtpd() -> Iterator[Smtpd]:
    with Smtpd(tls="none", password=SMTP_SECRET) as server:
        yield server


def _daemon_run(rig: Rig, log: Path, *extra: str) -> int:
    """`syncd run` for a moment: ready, SIGUSR1, a sync, SIGTERM; returns its exit code."""
    rig.write_config()
    with log.open("w") as out:
        proc = subprocess.Popen(
            [sys.executable, "-m", "syncd", "run", "-c", str(rig.config), *extra],
            stdout=out,
            stderr=subprocess.STDOUT,
            cwd=REPO,
        )
        try:
            assert wait_for(lambda: "syncd started" in log.read_text()), log.read_text()
            proc.send_signal(signal.SIGUSR1)
            assert wait_for(lambda: "SIGUSR1" in log.read_text()), log.read_text()
            # The status file is written whenever the main loop wakes (signals do wake it).
            assert wait_for(lambda: (rig.state_dir / "daemon.json").exists())
            time.sleep(0.5)  # let the sync SIGUSR1 asked for run; SIGTERM lets it finish
            proc.send_signal(signal.SIGTERM)
            return proc.wait(timeout=20)
        finally:
            if proc.poll() is None:
                proc.kill()
                proc.wait()


@pytest.mark.dovecot
@pytest.mark.smtp
@pytest.mark.slow
def test_no_command_leaks_a_password(dovecot: Dovecot, tmp_path: Path, smtpd: Smtpd) -> None:
    user = dovecot.add_user(password=IMAP_SECRET)
    dovecot.fill(user, {"INBOX": [(message(i), ()) for i in range(3)]})
    rig = Rig(
        dovecot,
        user,
        tmp_path,
        smtp_port=smtpd.port,
        smtp_user=smtpd.user,
        smtp_password=SMTP_SECRET,
    )
    outputs: list[Result] = []

    def run(*args: str, stdin: bytes = b"") -> Result:
        r = (
            rig.run(*args, "-vv", stdin=stdin)
            if args[0] != "sendmail"
            else rig.run(*args, stdin=stdin)
        )
        outputs.append(r)
        assert "Traceback" not in r.text, r.text
        return r

    assert run("sendmail", "-v", "bob@example.net", stdin=lf(message(10))).code == 0
    assert run("sync").code == 0
    assert run("send").code == 0
    assert run("status").code == 0
    assert run("status", "--json").code == 0
    assert run("check").code == 0
    log = tmp_path / "daemon.log"
    assert _daemon_run(rig, log, "-vv") == 0
    # Failed logins, with a known wrong password: the error texts must not carry it either.
    rig.user = dataclasses.replace(user, password=WRONG_SECRET)
    rig.smtp_password = WRONG_SECRET
    assert run("sendmail", "bob@example.net", stdin=lf(message(11))).code == 0
    assert run("sync").code == 1
    assert run("check").code == 1
    run("send")
    assert run("status").code == 0
    assert len(smtpd.messages()) == 1

    haystacks: dict[str, bytes] = {f"output of {i}": r.text.encode() for i, r in enumerate(outputs)}
    for path in tmp_path.rglob("*"):
        if path.is_file() and path.name not in ("pw", "smtp-pw"):
            haystacks[str(path)] = path.read_bytes()
    assert str(rig.state_dir / "daemon.json") in haystacks
    assert any("acct.sqlite3" in name for name in haystacks)
    needles = [
        *_forms(user.name, IMAP_SECRET),
        *_forms(smtpd.user, SMTP_SECRET),
        *_forms(user.name, WRONG_SECRET),
        *_forms(smtpd.user, WRONG_SECRET),
    ]
    for where, data in haystacks.items():
        for needle in needles:
            assert needle not in data, f"{needle!r} found in {where}"
    # Sanity: the searched places do hold what we expect, so the search can find things.
    texts = b"".join(haystacks.values()).lower()
    assert b"login refused" in texts or b"authentication" in texts


# -- permissions -------------------------------------------------------------------------


@pytest.fixture
def umask022() -> Iterator[None]:
    old = os.umask(0o022)
    try:
        yield
    finally:
        os.umask(old)


def _loose(root: Path) -> list[str]:
    """Everything under ``root`` (itself included) that group or others may use."""
    out = []
    for path in [root, *root.rglob("*")]:
        st = path.lstat()
        if stat.S_ISLNK(st.st_mode):
            continue
        mode = stat.S_IMODE(st.st_mode)
        want = 0o700 if stat.S_ISDIR(st.st_mode) else 0o600
        if mode & 0o077 or (mode & ~want):
            out.append(f"{oct(mode)} {path}")
    return out


@pytest.mark.dovecot
@pytest.mark.smtp
@pytest.mark.slow
def test_files_syncd_creates_are_private_under_umask_022(
    dovecot: Dovecot, tmp_path: Path, smtpd: Smtpd, umask022: None
) -> None:
    user = dovecot.add_user()
    dovecot.fill(
        user,
        {
            "INBOX": [(message(i), ()) for i in range(3)],
            "Lists/python": [(message(5), ())],
        },
    )
    dovecot.doveadm("mailbox", "create", "-u", user.name, "Deep/er/still")
    rig = Rig(
        dovecot,
        user,
        tmp_path / "imap",
        smtp_port=smtpd.port,
        smtp_user=smtpd.user,
        smtp_password=smtpd.password,
    )
    rig.extra = "      sent_folder: Sent\n"

    def spawn(*args: str, stdin: bytes = b"") -> Result:
        r = rig.run(*args, stdin=stdin)  # in this process, under umask 022 (fixture)
        assert "Traceback" not in r.text, r.text
        return r

    # sendmail first, on a machine where nothing of syncd exists yet.
    assert spawn("sendmail", "bob@example.net", stdin=lf(message(20))).code == 0
    assert spawn("sendmail", stdin=b"\x00\x01 not a message\n").code == 0  # -> failed/
    assert spawn("send").code == 1  # one failed for good: exit 1
    assert spawn("sync").code == 0, "sync"
    assert list((rig.outbox / "failed").iterdir())
    assert rig.local_bag("Sent") and rig.local_bag("Lists/python")
    assert _daemon_run(rig, tmp_path / "daemon.log") == 0  # it inherits umask 022
    assert (rig.state_dir / "daemon.json").exists()
    assert (rig.state_dir / "acct.lock").exists()

    pop = Rig(dovecot, dovecot.add_user(), tmp_path / "pop", kind="pop3")
    dovecot.fill(pop.user, {"INBOX": [(message(30), ())]})
    assert pop.run("sync").code == 0
    assert pop.local_bag()

    loose = [*_loose(rig.state_dir), *_loose(rig.maildir), *_loose(pop.state_dir)]
    loose += _loose(pop.maildir)
    assert loose == [], "\n".join(loose)


# -- the config file ------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("mode", "literal", "warned"),
    [
        (0o644, True, True),
        (0o640, True, True),
        (0o600, True, False),
        (0o400, True, False),
        (0o644, False, False),  # password_command: nothing secret in the file
    ],
)
def test_readable_config_with_a_literal_password_is_warned_about(
    tmp_path: Path, mode: int, literal: bool, warned: bool
) -> None:
    fake = dataclasses.make_dataclass("U", ["name", "password"])("someone", "Lit-Pa55-word")
    rig = Rig(None, fake, tmp_path)  # type: ignore[arg-type]  # status contacts no server
    rig.port = 1
    rig.password = "Lit-Pa55-word" if literal else None
    rig.write_config()
    rig.config.chmod(mode)
    r = rig.run("status", write=False)
    assert r.code == 0, r.text
    if warned:
        assert str(rig.config) in r.err and "chmod 600" in r.err, r.err
    else:
        assert "chmod 600" not in r.err, r.err
    assert "Lit-Pa55-word" not in r.text


# -- an expired certificate ------------------------------------------------------------------


class _TlsGreeter:
    """A loopback TLS listener that serves ``cert`` and greets like any of the protocols;
    syncd must hang up during the handshake, before a greeting or a secret."""

    def __init__(self, cert: trustme.LeafCert) -> None:
        self.ctx = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
        cert.configure_cert(self.ctx)
        self.sock = socket.create_server(("127.0.0.1", 0))
        self.port = self.sock.getsockname()[1]
        self.received: list[bytes] = []
        self.stopping = False
        self.thread = threading.Thread(target=self._serve, daemon=True)
        self.thread.start()

    def _serve(self) -> None:
        self.sock.settimeout(0.1)
        while not self.stopping:
            try:
                conn, _ = self.sock.accept()
            except TimeoutError:
                continue
            except OSError:
                return
            try:
                with self.ctx.wrap_socket(conn, server_side=True) as tls:
                    tls.settimeout(2)
                    tls.sendall(b"* OK +OK 220 hello\r\n")
                    self.received.append(tls.recv(1024))
            except (OSError, ssl.SSLError):
                conn.close()

    def close(self) -> None:
        self.stopping = True
        self.thread.join(timeout=5)
        self.sock.close()


def test_an_expired_certificate_is_refused_with_a_clear_message(tmp_path: Path) -> None:
    ca = trustme.CA()
    now = datetime.datetime.now(datetime.UTC)
    expired = ca.issue_cert(
        "127.0.0.1",
        not_before=now - datetime.timedelta(days=30),
        not_after=now - datetime.timedelta(days=1),
    )
    ca_file = tmp_path / "ca.pem"
    ca.cert_pem.write_to_path(str(ca_file))
    server = _TlsGreeter(expired)
    try:
        sections = "\n".join(
            f"""    {role}:
      host: 127.0.0.1
      port: {server.port}
      tls: implicit
      ca_file: {ca_file}
      username: me
      password_command: echo {IMAP_SECRET}
      timeout: 2"""
            for role in ("imap", "smtp")
        )
        pop = sections.split("    smtp:")[0].replace("    imap:", "    pop3:")
        (tmp_path / "c.yaml").write_text(
            f"state_dir: {tmp_path}/state\naccounts:\n"
            f"  a:\n    maildir: {tmp_path}/A\n{sections}\n"
            f"  b:\n    maildir: {tmp_path}/B\n{pop}\n"
        )
        out, err = io.StringIO(), io.StringIO()
        with redirect_stdout(out), redirect_stderr(err):
            code = cli.main(["check", "-c", str(tmp_path / "c.yaml")])
        text = out.getvalue() + err.getvalue()
    finally:
        server.close()
    assert code == 1, text
    failed = [line for line in text.splitlines() if "FAILED" in line]
    assert len(failed) == 3, text  # imap, smtp and pop3 alike
    for line in failed:
        assert "certificate has expired" in line, line
    assert server.received == [], "something was sent over a connection that was refused"
    assert IMAP_SECRET not in text
