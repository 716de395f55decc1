"""Offline sending against a real aiosmtpd server (tests/servers/smtpd.py), real files.

Most accounts here are POP3 accounts (the POP3 server is never contacted by ``send``), so
their Sent copy lands in the local Maildir; the IMAP Sent copy is tested against Dovecot.
"""

from __future__ import annotations

import io
import json
import os
import re
import signal
import smtplib
import ssl
import subprocess
import sys
import time
from collections import Counter
from collections.abc import Iterator
from contextlib import redirect_stderr, redirect_stdout
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from unittest import mock

import pytest

from syncd import cli
from syncd.config import load_config
from syncd.engine import send as send_engine
from syncd.errors import StoreError, SyncdError, TLSError, TransientError
from tests.integration.conftest import REPO, Account, Result
from tests.servers.dovecot import CertFiles, make_test_certs
from tests.servers.smtpd import PASSWORD, USER, Smtpd

pytestmark = pytest.mark.smtp

ME = USER


def message(
    n: int = 1,
    *,
    to: str = "bob@example.net",
    cc: str | None = None,
    bcc: str | None = None,
    date: bool = True,
    msgid: bool = True,
    sender: str = ME,
    body: str = "hello",
) -> bytes:
    lines = [f"From: Me <{sender}>", f"To: {to}"]
    if cc:
        lines.append(f"Cc: {cc}")
    if bcc:
        lines.append(f"Bcc: {bcc}")
    lines.append(f"Subject: test {n}")
    if date:
        lines.append("Date: Mon, 02 Mar 2026 10:00:00 +0000")
    if msgid:
        lines.append(f"Message-ID: <m{n}.{os.getpid()}@example.org>")
    return ("\n".join(lines) + f"\n\n{body} {n}\n.leading dot line\n").encode()


@pytest.fixture(scope="session")
def certs(tmp_path_factory: pytest.TempPathFactory) -> CertFiles:
    return make_test_certs(tmp_path_factory.mktemp("smtp-certs"))


@pytest.fixture
def smtpd(certs: CertFiles) -> Iterator[Smtpd]:
    with Smtpd(tls="starttls", certs=certs) as server:
        yield server


@dataclass
class Box:
    """A syncd config with one POP3 account that sends through ``server``."""

    root: Path
    server: Smtpd
    ca: Path | None
    tls: str = "starttls"
    name: str = "acct"
    password: str = PASSWORD
    smtp_extra: str = ""
    more: str = ""
    timeout: float = 5.0
    secret: str = ""
    """The smtp section's secret line; default: password_command reading the password."""
    login: bool = True
    """False: the smtp section has neither username nor secret (a relay without AUTH)."""

    @property
    def config(self) -> Path:
        return self.root / "config.yaml"

    @property
    def outbox(self) -> Path:
        return self.root / "Mail" / ".outbox"

    def write_config(self) -> Path:
        self.root.mkdir(parents=True, exist_ok=True)
        (self.root / "pw").write_text(self.password + "\n")
        ca = f"      ca_file: {self.ca}\n" if self.ca is not None and self.tls != "none" else ""
        self.config.write_text(
            f"""state_dir: {self.root}/state
accounts:
  {self.name}:
    maildir: {self.root}/Mail
    from: [{ME}]
    pop3:
      host: 127.0.0.1
      port: 1
      tls: none
      username: nobody
      password_command: echo unused
    smtp:
      host: 127.0.0.1
      port: {self.server.port}
      tls: {self.tls}
{self._login_lines()}      timeout: {self.timeout}
{ca}{self.smtp_extra}{self.more}"""
        )
        return self.config

    def _login_lines(self) -> str:
        if not self.login:
            return ""
        secret = self.secret or f"password_command: cat {self.root}/pw"
        return f"      username: {self.server.user}\n      {secret}\n"

    def run(self, *args: str, stdin: bytes = b"") -> Result:
        self.write_config()
        argv = [args[0], "-c", str(self.config), *args[1:]]
        return run_cli(argv, stdin)

    def sendmail(self, raw: bytes, *args: str, expect: int = 0) -> Result:
        r = self.run("sendmail", *args, stdin=raw)
        assert r.code == expect, f"sendmail exited {r.code}: {r.err}"
        return r

    def send(self, *args: str, expect: int = 0) -> Result:
        r = self.run("send", *args)
        assert r.code == expect, f"send exited {r.code}\nstdout:\n{r.out}\nstderr:\n{r.err}"
        return r

    def status(self) -> dict[str, Any]:
        r = self.run("status", "--json")
        assert r.code == 0, r.err
        box: dict[str, Any] = json.loads(r.out)["accounts"][self.name]["outbox"]
        return box

    def spawn(self, *args: str, env: dict[str, str]) -> subprocess.CompletedProcess[str]:
        self.write_config()
        return subprocess.run(
            [sys.executable, "-m", "syncd", args[0], "-c", str(self.config), *args[1:]],
            capture_output=True,
            text=True,
            env={**os.environ, **env},
            cwd=REPO,
            timeout=60,
        )

    # -- looking at the files --------------------------------------------------------------

    def queued(self) -> list[Path]:
        return sorted(
            p
            for sub in ("new", "cur")
            if (self.outbox / sub).is_dir()
            for p in (self.outbox / sub).iterdir()
        )

    def failed(self) -> dict[str, str]:
        """failed/ message name -> its .error text."""
        d = self.outbox / "failed"
        if not d.is_dir():
            return {}
        return {
            p.name: (d / (p.name + ".error")).read_text()
            for p in d.iterdir()
            if not p.name.endswith(".error") and not p.name.startswith(".")
        }

    def sent_copies(self) -> list[Path]:
        sent = self.root / "Mail" / "Sent"
        return sorted(
            p for sub in ("new", "cur") if (sent / sub).is_dir() for p in (sent / sub).iterdir()
        )


