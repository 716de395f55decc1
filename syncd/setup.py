"""``syncd init ADDRESS``: find an address's mail servers the way mail clients do, try the
login, and write a commented config.

Theory of operation
-------------------
Three steps, each a function a test can drive on its own; :func:`run_init` chains them and
reports every step through a ``say`` callback, because only ``cli`` prints.

1. **Look up** (:func:`lookup_srv`): the RFC 6186 SRV records of the address's domain, one
   query per service of :data:`SRV_SERVICES`, through dnspython. Nothing connects yet.
   ``$SYNCD_DNS_SERVER=ADDRESS[:PORT]`` sends these queries to that name server instead of
   the system's; it exists for the tests, which run their own DNS server on loopback.
2. **Plan** (:func:`plan_candidates`, pure): per role an ordered list of host, port and TLS
   mode.

   - The implicit-TLS service comes before the STARTTLS one (RFC 8314): ``_imaps`` before
     ``_imap``, ``_submissions`` (465) before ``_submission`` (587), ``_pop3s`` before
     ``_pop3``. SRV priorities only order the records of one service.
   - Within a service: priority ascending, then weight descending (RFC 2782). RFC 2782 draws
     among equal priorities at random, weighted, to spread many connections over servers;
     init chooses once and writes the choice into the config, so it takes the heaviest, and
     gives the same answer on every run.
   - A service whose records all have the target "." is "decidedly not available"
     (RFC 2782): the usual names are not tried with that service's TLS mode either.
   - Then the usual names (:data:`USUAL_NAMES`), each with the implicit-TLS port first
     (:data:`USUAL_PORTS`). A host and port already planned is not planned twice.
3. **Try** (:func:`try_candidates`): :func:`syncd.drivers.probe.probe` on each candidate in
   order; the first login wins. A host name that does not resolve is reported once and its
   other ports skipped. A refused login ends the role: the provider's other names would
   refuse the same password, and every failed try brings the account closer to a lockout.
   A TLS problem does not: another name may carry a valid certificate. POP3 is tried only
   when no IMAP server answered at all.

Nothing is stored unless the logins worked: then the secret goes into the keyring (unless a
password command gives it, or ``--no-keyring``), and the config, checked by
:func:`syncd.config.parse_config`, is written atomically, never over an existing file
without ``force``. Otherwise the result carries the draft for the user to see.
"""

from __future__ import annotations

import enum
import ipaddress
import json
import os
import re
import shlex
import socket
import time
import unicodedata
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from email.utils import parseaddr
from pathlib import Path
from typing import TYPE_CHECKING, Any, Final

import yaml

from syncd.config import (
    AuthMethod,
    ImapConfig,
    Pop3Config,
    SecretKind,
    SecretSource,
    ServerConfig,
    SmtpConfig,
    TlsMode,
    default_config_path,
    load_config,
    parse_config,
)
from syncd.errors import (
    AuthError,
    ConfigError,
    CredentialError,
    StoreError,
    SyncdError,
    TLSError,
    TransientError,
)
from syncd.log import register_secret

if TYPE_CHECKING:
    import dns.resolver

__all__ = [
    "DEFAULT_TIMEOUT",
    "SRV_SERVICES",
    "USUAL_NAMES",
    "USUAL_PORTS",
    "Attempt",
    "Candidate",
    "InitRequest",
    "InitResult",
    "Outcome",
    "RoleResult",
    "SrvLookup",
    "SrvRecord",
    "SrvService",
    "SrvStatus",
    "host_problem",
    "interpret_srv",
    "lookup_srv",
    "make_request",
    "make_resolver",
    "order_srv",
    "parse_dns_server",
    "plan_candidates",
    "render_account",
    "render_config",
    "run_init",
    "server_config",
    "try_candidates",
    "write_config",
]

DEFAULT_TIMEOUT: Final = 10.0
"""Seconds for each DNS query and each connection attempt."""

ROLE_NAMES: Final = {"imap": "IMAP", "pop3": "POP3", "smtp": "SMTP"}
_ROLE_PURPOSE: Final = {
    "imap": "reading mail",
    "pop3": "fetching mail",
    "smtp": "sending mail",
}
_ACCOUNT_NAME: Final = re.compile(r"[A-Za-z0-9_-]+")
_DOMAIN: Final = re.compile(
    r"[a-z0-9_](?:[a-z0-9_-]*[a-z0-9_])?(?:\.[a-z0-9_](?:[a-z0-9_-]*[a-z0-9_])?)*"
)
# Text that YAML reads back as itself without quotes (checked again with yaml below).
_PLAIN_YAML: Final = re.compile(r"[A-Za-z0-9_./~+-][A-Za-z0-9_./~+@-]*")


@dataclass(frozen=True, slots=True)
class SrvService:
    """One RFC 6186 service: the SRV label, the config role it fills and its TLS mode."""

    label: str
    role: str
    tls: TlsMode

    def describe(self) -> str:
        return f"{ROLE_NAMES[self.role]} with {_tls_words(self.tls)}"


SRV_SERVICES: Final = (
    SrvService("_imaps._tcp", "imap", TlsMode.IMPLICIT),
    SrvService("_imap._tcp", "imap", TlsMode.STARTTLS),
    SrvService("_submissions._tcp", "smtp", TlsMode.IMPLICIT),
    SrvService("_submission._tcp", "smtp", TlsMode.STARTTLS),
    SrvService("_pop3s._tcp", "pop3", TlsMode.IMPLICIT),
    SrvService("_pop3._tcp", "pop3", TlsMode.STARTTLS),
)
"""The services looked up, implicit TLS first within each role (RFC 8314)."""

USUAL_NAMES: Final[Mapping[str, tuple[str, ...]]] = {
    "imap": ("imap", "mail", ""),
    "smtp": ("smtp", "mail"),
    "pop3": ("pop", "pop3"),
}
"""Host name prefixes tried after the SRV records; "" is the domain itself."""

