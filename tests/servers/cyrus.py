"""A private Cyrus IMAP 3.6 (Debian's) for tests: a third IMAP implementation.

Theory of operation
-------------------
Like Courier (``courier.py``), Cyrus is never installed: ``scripts/setup-env`` downloads
Debian's ``cyrus-imapd`` and ``cyrus-common`` and the libraries a Debian 12 machine with
Dovecot lacks into the cache directory, and ``Cyrus(base).start()`` unpacks them with
``dpkg -x`` into ``base/root``.

``start()`` writes ``imapd.conf`` and ``cyrus.conf`` under ``base`` (config, mail spool,
sockets: all there) and runs Cyrus's ``master -D`` as a child, which runs ``imapd`` for a
free 127.0.0.1 port; it returns once the port greets with ``* OK``. Logins go through
``sasl_pwcheck_method: alwaystrue`` (any password; nothing else listens), and ``admin`` is
the administrator that creates users (``CREATE user.NAME``). Cyrus will not run as root:
started as root, the processes run as ``nobody`` (``cyrus_user``, via ``setpriv``), ``base``
is chowned to it and the directories above it get the search bit (o+x, never read).
Cyrus logs only to syslog, so a failure to start is reported with the exit status.

Mailboxes use Cyrus's default namespace: a user's personal namespace is ``INBOX.`` with
"." as the separator (``INBOX.Lists.python``). It offers CONDSTORE, QRESYNC, MOVE, IDLE
(polling without ``idled``, which the fixture does not run).
"""

from __future__ import annotations

import contextlib
import dataclasses
import itertools
import os
import pwd
import shutil
import socket
import subprocess
import time
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import TYPE_CHECKING

from tests.servers.courier import _debs, deb_cache

if TYPE_CHECKING:
    from imapclient import IMAPClient

__all__ = ["PACKAGES", "Cyrus", "CyrusError", "CyrusUser", "missing_packages"]

HOST = "127.0.0.1"
PACKAGES = (
    "cyrus-imapd",
    "cyrus-common",
    "libclamav12",
    "libical3",
    "libpcre3",
    "libxapian30",
    "libzephyr4",
    "libmspack0",
)
"""Debian 12's Cyrus packages and the libraries a machine with Dovecot does not have."""

_users = itertools.count(1)


class CyrusError(RuntimeError):
    """The test server could not be unpacked or started; the message says why."""


def missing_packages(cache: Path | None = None) -> str | None:
    """Why Cyrus cannot run here, or None."""
    cache = cache or deb_cache()
    if shutil.which("dpkg") is None:
        return "dpkg is missing: Cyrus's Debian packages cannot be unpacked"
    lacking = [p for p in PACKAGES if p not in _debs(cache)]
    if lacking:
        return (
            f"Cyrus's packages {' '.join(lacking)} are not in {cache}; run scripts/setup-env "
            f"as root, or: mkdir -p {cache} && cd {cache} && apt-get download {' '.join(PACKAGES)}"
        )
    if os.geteuid() == 0 and shutil.which("setpriv") is None:
        return "setpriv (util-linux) is missing: Cyrus cannot be started as nobody"
    return None


@dataclasses.dataclass(frozen=True)
class CyrusUser:
    name: str
    port: int
    password: str = "any"  # alwaystrue: any password logs in