def run_cli(argv: list[str], stdin: bytes = b"") -> Result:
    out, err = io.StringIO(), io.StringIO()
    fake_stdin = io.TextIOWrapper(io.BytesIO(stdin))
    with redirect_stdout(out), redirect_stderr(err), mock.patch.object(sys, "stdin", fake_stdin):
        try:
            code = cli.main(argv)
        except SystemExit as exc:
            code = int(exc.code or 0)
    return Result(code, out.getvalue(), err.getvalue())


@pytest.fixture
def box(tmp_path: Path, smtpd: Smtpd, certs: CertFiles) -> Box:
    return Box(tmp_path / "box", smtpd, certs.ca_pem)


def header(raw: bytes, name: str) -> list[str]:
    head = raw.replace(b"\r\n", b"\n").split(b"\n\n", 1)[0].decode()
    return re.findall(rf"(?im)^{name}:[ \t]*(.*)$", head)


# -- sendmail ----------------------------------------------------------------------------------


def test_sendmail_queues_atomically_with_explicit_recipients(box: Box) -> None:
    raw = message(1, bcc="hidden@example.com")
    args = ["-oem", "-odb", "-oi", "-bm", "-F", "Me Myself", "-N", "never", "-fme@example.org"]
    r = box.sendmail(raw, *args, "--", "bob@example.net", "Carol <carol@example.com>")
    assert r.err == ""
    files = box.queued()
    assert len(files) == 1 and files[0].parent.name == "new"
    assert files[0].read_bytes() == raw  # not a byte changed in the queue
    assert list((box.outbox / "tmp").iterdir()) == []
    envelope = json.loads((box.outbox / ".envelope" / f"{files[0].name}.json").read_text())
    assert envelope["sender"] == "me@example.org"
    assert envelope["recipients"] == ["bob@example.net", "carol@example.com"]
    assert box.server.messages() == []  # queued only: nothing was sent


def test_sendmail_t_adds_header_recipients_and_plain_uses_headers(box: Box) -> None:
    raw = message(1, cc="cc@example.com", bcc="bcc@example.com")
    box.sendmail(raw, "-ti", "extra@example.com")
    box.sendmail(message(2))
    first, second = sorted(box.queued(), key=lambda p: b"test 2" in p.read_bytes())
    env1 = json.loads((box.outbox / ".envelope" / f"{first.name}.json").read_text())
    assert env1["recipients"] == [
        "extra@example.com",
        "bob@example.net",
        "cc@example.com",
        "bcc@example.com",
    ]
    env2 = json.loads((box.outbox / ".envelope" / f"{second.name}.json").read_text())
    assert env2["recipients"] is None and env2["sender"] is None  # the headers decide
    box.send()
    got = sorted(box.server.messages(), key=lambda m: b"test 2" in m.data)
    assert [sorted(m.rcpt_tos) for m in got] == [
        ["bcc@example.com", "bob@example.net", "cc@example.com", "extra@example.com"],
        ["bob@example.net"],
    ]


def test_sendmail_picks_the_account_by_from(tmp_path: Path, smtpd: Smtpd, certs: CertFiles) -> None:
    box = Box(tmp_path / "b", smtpd, certs.ca_pem)
    box.more = f"""  work:
    maildir: {box.root}/Work
    from: [me@work.example]
    pop3: {{host: 127.0.0.1, port: 1, tls: none, username: x, password_command: echo x}}
    smtp: {{host: 127.0.0.1, port: {smtpd.port}, tls: none, username: x,
            password_command: echo x}}
"""
    box.sendmail(message(1, sender="me@work.example"))
    assert list((box.root / "Work" / ".outbox" / "new").iterdir())
    assert box.queued() == []
    r = box.sendmail(message(2, sender="stranger@elsewhere.example"), expect=75)
    assert "no account sends as stranger@elsewhere.example" in r.err
    assert "-a ACCOUNT" in r.err
    box.sendmail(message(3, sender="stranger@elsewhere.example"), "-a", "acct")
    assert len(box.queued()) == 1


def test_sendmail_unwritable_outbox_exits_75(
    tmp_path: Path, smtpd: Smtpd, certs: CertFiles
) -> None:
    box = Box(tmp_path / "b", smtpd, certs.ca_pem)
    (tmp_path / "b").mkdir()
    (tmp_path / "b" / "blocker").write_text("a file where a directory should be")
    box.more = f"    outbox: {tmp_path}/b/blocker/outbox\n"
    r = box.sendmail(message(1), expect=75)
    assert "cannot create the outbox" in r.err and "NOT queued" in r.err
    assert "Not a directory" in r.err
    r = run_cli(["sendmail", "-c", str(tmp_path / "missing.yaml")], message(1))
    assert r.code == 75 and "no config file" in r.err


