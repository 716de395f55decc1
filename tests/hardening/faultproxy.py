"""A small TCP proxy for fault injection between syncd and a test server, on loopback only.

Theory of operation
-------------------
``FaultProxy(upstream_port)`` listens on a free port of 127.0.0.1 (or ``::1``) and connects
every accepted client to the upstream server on the same loopback host. Each connection gets
two pump threads (client to server, server to client) that move at most 64 KiB per read.
Before a pump forwards a chunk it looks at the proxy's current *rule*, which the test can
switch at any moment from its own thread:

``pass_()``
    forward everything (the default). Data a stall held back is forwarded now; call
    ``cut()`` first to throw it away instead.
``cut()``
    close every connection at once, and close each new one as soon as it is accepted (the
    client sees a reset or EOF, as when a router drops the line or the server dies).
``stall()``
    accept connections, connect them upstream, but forward nothing in either direction:
    the pumps stop reading, so TCP back-pressure holds everything (a dead NAT entry, a
    suspended peer). Nothing is lost; ``pass_()`` lets it through.
``drop(after=N)``
    forward the first ``N`` bytes in ``direction`` (server to client by default) of each
    connection, counted from when the rule was set, then close that connection: a
    response cut off in the middle of a literal.
``delay(seconds)``
    wait ``seconds`` before forwarding each chunk (a slow, high-latency link).

Every rule can be *armed* instead of applied at once: with ``when=b"pattern"`` the proxy
forwards normally until ``pattern`` passes in ``direction`` (``"s2c"`` or ``"c2s"``), forwards
the bytes before it, and only then applies the rule. That puts a fault at an exact protocol
step without timing guesses (for instance in the middle of a FETCH literal, an APPEND
literal or SMTP DATA, by putting a marker into the message body). An armed ``drop`` is
one-shot: it closes the connection that carried the pattern, and the proxy goes back to
``pass``; with ``repeat=True`` it stays armed and closes every connection that carries the
pattern (a server that drops each session at the same step). :attr:`fired` is set when an
armed rule fires (at once for an unarmed one); :attr:`fired_count` counts the firings.

Only loopback addresses are allowed, for both the listener and the upstream.
:meth:`close` stops the acceptor and closes every connection; the proxy is a context manager.
"""

from __future__ import annotations

import contextlib
import enum
import socket
import threading
from dataclasses import dataclass, field
from types import TracebackType

__all__ = ["FaultProxy", "Mode"]

BUFFER = 64 * 1024
_LOOPBACK = ("127.0.0.1", "::1")
C2S = "c2s"
S2C = "s2c"


class Mode(enum.Enum):
    PASS = "pass"
    CUT = "cut"
    STALL = "stall"
    DROP = "drop"
    DELAY = "delay"


@dataclass
class _Rule:
    mode: Mode = Mode.PASS
    direction: str = S2C
    when: bytes | None = None
    after: int = 0
    seconds: float = 0.0
    generation: int = 0
    repeat: bool = False

    @property
    def armed(self) -> bool:
        return self.when is not None


@dataclass(eq=False)
class _Conn:
    client: socket.socket
    upstream: socket.socket
    closed: bool = False
    lock: threading.Lock = field(default_factory=threading.Lock)
    tail: dict[str, bytes] = field(default_factory=lambda: {C2S: b"", S2C: b""})
    counted: dict[str, tuple[int, int]] = field(default_factory=dict)

    def close(self) -> None:
        with self.lock:
            if self.closed:
                return
            self.closed = True
        for s in (self.client, self.upstream):
            with contextlib.suppress(OSError):
                s.shutdown(socket.SHUT_RDWR)
            with contextlib.suppress(OSError):
                s.close()