USUAL_PORTS: Final[Mapping[str, tuple[tuple[int, TlsMode], ...]]] = {
    "imap": ((993, TlsMode.IMPLICIT), (143, TlsMode.STARTTLS)),
    "smtp": ((465, TlsMode.IMPLICIT), (587, TlsMode.STARTTLS)),
    "pop3": ((995, TlsMode.IMPLICIT), (110, TlsMode.STARTTLS)),
}
"""Ports tried on each usual name, implicit TLS first (RFC 8314)."""


def _tls_words(tls: TlsMode) -> str:
    return {TlsMode.IMPLICIT: "TLS", TlsMode.STARTTLS: "STARTTLS", TlsMode.NONE: "no TLS"}[tls]


# --- step 1: SRV records ----------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class SrvRecord:
    priority: int
    weight: int
    port: int
    target: str
    """The host name without its final dot; "" for the root ".", which means "not offered"."""


class SrvStatus(enum.Enum):
    FOUND = "found"
    ABSENT = "none published"
    NOT_OFFERED = "not offered"
    FAILED = "lookup failed"


@dataclass(frozen=True, slots=True)
class SrvLookup:
    """What DNS said about one service of the domain."""

    service: SrvService
    name: str
    """The name asked for, ``_imaps._tcp.example.org``."""
    status: SrvStatus
    records: tuple[SrvRecord, ...] = ()
    """The usable records, in the order to try them (FOUND only)."""
    error: str = ""
    """Why the lookup failed (FAILED only)."""

    def describe(self) -> str:
        head = f"{self.service.describe()} ({self.name})"
        if self.status is SrvStatus.FOUND:
            found = ", then ".join(f"{r.target} port {r.port}" for r in self.records)
            return f"{head}: {found}"
        if self.status is SrvStatus.NOT_OFFERED:
            return f'{head}: not offered (the record points to ".")'
        if self.status is SrvStatus.FAILED:
            return f"{head}: could not ask DNS: {self.error}"
        return f"{head}: none"


def order_srv(records: Iterable[SrvRecord]) -> tuple[SrvRecord, ...]:
    """Records in the order to try them: priority ascending, then the heaviest weight first.

    Ties are broken by name and port, so the order never depends on DNS answer order.
    """
    return tuple(sorted(records, key=lambda r: (r.priority, -r.weight, r.target.lower(), r.port)))


def interpret_srv(records: Iterable[SrvRecord]) -> tuple[SrvStatus, tuple[SrvRecord, ...]]:
    """The status of one service's SRV answer and its usable records, ordered.

    A "." target only means "not offered" when nothing else is published (RFC 2782); among
    other records it is dropped.
    """
    given = list(records)
    usable = order_srv(r for r in given if r.target)
    if usable:
        return SrvStatus.FOUND, usable
    if given:
        return SrvStatus.NOT_OFFERED, ()
    return SrvStatus.ABSENT, ()


def parse_dns_server(spec: str) -> tuple[str, int]:
    """``ADDRESS``, ``ADDRESS:PORT`` or ``[IPV6]:PORT`` -> (address, port); ValueError."""
    text = spec.strip()
    port_text = "53"
    if text.startswith("["):
        host, bracket, rest = text[1:].partition("]")
        if not bracket or (rest and not rest.startswith(":")):
            host = ""
        port_text = rest[1:] or port_text
    elif text.count(":") == 1:
        host, port_text = text.split(":")
    else:
        host = text
    try:
        ipaddress.ip_address(host)
        port = int(port_text)
    except ValueError:
        port = 0
    if not 1 <= port <= 65535:
        raise ValueError(
            f"SYNCD_DNS_SERVER={spec!r}: expected an IP address with an optional port, such "
            "as 127.0.0.1:5353 (this variable is meant for tests)"
        )
    return host, port


def make_resolver(server: tuple[str, int] | None, timeout: float) -> dns.resolver.Resolver:
    """The system's resolver (``/etc/resolv.conf``), or one asking only ``server``.

    Raises dnspython's NoResolverConfiguration when the system has no name server.
    """
    import dns.resolver

    if server is None:
        resolver = dns.resolver.Resolver()
    else:
        resolver = dns.resolver.Resolver(configure=False)
        resolver.nameservers = [server[0]]
        resolver.port = server[1]
    resolver.timeout = timeout
    resolver.lifetime = timeout
    return resolver


def lookup_srv(domain: str, resolver: dns.resolver.Resolver) -> tuple[SrvLookup, ...]:
    """Ask DNS for every service of :data:`SRV_SERVICES` under ``domain`` (ASCII)."""
    import dns.exception
    import dns.name
    import dns.rdtypes.IN.SRV
    import dns.resolver

    out: list[SrvLookup] = []
    unreachable = ""
    for service in SRV_SERVICES:
        name = f"{service.label}.{domain}"
        if unreachable:  # one timeout is enough; do not wait for each service again
            out.append(SrvLookup(service, name, SrvStatus.FAILED, error=unreachable))
            continue
        records: list[SrvRecord] = []
        try:
            answer = resolver.resolve(name + ".", "SRV", search=False)
        except (dns.resolver.NXDOMAIN, dns.resolver.NoAnswer):
            pass
        except dns.exception.Timeout:
            unreachable = f"no answer from the DNS server within {resolver.lifetime:g} s"
            out.append(SrvLookup(service, name, SrvStatus.FAILED, error=unreachable))
            continue
        except dns.resolver.NoNameservers:
            unreachable = "the DNS servers refused or failed to answer"
            out.append(SrvLookup(service, name, SrvStatus.FAILED, error=unreachable))
            continue
        except dns.exception.DNSException as exc:
            out.append(SrvLookup(service, name, SrvStatus.FAILED, error=str(exc)))
            continue
        else:
            for rdata in answer:
                if isinstance(rdata, dns.rdtypes.IN.SRV.SRV):
                    target = rdata.target
                    text = "" if target == dns.name.root else target.to_text(omit_final_dot=True)
                    records.append(SrvRecord(rdata.priority, rdata.weight, rdata.port, text))
        status, usable = interpret_srv(records)
        out.append(SrvLookup(service, name, status, usable))
    return tuple(out)