def test_sendmail_rejects_unsupported_modes_and_missing_values(box: Box) -> None:
    assert box.sendmail(message(1), "-bs", expect=75).err.count("-bs is not supported")
    assert "needs a value" in box.sendmail(message(1), "-f", expect=75).err
    assert box.queued() == []


def test_sendmail_imports_little(box: Box) -> None:
    box.write_config()
    code = (
        "import sys\n"
        "from syncd import cli\n"
        f"rc = cli.main(['sendmail', '-c', {str(box.config)!r}, 'x@example.net'])\n"
        "heavy = sorted(m for m in ('imapclient', 'keyring', 'sqlite3', 'smtplib', "
        "'syncd.state', 'syncd.credentials', 'watchdog') if m in sys.modules)\n"
        "print(rc, heavy)\n"
    )
    start = time.monotonic()
    done = subprocess.run(
        [sys.executable, "-c", code], input=message(1), capture_output=True, cwd=REPO, timeout=30
    )
    assert done.stdout.decode().strip() == "0 []", done.stderr.decode()
    assert time.monotonic() - start < 5
    assert len(box.queued()) == 1


def test_sendmail_reads_the_config_again_only_when_it_or_its_environment_changed(
    tmp_path: Path,
) -> None:
    """A mail reader calls sendmail once per message: an unchanged config is not parsed
    again (no YAML, no config walker, no argparse), yet an edit of the file or a change of
    an environment variable it uses is seen by the very next call."""
    config = tmp_path / "config.yaml"
    base = f"""state_dir: {tmp_path}/state
accounts:
  acct:
    maildir: ${{MAILROOT}}/Mail
    from: [{ME}]
    pop3:
      host: 127.0.0.1
      port: 1
      tls: none
      username: nobody
      password_command: echo unused
    smtp:
      host: 127.0.0.1
      port: 1
      tls: none
"""
    config.write_text(base)
    code = (
        "import sys\n"
        "from syncd import cli\n"
        f"rc = cli.main(['sendmail', '-c', {str(config)!r}, 'x@example.net'])\n"
        "heavy = sorted(m for m in ('yaml', 'syncd.config', 'argparse', 'imapclient', "
        "'keyring', 'watchdog', 'dns', 'sqlite3', 'smtplib', 'syncd.drivers.maildir') "
        "if m in sys.modules)\n"
        "print(rc, heavy)\n"
    )

    def sendmail(root: Path) -> str:
        env = {**os.environ, "XDG_CACHE_HOME": str(tmp_path / "cache"), "MAILROOT": str(root)}
        done = subprocess.run(
            [sys.executable, "-c", code],
            input=message(1),
            capture_output=True,
            cwd=REPO,
            env=env,
            timeout=30,
        )
        assert done.returncode == 0, done.stderr.decode()
        return done.stdout.decode().strip()

    def queued(outbox: Path) -> int:
        new = outbox / "new"
        return len(list(new.iterdir())) if new.is_dir() else 0

    parsed, light = "0 ['syncd.config', 'yaml']", "0 []"
    a, b, elsewhere = tmp_path / "a", tmp_path / "b", tmp_path / "elsewhere"
    assert sendmail(a) == parsed
    assert sendmail(a) == light
    assert sendmail(b) == parsed  # $MAILROOT names another maildir now
    assert (queued(a / "Mail" / ".outbox"), queued(b / "Mail" / ".outbox")) == (2, 1)
    config.write_text(base + f"    outbox: {elsewhere}\n")
    assert sendmail(b) == parsed
    assert sendmail(b) == light
    assert (queued(b / "Mail" / ".outbox"), queued(elsewhere)) == (1, 2)
    # Notes that cannot be read are no notes: the config is parsed, the message queued.
    (tmp_path / "cache" / "syncd" / "sendmail.json").write_text('{"stamp": ')
    assert sendmail(b) == parsed
    assert queued(elsewhere) == 3


# -- sending -----------------------------------------------------------------------------------


def test_send_starttls_auth_strips_bcc_and_keeps_it_in_sent(box: Box) -> None:
    raw = message(1, cc="cc@example.com", bcc="Secret <hidden@example.com>")
    box.sendmail(raw)
    r = box.send()
    assert "sent" in r.out
    (got,) = box.server.messages()
    assert got.mail_from == ME
    assert sorted(got.rcpt_tos) == ["bob@example.net", "cc@example.com", "hidden@example.com"]
    assert header(got.data, "Bcc") == []
    assert b"hidden@example.com" not in got.data
    assert got.lf == raw.replace(b"Bcc: Secret <hidden@example.com>\n", b"")
    assert box.server.logins == ["PLAIN"]
    # the Sent copy keeps the Bcc (as mutt does), is seen, and the outbox is empty
    (copy,) = box.sent_copies()
    assert copy.read_bytes() == raw and copy.name.endswith(":2,S")
    assert box.queued() == [] and list((box.outbox / ".envelope").iterdir()) == []
    assert box.status() == {
        "path": str(box.outbox),
        "queued": 0,
        "unfinished": 0,
        "retrying": [],
        "failed": [],
    }