class Cyrus:
    """Unpacked Cyrus IMAP on a loopback port."""

    def __init__(self, base: Path) -> None:
        self.base = Path(base)
        self.root = self.base / "root"
        self.host = HOST
        self.imap_port = 0
        self._master: subprocess.Popen[bytes] | None = None

    @property
    def library_path(self) -> str:
        return ":".join(
            str(self.root / d) for d in ("usr/lib/x86_64-linux-gnu", "lib/x86_64-linux-gnu")
        )

    def start(self) -> Cyrus:
        reason = missing_packages()
        if reason is not None:
            raise CyrusError(reason)
        self.root.mkdir(parents=True, exist_ok=True)
        for name, deb in _debs(deb_cache()).items():
            if name in PACKAGES:
                subprocess.run(["dpkg", "-x", str(deb), str(self.root)], check=True)
        bin_dir = self.root / "usr" / "lib" / "cyrus" / "bin"
        lacking = subprocess.run(
            ["ldd", str(bin_dir / "imapd")],
            env={"LD_LIBRARY_PATH": self.library_path},
            capture_output=True,
            text=True,
            check=False,
        ).stdout
        if "not found" in lacking:
            missing = [line.split()[0] for line in lacking.splitlines() if "not found" in line]
            raise CyrusError(f"Cyrus's imapd lacks libraries: {' '.join(missing)}")
        run_as = "nobody" if os.geteuid() == 0 else pwd.getpwuid(os.getuid()).pw_name
        conf = self.base / "imapd.conf"
        for d in ("conf", "spool", "sieve", "sock"):
            (self.base / d).mkdir(exist_ok=True)
        with socket.socket() as s:
            s.bind((HOST, 0))
            self.imap_port = s.getsockname()[1]
        conf.write_text(
            "\n".join(
                [
                    f"configdirectory: {self.base / 'conf'}",
                    f"partition-default: {self.base / 'spool'}",
                    f"sievedir: {self.base / 'sieve'}",
                    f"cyrus_user: {run_as}",
                    "admins: admin",
                    "sasl_pwcheck_method: alwaystrue",
                    "allowplaintext: yes",
                    "unixhierarchysep: no",
                    "altnamespace: no",
                    f"idlesocket: {self.base / 'sock' / 'idle'}",
                    f"notifysocket: {self.base / 'sock' / 'notify'}",
                    f"lmtpsocket: {self.base / 'sock' / 'lmtp'}",
                    "",
                ]
            )
        )
        (self.base / "cyrus.conf").write_text(
            f'START {{\n  recover cmd="{bin_dir}/ctl_cyrusdb -C {conf} -r"\n}}\n'
            f'SERVICES {{\n  imap cmd="{bin_dir}/imapd -C {conf}" '
            f'listen="{HOST}:{self.imap_port}" prefork=0\n}}\nEVENTS {{\n}}\n'
        )
        argv = [
            str(bin_dir / "master"),
            *("-C", str(conf), "-M", str(self.base / "cyrus.conf")),
            *("-D", "-p", str(self.base / "master.pid")),
        ]
        if os.geteuid() == 0:
            nobody = pwd.getpwnam("nobody")
            for p in [self.base, *self.base.rglob("*")]:
                os.chown(p, nobody.pw_uid, nobody.pw_gid, follow_symlinks=False)
            for p in [self.base, *self.base.parents]:
                mode = p.stat().st_mode
                if not mode & 0o001:
                    p.chmod((mode & 0o7777) | 0o001)
            argv = [
                "setpriv",
                f"--reuid={nobody.pw_uid}",
                f"--regid={nobody.pw_gid}",
                "--clear-groups",
                *argv,
            ]
        self._master = subprocess.Popen(
            argv,
            env={"PATH": "/usr/bin:/bin", "LD_LIBRARY_PATH": self.library_path},
            stdin=subprocess.DEVNULL,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        self._wait_ready()
        return self

    def _wait_ready(self) -> None:
        deadline = time.monotonic() + 20
        last = ""
        while time.monotonic() < deadline:
            if self._master is not None and self._master.poll() is not None:
                raise CyrusError(f"Cyrus's master exited with {self._master.returncode}")
            try:
                with socket.create_connection((HOST, self.imap_port), timeout=2) as s:
                    greeting = s.recv(4096)
                if greeting.startswith(b"* OK"):
                    return
                last = greeting.decode("latin-1")
            except OSError as exc:
                last = str(exc)
            time.sleep(0.05)
        self.stop()
        raise CyrusError(f"Cyrus did not greet on {HOST}:{self.imap_port} within 20 s ({last})")

    def stop(self) -> None:
        master, self._master = self._master, None
        if master is None or master.poll() is not None:
            return
        master.terminate()  # master ends its imapd children
        try:
            master.wait(10)
        except subprocess.TimeoutExpired:
            master.kill()
            master.wait()

    def __enter__(self) -> Cyrus:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    # -- users and looking ------------------------------------------------------------

    def add_user(self, name: str | None = None) -> CyrusUser:
        name = name or f"user{next(_users)}"
        from imapclient import IMAPClient

        with IMAPClient(HOST, port=self.imap_port, ssl=False, timeout=30) as admin:
            admin.login("admin", "any")
            admin.create_folder(f"user.{name}")
        return CyrusUser(name, self.imap_port)

    @contextlib.contextmanager
    def imap(self, user: CyrusUser) -> Iterator[IMAPClient]:
        from imapclient import IMAPClient

        client = IMAPClient(HOST, port=self.imap_port, ssl=False, timeout=30)
        try:
            client.login(user.name, user.password)
            yield client
        finally:
            with contextlib.suppress(Exception):
                client.logout()

    def create_folder(self, user: CyrusUser, name: str) -> None:
        with self.imap(user) as c:
            c.create_folder(name)

    def append(
        self, user: CyrusUser, folder: str, raw: bytes, flags: Iterable[bytes | str] = ()
    ) -> None:
        with self.imap(user) as c:
            if folder.upper() != "INBOX" and not c.folder_exists(folder):
                c.create_folder(folder)
            c.append(folder, raw, flags=tuple(flags))

    def folders(self, user: CyrusUser) -> set[str]:
        with self.imap(user) as c:
            return {
                n.decode() if isinstance(n, bytes) else n
                for flags, _sep, n in c.list_folders()
                if b"\\Noselect" not in flags
            }

    def messages(self, user: CyrusUser, folder: str = "INBOX") -> dict[int, tuple[bytes, set]]:
        with self.imap(user) as c:
            c.select_folder(folder, readonly=True)
            uids = c.search("ALL")
            rows = c.fetch(uids, ["BODY.PEEK[]", "FLAGS"]) if uids else {}
            return {
                uid: (d[b"BODY[]"].replace(b"\r\n", b"\n"), set(d[b"FLAGS"]) - {b"\\Recent"})
                for uid, d in rows.items()
            }

    def set_flags(self, user: CyrusUser, folder: str, uid: int, flags: list[bytes]) -> None:
        with self.imap(user) as c:
            c.select_folder(folder)
            c.set_flags([uid], flags)

    def delete(self, user: CyrusUser, folder: str, uid: int) -> None:
        with self.imap(user) as c:
            c.select_folder(folder)
            c.delete_messages([uid])
            c.expunge([uid])
