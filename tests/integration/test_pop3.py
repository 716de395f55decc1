"""POP3 accounts against a real Dovecot: delivery, leave_on_server, crashes, TLS, logins.

The server is the test Dovecot with two additions, both in ``PopDovecot.config_text``:
the APOP mechanism (so the greeting carries a timestamp) and XOAUTH2/OAUTHBEARER, which
Dovecot checks against the passwd-file password (the "token" is the user's password).
A small line proxy (``Pop3Proxy``) in front of it answers chosen commands itself, to play
a server without UIDL, a locked maildrop and a server that stops answering.
"""

from __future__ import annotations

import base64
import io
import os
import poplib
import random
import signal
import socket
import sqlite3
import ssl
import subprocess
import sys
import threading
from collections import Counter
from collections.abc import Iterator
from contextlib import redirect_stderr, redirect_stdout, suppress
from dataclasses import dataclass
from pathlib import Path

import pytest

from syncd import cli
from syncd.config import parse_config
from syncd.drivers import maildir as maildir_driver
from syncd.drivers.pop3 import Pop3Session, Stage, header_digest, map_errors
from syncd.engine.fetch import fetch_account
from syncd.errors import AuthError, MessageError, StoreError, TLSError, TransientError
from tests.integration.conftest import REPO, Result
from tests.servers import require_dovecot
from tests.servers.corpus import make_message
from tests.servers.dovecot import Dovecot, User, make_test_certs

dovecot_test = pytest.mark.dovecot


class PopDovecot(Dovecot):
    """The test Dovecot with APOP and the OAuth2 SASL mechanisms turned on."""

    def config_text(self) -> str:
        text = super().config_text()
        old = "auth_mechanisms = plain login"
        assert old in text
        return text.replace(old, "auth_mechanisms = plain login apop xoauth2 oauthbearer")


@pytest.fixture(scope="module")
def pop_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[PopDovecot]:
    require_dovecot()
    base = tmp_path_factory.mktemp("pop3")
    server = PopDovecot(base / "server", tls=make_test_certs(base / "certs"))
    with server:
        yield server