def test_missing_date_and_message_id_are_added_alike_to_sent_copy(box: Box) -> None:
    box.sendmail(message(1, date=False, msgid=False))
    box.send()
    (got,) = box.server.messages()
    (copy,) = box.sent_copies()
    for name in ("Date", "Message-ID"):
        (value,) = header(got.data, name)
        assert header(copy.read_bytes(), name) == [value]
    assert re.fullmatch(r"<[0-9a-f]{32}\.syncd@example\.org>", header(got.data, "Message-ID")[0])


def test_451_stays_queued_then_is_sent_exactly_once(box: Box) -> None:
    box.sendmail(message(1))
    box.server.fail_next(1, 451, "4.3.0 try again later")
    r = box.send()  # only a temporary failure left: exit 0
    assert "451 4.3.0 try again later" in r.err
    assert box.server.messages() == [] and len(box.queued()) == 1
    status = box.status()
    (item,) = status["retrying"]
    assert item["attempts"] == 1 and "451" in item["last_error"]
    assert item["next_attempt"] > time.time() + 30
    assert item["subject"] == "test 1"
    text = box.run("status").out
    assert "1 retrying" in text and "451 4.3.0" in text

    # the daemon's path respects the backoff...
    cfg = load_config(box.config)
    acct = cfg.account("acct")
    report = send_engine.drain(acct, cfg.state_dir, lambda: PASSWORD)
    assert report.waiting == 1 and report.sent == [] and report.next_due is not None
    assert box.server.messages() == []
    # ...and after it, the message goes; so does `syncd send` at once.
    box.send()
    assert len(box.server.messages()) == 1
    box.send()
    assert len(box.server.messages()) == 1  # exactly once
    assert box.queued() == [] and len(box.sent_copies()) == 1


def test_550_moves_to_failed_with_the_servers_answer(box: Box) -> None:
    box.server.refuse("bob@example.net", 550, "5.1.1 <bob@example.net>: no such user")
    box.sendmail(message(1))
    r = box.send(expect=1)
    assert "1 failed, kept in" in r.err and "550 5.1.1" in r.err
    assert box.queued() == [] and box.server.messages() == [] and box.sent_copies() == []
    ((name, error),) = box.failed().items()
    assert error.startswith("Not sent: the server refused it: bob@example.net: 550 5.1.1")
    assert "550 5.1.1 <bob@example.net>: no such user" in error
    assert (box.outbox / "failed" / name).read_bytes() == message(1)
    (failed,) = box.status()["failed"]
    assert "550 5.1.1" in failed["reason"]
    box.send()  # failed/ is left alone
    assert box.server.messages() == []


def test_partial_refusal_sends_to_the_rest_and_reports(box: Box) -> None:
    box.server.refuse("gone@example.com", 550, "5.1.1 mailbox unavailable")
    box.sendmail(message(1, cc="gone@example.com"))
    r = box.send(expect=1)
    assert "1 partly refused" in r.err
    assert "refused for good for gone@example.com (550 5.1.1 mailbox unavailable)" in r.err
    (got,) = box.server.messages()
    assert got.rcpt_tos == ("bob@example.net",)
    assert len(box.sent_copies()) == 1
    ((name, error),) = box.failed().items()
    assert "Delivered to: bob@example.net" in error
    assert "gone@example.com: 550 5.1.1 mailbox unavailable" in error
    envelope = json.loads((box.outbox / ".envelope" / f"{name}.json").read_text())
    assert envelope["recipients"] == ["gone@example.com"]
    box.send()  # not retried forever
    assert len(box.server.messages()) == 1
    # moved back by the user once the address works, it goes to the refused one only
    box.server.unrefuse("gone@example.com")
    (box.outbox / "failed" / name).rename(box.outbox / "new" / name)
    box.send()
    assert box.server.messages()[-1].rcpt_tos == ("gone@example.com",)


@pytest.mark.parametrize(
    ("raw", "reason"),
    [
        (b"", "the message is empty (0 bytes)"),
        (b"\x00\x01\x02 this is\nnot mail at all\n", "not a message"),
        (b"To: bob@example.net\nSubject: x\n\nbody\n", "no From header"),
        (f"From: {ME}\nSubject: x\n\nbody\n".encode(), "no recipients"),
        (f"From: {ME}\nTo: bob with space\n\nx\n".encode(), "is not a valid e-mail address"),
    ],
)
def test_malformed_input_goes_to_failed_with_a_reason(box: Box, raw: bytes, reason: str) -> None:
    # dropped straight into the outbox, the way any Maildir writer may
    (box.outbox / "new").mkdir(parents=True)
    (box.outbox / "new" / "1700000000.M1P1.host").write_bytes(raw)
    r = box.send(expect=1)
    assert reason in r.err
    assert box.failed() and reason in next(iter(box.failed().values())).splitlines()[0]
    assert box.queued() == [] and box.server.messages() == []
    assert (box.outbox / "failed" / "1700000000.M1P1.host").read_bytes() == raw