# --- step 2: candidates -----------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Candidate:
    """One server to try: where, how, and how it was found."""

    role: str
    host: str
    port: int
    tls: TlsMode
    srv: str | None = None
    """The SRV name it came from; None for a usual name."""

    def describe(self) -> str:
        origin = f"from {self.srv}" if self.srv else "usual name"
        return f"{self.host} port {self.port} with {_tls_words(self.tls)} ({origin})"


def plan_candidates(role: str, lookups: Iterable[SrvLookup], domain: str) -> tuple[Candidate, ...]:
    """Every server to try for ``role``, in order (see the module docstring)."""
    ours = sorted(
        (lk for lk in lookups if lk.service.role == role),
        key=lambda lk: lk.service.tls is not TlsMode.IMPLICIT,
    )
    out: list[Candidate] = []
    seen: set[tuple[str, int]] = set()

    def add(candidate: Candidate) -> None:
        key = (candidate.host.lower(), candidate.port)
        if key not in seen:
            seen.add(key)
            out.append(candidate)

    not_offered = {lk.service.tls for lk in ours if lk.status is SrvStatus.NOT_OFFERED}
    for lookup in ours:
        for record in lookup.records:
            add(Candidate(role, record.target, record.port, lookup.service.tls, lookup.name))
    for prefix in USUAL_NAMES[role]:
        host = f"{prefix}.{domain}" if prefix else domain
        for port, tls in USUAL_PORTS[role]:
            if tls not in not_offered:
                add(Candidate(role, host, port, tls))
    return tuple(out)


# --- step 3: trying them ----------------------------------------------------------------------


class Outcome(enum.Enum):
    LOGGED_IN = "logged in"
    NO_HOST = "no such host name"
    NO_CONNECTION = "no connection"
    TLS_FAILED = "TLS failed"
    REFUSED = "login refused"
    FAILED = "failed"


@dataclass(frozen=True, slots=True)
class Attempt:
    candidate: Candidate
    outcome: Outcome
    detail: str

    def describe(self) -> str:
        if self.outcome is Outcome.NO_HOST:
            return f"{self.candidate.host}: no such host name ({self.detail}); skipped"
        shown = self.detail if self.detail != self.outcome.value else ""
        return f"{self.candidate.describe()}: {self.outcome.value}" + (
            f" ({shown})" if shown else ""
        )


@dataclass(frozen=True, slots=True)
class RoleResult:
    """Every attempt for one role, in the order made."""

    role: str
    attempts: tuple[Attempt, ...]

    def _first(self, outcome: Outcome) -> Attempt | None:
        return next((a for a in self.attempts if a.outcome is outcome), None)

    @property
    def logged_in(self) -> Candidate | None:
        attempt = self._first(Outcome.LOGGED_IN)
        return attempt.candidate if attempt is not None else None

    @property
    def trouble(self) -> Attempt | None:
        """The attempt to blame when nothing logged in: a refused login, else a TLS problem."""
        if self.logged_in is not None:
            return None
        return self._first(Outcome.REFUSED) or self._first(Outcome.TLS_FAILED)

    @property
    def found(self) -> Candidate | None:
        """The server that logged in, else the one that answered but refused or failed TLS."""
        trouble = self.trouble
        return self.logged_in or (trouble.candidate if trouble is not None else None)


def host_problem(host: str) -> str | None:
    """None if ``host`` resolves (as a connection would resolve it), else why not."""
    try:
        socket.getaddrinfo(host, None, type=socket.SOCK_STREAM)
    except socket.gaierror as exc:
        return exc.strerror or str(exc)
    except (OSError, UnicodeError) as exc:
        return str(exc)
    return None


Probe = Callable[[ServerConfig, Callable[[], str]], str]


def try_candidates(
    candidates: Sequence[Candidate],
    server_for: Callable[[Candidate], ServerConfig],
    secret: Callable[[], str],
    *,
    probe: Probe,
    resolves: Callable[[str], str | None] = host_problem,
    say: Callable[[Attempt], None] = lambda attempt: None,
) -> RoleResult:
    """Probe ``candidates`` in order until one logs in or refuses the login.

    Every attempt is passed to ``say`` as it ends. CredentialError from ``secret``
    propagates: without a secret no login can be tried.
    """
    attempts: list[Attempt] = []
    bad_hosts: set[str] = set()
    role = candidates[0].role if candidates else ""
    for candidate in candidates:
        host = candidate.host.lower()
        if host in bad_hosts:
            continue
        problem = resolves(candidate.host)
        if problem is not None:
            bad_hosts.add(host)
            attempt = Attempt(candidate, Outcome.NO_HOST, problem)
        else:
            try:
                detail = probe(server_for(candidate), secret)
            except AuthError as exc:
                attempt = Attempt(candidate, Outcome.REFUSED, str(exc))
            except TLSError as exc:
                attempt = Attempt(candidate, Outcome.TLS_FAILED, str(exc))
            except TransientError as exc:
                attempt = Attempt(candidate, Outcome.NO_CONNECTION, str(exc))
            except StoreError as exc:
                attempt = Attempt(candidate, Outcome.FAILED, str(exc))
            else:
                attempt = Attempt(candidate, Outcome.LOGGED_IN, detail)
        attempts.append(attempt)
        say(attempt)
        if attempt.outcome in (Outcome.LOGGED_IN, Outcome.REFUSED):
            break
    return RoleResult(role, tuple(attempts))


