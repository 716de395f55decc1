"""``syncd init`` end to end: a DNS server of our own on loopback, the real Dovecot, aiosmtpd.

Every name lookup of these tests goes to the DNS server the test runs: ``$SYNCD_DNS_SERVER``
sends init's SRV queries there, and ``system_resolver_through`` routes the process's
``getaddrinfo`` (imaplib, smtplib, poplib) there too, so the config's host names such as
``mail.example.test`` resolve to 127.0.0.1 and nothing leaves the machine.
"""

from __future__ import annotations

import io
import itertools
import socket
import time
from collections.abc import Iterator
from contextlib import redirect_stderr, redirect_stdout
from dataclasses import dataclass
from pathlib import Path
from unittest import mock

import pytest

from syncd import cli
from syncd.config import AccountConfig, Config, SecretKind, TlsMode, load_config, parse_config
from syncd.setup import SRV_SERVICES
from tests.integration.conftest import Result, msg
from tests.servers import require_dovecot
from tests.servers.dnsd import DnsServer, system_resolver_through
from tests.servers.dovecot import CertFiles, Dovecot, User, make_test_certs
from tests.servers.filekeyring import FileKeyring
from tests.servers.smtpd import Smtpd

pytestmark = [pytest.mark.dovecot, pytest.mark.smtp]

DOMAIN = "example.test"
MAIL = f"mail.{DOMAIN}"
_users = itertools.count(1)


@pytest.fixture(scope="module")
def certs(tmp_path_factory: pytest.TempPathFactory) -> CertFiles:
    # The certificate names the host the SRV records point to, as a provider's would.
    return make_test_certs(tmp_path_factory.mktemp("init-certs"), names=(MAIL, "localhost"))


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory, certs: CertFiles) -> Iterator[Dovecot]:
    require_dovecot()
    with Dovecot(tmp_path_factory.mktemp("init-dovecot"), tls=certs) as dovecot:
        yield dovecot


@dataclass
class World:
    dns: DnsServer
    dovecot: Dovecot
    smtpd: Smtpd
    user: User
    certs: CertFiles
    root: Path
    keyring: FileKeyring

    @property
    def address(self) -> str:
        return self.user.name

    @property
    def config(self) -> Path:
        return self.root / "config.yaml"

    @property
    def maildir(self) -> Path:
        return self.root / "Mail"

    @property
    def pw_command(self) -> str:
        return f"cat {self.root / 'pw'}"

    def srv_zone(self, **services: list[str]) -> dict[str, list[tuple[str, str]]]:
        """A zone with ``mail.example.test`` and the given SRV records: ``imaps=["0 1 993
        mail.example.test."]`` becomes ``_imaps._tcp.example.test``."""
        zone: dict[str, list[tuple[str, str]]] = {MAIL: [("A", "127.0.0.1")]}
        for service, records in services.items():
            zone[f"_{service}._tcp.{DOMAIN}"] = [("SRV", r) for r in records]
        return zone

    def all_srv(self) -> dict[str, list[str]]:
        d, s = self.dovecot, self.smtpd
        return {
            "imaps": [f"0 1 {d.imaps_port} {MAIL}."],
            "imap": [f"0 1 {d.imap_port} {MAIL}."],
            "submissions": ["0 0 0 ."],
            "submission": [f"0 1 {s.port} {MAIL}."],
            "pop3s": [f"0 1 {d.pop3s_port} {MAIL}."],
        }

    def run(self, *argv: str, stdin: str = "") -> Result:
        out, err = io.StringIO(), io.StringIO()
        with (
            redirect_stdout(out),
            redirect_stderr(err),
            mock.patch("sys.stdin", io.StringIO(stdin)),
        ):
            try:
                code = cli.main(list(argv))
            except SystemExit as exc:
                code = int(exc.code or 0)
        return Result(code, out.getvalue(), err.getvalue())

    def init(self, *args: str, stdin: str = "", expect: int | None = 0) -> Result:
        r = self.run("init", self.address, "--maildir", str(self.maildir), *args, stdin=stdin)
        if expect is not None:
            assert r.code == expect, f"init exited {r.code}\nstdout:\n{r.out}\nstderr:\n{r.err}"
        assert self.user.password not in r.out + r.err
        return r