def test_sendmail_warns_about_input_it_cannot_send(box: Box) -> None:
    r = box.sendmail(b"")
    assert "warning: the message is empty" in r.err
    r = box.sendmail(f"From: {ME}\nSubject: none\n\nx\n".encode())
    assert "warning: the message has no recipients" in r.err
    box.send(expect=1)
    assert len(box.failed()) == 2


def test_server_down_then_up(box: Box) -> None:
    box.server.stop()
    box.sendmail(message(1))
    box.sendmail(message(2))
    r = box.send()  # exit 0: only temporary failures left
    assert "Connection refused" in r.err
    assert len(box.queued()) == 2
    status = box.status()
    assert [i["attempts"] for i in status["retrying"]] == [1, 1]
    assert all(i["next_attempt"] is None for i in status["retrying"])  # due when reachable
    box.server.start()
    box.send()
    assert sorted(header(m.data, "Subject")[0] for m in box.server.messages()) == [
        "test 1",
        "test 2",
    ]
    assert box.queued() == [] and len(box.sent_copies()) == 2


def test_the_sent_log_line_and_status_show_the_subject_decoded(box: Box) -> None:
    # RFC 2047: what a mail reader writes for a subject that is not ASCII.
    encoded = "=?utf-8?B?R3LDvMOfZSBhdXMgS8O2bG4=?= =?utf-8?Q?=E2=82=AC_5?="
    raw = message(1).replace(b"Subject: test 1", f"Subject: {encoded}".encode())
    box.sendmail(raw)
    box.server.stop()
    box.send()
    assert "retrying 'Grüße aus Köln€ 5'" in box.run("status").out
    box.server.start()
    r = box.send("-v")
    assert "sent " in r.err and "('Grüße aus Köln€ 5' to bob@example.net)" in r.err, r.err
    assert "=?utf-8?" not in r.err
    # Only the log is decoded: the message itself is sent and kept byte for byte.
    (got,) = box.server.messages()
    assert header(got.data, "Subject") == [encoded]
    (copy,) = box.sent_copies()
    assert copy.read_bytes() == raw


_WHEN = r"next try \d{4}-\d\d-\d\d \d\d:\d\d:\d\d"


def test_status_says_when_each_retry_happens(box: Box) -> None:
    # A message the server deferred (4xx) has its own time; one whose connection failed
    # is tried by whatever drains next, and without a daemon that is the user's command.
    box.server.stop()
    box.sendmail(message(1))
    box.send()
    text = box.run("status").out
    assert "next run" not in text, text
    assert (
        "retrying 'test 1' (1 attempts, no daemon running: the next `syncd send` or "
        "`syncd sync` tries it)" in text
    ), text
    box.server.start()
    box.server.fail_next(1, 451)
    box.send()
    text = box.run("status").out
    assert re.search(rf"retrying 'test 1' \(2 attempts, {_WHEN}\)", text), text


def test_one_connection_for_the_whole_queue(box: Box) -> None:
    for i in range(25):
        box.sendmail(message(i))
    box.send()
    assert len(box.server.messages()) == 25
    assert box.server.logins == ["PLAIN"]  # one connection, one login
    assert len(box.sent_copies()) == 25


def test_timeout_keeps_the_message_queued(box: Box) -> None:
    box.timeout = 0.3
    box.server.stall(1.0)
    box.sendmail(message(1))
    r = box.send()
    assert "timed out" in r.err and "the server may have it" in r.err
    assert len(box.queued()) == 1
    time.sleep(0.8)  # the stalled DATA answers 451 and keeps nothing
    box.send()
    assert len(box.server.messages()) == 1 and box.queued() == []


def test_wrong_password_keeps_the_queue_and_says_why(box: Box) -> None:
    box.password = "wrong"
    box.sendmail(message(1))
    r = box.send(expect=1)
    assert "login as sender@example.org refused" in r.err and "535" in r.err
    assert len(box.queued()) == 1
    assert "refused" in box.status()["retrying"][0]["last_error"]
    assert "wrong" not in r.err + r.out


def test_auth_login_only(tmp_path: Path, certs: CertFiles) -> None:
    with Smtpd(tls="starttls", certs=certs, mechanisms=["LOGIN"]) as server:
        box = Box(tmp_path / "b", server, certs.ca_pem)
        box.sendmail(message(1))
        box.send()
        assert server.logins == ["LOGIN"] and len(server.messages()) == 1


def test_a_relay_without_auth_needs_no_username(tmp_path: Path) -> None:
    # A loopback relay (or an ISP's) that offers no AUTH: no username, no secret.
    with Smtpd(tls="none", offer_auth=False) as server:
        box = Box(tmp_path / "b", server, None, tls="none", login=False)
        box.sendmail(message(1))
        box.send()
        box.smtp_extra = "      auth: none\n"
        box.sendmail(message(2))
        r = box.send()
        assert [m.lf for m in server.messages()] == [message(1), message(2)], r.err
        assert server.logins == []
        assert len(box.sent_copies()) == 2