# --- the request ------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class InitRequest:
    """What ``syncd init`` was asked to do, checked; :func:`make_request` builds it."""

    address: str
    domain: str
    """The address's domain in ASCII (IDNA), lower case: what DNS is asked about."""
    username: str
    account: str
    maildir: str
    """As written into the config (``~/Mail/ACCOUNT`` keeps its ``~``)."""
    output: Path
    password_command: str | None = None
    use_keyring: bool = True
    ca_file: Path | None = None
    force: bool = False
    timeout: float = DEFAULT_TIMEOUT
    dns_server: tuple[str, int] | None = None
    """From ``$SYNCD_DNS_SERVER`` (tests); None: the system's name servers."""
    oauth2: str | None = None
    """``--oauth2 google|microsoft``: sign in with OAuth2 whatever the domain."""
    client_id: str | None = None
    client_secret: str | None = field(default=None, repr=False)

    @property
    def stores_secret(self) -> bool:
        return self.use_keyring and self.password_command is None

    @property
    def is_default_output(self) -> bool:
        return self.output == default_config_path()


def _account_from_domain(domain: str) -> str:
    label = domain.split(".", 1)[0]
    ascii_label = unicodedata.normalize("NFKD", label).encode("ascii", "ignore").decode()
    name = re.sub(r"[^A-Za-z0-9_-]+", "-", ascii_label).strip("-").lower()
    return name or "mail"


def make_request(
    address: str,
    *,
    output: Path | None = None,
    username: str | None = None,
    name: str | None = None,
    maildir: str | None = None,
    password_command: str | None = None,
    no_keyring: bool = False,
    ca_file: Path | None = None,
    force: bool = False,
    timeout: float = DEFAULT_TIMEOUT,
    environ: Mapping[str, str] | None = None,
    oauth2: str | None = None,
    client_id: str | None = None,
    client_secret: str | None = None,
) -> InitRequest:
    """Check the command line's values; ValueError with a sentence for the user."""
    env = os.environ if environ is None else environ
    # "Me <me@example.org>" as mail readers show it; a bare address is taken as it is.
    parsed = (parseaddr(address)[1] if "<" in address else "") or address.strip()
    local, at, domain = parsed.rpartition("@")
    domain = domain.strip().rstrip(".")
    if not at or not local or not domain or any(ch.isspace() for ch in parsed):
        raise ValueError(f"{address!r} is not an email address; expected NAME@DOMAIN")
    try:
        ascii_domain = domain.lower().encode("idna").decode("ascii")
    except UnicodeError:
        ascii_domain = ""
    if not _DOMAIN.fullmatch(ascii_domain):
        raise ValueError(f"{domain!r} in {address!r} is not a domain name")
    if name is None:
        account = _account_from_domain(domain.lower())
    elif _ACCOUNT_NAME.fullmatch(name):
        account = name
    else:
        raise ValueError(f"--name {name!r}: an account name has only letters, digits, _ and -")
    if maildir is None:
        maildir_text = f"~/Mail/{account}"
    elif maildir.startswith("~"):
        maildir_text = maildir
    else:
        maildir_text = str(Path(maildir).absolute())
    if ca_file is not None:
        ca_file = ca_file.expanduser().absolute()
        if not ca_file.is_file():
            raise ValueError(f"--ca-file {ca_file}: no such file")
    if password_command is not None and not password_command.strip():
        raise ValueError("--password-command is empty")
    if not timeout > 0:
        raise ValueError("--timeout must be more than 0 seconds")
    if oauth2 is not None and oauth2 not in OAUTH2_SERVERS:
        raise ValueError(f"--oauth2 {oauth2!r}: expected one of {', '.join(OAUTH2_SERVERS)}")
    for flag, value in (("--client-id", client_id), ("--client-secret", client_secret)):
        if value is not None and (not value.strip() or any(ch.isspace() for ch in value.strip())):
            raise ValueError(f"{flag} {value!r}: expected the value the provider shows, no spaces")
    spec = env.get("SYNCD_DNS_SERVER", "")
    return InitRequest(
        address=parsed,
        domain=ascii_domain,
        username=username if username else parsed,
        account=account,
        maildir=maildir_text,
        output=(output.expanduser().absolute() if output is not None else default_config_path()),
        password_command=password_command.strip() if password_command is not None else None,
        use_keyring=not no_keyring,
        ca_file=ca_file,
        force=force,
        timeout=timeout,
        dns_server=parse_dns_server(spec) if spec else None,
        oauth2=oauth2,
        client_id=client_id.strip() if client_id else None,
        client_secret=client_secret.strip() if client_secret else None,
    )


def _secret_source(request: InitRequest, role: str) -> SecretSource:
    key = f"{request.account}/{role}"
    if request.password_command is not None:
        return SecretSource(SecretKind.COMMAND, key, command=request.password_command)
    return SecretSource(SecretKind.KEYRING, key)


def server_config(candidate: Candidate, request: InitRequest) -> ServerConfig:
    """The server section the config would get for ``candidate`` (with config defaults)."""
    common: dict[str, Any] = {
        "role": candidate.role,
        "host": candidate.host,
        "port": candidate.port,
        "tls": candidate.tls,
        "username": request.username,
        "auth": AuthMethod.PASSWORD,
        "secret": _secret_source(request, candidate.role),
        "ca_file": request.ca_file,
        "fingerprint": None,
        "allow_plaintext": False,
        "timeout": request.timeout,
    }
    if candidate.role == "imap":
        return ImapConfig(
            **common, folders=("*",), idle=("INBOX",), poll_interval=300, idle_interval=1500
        )
    if candidate.role == "pop3":
        return Pop3Config(
            **common, interval=600, leave_on_server=True, folder="INBOX", max_size=None
        )
    return SmtpConfig(**common, sent_folder="Sent")