@pytest.fixture
def world(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, server: Dovecot, certs: CertFiles
) -> Iterator[World]:
    import keyring

    user = server.add_user(name=f"alice{next(_users)}@{DOMAIN}")
    (tmp_path / "pw").write_text(user.password + "\n")
    monkeypatch.delenv("SYNCD_CONFIG", raising=False)
    monkeypatch.setenv("XDG_CONFIG_HOME", str(tmp_path / "xdg-config"))
    monkeypatch.setenv("XDG_STATE_HOME", str(tmp_path / "xdg-state"))
    # Never the desktop's keyring: a file this test owns.
    previous = keyring.get_keyring()
    store = FileKeyring(tmp_path / "keyring.json")
    keyring.set_keyring(store)
    smtpd = Smtpd(tls="starttls", certs=certs, user=user.name, password=user.password)
    try:
        with DnsServer() as dns, smtpd, system_resolver_through(dns):
            monkeypatch.setenv("SYNCD_DNS_SERVER", dns.address)
            yield World(dns, server, smtpd, user, certs, tmp_path, store)
    finally:
        keyring.set_keyring(previous)


def account_of(cfg: Config) -> AccountConfig:
    assert [a.name for a in cfg.accounts] == ["example"]
    return cfg.accounts[0]


def attempts(out: str) -> list[tuple[str, str]]:
    """(where, outcome) of each attempt init reported, in order: ``("mail.example.test port
    993 with TLS", "logged in")`` or ``("pop3.example.test", "no such host name")``."""
    found = []
    trying = False
    for line in out.splitlines():
        if line.startswith("Trying "):
            trying = True
        elif not line.startswith("  "):
            continue
        elif trying and " port " in line:
            where, rest = line.strip().split(" (", 1)
            found.append((where, rest.split("): ", 1)[1].split(" (", 1)[0]))
        elif trying and "no such host name" in line:
            where, rest = line.strip().split(": ", 1)
            found.append((where, rest.split(" (", 1)[0]))
    return found


def test_init_follows_srv_records_and_writes_a_working_config(world: World) -> None:
    world.dns.set_zone(world.srv_zone(**world.all_srv()))
    ca = str(world.certs.ca_pem)
    r = world.init("--password-command", world.pw_command, "-o", str(world.config), "--ca-file", ca)

    # Every SRV service was asked for, implicit TLS first, in DNS only (no connection yet).
    assert world.dns.asked("SRV") == [f"{s.label}.{DOMAIN}" for s in SRV_SERVICES]
    assert f"_submissions._tcp.{DOMAIN}): not offered" in r.out
    d = world.dovecot
    assert f"{MAIL} port {d.imaps_port} with TLS (from _imaps._tcp.{DOMAIN}): logged in" in r.out
    assert (
        f"{MAIL} port {world.smtpd.port} with STARTTLS (from _submission._tcp.{DOMAIN}): "
        "logged in" in r.out
    )
    assert world.smtpd.logins  # the SMTP login really happened
    assert "syncd sync -c" in r.out and "systemctl --user enable --now syncd" in r.out

    text = world.config.read_text()
    assert text.startswith("# syncd config, written by `syncd init")
    acct = account_of(load_config(world.config))
    assert acct.imap is not None and acct.smtp is not None and acct.pop3 is None
    assert (acct.imap.host, acct.imap.port, acct.imap.tls) == (MAIL, d.imaps_port, TlsMode.IMPLICIT)
    assert (acct.smtp.host, acct.smtp.port, acct.smtp.tls) == (
        MAIL,
        world.smtpd.port,
        TlsMode.STARTTLS,
    )
    for section in (acct.imap, acct.smtp):
        assert section.username == world.address
        assert section.ca_file == world.certs.ca_pem
        assert section.secret.kind is SecretKind.COMMAND
        assert section.secret.command == world.pw_command
    assert acct.maildir == world.maildir
    assert acct.addresses == (world.address,)
    assert world.user.password not in text
    assert not world.keyring.path.exists()  # a password command needs no keyring

    # And the config works for a sync.
    world.dovecot.append(world.user, "INBOX", msg(1))
    sync = world.run("sync", "-c", str(world.config))
    assert sync.code == 0, sync.err
    assert "1 downloaded" in sync.out