def test_no_auth_offered_is_said_once_per_process(tmp_path: Path) -> None:
    # A username is configured but the server offers no AUTH: say so once, not per send.
    with Smtpd(tls="none", offer_auth=False) as server:
        box = Box(tmp_path / "b", server, None, tls="none")
        said = []
        for i in range(3):
            box.sendmail(message(i))
            r = box.send("-v")
            said.append(r.err.count("offers no AUTH; sending without login"))
        assert len(server.messages()) == 3
        assert said == [1, 0, 0]


def test_xoauth2_with_token_command(tmp_path: Path, certs: CertFiles) -> None:
    with Smtpd(tls="starttls", certs=certs, token="tok-123", mechanisms=["XOAUTH2"]) as server:
        box = Box(tmp_path / "b", server, certs.ca_pem)
        box.smtp_extra = "      auth: xoauth2\n"
        box.secret = "token_command: echo tok-123"
        box.sendmail(message(1))
        box.send()
        assert len(server.messages()) == 1
        box.secret = "token_command: echo expired"
        box.sendmail(message(2))
        r = box.send(expect=1)
        assert "535" in r.err
        assert len(server.messages()) == 1


def test_implicit_tls_with_ca_file(tmp_path: Path, certs: CertFiles) -> None:
    with Smtpd(tls="implicit", certs=certs) as server:
        box = Box(tmp_path / "b", server, certs.ca_pem, tls="implicit")
        box.sendmail(message(1, bcc="hidden@example.com"))
        box.send()
        (got,) = server.messages()
        assert "hidden@example.com" in got.rcpt_tos and b"Bcc" not in got.data


def test_wrong_ca_is_refused_with_a_clear_message(tmp_path: Path, smtpd: Smtpd) -> None:
    other = make_test_certs(tmp_path / "other-ca")
    box = Box(tmp_path / "b", smtpd, other.ca_pem)
    box.sendmail(message(1))
    r = box.send(expect=1)
    assert "certificate not trusted" in r.err and "ca_file" in r.err
    assert smtpd.messages() == [] and len(box.queued()) == 1


def test_starttls_missing_is_refused_never_downgraded(tmp_path: Path, certs: CertFiles) -> None:
    with Smtpd(tls="none") as server:  # offers no STARTTLS at all
        box = Box(tmp_path / "b", server, certs.ca_pem, tls="starttls")
        box.sendmail(message(1))
        r = box.send(expect=1)
        assert "does not offer STARTTLS" in r.err
        assert server.messages() == [] and server.logins == []
        assert len(box.queued()) == 1


# -- crashes -----------------------------------------------------------------------------------


@pytest.mark.crash
def test_sigkill_after_every_commit_delivers_each_message_exactly_once(
    tmp_path: Path, smtpd: Smtpd, certs: CertFiles
) -> None:
    """Kill `syncd send` after its N-th journal commit, for every N, then send again.

    Commits per message: "sending" (before DATA), "sent" (after 250); then one "copied"
    and one for taking the rows out. The hook kills only after commits, i.e. never inside
    the window between the server's 250 and the "sent" commit, so exactly once holds for
    every N; the resend after a "sending" row is the documented rule and must not
    duplicate here, since the server never got DATA.
    """
    n = 1
    while True:
        smtpd.clear()
        box = Box(tmp_path / f"n{n}", smtpd, certs.ca_pem)
        for i in range(3):
            box.sendmail(message(i))
        killed = box.spawn("send", env={"SYNCD_TEST_STOP_AFTER_COMMITS": str(n)})
        if killed.returncode != -signal.SIGKILL:
            assert killed.returncode == 0, killed.stderr
            break
        again = box.send()
        if n <= 6 and n % 2 == 1:  # died right after a "sending" commit
            assert "Sending it again with the same Message-ID" in again.err
        ids = Counter(header(m.data, "Message-ID")[0] for m in smtpd.messages())
        assert sorted(ids.values()) == [1, 1, 1], f"stop after {n} commits: {ids}"
        assert box.queued() == [], f"stop after {n}"
        copies = Counter(header(p.read_bytes(), "Message-ID")[0] for p in box.sent_copies())
        assert copies == ids, f"stop after {n}: Sent copies {copies}"
        n += 1
        assert n < 30
    assert n == 9  # 3 x (sending, sent) + copied + removed; the 9th run finishes


def test_crash_between_sent_copy_and_its_commit_makes_no_second_copy(box: Box) -> None:
    box.sendmail(message(1))
    with (
        mock.patch.object(
            send_engine._Drain, "_mark_copied", side_effect=RuntimeError("simulated crash")
        ),
        pytest.raises(RuntimeError),
    ):
        box.run("send")
    assert len(box.sent_copies()) == 1 and len(box.queued()) == 1
    box.send()
    assert len(box.sent_copies()) == 1  # found by Message-ID, not copied again
    assert len(box.server.messages()) == 1 and box.queued() == []


# -- the IMAP Sent folder ----------------------------------------------------------------------