# --- the config text --------------------------------------------------------------------------


def _yaml_str(value: str) -> str:
    """``value`` as a YAML scalar that reads back as exactly this string."""
    if _PLAIN_YAML.fullmatch(value) and yaml.safe_load(value) == value:
        return value
    return json.dumps(value, ensure_ascii=False)  # a JSON string is a YAML double-quoted one


_TLS_COMMENT: Final = {
    TlsMode.IMPLICIT: "TLS from the first byte (RFC 8314)",
    TlsMode.STARTTLS: "a plain connection upgraded with STARTTLS; never without TLS",
}


def _commented(key: str, value: str, comment: str) -> str:
    return f"      {key + ': ' + value:<22}# {comment}"


def _section(candidate: Candidate, request: InitRequest, *, stored: bool) -> list[str]:
    role = candidate.role
    key = f"{request.account}/{role}"
    set_cmd = f"syncd password set {request.account} {role}"
    if candidate.srv:
        origin = f"Found through the DNS SRV record {candidate.srv} (RFC 6186)."
    else:
        origin = f"Found at the usual name {candidate.host}."
    lines = [
        f"    {role}:",
        f"      # {origin}",
        f"      host: {_yaml_str(candidate.host)}",
        f"      port: {candidate.port}",
        _commented("tls", candidate.tls.value, _TLS_COMMENT[candidate.tls]),
        f"      username: {_yaml_str(request.username)}",
    ]
    if request.password_command is not None:
        lines += [
            "      # The password is the first line this command prints.",
            f"      password_command: {_yaml_str(request.password_command)}",
        ]
    elif stored:
        lines += [
            f'      # The password is in the system keyring (service "syncd", key "{key}");',
            f"      # change it with: {set_cmd}",
        ]
    else:
        lines += [
            '      # No password here: syncd reads it from the system keyring (service "syncd",',
            f'      # key "{key}"). Store it with: {set_cmd}',
            "      # or give a command that prints it instead, e.g.:",
            f"      # password_command: pass show mail/{request.account}",
        ]
    if request.ca_file is not None:
        lines += [
            "      # The server's certificate is checked against this CA instead of the system's.",
            f"      ca_file: {_yaml_str(str(request.ca_file))}",
        ]
    if role == "imap":
        lines += [
            _commented("folders", '["*"]', 'every folder; add "!Spam" to leave one out'),
            _commented("idle", "[INBOX]", "watched with IDLE: new mail arrives within seconds"),
        ]
    elif role == "pop3":
        lines += [
            _commented("folder", "INBOX", "the local folder new mail lands in"),
            _commented("leave_on_server", "true", "false, or a number of days, deletes it there"),
        ]
    else:
        lines.append(_commented("sent_folder", "Sent", "a copy of every message sent"))
    return lines


def render_account(
    request: InitRequest, incoming: Candidate, smtp: Candidate | None, *, stored: bool
) -> str:
    """The account's block, indented to sit under ``accounts:``."""
    lines = [
        f"  {request.account}:",
        "    # Your mail: one Maildir folder per server folder, for mutt, aerc, notmuch...",
        f"    maildir: {_yaml_str(request.maildir)}",
        "    # The addresses this account sends as (syncd sendmail picks the account by them).",
        f"    from: [{_yaml_str(request.address)}]",
        *_section(incoming, request, stored=stored),
    ]
    if smtp is not None:
        lines += _section(smtp, request, stored=stored)
    else:
        lines += [
            "    # No SMTP server was found, so this account cannot send yet: add an smtp:",
            "    # section (host, port, tls, username), see the README's section on sending.",
        ]
    return "\n".join(lines) + "\n"


def render_config(
    request: InitRequest,
    incoming: Candidate,
    smtp: Candidate | None,
    *,
    stored: bool,
    today: str | None = None,
) -> str:
    """The whole commented config file for one account."""
    day = today or time.strftime("%Y-%m-%d")
    header = (
        f"# syncd config, written by `syncd init {request.address}` on {day}.\n"
        "# README.md (Configuration) and config.example.yaml describe every key;\n"
        "# `syncd check` tries the logins again.\n"
        "\n"
        "accounts:\n"
    )
    return header + render_account(request, incoming, smtp, stored=stored)


def write_config(path: Path, text: str, *, force: bool) -> None:
    """Write ``text`` to ``path`` atomically (tmp, fsync, rename); FileExistsError if the file
    exists and not ``force``."""
    if path.is_symlink():  # a config kept in a dotfiles repository: write through the link
        path = path.resolve()
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    try:
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        with os.fdopen(fd, "w", encoding="utf-8") as out:
            out.write(text)
            out.flush()
            os.fsync(out.fileno())
        if force:
            tmp.replace(path)
        else:
            try:
                path.hardlink_to(tmp)  # fails if the file exists: no window to clobber it
            except FileExistsError:
                raise
            except OSError:  # a file system without hard links
                if path.exists():
                    raise FileExistsError(path) from None
                tmp.replace(path)
    finally:
        tmp.unlink(missing_ok=True)
    dir_fd = os.open(path.parent, os.O_RDONLY)
    try:
        os.fsync(dir_fd)
    finally:
        os.close(dir_fd)


# --- the whole run ----------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class InitResult:
    ok: bool
    """True when the config was written and its logins work."""
    roles: tuple[RoleResult, ...] = ()
    draft: str | None = None
    """The config text: what was written, or (not ok) the draft to fix and save by hand."""
    block: str | None = None
    """The account's block to add to an existing config that was not overwritten."""
    written: Path | None = None
    problem: str | None = None
    next_steps: tuple[tuple[str, str], ...] = ()
    """(command, what it does) pairs."""


