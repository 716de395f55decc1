"""``syncd init``'s pure parts: SRV ordering, candidate plans, requests, the config text; and
its orchestration with a fake probe (the real servers are in tests/integration/test_init.py).
"""

from __future__ import annotations

import stat
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from syncd.config import ServerConfig, TlsMode, parse_config
from syncd.errors import AuthError, CredentialError, TLSError, TransientError
from syncd.setup import (
    SRV_SERVICES,
    Candidate,
    InitRequest,
    InitResult,
    Outcome,
    SrvLookup,
    SrvRecord,
    SrvStatus,
    interpret_srv,
    lookup_srv,
    make_request,
    order_srv,
    parse_dns_server,
    plan_candidates,
    render_config,
    run_init,
    server_config,
    try_candidates,
    write_config,
)
from tests.servers.dnsd import DnsServer

IMPLICIT, STARTTLS = TlsMode.IMPLICIT, TlsMode.STARTTLS


def lookup(label: str, *records: SrvRecord, not_offered: bool = False) -> SrvLookup:
    service = next(s for s in SRV_SERVICES if s.label == label)
    name = f"{label}.example.org"
    if not_offered:
        return SrvLookup(service, name, SrvStatus.NOT_OFFERED)
    status = SrvStatus.FOUND if records else SrvStatus.ABSENT
    return SrvLookup(service, name, status, order_srv(records))


def where(candidates: tuple[Candidate, ...]) -> list[tuple[str, int, TlsMode]]:
    return [(c.host, c.port, c.tls) for c in candidates]


# --- SRV records ------------------------------------------------------------------------------


def test_srv_order_is_priority_then_heaviest_weight_then_name() -> None:
    records = [
        SrvRecord(20, 100, 993, "c.example.org"),
        SrvRecord(10, 1, 993, "b.example.org"),
        SrvRecord(10, 50, 993, "z.example.org"),
        SrvRecord(10, 50, 993, "a.example.org"),
        SrvRecord(0, 0, 993, "first.example.org"),
    ]
    assert [r.target for r in order_srv(records)] == [
        "first.example.org",
        "a.example.org",
        "z.example.org",
        "b.example.org",
        "c.example.org",
    ]
    assert order_srv(reversed(records)) == order_srv(records)  # answer order does not matter


def test_a_dot_target_alone_means_not_offered() -> None:
    assert interpret_srv([SrvRecord(0, 0, 0, "")]) == (SrvStatus.NOT_OFFERED, ())
    assert interpret_srv([]) == (SrvStatus.ABSENT, ())
    real = SrvRecord(5, 0, 993, "imap.example.org")
    # Beside real records a "." is just dropped.
    assert interpret_srv([SrvRecord(0, 0, 0, ""), real]) == (SrvStatus.FOUND, (real,))


@pytest.mark.parametrize(
    ("spec", "expected"),
    [
        ("127.0.0.1:5353", ("127.0.0.1", 5353)),
        ("127.0.0.1", ("127.0.0.1", 53)),
        ("[::1]:5300", ("::1", 5300)),
        ("::1", ("::1", 53)),
        ("[::1]", ("::1", 53)),
    ],
)
def test_dns_server_override(spec: str, expected: tuple[str, int]) -> None:
    assert parse_dns_server(spec) == expected


@pytest.mark.parametrize("spec", ["localhost:53", "127.0.0.1:0", "127.0.0.1:x", "[::1", "1.2.3"])
def test_bad_dns_server_override(spec: str) -> None:
    with pytest.raises(ValueError, match="SYNCD_DNS_SERVER"):
        parse_dns_server(spec)