@pytest.mark.dovecot
def test_sync_drains_and_puts_the_sent_copy_in_the_imap_sent_folder(
    account: Account, smtpd: Smtpd, certs: CertFiles
) -> None:
    account.extra = f"""    smtp:
      host: 127.0.0.1
      port: {smtpd.port}
      tls: starttls
      username: {smtpd.user}
      password_command: echo {smtpd.password}
      ca_file: {certs.ca_pem}
      sent_folder: Sent
"""
    account.write_config()
    raw = message(1, bcc="hidden@example.com")
    r = run_cli(["sendmail", "-c", str(account.config)], raw)
    assert r.code == 0, r.err
    account.sync()
    (got,) = smtpd.messages()
    assert b"hidden@example.com" not in got.data
    ((body, flags),) = account.remote_messages("Sent").values()
    assert body == raw and b"\\Seen" in flags
    # the drain ran before the sync, so the copy came down in the same run
    assert account.local_messages("Sent") == {raw: "S"}
    assert list((account.maildir / ".outbox" / "new").iterdir()) == []


def _smtp_section(smtpd: Smtpd, certs: CertFiles) -> str:
    return f"""    smtp:
      host: 127.0.0.1
      port: {smtpd.port}
      tls: starttls
      username: {smtpd.user}
      password_command: echo {smtpd.password}
      ca_file: {certs.ca_pem}
      sent_folder: Sent
"""


@pytest.mark.dovecot
@pytest.mark.parametrize("paired", [True, False], ids=["appenduid", "unpaired"])
def test_the_sent_copy_is_local_at_once_and_never_downloaded_again(
    account: Account, smtpd: Smtpd, certs: CertFiles, paired: bool
) -> None:
    from syncd.state import State

    account.extra = _smtp_section(smtpd, certs)
    account.sync()
    raws = [message(1), message(2, body="\u00e9t\u00e9")]
    for raw in raws:
        r = run_cli(["sendmail", "-c", str(account.config)], raw)
        assert r.code == 0, r.err
    r = account.run("send")  # only the drain: no sync brings the copy down
    assert r.code == 0, r.err
    assert len(smtpd.messages()) == 2
    local = {p.read_bytes(): p.name.rsplit(":2,", 1)[1] for p in account.local_files("Sent")}
    assert local == {raw: "S" for raw in raws}
    remote = account.remote_messages("Sent")
    assert sorted(body for body, _ in remote.values()) == sorted(raws)
    assert all(b"\\Seen" in flags for _, flags in remote.values())
    if not paired:
        # As without APPENDUID (no UIDPLUS), or after a crash before the pairs were
        # committed: the next sync must match the copies by header, not copy them again.
        with State.for_account(account.state_dir, account.name) as st:
            st.drop_pairs("Sent", list(st.pairs("Sent")))
    account.sync()
    account.sync()
    assert len(account.local_files("Sent")) == 2
    assert len(account.remote_messages("Sent")) == 2
    # The pair is real: a flag set locally on the copy reaches its server copy.
    first = next(p for p in account.local_files("Sent") if p.read_bytes() == raws[0])
    first.rename(first.parent.parent / "cur" / (first.name.split(":2,")[0] + ":2,FS"))
    account.sync()
    flags = {body: f for body, f in account.remote_messages("Sent").values()}
    assert b"\\Flagged" in flags[raws[0]] and b"\\Flagged" not in flags[raws[1]]
    assert len(account.local_files("Sent")) == 2


@pytest.mark.dovecot
@pytest.mark.crash
def test_sigkill_at_every_commit_of_an_imap_send_leaves_one_sent_copy_per_side(
    account: Account, smtpd: Smtpd, certs: CertFiles
) -> None:
    """Kill `syncd send` after each of its commits, then `syncd sync` (which drains
    first): the message is in the server's and the local Sent folder exactly once,
    whether the crash came before the copies, between them and their pairs, or after."""
    account.extra = _smtp_section(smtpd, certs)
    account.sync()
    n = 1
    while True:
        raw = message(100 + n)
        r = run_cli(["sendmail", "-c", str(account.config)], raw)
        assert r.code == 0, r.err
        killed = account.spawn("send", env={"SYNCD_TEST_STOP_AFTER_COMMITS": str(n)})
        account.sync()
        account.sync()
        sent = [m for m in smtpd.messages() if m.lf == raw]
        remote = [b for b, _ in account.remote_messages("Sent").values() if b == raw]
        local = [p for p in account.local_files("Sent") if p.read_bytes() == raw]
        where = f"stop after {n} commits"
        assert (len(sent), len(remote), len(local)) == (1, 1, 1), where
        assert local[0].name.endswith(":2,S"), where
        if killed.returncode != -signal.SIGKILL:
            assert killed.returncode == 0, killed.stderr
            break
        n += 1
        assert n < 30
    assert n > 4  # sending, sent, the folder's UIDVALIDITY, the pairs, copied...


@pytest.mark.dovecot
@pytest.mark.slow
def test_daemon_status_says_when_the_outbox_is_tried_again(
    account: Account, smtpd: Smtpd, certs: CertFiles, tmp_path: Path
) -> None:
    from tests.integration.test_daemon import Daemon, wait_for

    account.extra = _smtp_section(smtpd, certs)
    smtpd.stop()
    daemon = Daemon(account, tmp_path)
    try:
        daemon.wait_message("READY=1")
        r = run_cli(["sendmail", "-c", str(account.config)], message(1))
        assert r.code == 0, r.err

        def retrying() -> str | None:
            text = account.run("status").out
            return text if "retrying 'test 1'" in text and "daemon: running" in text else None

        text = wait_for(retrying, timeout=20)
        assert text, daemon.text()
        assert "next run" not in text, text
        assert re.search(rf"retrying 'test 1' \(\d+ attempts, {_WHEN}\)", text), text
    finally:
        assert daemon.stop() == 0