class FaultProxy:
    """A TCP proxy in front of ``upstream_host:upstream_port``; see the module docstring."""

    def __init__(
        self, upstream_port: int, upstream_host: str = "127.0.0.1", *, host: str | None = None
    ) -> None:
        host = host or upstream_host
        if upstream_host not in _LOOPBACK or host not in _LOOPBACK:
            raise ValueError("the fault proxy only talks to loopback addresses")
        self.upstream = (upstream_host, upstream_port)
        self.host = host
        family = socket.AF_INET6 if ":" in host else socket.AF_INET
        self._listener = socket.socket(family, socket.SOCK_STREAM)
        self._listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self._listener.bind((host, 0))
        self._listener.listen(64)
        self._listener.settimeout(0.1)
        self.port: int = self._listener.getsockname()[1]
        self._cond = threading.Condition()
        self._rule = _Rule()
        self._generation = 0
        self._conns: set[_Conn] = set()
        self._threads: list[threading.Thread] = []
        self._stopping = False
        self._stop_event = threading.Event()
        self.accepted = 0
        """Connections accepted so far (including those closed at once by a cut)."""
        self.fired = threading.Event()
        self.fired_count = 0
        self._acceptor = threading.Thread(target=self._accept_loop, name="faultproxy", daemon=True)
        self._acceptor.start()

    # -- switching the rule (any thread) ---------------------------------------------------

    def _set(self, rule: _Rule) -> None:
        with self._cond:
            self._generation += 1
            rule.generation = self._generation
            self._rule = rule
            if rule.armed:
                self.fired.clear()
            else:
                self.fired.set()
            self._cond.notify_all()
        if rule.mode is Mode.CUT and not rule.armed:
            self._close_all()

    def pass_(self) -> None:
        self._set(_Rule(Mode.PASS))

    def cut(self, *, when: bytes | None = None, direction: str = S2C) -> None:
        self._set(_Rule(Mode.CUT, direction, when))

    def stall(self, *, when: bytes | None = None, direction: str = S2C) -> None:
        self._set(_Rule(Mode.STALL, direction, when))

    def drop(
        self,
        *,
        after: int = 0,
        when: bytes | None = None,
        direction: str = S2C,
        repeat: bool = False,
    ) -> None:
        self._set(_Rule(Mode.DROP, direction, when, after=after, repeat=repeat))

    def delay(self, seconds: float, *, when: bytes | None = None, direction: str = S2C) -> None:
        self._set(_Rule(Mode.DELAY, direction, when, seconds=seconds))

    @property
    def mode(self) -> Mode:
        """The mode in force now (PASS while a rule is armed and has not fired)."""
        with self._cond:
            return Mode.PASS if self._rule.armed else self._rule.mode

    @property
    def open_connections(self) -> int:
        with self._cond:
            return sum(1 for c in self._conns if not c.closed)

    # -- life cycle ------------------------------------------------------------------------

    def close(self) -> None:
        with self._cond:
            self._stopping = True
            self._cond.notify_all()
        self._stop_event.set()
        self._acceptor.join(timeout=5)
        with contextlib.suppress(OSError):
            self._listener.close()
        self._close_all()
        for t in list(self._threads):
            t.join(timeout=5)

    def __enter__(self) -> FaultProxy:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()

    def _close_all(self) -> None:
        with self._cond:
            conns = list(self._conns)
            self._conns.clear()
            self._cond.notify_all()
        for c in conns:
            c.close()

    # -- the threads -----------------------------------------------------------------------

    def _accept_loop(self) -> None:
        while True:
            with self._cond:
                if self._stopping:
                    return
            try:
                client, _ = self._listener.accept()
            except TimeoutError:
                continue
            except OSError:
                return
            self.accepted += 1
            with self._cond:
                refuse = self._rule.mode is Mode.CUT and not self._rule.armed
            if refuse:
                with contextlib.suppress(OSError):
                    client.close()
                continue
            try:
                upstream = socket.create_connection(self.upstream, timeout=5)
            except OSError:
                client.close()
                continue
            for s in (client, upstream):
                s.settimeout(None)
                with contextlib.suppress(OSError):
                    s.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            conn = _Conn(client, upstream)
            with self._cond:
                self._conns.add(conn)
            self._threads = [t for t in self._threads if t.is_alive()]
            for src, dst, direction in ((client, upstream, C2S), (upstream, client, S2C)):
                t = threading.Thread(
                    target=self._pump,
                    args=(conn, src, dst, direction),
                    name=f"faultproxy-{direction}",
                    daemon=True,
                )
                self._threads.append(t)
                t.start()

    def _pump(self, conn: _Conn, src: socket.socket, dst: socket.socket, direction: str) -> None:
        try:
            while not conn.closed:
                try:
                    data = src.recv(BUFFER)
                except OSError:
                    break
                if not data or not self._forward(conn, dst, direction, data):
                    break
        finally:
            conn.close()
            with self._cond:
                self._conns.discard(conn)

    def _send(self, conn: _Conn, dst: socket.socket, data: bytes) -> bool:
        if not data:
            return True
        try:
            dst.sendall(data)
        except OSError:
            return False
        return not conn.closed

    def _forward(self, conn: _Conn, dst: socket.socket, direction: str, data: bytes) -> bool:
        """Forward ``data`` as the rule says; False when the connection must end."""
        while data:
            fired: Mode | None = None
            head = b""
            allowed = len(data)
            with self._cond:
                if self._stopping or conn.closed:
                    return False
                rule = self._rule
                mode = rule.mode
                if rule.armed:
                    mode = Mode.PASS
                    if rule.direction == direction and rule.when is not None:
                        pattern = rule.when
                        joined = conn.tail[direction] + data
                        found = joined.find(pattern)
                        if found < 0:
                            keep = len(pattern) - 1
                            conn.tail[direction] = joined[-keep:] if keep else b""
                        else:
                            # Fire: the bytes before the pattern pass, the rule holds from it on.
                            split = max(0, found - len(conn.tail[direction]))
                            head, data = data[:split], data[split:]
                            conn.tail[direction] = b""
                            fired = rule.mode
                            if fired is Mode.DROP and rule.repeat:
                                pass  # stays armed for the next connection
                            elif fired is Mode.DROP:
                                self._rule = _Rule(generation=rule.generation)  # one-shot
                            else:
                                self._rule = _Rule(
                                    rule.mode,
                                    rule.direction,
                                    None,
                                    rule.after,
                                    rule.seconds,
                                    rule.generation,
                                )
                            self.fired_count += 1
                            self.fired.set()
                            self._cond.notify_all()
                elif mode is Mode.STALL:
                    self._cond.wait(0.1)
                    continue
                elif mode is Mode.DROP and rule.direction == direction:
                    gen, n = conn.counted.get(direction, (rule.generation, 0))
                    if gen != rule.generation:
                        n = 0
                    allowed = max(0, rule.after - n)
                    conn.counted[direction] = (rule.generation, n + min(allowed, len(data)))
            if fired is not None:
                if not self._send(conn, dst, head):
                    return False
                if fired is Mode.DROP:
                    return False
                if fired is Mode.CUT:
                    self._close_all()
                    return False
                continue
            if mode is Mode.CUT:
                return False
            if mode is Mode.DELAY:
                self._stop_event.wait(rule.seconds)  # close() need not wait for a delay
            elif mode is Mode.DROP and allowed < len(data):
                self._send(conn, dst, data[:allowed])
                return False
            return self._send(conn, dst, data)
        return True
