"""A tiny authoritative DNS server for tests: UDP on a free 127.0.0.1 port, in a thread.

``DnsServer(zone)`` answers from a dict ``{name: [(TYPE, RDATA text), ...]}``, e.g.::

    {"_imaps._tcp.example.test": [("SRV", "0 1 993 mail.example.test.")],
     "mail.example.test": [("A", "127.0.0.1")]}

Messages are parsed and built by dnspython (``dns.message.from_wire``/``make_response``).
Names are absolute and compared without case. A name not in the zone gets NXDOMAIN; a name
in it without records of the asked type gets an empty NOERROR answer; so every query is
answered at once and nothing is ever forwarded. :attr:`queries` lists what was asked, in
order. :meth:`resolver` is a dnspython resolver asking only this server, and
:func:`system_resolver_through` routes the process's own name lookups
(``socket.getaddrinfo``, so imaplib, smtplib, poplib) to it while a test runs.
"""

from __future__ import annotations

import contextlib
import socket
import threading
from collections.abc import Iterator, Mapping, Sequence
from types import TracebackType

import dns.flags
import dns.message
import dns.name
import dns.rcode
import dns.rdataclass
import dns.rdatatype
import dns.resolver
import dns.rrset

HOST = "127.0.0.1"
Zone = Mapping[str, Sequence[tuple[str, str]]]


class DnsServer:
    def __init__(self, zone: Zone | None = None, ttl: int = 60) -> None:
        self.ttl = ttl
        self.records: dict[dns.name.Name, list[dns.rrset.RRset]] = {}
        self.queries: list[tuple[str, str]] = []
        self._lock = threading.Lock()
        self._sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        self._sock.bind((HOST, 0))
        self._sock.settimeout(0.05)
        self.port: int = self._sock.getsockname()[1]
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self.set_zone(zone or {})

    def set_zone(self, zone: Zone) -> None:
        """Replace every record with those of ``zone``."""
        records: dict[dns.name.Name, list[dns.rrset.RRset]] = {}
        for name, entries in zone.items():
            owner = dns.name.from_text(name)
            by_type: dict[str, list[str]] = {}
            for rdtype, text in entries:
                by_type.setdefault(rdtype.upper(), []).append(text)
            records[owner] = [
                dns.rrset.from_text_list(owner, self.ttl, "IN", rdtype, texts)
                for rdtype, texts in by_type.items()
            ]
        with self._lock:
            self.records = records

    def answer(self, wire: bytes) -> bytes | None:
        """The response to one query message, or None for something that is not one."""
        try:
            query = dns.message.from_wire(wire)
        except Exception:
            return None
        response = dns.message.make_response(query)
        response.flags |= dns.flags.AA
        if len(query.question) != 1:
            response.set_rcode(dns.rcode.FORMERR)
            return response.to_wire()
        question = query.question[0]
        with self._lock:
            self.queries.append(
                (question.name.to_text(omit_final_dot=True), dns.rdatatype.to_text(question.rdtype))
            )
            rrsets = self.records.get(question.name)
        if rrsets is None:
            response.set_rcode(dns.rcode.NXDOMAIN)
        else:
            response.answer.extend(
                rrset
                for rrset in rrsets
                if rrset.rdtype == question.rdtype and question.rdclass == dns.rdataclass.IN
            )
        return response.to_wire()

    def _serve(self) -> None:
        while not self._stop.is_set():
            try:
                wire, peer = self._sock.recvfrom(4096)
            except TimeoutError:
                continue
            except OSError:
                return
            reply = self.answer(wire)
            if reply is not None:
                with contextlib.suppress(OSError):
                    self._sock.sendto(reply, peer)

    def start(self) -> DnsServer:
        self._thread = threading.Thread(target=self._serve, name="test-dns", daemon=True)
        self._thread.start()
        return self

    def stop(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(5)
        self._sock.close()

    def __enter__(self) -> DnsServer:
        return self.start()

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()

    @property
    def address(self) -> str:
        """``127.0.0.1:PORT``, the form ``$SYNCD_DNS_SERVER`` takes."""
        return f"{HOST}:{self.port}"

    def resolver(self, lifetime: float = 2.0) -> dns.resolver.Resolver:
        resolver = dns.resolver.Resolver(configure=False)
        resolver.nameservers = [HOST]
        resolver.port = self.port
        resolver.timeout = resolver.lifetime = lifetime
        return resolver

    def asked(self, rdtype: str | None = None) -> list[str]:
        with self._lock:
            return [name for name, t in self.queries if rdtype is None or t == rdtype]


@contextlib.contextmanager
def system_resolver_through(server: DnsServer) -> Iterator[None]:
    """Route ``socket.getaddrinfo`` and friends to ``server`` (address literals stay local)."""
    dns.resolver.override_system_resolver(server.resolver())
    try:
        yield
    finally:
        dns.resolver.restore_system_resolver()