@dataclass
class PopAccount:
    """A syncd config with a pop3: section for one Dovecot user, and ways to run syncd."""

    server: Dovecot
    user: User
    root: Path
    tls: str = "none"
    leave: str = "true"
    max_size: str | None = None
    ca: bool = True
    auth: str = "password"
    port: int | None = None
    timeout: float | None = None
    folder: str = "INBOX"
    name: str = "pop"

    @property
    def maildir(self) -> Path:
        return self.root / "Mail"

    @property
    def state_dir(self) -> Path:
        return self.root / "state"

    @property
    def config(self) -> Path:
        return self.root / "config.yaml"

    @property
    def db(self) -> Path:
        return self.state_dir / f"{self.name}.sqlite3"

    def config_text(self) -> str:
        pw = self.root / "pw"
        pw.write_text(self.user.password + "\n")
        if self.port is not None:
            port = self.port
        elif self.tls == "implicit":
            port = self.server.pop3s_port
        else:
            port = self.server.pop3_port
        lines = [
            f"state_dir: {self.state_dir}",
            "accounts:",
            f"  {self.name}:",
            f"    maildir: {self.maildir}",
            "    pop3:",
            "      host: 127.0.0.1",
            f"      port: {port}",
            f"      tls: {self.tls}",
            f"      username: {self.user.name}",
            f"      leave_on_server: {self.leave}",
            f"      folder: {self.folder}",
        ]
        if self.auth == "password":
            lines.append(f"      password_command: cat {pw}")
        else:
            lines += [f"      auth: {self.auth}", f"      token_command: cat {pw}"]
        if self.tls != "none" and self.ca and self.server.tls is not None:
            lines.append(f"      ca_file: {self.server.tls.ca_pem}")
        if self.max_size is not None:
            lines.append(f"      max_size: {self.max_size}")
        if self.timeout is not None:
            lines.append(f"      timeout: {self.timeout}")
        return "\n".join(lines) + "\n"

    def write_config(self) -> Path:
        self.config.write_text(self.config_text())
        return self.config

    def pop3_config(self):
        cfg = parse_config(self.config_text(), self.config)
        assert cfg.accounts[0].pop3 is not None
        return cfg.accounts[0]

    def run(self, *args: str) -> Result:
        self.write_config()
        out, err = io.StringIO(), io.StringIO()
        with redirect_stdout(out), redirect_stderr(err):
            try:
                code = cli.main([args[0], "-c", str(self.config), *args[1:]])
            except SystemExit as exc:
                code = int(exc.code or 0)
        return Result(code, out.getvalue(), err.getvalue())

    def poll(self, *args: str, expect: int = 0) -> Result:
        r = self.run("sync", *args)
        assert r.code == expect, f"syncd sync exited {r.code}\nstdout:\n{r.out}\nstderr:\n{r.err}"
        return r

    def spawn(self, env: dict[str, str]) -> subprocess.CompletedProcess[str]:
        self.write_config()
        return subprocess.run(
            [sys.executable, "-m", "syncd", "sync", "-c", str(self.config)],
            capture_output=True,
            text=True,
            env={**os.environ, **env},
            cwd=REPO,
            timeout=60,
        )

    def local_files(self) -> list[Path]:
        base = self.maildir / self.folder
        return sorted(
            p for sub in ("new", "cur") if (base / sub).is_dir() for p in (base / sub).iterdir()
        )

    def local(self) -> Counter[bytes]:
        return Counter(p.read_bytes() for p in self.local_files())

    def remote(self) -> Counter[bytes]:
        """The server's INBOX as LF bytes (read over IMAP, which leaves POP3 state alone)."""
        return Counter(lf(raw) for raw, _ in self.server.messages(self.user).values())

    def remote_count(self) -> int:
        pop = poplib.POP3(self.server.host, self.server.pop3_port, timeout=30)
        try:
            pop.user(self.user.name)
            pop.pass_(self.user.password)
            return pop.stat()[0]
        finally:
            pop.quit()

    def sql(self, query: str, *args: object) -> list[tuple]:
        with sqlite3.connect(self.db) as db:
            rows = db.execute(query, args).fetchall()
        db.close()
        return rows


def lf(raw: bytes) -> bytes:
    return raw.replace(b"\r\n", b"\n")


@pytest.fixture
def pop_user(pop_server: PopDovecot) -> User:
    return pop_server.add_user()


@pytest.fixture
def acct(pop_server: PopDovecot, pop_user: User, tmp_path: Path) -> PopAccount:
    return PopAccount(pop_server, pop_user, tmp_path)


def simple(i: int, body: str = "hello") -> bytes:
    return (
        f"From: a@example.org\r\nTo: b@example.org\r\nSubject: pop {i}\r\n"
        f"Message-ID: <pop{i}.{os.getpid()}@example.org>\r\n\r\n{body} {i}\r\n"
    ).encode()


def deliver_all(acct: PopAccount, messages: list[bytes]) -> list[bytes]:
    """Deliver over LMTP; the LF form of what the server now holds, in order."""
    return [lf(acct.server.deliver(acct.user, raw)) for raw in messages]


# -- corpus: what goes in comes out, byte for byte ------------------------------------------


def dot_message() -> bytes:
    return (
        b"From: dots@example.org\r\nSubject: dots\r\n\r\n"
        b".\r\n..\r\n...\r\n.leading dot\r\n. space\r\nmiddle . dot\r\n.\r\n.end\r\n"
    )


def eight_bit_message() -> bytes:
    return (
        "From: Jörg <joerg@example.de>\r\nSubject: Grüße\r\nMIME-Version: 1.0\r\n"
        "Content-Type: text/plain; charset=utf-8\r\nContent-Transfer-Encoding: 8bit\r\n\r\n"
        "Straße, naïve café, 日本語, 🎉\r\n"
    ).encode() + b"latin-1 bytes: \xe4\xf6\xfc\xff\r\n"