def _has_account(path: Path, account: str) -> bool:
    try:
        cfg = load_config(path)
    except SyncdError:
        return False
    return any(a.name == account for a in cfg.accounts)


def _within(host: str, domain: str) -> bool:
    host = host.lower().rstrip(".")
    return host == domain or host.endswith("." + domain)


def _role_problem(result: RoleResult, request: InitRequest) -> str:
    trouble = result.trouble
    assert trouble is not None
    where = f"the {ROLE_NAMES[result.role]} server {trouble.candidate.host}"
    if trouble.outcome is Outcome.REFUSED:
        return (
            f"{where} refused the login as {request.username}: check the password, and the "
            "user name (--username) if your provider wants another one"
        )
    return (
        f"{where} answered, but TLS failed: {trouble.detail}. If the server uses a private "
        "CA, run init again with --ca-file CA.pem"
    )


def _next_steps(request: InitRequest, roles: Sequence[str]) -> tuple[tuple[str, str], ...]:
    config = "" if request.is_default_output else f" -c {shlex.quote(str(request.output))}"
    steps: list[tuple[str, str]] = []
    if not request.use_keyring and request.password_command is None:
        for role in roles:
            steps.append(
                (
                    f"syncd password set {request.account} {role}{config}",
                    f"store the {ROLE_NAMES[role]} password (or add password_command:)",
                )
            )
    steps.append((f"syncd sync{config}", f"the first sync: your mail into {request.maildir}"))
    daemon = "keep it in sync in the background (README: The daemon)"
    if config:
        daemon += f"; its ExecStart= needs{config}"
    steps.append(("systemctl --user enable --now syncd", daemon))
    return tuple(steps)


def run_init(
    request: InitRequest,
    *,
    ask_secret: Callable[[], str],
    say: Callable[[str], None],
    probe: Probe | None = None,
    resolves: Callable[[str], str | None] = host_problem,
    store_secret: Callable[[str, str, str], None] | None = None,
    resolver: dns.resolver.Resolver | None = None,
    mechanisms: Callable[[ServerConfig], tuple[str, ...]] | None = None,
) -> InitResult:
    """Look up, try and write, as the module docstring tells; ``say`` gets each line of
    progress. ``ask_secret`` is called once, after the DNS lookups, unless the request has a
    password command. ``mechanisms`` reads a server's login mechanisms before any login
    (default: :func:`syncd.drivers.probe.login_mechanisms`, or nothing read when a ``probe``
    is given without it)."""
    import dns.exception

    from syncd.credentials import get_secret, set_secret
    from syncd.drivers.probe import probe as real_probe

    probe_fn = probe or real_probe
    store = store_secret or set_secret
    domain = request.domain

    provider = request.oauth2 or oauth2_provider(domain)
    if provider is not None:
        why = (
            "--oauth2 says so"
            if request.oauth2
            else f"{domain} is a {PROVIDER_NAMES[provider]} domain, which takes no passwords"
        )
        say(f"{PROVIDER_NAMES[provider]} signs in with OAuth2 ({why}); no password is asked.")
        return _init_oauth2(request, provider, say)

    say(f"Looking up the mail servers of {domain} in DNS (SRV records, RFC 6186):")
    try:
        if resolver is None:
            resolver = make_resolver(request.dns_server, request.timeout)
    except dns.exception.DNSException as exc:
        lookups = tuple(
            SrvLookup(s, f"{s.label}.{domain}", SrvStatus.FAILED, error=f"no DNS server ({exc})")
            for s in SRV_SERVICES
        )
    else:
        lookups = lookup_srv(domain, resolver)
    for lookup in lookups:
        say(f"  {lookup.describe()}")
    if not any(lookup.status is SrvStatus.FOUND for lookup in lookups):
        say("No SRV records to follow; trying the usual server names.")
    for lookup in lookups:
        for record in lookup.records:
            hosted = oauth2_provider_for_host(record.target)
            if hosted is not None and lookup.service.role == "imap":
                say(
                    f"{record.target} is {PROVIDER_NAMES[hosted]}'s server, which signs in with "
                    "OAuth2; no password is asked."
                )
                return _init_oauth2(request, hosted, say)
    if mechanisms is None and probe is None:
        from syncd.drivers.probe import login_mechanisms as mechanisms
    if mechanisms is not None and request.password_command is None:
        candidates = plan_candidates("imap", lookups, domain)
        only = oauth2_only(candidates, request, mechanisms, resolves)
        if only is not None:
            host, offered = only
            return InitResult(
                ok=False,
                problem=(
                    f"{host} takes only OAuth2 logins ({offered}), not a password; run "
                    f"init again with --oauth2 google or --oauth2 microsoft and --client-id ID "
                    "if it is one of theirs, or write an oauth2: block with provider: custom "
                    "(README: OAuth2)"
                ),
            )

    try:
        if request.password_command is not None:
            placeholder = Candidate("imap", domain, 993, TlsMode.IMPLICIT)
            secret = get_secret(server_config(placeholder, request))
        else:
            secret = ask_secret()
            if not secret:
                raise CredentialError("the password is empty; nothing was tried")
            register_secret(secret)
    except CredentialError as exc:
        return InitResult(ok=False, problem=str(exc))

    def attempt(role: str) -> RoleResult:
        say(f"Trying {ROLE_NAMES[role]} ({_ROLE_PURPOSE[role]}):")
        candidates = plan_candidates(role, lookups, domain)
        if not candidates:
            say("  nothing to try: the domain's DNS says it is not offered")
        return try_candidates(
            candidates,
            lambda c: server_config(c, request),
            lambda: secret,
            probe=probe_fn,
            resolves=resolves,
            say=lambda a: say(f"  {a.describe()}"),
        )

    roles = [attempt("imap")]
    incoming = roles[0]
    if incoming.found is None:
        say("No IMAP server answered; trying POP3 instead.")
        roles.append(attempt("pop3"))
        if roles[-1].found is not None:
            incoming = roles[-1]
    smtp = attempt("smtp")
    roles.append(smtp)
    for result in (incoming, smtp):
        chosen = result.logged_in
        if chosen is not None and chosen.srv and not _within(chosen.host, domain):
            say(
                f"Note: {chosen.host} lies outside {domain}; the SRV record {chosen.srv} "
                "points there. Make sure it is your provider's server."
            )

    incoming_server = incoming.found
    if incoming_server is None:
        tried = sum(len(r.attempts) for r in roles)
        return InitResult(
            ok=False,
            roles=tuple(roles),
            problem=(
                f"found no server to read the mail of {domain} from (IMAP or POP3); tried "
                f"{tried} host names and ports, listed above. Ask your provider for the "
                "server names and write the config by hand (config.example.yaml shows "
                "every key)"
            ),
        )
    problems = []
    if incoming.logged_in is None:
        problems.append(_role_problem(incoming, request))
    if smtp.found is not None and smtp.logged_in is None:
        problems.append(_role_problem(smtp, request))
    if problems:
        draft = render_config(request, incoming_server, smtp.found, stored=False)
        return InitResult(ok=False, roles=tuple(roles), draft=draft, problem="\n".join(problems))
    if smtp.logged_in is None:
        say(
            "No SMTP server answered: the config gets no smtp: section, so this account "
            "cannot send until you add one."
        )
    used = [incoming.role] + (["smtp"] if smtp.logged_in is not None else [])

    exists = request.output.exists()
    clash = exists and not request.force and _has_account(request.output, request.account)
    stored = False
    if request.stores_secret and not clash:
        try:
            for role in used:
                store(request.account, role, secret)
        except CredentialError as exc:
            draft = render_config(request, incoming_server, smtp.logged_in, stored=False)
            return InitResult(
                ok=False,
                roles=tuple(roles),
                draft=draft,
                problem=(
                    f"{exc}. The logins worked; run again with --password-command CMD (a "
                    "command printing the password), or with --no-keyring"
                ),
            )
        stored = True
        keys = " and ".join(f'"{request.account}/{role}"' for role in used)
        say(f'Stored the password in the system keyring (service "syncd", {keys}).')

    text = render_config(request, incoming_server, smtp.logged_in, stored=stored)
    try:
        parse_config(text, request.output)
    except ConfigError as exc:  # a value from the command line the config cannot hold
        return InitResult(
            ok=False, roles=tuple(roles), draft=text, problem=f"the config would be invalid: {exc}"
        )
    steps = _next_steps(request, used)
    try:
        if exists and not request.force:
            raise FileExistsError(request.output)
        write_config(request.output, text, force=request.force)
    except FileExistsError:
        problem = (
            f"{request.output} exists already and was left as it is; add the account below "
            "under its accounts:, or run again with --force to replace the whole file"
        )
        if clash:
            problem += (
                f". It already has an account named {request.account}: choose another name "
                "with --name"
            )
            if request.stores_secret:
                problem += " (the password was not stored, so as not to replace that account's)"
        block = render_account(request, incoming_server, smtp.logged_in, stored=stored)
        return InitResult(
            ok=False,
            roles=tuple(roles),
            draft=text,
            block=block,
            problem=problem,
            next_steps=steps,
        )
    except OSError as exc:
        return InitResult(
            ok=False,
            roles=tuple(roles),
            draft=text,
            problem=f"cannot write {request.output}: {exc.strerror or exc}",
        )
    say(
        f'Wrote {request.output} with the account "{request.account}" '
        f"(mail goes to {request.maildir})."
    )
    return InitResult(
        ok=True, roles=tuple(roles), draft=text, written=request.output, next_steps=steps
    )