def test_lookup_srv_against_a_dns_server() -> None:
    zone = {
        "_imaps._tcp.example.org": [
            ("SRV", "10 0 993 slow.example.org."),
            ("SRV", "0 5 9993 imap.example.org."),
        ],
        "_imap._tcp.example.org": [("SRV", "0 0 0 .")],
        "_submission._tcp.example.org": [("SRV", "0 0 587 smtp.example.org.")],
    }
    with DnsServer(zone) as dns:
        found = {lk.service.label: lk for lk in lookup_srv("example.org", dns.resolver())}
        asked = dns.asked("SRV")
    assert asked == [f"{s.label}.example.org" for s in SRV_SERVICES]
    imaps = found["_imaps._tcp"]
    assert imaps.status is SrvStatus.FOUND
    assert [(r.target, r.port) for r in imaps.records] == [
        ("imap.example.org", 9993),
        ("slow.example.org", 993),
    ]
    assert imaps.describe() == (
        "IMAP with TLS (_imaps._tcp.example.org): imap.example.org port 9993, "
        "then slow.example.org port 993"
    )
    assert found["_imap._tcp"].status is SrvStatus.NOT_OFFERED
    assert found["_submission._tcp"].records == (SrvRecord(0, 0, 587, "smtp.example.org"),)
    assert found["_pop3s._tcp"].status is SrvStatus.ABSENT


def test_a_silent_dns_server_is_waited_for_once() -> None:
    with DnsServer() as dns:
        resolver = dns.resolver(lifetime=0.3)
        dns.stop()  # nobody answers on that port now
        started = time.monotonic()
        lookups = lookup_srv("example.org", resolver)
    assert time.monotonic() - started < 2
    assert all(lk.status is SrvStatus.FAILED for lk in lookups)
    assert "could not ask DNS" in lookups[0].describe()


# --- candidates -------------------------------------------------------------------------------


def test_implicit_tls_comes_first_whatever_the_priorities() -> None:
    lookups = [
        lookup("_imap._tcp", SrvRecord(0, 0, 143, "plain.example.org")),
        lookup("_imaps._tcp", SrvRecord(99, 0, 993, "tls.example.org")),
    ]
    assert where(plan_candidates("imap", lookups, "example.org"))[:2] == [
        ("tls.example.org", 993, IMPLICIT),
        ("plain.example.org", 143, STARTTLS),
    ]


def test_srv_candidates_then_usual_names_without_repeats() -> None:
    lookups = [lookup("_submissions._tcp", SrvRecord(0, 0, 465, "smtp.example.org"))]
    plan = plan_candidates("smtp", lookups, "example.org")
    assert where(plan) == [
        ("smtp.example.org", 465, IMPLICIT),  # from SRV, and not again as a usual name
        ("smtp.example.org", 587, STARTTLS),
        ("mail.example.org", 465, IMPLICIT),
        ("mail.example.org", 587, STARTTLS),
    ]
    assert plan[0].srv == "_submissions._tcp.example.org" and plan[1].srv is None