def test_dot_target_means_not_offered_and_priorities_order_the_rest(world: World) -> None:
    closed = _closed_port()
    d = world.dovecot
    zone = world.srv_zone(
        imaps=["0 0 0 ."],
        # Lower priority first: the backup (nothing listens there) is tried before mail.
        imap=[f"20 0 {d.imap_port} {MAIL}.", f"10 0 {closed} backup.{DOMAIN}."],
        submissions=["0 0 0 ."],
        submission=[f"0 1 {world.smtpd.port} {MAIL}."],
    )
    zone[f"backup.{DOMAIN}"] = [("A", "127.0.0.1")]
    world.dns.set_zone(zone)
    r = world.init(
        "--password-command",
        world.pw_command,
        "-o",
        str(world.config),
        "--ca-file",
        str(world.certs.ca_pem),
    )
    assert f"_imaps._tcp.{DOMAIN}): not offered" in r.out
    assert attempts(r.out) == [
        (f"backup.{DOMAIN} port {closed} with STARTTLS", "no connection"),
        (f"{MAIL} port {d.imap_port} with STARTTLS", "logged in"),
        (f"{MAIL} port {world.smtpd.port} with STARTTLS", "logged in"),
    ]
    assert " port 993 " not in r.out and " port 465 " not in r.out
    acct = account_of(load_config(world.config))
    assert acct.imap is not None and acct.smtp is not None
    assert (acct.imap.port, acct.imap.tls) == (d.imap_port, TlsMode.STARTTLS)
    assert (acct.smtp.port, acct.smtp.tls) == (world.smtpd.port, TlsMode.STARTTLS)


def test_without_srv_records_the_usual_names_are_tried_in_order(world: World) -> None:
    busy = [p for p in (993, 143, 995, 110, 465, 587) if not _is_closed(p)]
    if busy:
        pytest.skip(f"something listens on 127.0.0.1 port {busy}: the test needs them closed")
    zone = {
        name: [("A", "127.0.0.1")]
        for name in (f"imap.{DOMAIN}", MAIL, DOMAIN, f"smtp.{DOMAIN}", f"pop.{DOMAIN}")
    }  # no pop3.example.test at all
    world.dns.set_zone(zone)
    started = time.monotonic()
    r = world.init(
        "--password-command", world.pw_command, "-o", str(world.config), "--timeout", "2", expect=1
    )
    assert time.monotonic() - started < 20
    assert r.out.count(": none") == len(SRV_SERVICES)
    assert "trying the usual server names" in r.out
    assert attempts(r.out) == [
        (f"imap.{DOMAIN} port 993 with TLS", "no connection"),
        (f"imap.{DOMAIN} port 143 with STARTTLS", "no connection"),
        (f"{MAIL} port 993 with TLS", "no connection"),
        (f"{MAIL} port 143 with STARTTLS", "no connection"),
        (f"{DOMAIN} port 993 with TLS", "no connection"),
        (f"{DOMAIN} port 143 with STARTTLS", "no connection"),
        (f"pop.{DOMAIN} port 995 with TLS", "no connection"),
        (f"pop.{DOMAIN} port 110 with STARTTLS", "no connection"),
        (f"pop3.{DOMAIN}", "no such host name"),
        (f"smtp.{DOMAIN} port 465 with TLS", "no connection"),
        (f"smtp.{DOMAIN} port 587 with STARTTLS", "no connection"),
        (f"{MAIL} port 465 with TLS", "no connection"),
        (f"{MAIL} port 587 with STARTTLS", "no connection"),
    ]
    assert "No IMAP server answered; trying POP3 instead." in r.out
    assert f"found no server to read the mail of {DOMAIN} from" in r.err
    assert "tried 13 host names and ports" in r.err
    assert not world.config.exists()