# --- OAuth2 providers -------------------------------------------------------------------------

OAUTH2_SERVERS: Final[Mapping[str, tuple[Candidate, Candidate]]] = {
    # Gmail: https://developers.google.com/gmail/imap/imap-smtp
    "google": (
        Candidate("imap", "imap.gmail.com", 993, TlsMode.IMPLICIT),
        Candidate("smtp", "smtp.gmail.com", 465, TlsMode.IMPLICIT),
    ),
    # Microsoft 365 and Outlook.com: the same two servers for both.
    "microsoft": (
        Candidate("imap", "outlook.office365.com", 993, TlsMode.IMPLICIT),
        Candidate("smtp", "smtp.office365.com", 587, TlsMode.STARTTLS),
    ),
}
"""The servers of the providers whose mail needs OAuth2 (no password logins)."""

PROVIDER_NAMES: Final = {"google": "Google", "microsoft": "Microsoft"}
_CONSOLE: Final = {"google": "Google Cloud console", "microsoft": "Microsoft Entra admin center"}
_GOOGLE_DOMAINS: Final = frozenset({"gmail.com", "googlemail.com"})
_MICROSOFT_DOMAIN: Final = re.compile(r"(outlook|hotmail|live|msn|windowslive|passport)\.[a-z.]+")
_MICROSOFT_HOSTS: Final = ("office365.com", "outlook.com", "office.com")
_GOOGLE_HOSTS: Final = ("gmail.com", "googlemail.com")
_OAUTH_MECHANISMS: Final = frozenset({"XOAUTH2", "OAUTHBEARER"})


def oauth2_provider(domain: str) -> str | None:
    """ "google" or "microsoft" for an address domain known to need OAuth2, else None."""
    domain = domain.lower().rstrip(".")
    if domain in _GOOGLE_DOMAINS:
        return "google"
    if _MICROSOFT_DOMAIN.fullmatch(domain):
        return "microsoft"
    return None