def long_line_message() -> bytes:
    # Longer than poplib's 2048-octet line limit, and than the driver's 64 KiB read chunk.
    return (
        b"From: long@example.org\r\nSubject: long lines\r\n\r\n"
        + b"a" * 5000
        + b"\r\n"
        + b"b" * 100_000
        + b"\r\n.x"
        + b"c" * 70_000
        + b"\r\nshort\r\n"
    )


def bare_lf_message() -> bytes:
    return b"From: lf@example.org\nSubject: bare LF\n\nfirst\nsecond\r\n.third\nlast\n"


def attachment_message(size: int) -> bytes:
    rng = random.Random(5)
    data = base64.encodebytes(rng.randbytes(size * 3 // 4)).replace(b"\n", b"\r\n")
    return (
        b"From: big@example.org\r\nSubject: attachment\r\nMIME-Version: 1.0\r\n"
        b'Content-Type: multipart/mixed; boundary="b1"\r\n\r\n'
        b"--b1\r\nContent-Type: text/plain\r\n\r\nsee attached\r\n"
        b"--b1\r\nContent-Type: application/octet-stream\r\n"
        b"Content-Transfer-Encoding: base64\r\n\r\n" + data + b"--b1--\r\n"
    )


@dovecot_test
def test_a_varied_corpus_arrives_byte_for_byte_once(acct: PopAccount) -> None:
    rng = random.Random(42)
    classes = ["tiny", "normal", "normal", "big", "normal", "tiny", "normal", "big"]
    by_lmtp = [make_message(rng, i, size_class=c) for i, c in enumerate(classes)]  # type: ignore[arg-type]
    by_lmtp += [dot_message(), eight_bit_message(), attachment_message(5 * 1024 * 1024)]
    expected = deliver_all(acct, by_lmtp)
    # doveadm save stores bytes as given (LMTP would rewrite bare LFs and refuse long lines).
    for raw in (long_line_message(), bare_lf_message()):
        expected.append(lf(acct.server.deliver(acct.user, raw, via="save")))

    r = acct.poll()
    assert f"pop/INBOX: {len(expected)} downloaded" in r.out
    assert acct.local() == Counter(expected)
    for path in acct.local_files():
        assert path.parent.name == "new" and ":" not in path.name  # unseen, no flags

    r = acct.poll()
    assert "downloaded" not in r.out
    assert acct.local() == Counter(expected)
    assert acct.remote_count() == len(expected)  # leave_on_server defaults to true


@dovecot_test
def test_renumbering_on_the_server_downloads_only_new_mail(acct: PopAccount) -> None:
    first = deliver_all(acct, [simple(i) for i in range(3)])
    acct.poll()
    # Another client deletes the first message: every message number shifts down.
    with acct.server.imap(acct.user) as client:
        client.select_folder("INBOX")
        uids = client.search()
        client.delete_messages(uids[:1])
        client.expunge()
    later = deliver_all(acct, [simple(i) for i in range(3, 5)])
    r = acct.poll()
    assert "pop/INBOX: 2 downloaded" in r.out
    assert acct.local() == Counter(first + later)


@dovecot_test
def test_leave_on_server_false_deletes_after_delivery(acct: PopAccount) -> None:
    acct.leave = "false"
    expected = deliver_all(acct, [simple(i) for i in range(4)])
    r = acct.poll()
    assert "pop/INBOX: 4 downloaded, 4 deleted on server" in r.out
    assert acct.remote_count() == 0
    assert acct.local() == Counter(expected)
    more = deliver_all(acct, [simple(9)])
    acct.poll()
    assert acct.remote_count() == 0
    assert acct.local() == Counter(expected + more)


@dovecot_test
def test_leave_on_server_days_deletes_only_old_mail(acct: PopAccount) -> None:
    acct.leave = "7"
    old = deliver_all(acct, [simple(1), simple(2)])
    acct.poll()
    assert acct.remote_count() == 2
    # Our own state says when each message was first seen: six days is not yet seven.
    acct.sql("UPDATE pop3_seen SET first_seen = first_seen - 6 * 86400")
    acct.poll()
    assert acct.remote_count() == 2
    acct.sql("UPDATE pop3_seen SET first_seen = first_seen - 2 * 86400")
    new = deliver_all(acct, [simple(3)])
    r = acct.poll()
    assert "pop/INBOX: 1 downloaded, 2 deleted on server" in r.out
    assert acct.remote() == Counter(new)
    assert acct.local() == Counter(old + new)


@dovecot_test
def test_max_size_leaves_big_mail_on_the_server(acct: PopAccount) -> None:
    acct.leave = "false"
    acct.max_size = "20K"
    small = deliver_all(acct, [simple(1)])
    big = deliver_all(acct, [simple(2, body="x" * 60_000)])
    r = acct.poll()
    assert "pop/INBOX: 1 downloaded, 1 deleted on server" in r.out
    assert "note: 1 message larger than max_size (20.0 KiB) left on the server" in r.out
    assert acct.local() == Counter(small)
    assert acct.remote() == Counter(big)
    (summary,) = acct.sql("SELECT value FROM meta WHERE key = 'pop3_last_poll'")
    assert '"too_big": 1' in summary[0]
    status = acct.run("status")
    assert "1 downloaded into INBOX" in status.out
    assert "1 skipped as larger than max_size" in status.out


@dovecot_test
def test_dry_run_changes_nothing(acct: PopAccount) -> None:
    acct.leave = "false"
    deliver_all(acct, [simple(1), simple(2)])
    r = acct.poll("--dry-run")
    assert "pop/INBOX: would download: 2; would delete on server: 2" in r.out
    assert acct.local_files() == []
    assert acct.remote_count() == 2


# -- crashes ---------------------------------------------------------------------------------


@dovecot_test
@pytest.mark.crash
def test_kill_after_every_commit_then_a_clean_poll(pop_server: PopDovecot, tmp_path: Path) -> None:
    """SIGKILL `syncd sync` after its k-th state commit, for every k; then a normal poll
    must leave exactly one local copy of each message and the server empty."""
    k = 1
    while True:
        acct = PopAccount(pop_server, pop_server.add_user(), tmp_path / f"k{k}", leave="false")
        acct.root.mkdir()
        expected = deliver_all(acct, [simple(i) for i in range(5)])
        killed = acct.spawn({"SYNCD_TEST_STOP_AFTER_COMMITS": str(k)})
        if killed.returncode != -signal.SIGKILL:
            assert killed.returncode == 0, killed.stderr
            break
        acct.poll()
        assert acct.local() == Counter(expected), f"killed after commit {k}"
        assert acct.remote_count() == 0, f"killed after commit {k}"
        assert acct.sql("SELECT count(*) FROM pop3_seen WHERE state != 'delivered'") == [(0,)]
        assert not list((acct.maildir / "INBOX" / "tmp").iterdir())
        k += 1
        assert k < 20, "the poll never finished"
    assert k >= 4  # bind, pending, delivered, status: every window was cut


class _Crash(BaseException):
    """Stands for SIGKILL: nothing after it runs, not even an `except Exception`."""


@dovecot_test
@pytest.mark.crash
def test_crash_between_delivery_and_record_does_not_duplicate(
    acct: PopAccount, monkeypatch: pytest.MonkeyPatch
) -> None:
    acct.leave = "false"
    expected = deliver_all(acct, [simple(i) for i in range(3)])
    real = maildir_driver.MaildirFolder.deliver

    def deliver_then_die(self, messages):
        real(self, messages)
        raise _Crash

    monkeypatch.setattr(maildir_driver.MaildirFolder, "deliver", deliver_then_die)
    with pytest.raises(_Crash):
        acct.run("sync")
    assert acct.local() == Counter(expected)
    assert acct.sql("SELECT state, count(*) FROM pop3_seen GROUP BY state") == [("pending", 3)]
    assert acct.remote_count() == 3  # no QUIT, so no deletion
    monkeypatch.undo()

    r = acct.poll()
    assert "pop/INBOX: 3 deleted on server\n" in r.out  # and nothing downloaded
    assert "note: 3 messages stored before an interruption recognised" in r.out
    assert acct.local() == Counter(expected)
    assert acct.remote_count() == 0


@dovecot_test
@pytest.mark.crash
def test_crash_before_delivery_downloads_again(
    acct: PopAccount, monkeypatch: pytest.MonkeyPatch
) -> None:
    expected = deliver_all(acct, [simple(i) for i in range(2)])

    def die(self, messages):
        raise _Crash

    monkeypatch.setattr(maildir_driver.MaildirFolder, "deliver", die)
    with pytest.raises(_Crash):
        acct.run("sync")
    monkeypatch.undo()
    r = acct.poll()
    assert "pop/INBOX: 2 downloaded" in r.out
    assert acct.local() == Counter(expected)


# -- logins and TLS --------------------------------------------------------------------------


@dovecot_test
def test_wrong_password_fails_clearly(acct: PopAccount) -> None:
    acct.user = User(acct.user.name, "wrong", acct.user.maildir)
    r = acct.poll(expect=1)
    assert "syncd: account pop: POP3 127.0.0.1:" in r.err
    assert "login refused: -ERR [AUTH] Authentication failed." in r.err
    status = acct.run("status")
    assert "last error: POP3 127.0.0.1:" in status.out


@dovecot_test
@pytest.mark.parametrize("tls", ["implicit", "starttls"])
def test_tls_with_the_test_ca(acct: PopAccount, tls: str) -> None:
    acct.tls = tls
    expected = deliver_all(acct, [simple(1)])
    acct.poll()
    assert acct.local() == Counter(expected)


@dovecot_test
@pytest.mark.parametrize("tls", ["implicit", "starttls"])
def test_tls_without_the_ca_is_refused(acct: PopAccount, tls: str) -> None:
    acct.tls = tls
    acct.ca = False
    deliver_all(acct, [simple(1)])
    r = acct.poll(expect=1)
    assert "pop3 server 127.0.0.1:" in r.err
    assert "certificate not trusted" in r.err
    assert "set ca_file for a private CA" in r.err
    assert acct.local_files() == []


@dovecot_test
def test_starttls_is_never_downgraded(dovecot: Dovecot, mail_user: User, tmp_path: Path) -> None:
    acct = PopAccount(dovecot, mail_user, tmp_path, tls="starttls")  # this server has no TLS
    r = acct.poll(expect=1)
    assert "does not offer STLS; refusing to log in without TLS" in r.err


@dovecot_test
def test_certificate_pin(acct: PopAccount) -> None:
    assert acct.server.tls is not None
    acct.tls = "implicit"
    acct.ca = False
    text = acct.config_text().replace(
        "      tls: implicit\n",
        f"      tls: implicit\n      fingerprint: {acct.server.tls.fingerprint()}\n",
    )
    account = parse_config(text).accounts[0]
    assert account.pop3 is not None
    with Pop3Session(account.pop3, lambda: acct.user.password) as session:
        assert session.listing() == []


@dovecot_test
def test_apop_login(acct: PopAccount) -> None:
    deliver_all(acct, [simple(1)])
    account = acct.pop3_config()
    with Pop3Session(account.pop3, lambda: acct.user.password, apop=True) as session:
        assert session.mechanism == "APOP"
        assert len(session.listing()) == 1
    with pytest.raises(AuthError, match="login refused"):
        Pop3Session(account.pop3, lambda: "wrong", apop=True).connect()
    report = fetch_account(account, acct.state_dir, lambda: acct.user.password, apop=True)
    assert report.folders["INBOX"].downloaded == 1


@dovecot_test
def test_apop_without_a_timestamp_is_refused(
    dovecot: Dovecot, mail_user: User, tmp_path: Path
) -> None:
    account = PopAccount(dovecot, mail_user, tmp_path).pop3_config()
    session = Pop3Session(account.pop3, lambda: mail_user.password, apop=True)
    with pytest.raises(AuthError, match="offers no APOP timestamp"):
        session.connect()


@dovecot_test
@pytest.mark.parametrize("auth", ["xoauth2", "oauthbearer"])
@pytest.mark.parametrize("token_length", [20, 400])  # the long one does not fit the AUTH line
def test_oauth2_login(pop_server: PopDovecot, tmp_path: Path, auth: str, token_length: int) -> None:
    user = pop_server.add_user(password="t" * token_length)
    acct = PopAccount(pop_server, user, tmp_path, tls="implicit", auth=auth)
    expected = deliver_all(acct, [simple(1)])
    acct.poll()
    assert acct.local() == Counter(expected)


@dovecot_test
@pytest.mark.parametrize("auth", ["xoauth2", "oauthbearer"])
def test_oauth2_token_refused(pop_server: PopDovecot, tmp_path: Path, auth: str) -> None:
    user = pop_server.add_user()
    acct = PopAccount(pop_server, user, tmp_path, tls="starttls", auth=auth)
    acct.user = User(user.name, "expired-token", user.maildir)
    r = acct.poll("-vv", expect=1)
    assert f"{auth.upper()} token refused: " in r.err
    assert "expired-token" not in r.out + r.err


# -- servers that misbehave, played by a proxy --------------------------------------------------


class Pop3Proxy:
    """A POP3 line proxy on 127.0.0.1 that answers the commands in ``answers`` itself
    (a reply line, or None to never answer) and passes everything else to ``port``."""

    def __init__(self, port: int, answers: dict[bytes, bytes | None]) -> None:
        self.upstream = port
        self.answers = answers
        self.listener = socket.create_server(("127.0.0.1", 0))
        self.listener.settimeout(0.1)
        self.port = self.listener.getsockname()[1]
        self.sockets: list[socket.socket] = []
        self.stopping = False
        self.thread = threading.Thread(target=self._accept, daemon=True)
        self.thread.start()

    def _accept(self) -> None:
        while not self.stopping:
            try:
                client, _ = self.listener.accept()
            except TimeoutError:
                continue
            except OSError:
                return
            client.settimeout(None)
            upstream = socket.create_connection(("127.0.0.1", self.upstream))
            self.sockets += [client, upstream]
            threading.Thread(target=self._down, args=(upstream, client), daemon=True).start()
            threading.Thread(target=self._up, args=(client, upstream), daemon=True).start()

    def _down(self, upstream: socket.socket, client: socket.socket) -> None:
        with suppress(OSError):
            while data := upstream.recv(65536):
                client.sendall(data)

    def _up(self, client: socket.socket, upstream: socket.socket) -> None:
        with suppress(OSError), client.makefile("rb") as lines:
            for line in lines:
                verb = line.split(b" ", 1)[0].strip().upper()
                if verb in self.answers:
                    reply = self.answers[verb]
                    if reply is not None:
                        client.sendall(reply + b"\r\n")
                    continue
                upstream.sendall(line)

    def close(self) -> None:
        self.stopping = True
        self.thread.join()
        self.listener.close()
        for sock in self.sockets:
            with suppress(OSError):
                sock.shutdown(socket.SHUT_RDWR)
            sock.close()


@pytest.fixture
def proxy(pop_server: PopDovecot) -> Iterator[dict]:
    made: list[Pop3Proxy] = []

    def start(answers: dict[bytes, bytes | None]) -> Pop3Proxy:
        made.append(Pop3Proxy(pop_server.pop3_port, answers))
        return made[-1]

    yield {"start": start}
    for p in made:
        p.close()


@dovecot_test
def test_a_server_without_uidl_is_identified_by_headers(acct: PopAccount, proxy: dict) -> None:
    p = proxy["start"]({b"UIDL": b"-ERR Unknown command: UIDL"})
    acct.port = p.port
    twins = simple(1)
    expected = deliver_all(acct, [twins, simple(2), twins])  # two identical copies
    r = acct.poll()
    assert "pop/INBOX: 3 downloaded" in r.out
    assert "note: the server has no UIDL" in r.out
    assert acct.local() == Counter(expected)
    uidls = sorted(u for (u,) in acct.sql("SELECT uidl FROM pop3_seen"))
    assert all(u.startswith("hdr:") for u in uidls)
    (second_twin,) = [u for u in uidls if u.endswith(" 2")]
    assert second_twin.removesuffix(" 2") in uidls
    r = acct.poll()
    assert "downloaded" not in r.out
    acct.leave = "false"
    acct.poll()
    assert acct.remote_count() == 0
    assert acct.local() == Counter(expected)


@dovecot_test
def test_a_locked_maildrop_is_a_temporary_error(acct: PopAccount, proxy: dict) -> None:
    p = proxy["start"]({b"PASS": b"-ERR [IN-USE] Mailbox is locked by another POP3 session."})
    acct.port = p.port
    r = acct.poll(expect=1)
    assert "the mailbox is in use by another POP3 session" in r.err
    assert "will try again later" in r.err
    with pytest.raises(TransientError):
        fetch_account(acct.pop3_config(), acct.state_dir, lambda: acct.user.password)


@dovecot_test
def test_a_server_that_stops_answering_times_out(acct: PopAccount, proxy: dict) -> None:
    p = proxy["start"]({b"RETR": None})
    acct.port = p.port
    acct.timeout = 0.5
    acct.leave = "false"
    deliver_all(acct, [simple(1)])
    with pytest.raises(TransientError, match=r"no answer within 0\.5 seconds"):
        fetch_account(acct.pop3_config(), acct.state_dir, lambda: acct.user.password)
    assert acct.local_files() == []
    assert acct.remote_count() == 1
    acct.port = None
    acct.poll()
    assert acct.remote_count() == 0


@dovecot_test
def test_check_logs_in_like_a_poll(acct: PopAccount, proxy: dict) -> None:
    acct.tls = "starttls"
    deliver_all(acct, [simple(1)])
    r = acct.run("check")
    assert r.code == 0, r.out + r.err
    assert f"pop/pop3 {acct.user.name}@127.0.0.1:{acct.server.pop3_port}: OK, 1 messages" in r.out
    acct.tls = "none"
    acct.port = proxy["start"]({b"PASS": b"-ERR [IN-USE] locked"}).port
    r = acct.run("check")
    assert r.code == 1
    assert "FAILED: POP3 127.0.0.1:" in r.out
    assert "the mailbox is in use by another POP3 session" in r.out


# -- without a server: the reader and the error mapping ---------------------------------------


class _FakePop:
    def __init__(self, data: bytes) -> None:
        self.file = io.BytesIO(data)


def offline_config():
    """A pop3: section for the tests that need no server."""
    account = parse_config(
        "accounts:\n  a:\n    maildir: /tmp/m\n    pop3:\n      host: 127.0.0.1\n"
        "      tls: none\n      username: u\n      password_command: echo p\n"
    ).accounts[0]
    assert account.pop3 is not None
    return account.pop3


def read_reply(data: bytes) -> bytes:
    session = Pop3Session(offline_config(), lambda: "p")
    session._pop = _FakePop(data)  # type: ignore[assignment]
    out = session._multiline()
    assert session._pop.file.read() == b"rest", "read past the terminator"  # type: ignore[union-attr]
    return out


CHUNK = 64 * 1024


@pytest.mark.parametrize(
    ("wire", "stored"),
    [
        (b"a\r\n..b\r\n.\r\nrest", b"a\n.b\n"),
        (b"..\r\n...\r\n.\r\nrest", b".\n..\n"),
        (b"bare\nlf\r\n.\r\nrest", b"bare\nlf\n"),
        (b"lone\rcr\r\n.\r\nrest", b"lone\rcr\n"),
        (b"\r\n\r\n.\r\nrest", b"\n\n"),
        (b".\r\nrest", b""),
        (b"lf end\n.\nrest", b"lf end\n"),
        # CRLF split by the chunk boundary, a lone CR at the boundary, a dot that starts a
        # chunk but not a line (kept), and a dot-stuffed line longer than a chunk.
        (b"x" * (CHUNK - 1) + b"\r\n.\r\nrest", b"x" * (CHUNK - 1) + b"\n"),
        (b"x" * (CHUNK - 1) + b"\ry\r\n.\r\nrest", b"x" * (CHUNK - 1) + b"\ry\n"),
        (b"x" * CHUNK + b".y\r\n.\r\nrest", b"x" * CHUNK + b".y\n"),
        (b".." + b"z" * (2 * CHUNK) + b"\r\n.\r\nrest", b"." + b"z" * (2 * CHUNK) + b"\n"),
    ],
)
def test_reading_a_multiline_reply(wire: bytes, stored: bytes) -> None:
    assert read_reply(wire) == stored


def test_a_reply_cut_short_is_a_lost_connection() -> None:
    with pytest.raises(poplib.error_proto, match="EOF"):
        read_reply(b"a\r\nb\r\n")


@pytest.mark.parametrize(
    ("stage", "text", "kind", "words"),
    [
        (Stage.LOGIN, b"-ERR [IN-USE] locked", TransientError, "in use by another POP3 session"),
        (Stage.SESSION, b"-ERR [SYS/TEMP] later", TransientError, "temporary server problem"),
        (Stage.LOGIN, b"-ERR [AUTH] Authentication failed.", AuthError, "login refused"),
        (Stage.SESSION, b"-ERR [AUTH] expired", AuthError, "login refused"),
        (Stage.LOGIN, b"-ERR no", AuthError, "login refused: -ERR no"),
        (Stage.SESSION, b"-ERR [SYS/PERM] gone", StoreError, "permanent problem"),
        (Stage.MESSAGE, b"-ERR no such message", MessageError, "no such message"),
        (Stage.SESSION, "-ERR EOF", TransientError, "closed the connection"),
        (Stage.CONNECT, b"-ERR too many connections", TransientError, "refused the session"),
        (Stage.SESSION, "line too long", StoreError, "line too long"),
    ],
)
def test_server_replies_are_mapped(stage: Stage, text: bytes | str, kind: type, words: str) -> None:
    with pytest.raises(kind, match=words) as info, map_errors("POP3 h:1", offline_config(), stage):
        raise poplib.error_proto(text)
    assert type(info.value) is kind


def ssl_error(reason: str) -> ssl.SSLError:
    exc = ssl.SSLError(1, reason)
    exc.reason = reason  # what the ssl module sets on the errors it raises
    return exc


@pytest.mark.parametrize(
    ("exc", "kind", "words"),
    [
        (TimeoutError(), TransientError, "no answer within 60 seconds"),
        (ConnectionResetError(104, "reset"), TransientError, "connection lost"),
        (socket.gaierror(-2, "Name or service not known"), TransientError, "cannot resolve"),
        (OSError(113, "No route to host"), TransientError, "No route to host"),
        (ssl_error("WRONG_VERSION_NUMBER"), TLSError, "TLS failed: WRONG_VERSION_NUMBER"),
        (ssl.SSLEOFError(8, "eof"), TransientError, "closed during TLS"),
    ],
)
def test_library_errors_are_mapped(exc: BaseException, kind: type, words: str) -> None:
    with pytest.raises(kind, match=words), map_errors("POP3 h:1", offline_config()):
        raise exc


def test_header_digest_ignores_fields_servers_rewrite() -> None:
    a = b"From: a\r\nSubject: s\r\n\tfolded\r\n\r\nbody"
    b = b"From: a\nStatus: RO\nSubject: s\n\tfolded\nX-UIDL: 9\n\nother body"
    assert header_digest(a) == header_digest(b)
    assert header_digest(a) != header_digest(b"From: a\r\nSubject: t\r\n\r\n")