@pytest.mark.parametrize(
    ("role", "expected"),
    [
        (
            "imap",
            [
                ("imap.example.org", 993),
                ("imap.example.org", 143),
                ("mail.example.org", 993),
                ("mail.example.org", 143),
                ("example.org", 993),
                ("example.org", 143),
            ],
        ),
        (
            "smtp",
            [
                ("smtp.example.org", 465),
                ("smtp.example.org", 587),
                ("mail.example.org", 465),
                ("mail.example.org", 587),
            ],
        ),
        (
            "pop3",
            [
                ("pop.example.org", 995),
                ("pop.example.org", 110),
                ("pop3.example.org", 995),
                ("pop3.example.org", 110),
            ],
        ),
    ],
)
def test_usual_names_and_ports(role: str, expected: list[tuple[str, int]]) -> None:
    plan = plan_candidates(role, [], "example.org")
    assert [(c.host, c.port) for c in plan] == expected
    assert [c.tls for c in plan] == [IMPLICIT, STARTTLS] * (len(expected) // 2)


def test_not_offered_excludes_the_usual_names_with_that_tls() -> None:
    lookups = [lookup("_imaps._tcp", not_offered=True), lookup("_imap._tcp")]
    plan = plan_candidates("imap", lookups, "example.org")
    assert {c.tls for c in plan} == {STARTTLS}
    both = [lookup("_pop3s._tcp", not_offered=True), lookup("_pop3._tcp", not_offered=True)]
    assert plan_candidates("pop3", both, "example.org") == ()


# --- trying -----------------------------------------------------------------------------------


def fake_probe(
    outcomes: dict[tuple[str, int], Exception | str],
) -> tuple[Callable[[ServerConfig, Callable[[], str]], str], list[tuple[str, int]]]:
    calls: list[tuple[str, int]] = []

    def probe(server: ServerConfig, secret: Callable[[], str]) -> str:
        calls.append((server.host, server.port))
        outcome = outcomes.get((server.host, server.port), TransientError("refused"))
        if isinstance(outcome, Exception):
            raise outcome
        assert secret() == "pw"
        return outcome

    return probe, calls


def request(tmp_path: Path, **kw: object) -> InitRequest:
    args: dict[str, object] = {"output": tmp_path / "config.yaml", "environ": {}}
    args.update(kw)
    return make_request("me@example.org", **args)  # type: ignore[arg-type]


def test_first_login_wins_and_a_refused_login_stops_the_role(tmp_path: Path) -> None:
    req = request(tmp_path)
    plan = plan_candidates("imap", [], "example.org")
    probe, calls = fake_probe(
        {
            ("imap.example.org", 993): TLSError("certificate not trusted"),
            ("mail.example.org", 993): AuthError("no"),
            ("example.org", 993): "3 folders",
        }
    )
    result = try_candidates(
        plan,
        lambda c: server_config(c, req),
        lambda: "pw",
        probe=probe,
        resolves=lambda host: None,
    )
    assert calls == [
        ("imap.example.org", 993),
        ("imap.example.org", 143),
        ("mail.example.org", 993),
    ]
    assert [a.outcome for a in result.attempts] == [
        Outcome.TLS_FAILED,
        Outcome.NO_CONNECTION,
        Outcome.REFUSED,
    ]
    assert result.logged_in is None
    assert result.found == plan[2]  # the refused login is what to report and draft


def test_a_host_that_does_not_resolve_is_skipped_once(tmp_path: Path) -> None:
    req = request(tmp_path)
    probe, calls = fake_probe({("mail.example.org", 143): "1 folders"})
    said: list[str] = []
    result = try_candidates(
        plan_candidates("imap", [], "example.org"),
        lambda c: server_config(c, req),
        lambda: "pw",
        probe=probe,
        resolves=lambda host: "Name or service not known" if host.startswith("imap.") else None,
        say=lambda a: said.append(a.describe()),
    )
    assert calls == [("mail.example.org", 993), ("mail.example.org", 143)]
    assert said[0] == "imap.example.org: no such host name (Name or service not known); skipped"
    assert result.logged_in is not None and result.logged_in.port == 143
    assert said[-1].endswith(": logged in (1 folders)")


# --- the request ------------------------------------------------------------------------------


def test_request_defaults(tmp_path: Path) -> None:
    req = request(tmp_path)
    assert (req.address, req.domain, req.username) == (
        "me@example.org",
        "example.org",
        "me@example.org",
    )
    assert (req.account, req.maildir) == ("example", "~/Mail/example")
    assert req.stores_secret and req.dns_server is None
    assert make_request("Me <ME@Mail.Example.CO.UK>", environ={}).account == "mail"
    idn = make_request("me@bücher.example", environ={})
    assert (idn.domain, idn.account) == ("xn--bcher-kva.example", "bucher")


def test_request_options(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    req = request(
        tmp_path,
        name="work",
        username="me",
        maildir="Mail/work",
        password_command="pass show mail",
        environ={"SYNCD_DNS_SERVER": "127.0.0.1:5353"},
    )
    assert (req.account, req.username, req.maildir) == ("work", "me", str(tmp_path / "Mail/work"))
    assert not req.stores_secret
    assert req.dns_server == ("127.0.0.1", 5353)
    assert not request(tmp_path, no_keyring=True).stores_secret


@pytest.mark.parametrize(
    ("address", "kw", "message"),
    [
        ("nobody", {}, "not an email address"),
        ("@example.org", {}, "not an email address"),
        ("me@", {}, "not an email address"),
        ("me@exa mple.org", {}, "not an email address"),
        ("me@[192.0.2.1]", {}, "not a domain name"),
        ("me@example.org", {"name": "my account"}, "--name"),
        ("me@example.org", {"ca_file": Path("/nonexistent/ca.pem")}, "--ca-file"),
        ("me@example.org", {"password_command": " "}, "--password-command"),
        ("me@example.org", {"timeout": 0.0}, "--timeout"),
        ("me@example.org", {"environ": {"SYNCD_DNS_SERVER": "dns.example"}}, "SYNCD_DNS"),
    ],
)
def test_bad_requests(address: str, kw: dict[str, object], message: str) -> None:
    kw.setdefault("environ", {})
    with pytest.raises(ValueError, match=message):
        make_request(address, **kw)  # type: ignore[arg-type]


# --- the config text --------------------------------------------------------------------------


def test_the_config_parses_and_says_what_was_found(tmp_path: Path) -> None:
    ca = tmp_path / "ca.pem"
    ca.write_text("not checked here\n")
    tricky = "pass show 'mail/me' | head -1 # \"x\": y"
    req = request(tmp_path, password_command=tricky, ca_file=ca, maildir="~/Mail/me")
    imap = Candidate("imap", "imap.example.org", 993, IMPLICIT, "_imaps._tcp.example.org")
    smtp = Candidate("smtp", "smtp.example.org", 587, STARTTLS)
    text = render_config(req, imap, smtp, stored=False, today="2026-03-02")
    assert "# Found through the DNS SRV record _imaps._tcp.example.org (RFC 6186)." in text
    assert "# Found at the usual name smtp.example.org." in text
    cfg = parse_config(text, req.output)
    (acct,) = cfg.accounts
    assert acct.maildir == Path.home() / "Mail/me"
    assert acct.imap is not None and acct.smtp is not None
    assert (acct.imap.host, acct.imap.port, acct.imap.tls) == ("imap.example.org", 993, IMPLICIT)
    assert (acct.smtp.host, acct.smtp.port, acct.smtp.tls) == ("smtp.example.org", 587, STARTTLS)
    assert acct.imap.secret.command == tricky and acct.smtp.secret.command == tricky
    assert acct.imap.ca_file == ca
    assert acct.addresses == ("me@example.org",)


def test_a_pop3_config_without_smtp(tmp_path: Path) -> None:
    req = request(tmp_path, username="12345")  # a user name YAML would read as a number
    pop = Candidate("pop3", "pop.example.org", 995, IMPLICIT)
    text = render_config(req, pop, None, stored=True)
    assert 'key "example/pop3"' in text and "No SMTP server was found" in text
    (acct,) = parse_config(text).accounts
    assert acct.pop3 is not None and acct.smtp is None and acct.imap is None
    assert acct.pop3.username == "12345" and acct.pop3.leave_on_server is True


def test_write_config_never_replaces_without_force(tmp_path: Path) -> None:
    path = tmp_path / "new" / "config.yaml"
    write_config(path, "a: 1\n", force=False)
    assert path.read_text() == "a: 1\n"
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    with pytest.raises(FileExistsError):
        write_config(path, "a: 2\n", force=False)
    assert path.read_text() == "a: 1\n"
    write_config(path, "a: 3\n", force=True)
    assert path.read_text() == "a: 3\n"
    assert sorted(p.name for p in path.parent.iterdir()) == ["config.yaml"]  # no leftovers


# --- the whole run with a fake probe ----------------------------------------------------------


@pytest.fixture
def dns() -> Iterator[DnsServer]:
    with DnsServer() as server:
        yield server


def run(
    req: InitRequest,
    dns: DnsServer,
    outcomes: dict[tuple[str, int], Exception | str],
    store: Callable[[str, str, str], None] | None = None,
) -> tuple[InitResult, list[str], dict[str, str]]:
    probe, _ = fake_probe(outcomes)
    said: list[str] = []
    stored: dict[str, str] = {}

    def keep(account: str, role: str, secret: str) -> None:
        stored[f"{account}/{role}"] = secret

    result = run_init(
        req,
        ask_secret=lambda: "pw",
        say=said.append,
        probe=probe,
        resolves=lambda host: None,
        store_secret=store or keep,
        resolver=dns.resolver(),
    )
    return result, said, stored


def test_pop3_only_when_no_imap_server_answers_and_smtp_is_optional(
    tmp_path: Path, dns: DnsServer
) -> None:
    req = request(tmp_path)
    result, said, stored = run(req, dns, {("pop.example.org", 995): "0 messages waiting"})
    assert result.ok, result.problem
    assert "No IMAP server answered; trying POP3 instead." in said
    assert any("the config gets no smtp: section" in line for line in said)
    assert stored == {"example/pop3": "pw"}
    (acct,) = parse_config(req.output.read_text()).accounts
    assert acct.pop3 is not None and acct.pop3.host == "pop.example.org" and acct.smtp is None


def test_an_unusable_keyring_writes_nothing_and_names_the_ways_out(
    tmp_path: Path, dns: DnsServer
) -> None:
    def broken(account: str, role: str, secret: str) -> None:
        raise CredentialError("no system keyring is available")

    req = request(tmp_path)
    result, _, _ = run(req, dns, {("imap.example.org", 993): "1 folders"}, store=broken)
    assert not result.ok
    problem = result.problem or ""
    assert "no system keyring" in problem and "--password-command" in problem
    assert "--no-keyring" in problem
    assert not req.output.exists()


def test_no_keyring_leaves_the_password_to_the_user(tmp_path: Path, dns: DnsServer) -> None:
    req = request(tmp_path, no_keyring=True)
    outcomes: dict[tuple[str, int], Exception | str] = {
        ("imap.example.org", 993): "1 folders",
        ("smtp.example.org", 465): "logged in",
    }
    result, _, stored = run(req, dns, outcomes)
    assert result.ok and stored == {}
    steps = [cmd for cmd, _ in result.next_steps]
    assert steps[0].startswith("syncd password set example imap")
    assert "Store it with: syncd password set example smtp" in req.output.read_text()


def test_an_existing_account_of_the_same_name_keeps_its_password(
    tmp_path: Path, dns: DnsServer
) -> None:
    req = request(tmp_path)
    req.output.write_text(
        "accounts:\n  example:\n    maildir: /tmp/x\n    imap:\n      host: h\n      username: u\n"
    )
    result, _, stored = run(req, dns, {("imap.example.org", 993): "1 folders"})
    assert not result.ok and stored == {}
    assert "--name" in (result.problem or "")
    assert result.block is not None and result.block.startswith("  example:\n")


def test_a_server_outside_the_domain_is_pointed_out(tmp_path: Path, dns: DnsServer) -> None:
    dns.set_zone({"_imaps._tcp.example.org": [("SRV", "0 0 993 imap.provider.net.")]})
    req = request(tmp_path, password_command="echo pw")
    result, said, _ = run(req, dns, {("imap.provider.net", 993): "1 folders"})
    assert result.ok
    assert any(line.startswith("Note: imap.provider.net lies outside example.org") for line in said)


def test_an_empty_password_tries_nothing(tmp_path: Path, dns: DnsServer) -> None:
    probe, calls = fake_probe({})
    result = run_init(
        request(tmp_path),
        ask_secret=lambda: "",
        say=lambda line: None,
        probe=probe,
        resolves=lambda host: None,
        resolver=dns.resolver(),
    )
    assert not result.ok and calls == []
    assert result.problem == "the password is empty; nothing was tried"


# --- OAuth2 providers (issue 15) ----------------------------------------------------------------


def no_password() -> str:
    raise AssertionError("an OAuth2 provider must not be asked for a password")


@pytest.mark.parametrize(
    ("address", "provider", "imap_host", "smtp_port"),
    [
        ("me@gmail.com", "google", "imap.gmail.com", 465),
        ("me@googlemail.com", "google", "imap.gmail.com", 465),
        ("me@outlook.com", "microsoft", "outlook.office365.com", 587),
        ("me@hotmail.co.uk", "microsoft", "outlook.office365.com", 587),
        ("me@live.com", "microsoft", "outlook.office365.com", 587),
    ],
)
def test_oauth2_domains_get_the_builtin_flow_instead_of_a_password(
    tmp_path: Path, address: str, provider: str, imap_host: str, smtp_port: int
) -> None:
    req = make_request(
        address, output=tmp_path / "config.yaml", environ={}, client_id="my-client-id"
    )
    said: list[str] = []
    result = run_init(req, ask_secret=no_password, say=said.append, probe=fake_probe({})[0])
    assert result.ok, result.problem
    assert any("signs in with OAuth2" in line for line in said)
    (acct,) = parse_config(req.output.read_text()).accounts
    assert acct.oauth2 is not None and acct.oauth2.provider.value == provider
    assert acct.oauth2.client_id == "my-client-id"
    assert acct.imap is not None and acct.imap.host == imap_host
    assert acct.imap.auth.value == "xoauth2" and acct.imap.secret.kind.value == "oauth2"
    assert acct.smtp is not None and acct.smtp.port == smtp_port
    steps = [cmd for cmd, _ in result.next_steps]
    assert steps[0] == f"syncd oauth login {acct.name} -c {req.output}"


def test_oauth2_without_a_client_id_explains_where_to_get_one(tmp_path: Path) -> None:
    req = make_request("me@gmail.com", output=tmp_path / "config.yaml", environ={})
    result = run_init(req, ask_secret=no_password, say=lambda _: None, probe=fake_probe({})[0])
    assert not result.ok and not req.output.exists()
    problem = result.problem or ""
    assert "Google Cloud console" in problem
    assert "syncd init me@gmail.com --client-id ID --client-secret SECRET" in problem
    assert result.draft is not None and "provider: google" in result.draft


def test_srv_pointing_at_microsoft_means_oauth2(tmp_path: Path, dns: DnsServer) -> None:
    dns.set_zone({"_imaps._tcp.example.org": [("SRV", "0 0 993 outlook.office365.com.")]})
    req = request(tmp_path, client_id="cid")
    result = run_init(
        req,
        ask_secret=no_password,
        say=lambda _: None,
        probe=fake_probe({})[0],
        resolver=dns.resolver(),
    )
    assert result.ok, result.problem
    assert "provider: microsoft" in req.output.read_text()


def test_a_server_offering_only_oauth2_is_not_sent_a_password(
    tmp_path: Path, dns: DnsServer
) -> None:
    asked: list[str] = []

    def mechanisms(server: ServerConfig) -> tuple[str, ...]:
        asked.append(server.host)
        return ("OAUTHBEARER", "XOAUTH2")  # and LOGINDISABLED: no LOGIN

    req = request(tmp_path)
    result = run_init(
        req,
        ask_secret=no_password,
        say=lambda _: None,
        probe=fake_probe({})[0],
        resolves=lambda host: None,
        resolver=dns.resolver(),
        mechanisms=mechanisms,
    )
    assert asked == ["imap.example.org"]
    assert not result.ok and not req.output.exists()
    assert "takes only OAuth2 logins (OAUTHBEARER, XOAUTH2)" in (result.problem or "")
    assert "--oauth2" in (result.problem or "")


def test_a_server_that_also_takes_a_password_goes_on_as_before(
    tmp_path: Path, dns: DnsServer
) -> None:
    req = request(tmp_path)
    result = run_init(
        req,
        ask_secret=lambda: "pw",
        say=lambda _: None,
        probe=fake_probe({("imap.example.org", 993): "1 folders"})[0],
        resolves=lambda host: None,
        store_secret=lambda *a: None,
        resolver=dns.resolver(),
        mechanisms=lambda server: ("PLAIN", "XOAUTH2", "LOGIN"),
    )
    assert result.ok, result.problem
    assert "oauth2" not in req.output.read_text()