def oauth2_provider_for_host(host: str) -> str | None:
    """The provider a mail server's host name belongs to (an SRV target), else None."""
    host = host.lower().rstrip(".")
    if any(_within(host, d) for d in _MICROSOFT_HOSTS):
        return "microsoft"
    if any(_within(host, d) for d in _GOOGLE_HOSTS):
        return "google"
    return None


def oauth2_only(
    candidates: Sequence[Candidate],
    request: InitRequest,
    mechanisms: Callable[[ServerConfig], tuple[str, ...]],
    resolves: Callable[[str], str | None] = host_problem,
) -> tuple[str, str] | None:
    """(host, mechanisms) when the first IMAP server that answers offers only OAuth2 logins.

    Read from its CAPABILITY before any login (after STARTTLS where that is the mode), so
    no password is asked for a server that could not take it.
    """
    for candidate in candidates:
        if resolves(candidate.host) is not None:
            continue
        # Only the first server that resolves: the password tries that follow report
        # everything else, and a server that does not answer is not waited for twice.
        try:
            ways = mechanisms(server_config(candidate, request))
        except SyncdError:
            return None
        offered = set(ways)
        if offered and offered <= _OAUTH_MECHANISMS:
            return candidate.host, ", ".join(sorted(offered))
        return None
    return None


def _oauth2_block(request: InitRequest, provider: str) -> list[str]:
    client_id = request.client_id or "PASTE-YOUR-CLIENT-ID"
    lines = [
        "    # OAuth2 sign-in: `syncd oauth login ACCOUNT` puts the refresh token into the",
        '    # system keyring (service "syncd", key "ACCOUNT/oauth2-refresh"); syncd renews',
        "    # the access tokens itself. README (OAuth2) says where the client ID comes from.",
        "    oauth2:",
        f"      provider: {provider}",
        f"      client_id: {_yaml_str(client_id)}",
    ]
    if request.client_secret is not None:
        lines.append(f"      client_secret: {_yaml_str(request.client_secret)}")
    elif provider == "google":
        lines.append("      # client_secret: ...   # Google's Desktop app clients have one too")
    return [line.replace("ACCOUNT", request.account) for line in lines]


def _oauth2_section(candidate: Candidate, request: InitRequest) -> list[str]:
    role = candidate.role
    lines = [
        f"    {role}:",
        f"      host: {_yaml_str(candidate.host)}",
        f"      port: {candidate.port}",
        _commented("tls", candidate.tls.value, _TLS_COMMENT[candidate.tls]),
        f"      username: {_yaml_str(request.username)}",
        _commented("auth", "xoauth2", "an OAuth2 access token from the oauth2: block"),
    ]
    if role == "imap":
        lines += [
            _commented("folders", '["*"]', 'every folder; add "!Spam" to leave one out'),
            _commented("idle", "[INBOX]", "watched with IDLE: new mail arrives within seconds"),
        ]
    else:
        lines.append(_commented("sent_folder", "Sent", "a copy of every message sent"))
    return lines


def render_oauth2_config(request: InitRequest, provider: str, *, today: str | None = None) -> str:
    """The whole config for an OAuth2 account of ``provider`` (its servers are known)."""
    imap, smtp = OAUTH2_SERVERS[provider]
    day = today or time.strftime("%Y-%m-%d")
    lines = [
        f"# syncd config, written by `syncd init {request.address}` on {day}.",
        "# README.md (Configuration, OAuth2) and config.example.yaml describe every key.",
        "",
        "accounts:",
        f"  {request.account}:",
        "    # Your mail: one Maildir folder per server folder, for mutt, aerc, notmuch...",
        f"    maildir: {_yaml_str(request.maildir)}",
        f"    from: [{_yaml_str(request.address)}]",
        *_oauth2_block(request, provider),
        *_oauth2_section(imap, request),
        *_oauth2_section(smtp, request),
    ]
    return "\n".join(lines) + "\n"


def _init_oauth2(request: InitRequest, provider: str, say: Callable[[str], None]) -> InitResult:
    text = render_oauth2_config(request, provider)
    config = "" if request.is_default_output else f" -c {shlex.quote(str(request.output))}"
    if request.client_id is None:
        return InitResult(
            ok=False,
            draft=text,
            problem=(
                f"{PROVIDER_NAMES[provider]} needs an OAuth2 client ID, which syncd cannot "
                "ship: each user registers one (README: OAuth2, a few minutes in the "
                f"{_CONSOLE[provider]}"
                f"). Then run: syncd init {request.address} --client-id ID"
                + (" --client-secret SECRET" if provider == "google" else "")
            ),
        )
    try:
        parse_config(text, request.output)
    except ConfigError as exc:
        return InitResult(ok=False, draft=text, problem=f"the config would be invalid: {exc}")
    steps = (
        (
            f"syncd oauth login {request.account}{config}",
            "sign in once in a browser (--device on a machine without one)",
        ),
        (f"syncd check{config}", "try the logins with the new token"),
        (f"syncd sync{config}", f"the first sync: your mail into {request.maildir}"),
        ("systemctl --user enable --now syncd", "keep it in sync in the background"),
    )
    try:
        if request.output.exists() and not request.force:
            raise FileExistsError(request.output)
        write_config(request.output, text, force=request.force)
    except FileExistsError:
        return InitResult(
            ok=False,
            draft=text,
            block=text.split("accounts:\n", 1)[1],
            problem=(
                f"{request.output} exists already and was left as it is; add the account "
                "below under its accounts:, or run again with --force to replace the file"
            ),
            next_steps=steps,
        )
    except OSError as exc:
        return InitResult(
            ok=False, draft=text, problem=f"cannot write {request.output}: {exc.strerror or exc}"
        )
    say(
        f'Wrote {request.output} with the account "{request.account}" '
        f"({PROVIDER_NAMES[provider]}, OAuth2; mail goes to {request.maildir})."
    )
    return InitResult(ok=True, draft=text, written=request.output, next_steps=steps)
