"""A private Courier-IMAP 5 (Debian's) for tests: a second real IMAP implementation.

Theory of operation
-------------------
Debian's ``courier-imap`` conflicts with ``dovecot-imapd``, so it is never installed.
``scripts/setup-env`` fetches its packages with ``apt-get download`` into a cache directory
(:func:`deb_cache`), and ``Courier(base).start()`` unpacks them with ``dpkg -x`` into
``base/root``. Nothing of the system is used besides the C library.

Courier's ``imapd MAILDIR`` is one IMAP session on its stdin/stdout, already logged in
(``* PREAUTH``): the shape of syncd's ``tunnel:``. ``add_user()`` writes, per user, a Maildir
and a small shell script ``imapd.sh`` that runs imapd on it with ``LD_LIBRARY_PATH`` into the
unpacked tree and the settings Debian's ``/etc/courier/imapd`` would give (its capability
list comes from ``IMAP_CAPABILITY``; keywords on). That script is the user's tunnel command;
for the TCP path each user also gets a loopback port, where a thread accepts connections and
runs one script per connection with the socket as its stdin and stdout (inetd-style).

Courier's IDLE watches the Maildir through gamin, whose client library starts
``/usr/libexec/gam_server`` (a path compiled in) unless ``GAMIN_DEBUG_SERVER`` names another
one; without a server the greeting gains ``* OK [ALERT] Filesystem notification
initialization error`` before ``* PREAUTH`` and IDLE falls back to Courier's polling.
``start()`` runs the unpacked ``gam_server --notimeout ID`` as its own child, on the abstract
socket ``@/tmp/fam-USER-ID`` that every imapd with ``GAM_CLIENT_ID=ID`` finds; ``stop()``
ends it. ``gamin=False`` leaves it out, which is how the greeting's ALERT line is tested.
With gamin the fixture sets ``IMAP_ENHANCEDIDLE=1`` (Debian ships 0): Courier's documented
switch for real-time IDLE through FAM. With 0, IDLE only re-reads the folder every
``IMAP_IDLE_TIMEOUT`` (60) seconds, gam_server or not.

Courier's personal namespace is ``INBOX.`` with "." as separator: ``INBOX.Lists.python`` is
the Maildir++ folder ``<maildir>/.Lists.python``. It has no CONDSTORE, QRESYNC or MOVE.
"""

from __future__ import annotations

import contextlib
import dataclasses
import itertools
import os
import pwd
import shlex
import shutil
import signal
import socket
import subprocess
import threading
import time
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from imapclient import IMAPClient

__all__ = ["PACKAGES", "Courier", "CourierError", "CourierUser", "deb_cache", "missing_packages"]

HOST = "127.0.0.1"
PACKAGES = (
    "courier-imap",
    "courier-base",
    "courier-authlib",
    "libcourier-unicode4",
    "libgamin0",
    "gamin",
    "libidn12",
)
"""Debian 12's packages that make imapd and gam_server run (``apt-get download`` names)."""

CAPABILITY = (
    "IMAP4rev1 UIDPLUS CHILDREN NAMESPACE THREAD=ORDEREDSUBJECT THREAD=REFERENCES SORT QUOTA IDLE"
)
"""Debian's default IMAP_CAPABILITY for a logged-in session."""

_REPO = Path(__file__).resolve().parents[2]
_users = itertools.count(1)


class CourierError(RuntimeError):
    """The test server could not be unpacked, started or driven; the message says why."""


def deb_cache() -> Path:
    """Where setup-env puts the .deb files: ``$SYNCD_DEB_CACHE``, else ``.cache/debs``."""
    return Path(os.environ.get("SYNCD_DEB_CACHE") or _REPO / ".cache" / "debs")


def _debs(cache: Path) -> dict[str, Path]:
    found: dict[str, Path] = {}
    for deb in sorted(cache.glob("*.deb")):
        found.setdefault(deb.name.split("_", 1)[0], deb)
    return found


def missing_packages(cache: Path | None = None) -> str | None:
    """Why Courier cannot run here, or None when everything it needs is at hand."""
    cache = cache or deb_cache()
    if shutil.which("dpkg") is None:
        return "dpkg is missing: Courier's Debian packages cannot be unpacked"
    lacking = [p for p in PACKAGES if p not in _debs(cache)]
    if lacking:
        return (
            f"Courier's packages {' '.join(lacking)} are not in {cache}; run scripts/setup-env "
            f"as root, or: mkdir -p {cache} && cd {cache} && apt-get download {' '.join(PACKAGES)}"
        )
    return None