@pytest.mark.dovecot
@pytest.mark.slow
def test_daemon_sends_a_queued_message_within_a_second(
    account: Account, smtpd: Smtpd, certs: CertFiles, tmp_path: Path
) -> None:
    from tests.integration.test_daemon import Daemon

    account.extra = f"""    smtp:
      host: 127.0.0.1
      port: {smtpd.port}
      tls: starttls
      username: {smtpd.user}
      password_command: echo {smtpd.password}
      ca_file: {certs.ca_pem}
"""
    daemon = Daemon(account, tmp_path)
    try:
        daemon.wait_message("READY=1")
        lags = []
        for i in range(3):
            start = time.monotonic()
            r = run_cli(["sendmail", "-c", str(account.config)], message(i))
            assert r.code == 0, r.err
            deadline = start + 10
            while len(smtpd.messages()) <= i and time.monotonic() < deadline:
                time.sleep(0.01)
            lags.append(time.monotonic() - start)
            assert len(smtpd.messages()) == i + 1, daemon.text()
        assert sorted(lags)[1] < 1.0, f"file to 250 took {lags}"
    finally:
        assert daemon.stop() == 0


# -- error mapping -----------------------------------------------------------------------------


def _instances() -> list[BaseException]:
    out: list[BaseException] = []
    for cls in [*vars(smtplib).values(), *vars(ssl).values()]:
        if not (isinstance(cls, type) and issubclass(cls, Exception)):
            continue
        if cls.__module__ not in ("smtplib", "ssl") or cls is ssl.CertificateError:
            continue
        for args in ((), (451, b"busy"), (451, b"busy", "a@b"), ({"a@b": (550, b"no")},)):
            try:
                out.append(cls(*args))
                break
            except TypeError:
                continue
    return out


@pytest.mark.parametrize("exc", _instances(), ids=lambda e: type(e).__name__)
def test_every_smtplib_and_ssl_exception_is_mapped(exc: BaseException, tmp_path: Path) -> None:
    from syncd.drivers.smtp import map_error

    (tmp_path / "c.yaml").write_text(
        "accounts:\n  a:\n    maildir: /tmp/x\n"
        "    pop3: {host: 127.0.0.1, tls: none, username: u, password_command: echo}\n"
        "    smtp: {host: 127.0.0.1, tls: none, username: u, password_command: echo}\n"
    )
    smtp = load_config(tmp_path / "c.yaml").accounts[0].smtp
    assert smtp is not None
    mapped = map_error(exc, smtp, "testing")
    assert isinstance(mapped, SyncdError)
    assert type(exc).__name__ + ":" not in str(mapped)  # not the catch-all branch
    if isinstance(exc, smtplib.SMTPServerDisconnected | ssl.SSLEOFError):
        assert isinstance(mapped, TransientError)
    if isinstance(exc, ssl.SSLCertVerificationError):
        assert isinstance(mapped, TLSError)
    assert isinstance(mapped, TransientError | TLSError | StoreError)


@pytest.mark.dovecot
@pytest.mark.slow
def test_daemon_sends_while_the_imap_server_is_down(
    smtpd: Smtpd, certs: CertFiles, tmp_path: Path
) -> None:
    """An IMAP outage must not hold mail back from a reachable SMTP server."""
    from tests.integration.test_daemon import Daemon
    from tests.servers.dovecot import Dovecot

    with Dovecot(tmp_path / "server") as server:
        (tmp_path / "acct").mkdir()
        account = Account(server, server.add_user(), tmp_path / "acct")
        account.extra = f"""    smtp:
      host: 127.0.0.1
      port: {smtpd.port}
      tls: starttls
      username: {smtpd.user}
      password_command: echo {smtpd.password}
      ca_file: {certs.ca_pem}
      sent_folder: null
"""
        daemon = Daemon(account, tmp_path)
        try:
            daemon.wait_message("READY=1")
            server.stop()
            time.sleep(1.0)  # the worker notices and backs off its mail sync
            r = run_cli(["sendmail", "-c", str(account.config)], message(1))
            assert r.code == 0, r.err
            deadline = time.monotonic() + 10
            while not smtpd.messages() and time.monotonic() < deadline:
                time.sleep(0.05)
            assert len(smtpd.messages()) == 1, daemon.text()
        finally:
            assert daemon.stop() == 0


def test_check_logs_in_to_the_smtp_server_as_a_send_would(box: Box) -> None:
    r = box.run("check")
    (line,) = [ln for ln in r.out.splitlines() if "/smtp " in ln]
    assert line.endswith("OK, logged in"), r.out
    assert box.server.logins, "the server saw no AUTH"
    box.password = "wrong"
    r = box.run("check")
    (line,) = [ln for ln in r.out.splitlines() if "/smtp " in ln]
    assert "FAILED" in line and "535" in line
    assert r.code == 1