def test_typed_password_goes_to_the_keyring_not_the_file(world: World) -> None:
    world.dns.set_zone(world.srv_zone(**world.all_srv()))
    r = world.init("--ca-file", str(world.certs.ca_pem), stdin=world.user.password + "\n")
    written = world.root / "xdg-config" / "syncd" / "config.yaml"  # the default path
    assert f"Wrote {written}" in r.out
    assert "  syncd sync  " in r.out  # the default config needs no -c
    assert world.keyring.get_password("syncd", "example/imap") == world.user.password
    assert world.keyring.get_password("syncd", "example/smtp") == world.user.password
    text = written.read_text()
    assert world.user.password not in text
    assert 'key "example/imap"' in text
    acct = account_of(parse_config(text, written))
    assert acct.imap is not None and acct.smtp is not None
    assert acct.imap.secret.kind is SecretKind.KEYRING
    assert acct.smtp.secret.kind is SecretKind.KEYRING

    world.dovecot.append(world.user, "INBOX", msg(2))
    sync = world.run("sync")
    assert sync.code == 0, sync.err
    assert "1 downloaded" in sync.out


def test_wrong_password_writes_nothing_and_shows_the_draft(world: World) -> None:
    world.dns.set_zone(world.srv_zone(**world.all_srv()))
    r = world.init(
        "-o", str(world.config), "--ca-file", str(world.certs.ca_pem), stdin="wrong\n", expect=1
    )
    assert ": login refused" in r.out
    assert f"the IMAP server {MAIL} refused the login as {world.address}" in r.err
    assert f"the SMTP server {MAIL} refused the login" in r.err
    assert not world.config.exists()
    assert not world.keyring.path.exists()  # nothing stored for a password that failed
    draft = r.out[r.out.index("# syncd config") :]
    acct = account_of(parse_config(draft))
    assert acct.imap is not None and acct.imap.port == world.dovecot.imaps_port


def test_untrusted_certificate_suggests_ca_file(world: World) -> None:
    world.dns.set_zone(world.srv_zone(**world.all_srv()))
    r = world.init("--password-command", world.pw_command, "-o", str(world.config), expect=1)
    assert "TLS failed" in r.out and "certificate not trusted" in r.out
    assert "--ca-file CA.pem" in r.err
    assert not world.config.exists()


def test_an_existing_config_is_kept_unless_forced(world: World) -> None:
    world.dns.set_zone(world.srv_zone(**world.all_srv()))
    world.config.write_text("# my own config\n")
    args = ["--password-command", world.pw_command, "-o", str(world.config)]
    args += ["--ca-file", str(world.certs.ca_pem)]
    r = world.init(*args, expect=1)
    assert world.config.read_text() == "# my own config\n"
    assert f"The account to add under accounts: in {world.config}:" in r.out
    assert "\n  example:\n    # Your mail" in r.out
    assert "--force" in r.err
    block = r.out[r.out.index("  example:\n") :]
    account_of(parse_config("accounts:\n" + block))  # the block is valid as printed

    world.init(*args, "--force")
    account_of(load_config(world.config))


def _is_closed(port: int) -> bool:
    with socket.socket() as s:
        s.settimeout(1)
        return s.connect_ex(("127.0.0.1", port)) != 0


def _closed_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])