@dataclasses.dataclass(frozen=True)
class CourierUser:
    """One mailbox: its Maildir, its tunnel command and its loopback port."""

    name: str
    maildir: Path
    command: str
    """A shell command that speaks IMAP on stdin/stdout, logged in (syncd's ``tunnel:``)."""
    port: int
    """A 127.0.0.1 port where each connection gets its own imapd, logged in (PREAUTH)."""
    password: str = "unused"  # PREAUTH: nobody asks; the Account helper writes one anyway


class Courier:
    """Unpacked Courier-IMAP with per-user tunnel commands and loopback listeners."""

    def __init__(self, base: Path, *, gamin: bool = True, capability: str = CAPABILITY) -> None:
        self.base = Path(base)
        self.root = self.base / "root"
        self.gamin = gamin
        self.capability = capability
        self.host = HOST
        self._client_id = f"syncd{os.getpid()}x{id(self):x}"
        self._gam: subprocess.Popen[bytes] | None = None
        self._listeners: list[socket.socket] = []
        self._children: list[subprocess.Popen[bytes]] = []
        self._lock = threading.Lock()
        self._stopping = threading.Event()
        self._threads: list[threading.Thread] = []

    # -- life cycle ------------------------------------------------------------------

    def start(self) -> Courier:
        reason = missing_packages()
        if reason is not None:
            raise CourierError(reason)
        self.root.mkdir(parents=True, exist_ok=True)
        for deb in _debs(deb_cache()).values():
            if deb.name.split("_", 1)[0] in PACKAGES:
                subprocess.run(["dpkg", "-x", str(deb), str(self.root)], check=True)
        if not self.imapd.exists():
            raise CourierError(f"{self.imapd} is missing after unpacking the packages")
        if self.gamin:
            self._start_gamin()
        return self

    @property
    def imapd(self) -> Path:
        return self.root / "usr" / "bin" / "imapd"

    @property
    def library_path(self) -> str:
        r = self.root / "usr" / "lib"
        return ":".join(str(p) for p in (r, r / "x86_64-linux-gnu", r / "courier-authlib"))

    def _start_gamin(self) -> None:
        gam = self.root / "usr" / "libexec" / "gam_server"
        self._gam = subprocess.Popen(
            [str(gam), "--notimeout", self._client_id],
            env={"PATH": "/usr/bin:/bin", "LD_LIBRARY_PATH": self.library_path},
            stdin=subprocess.DEVNULL,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        # Its socket is abstract (@/tmp/fam-USER-ID): ready once /proc lists it.
        want = f"@/tmp/fam-{pwd.getpwuid(os.getuid()).pw_name}-{self._client_id}"
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline:
            if self._gam.poll() is not None:
                raise CourierError(f"gam_server exited with {self._gam.returncode}")
            if want in Path("/proc/net/unix").read_text():
                return
            time.sleep(0.02)
        raise CourierError(f"gam_server did not open {want} within 10 s")

    def stop(self) -> None:
        self._stopping.set()
        for sock in self._listeners:
            with contextlib.suppress(OSError):
                sock.shutdown(socket.SHUT_RDWR)
            sock.close()
        for t in self._threads:
            t.join(5)
        with self._lock:
            procs = [*self._children, *([self._gam] if self._gam else [])]
        for p in procs:
            if p.poll() is None:
                with contextlib.suppress(ProcessLookupError):
                    p.send_signal(signal.SIGTERM)
        for p in procs:
            try:
                p.wait(5)
            except subprocess.TimeoutExpired:
                p.kill()
                p.wait()

    def __enter__(self) -> Courier:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    # -- users -----------------------------------------------------------------------

    def env(self, maildir: Path) -> dict[str, str]:
        """What Debian's init script and /etc/courier/imapd would give imapd."""
        env = {
            "PATH": "/usr/bin:/bin",
            "LD_LIBRARY_PATH": self.library_path,
            "IMAP_CAPABILITY": self.capability,
            "IMAP_KEYWORDS": "1",
            "IMAP_ACL": "1",
            "IMAP_IDLE_TIMEOUT": "60",
            "IMAP_USELOCKS": "1",
            "IMAP_ENHANCEDIDLE": "1" if self.gamin else "0",
            "IMAP_UMASK": "022",
            "IMAP_MAILBOX_SANITY_CHECK": "0",
            "HOME": str(maildir.parent),
            "GAM_CLIENT_ID": self._client_id,
        }
        if self.gamin:
            env["GAMIN_DEBUG_SERVER"] = str(self.root / "usr" / "libexec" / "gam_server")
        else:
            # No server to find: the library's compiled-in path does not exist here.
            env["GAMIN_DEBUG_SERVER"] = str(self.base / "no-gam_server")
        return env

    def add_user(self, name: str | None = None) -> CourierUser:
        name = name or f"user{next(_users)}"
        home = self.base / "users" / name
        maildir = home / "Maildir"
        for sub in ("cur", "new", "tmp"):
            (maildir / sub).mkdir(parents=True, exist_ok=True)
        script = home / "imapd.sh"
        exports = " ".join(f"{k}={shlex.quote(v)}" for k, v in self.env(maildir).items())
        script.write_text(
            f"#!/bin/sh\nexec env -i {exports} {shlex.quote(str(self.imapd))} "
            f"{shlex.quote(str(maildir))}\n"
        )
        script.chmod(0o755)
        listener = socket.create_server((HOST, 0))
        self._listeners.append(listener)
        t = threading.Thread(
            target=self._serve, args=(listener, script), name=f"courier-{name}", daemon=True
        )
        t.start()
        self._threads.append(t)
        return CourierUser(name, maildir, shlex.quote(str(script)), listener.getsockname()[1])

    def _serve(self, listener: socket.socket, script: Path) -> None:
        while not self._stopping.is_set():
            try:
                conn, _ = listener.accept()
            except OSError:
                return
            with conn, self._lock:
                if self._stopping.is_set():
                    return
                self._children = [p for p in self._children if p.poll() is None]
                self._children.append(
                    subprocess.Popen(
                        [str(script)], stdin=conn, stdout=conn, stderr=subprocess.DEVNULL
                    )
                )

    # -- looking and changing, as another client ------------------------------------

    @contextlib.contextmanager
    def imap(self, user: CourierUser) -> Iterator[IMAPClient]:
        """A logged-in IMAPClient on the user's own imapd (through the loopback port)."""
        from imapclient import IMAPClient

        client = IMAPClient(HOST, port=user.port, ssl=False, timeout=30)
        # Without gam_server an ALERT line comes first, and imaplib reads only that one as
        # the greeting; the PREAUTH arrives with the CAPABILITY reply that follows.
        if "PREAUTH" in client._imap.untagged_responses:
            client._imap.state = "AUTH"
        try:
            yield client
        finally:
            with contextlib.suppress(Exception):
                client.logout()

    def create_folder(self, user: CourierUser, name: str) -> None:
        """Create the server folder ``name`` (a full Courier name, like ``INBOX.Archive``)."""
        with self.imap(user) as c:
            c.create_folder(name)

    def append(
        self, user: CourierUser, folder: str, raw: bytes, flags: Iterable[bytes | str] = ()
    ) -> None:
        with self.imap(user) as c:
            if folder.upper() != "INBOX" and not c.folder_exists(folder):
                c.create_folder(folder)
            c.append(folder, raw, flags=tuple(flags))

    def deliver(self, user: CourierUser, raw: bytes, folder: str = "INBOX") -> Path:
        """Deliver as a mail delivery agent does (maildrop, courier-local): write into the
        Maildir's tmp/, then rename into new/."""
        box = user.maildir if folder.upper() == "INBOX" else user.maildir / ("." + folder[6:])
        name = f"{time.time_ns()}.P{os.getpid()}Q{next(_users)}.syncd-test"
        tmp = box / "tmp" / name
        tmp.write_bytes(raw.replace(b"\r\n", b"\n"))
        final = box / "new" / name
        tmp.rename(final)
        return final

    def folders(self, user: CourierUser) -> set[str]:
        with self.imap(user) as c:
            return {
                n.decode() if isinstance(n, bytes) else n
                for flags, _sep, n in c.list_folders()
                if b"\\Noselect" not in flags
            }

    def messages(self, user: CourierUser, folder: str = "INBOX") -> dict[int, tuple[bytes, set]]:
        """UID -> (bytes with LF line ends, flags without \\Recent), read-only."""
        with self.imap(user) as c:
            c.select_folder(folder, readonly=True)
            uids = c.search("ALL")
            rows = c.fetch(uids, ["BODY.PEEK[]", "FLAGS"]) if uids else {}
            return {
                uid: (d[b"BODY[]"].replace(b"\r\n", b"\n"), set(d[b"FLAGS"]) - {b"\\Recent"})
                for uid, d in rows.items()
            }

    def set_flags(self, user: CourierUser, folder: str, uid: int, flags: list[bytes]) -> None:
        with self.imap(user) as c:
            c.select_folder(folder)
            c.set_flags([uid], flags)

    def delete(self, user: CourierUser, folder: str, uid: int) -> None:
        with self.imap(user) as c:
            c.select_folder(folder)
            c.delete_messages([uid])
            c.expunge([uid])
