"""A private Dovecot 2.3 server for tests, benchmarks and the demo.

Theory of operation
-------------------
``Dovecot(base)`` writes its own ``dovecot.conf`` into ``base`` and runs ``dovecot -F -c CONF`` as
a child process.  Nothing of the system installation is used except the binaries: the config does
not include ``/etc/dovecot``, every runtime socket, state file, log and mail store lives under
``base``, and the listeners bind ports on 127.0.0.1 that were free when the object was made.
``start()`` returns only when every listener has answered with its greeting (IMAP ``* OK``,
POP3 ``+OK``, LMTP ``220``; through TLS for the implicit-TLS ports), like aiosmtpd's controller.
Failed logins are not slowed down (no auth penalty, ``auth_failure_delay = 0``) so that a test
of a wrong password does not delay the tests after it.

Users live in passwd-files, one per user (``users/<name>``, found through ``%u`` in the path).
One shared passwd-file would not do: Dovecot stats it at most once a second, so a user appended
within the same second as the last lookup stays unknown until the next second.  A new file is
opened on first use, so ``add_user()`` is one small write and the user can log in at once: one
session-scoped server can hand a fresh, empty user to every test.  The auth cache is off.

Dovecot will not run mail processes as uid 0.  Started as root, the test users get the uid and gid
of ``nobody``/``nogroup``, the mail root is chowned to them, and the directories above ``base``
are given the search bit (o+x, never read) so that ``nobody`` can reach the store; the login and
internal processes run as the packaged ``dovenull``/``dovecot`` users.  Started by anyone else,
everything (master, login, auth and mail processes) runs as the current user with no chroots.

Mail is stored as Maildir with ``LAYOUT=fs``: the folder "Lists/python" is the directory
``<maildir>/Lists/python`` and INBOX is the Maildir root itself.  The hierarchy separator is
``/``.  The server does not fsync by default (``fsync=True`` turns Dovecot's default back on):
tests do not survive power loss anyway and it makes bulk loads several times faster.

Delivery goes through LMTP, the way mail really arrives.  For a folder other than INBOX the
folder is first created over IMAP (with its parents, as a mail client would) and the recipient
gets a ``+folder`` detail (``lmtp_save_to_detail_mailbox = yes``); names that cannot be written
as an unquoted local part (spaces, non-ASCII, ``@``, quotes, ...) go through ``doveadm save``
instead.  LMTP is told not to add ``Received:`` or ``Delivered-To:``, but Dovecot's LMTP always
prepends ``Return-Path: <sender>`` (no setting turns it off); ``doveadm save`` adds nothing.
``deliver()`` returns the bytes IMAP will serve, so tests compare against that.
"""

from __future__ import annotations

import contextlib
import dataclasses
import grp
import hashlib
import itertools
import os
import pwd
import re
import secrets
import shutil
import signal
import smtplib
import socket
import ssl
import subprocess
import tempfile
import threading
import time
from collections.abc import Iterable, Iterator, Mapping, Sequence
from datetime import datetime
from pathlib import Path
from types import TracebackType
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from imapclient import IMAPClient

__all__ = [
    "CertFiles",
    "Dovecot",
    "DovecotError",
    "Flag",
    "User",
    "find_binaries",
    "make_test_certs",
    "missing_binaries",
]

HOST = "127.0.0.1"
# Dovecot's sockets live in base_dir; a UNIX socket path must stay under 108 bytes, and the
# longest name Dovecot uses below base_dir is under 28 bytes.
_MAX_BASE_DIR_LEN = 80
_SBIN_DIRS = ("/usr/sbin", "/usr/local/sbin", "/sbin")
# A flag as imapclient takes it: b"\\Seen" or "\\Seen".
Flag = str | bytes

_user_counter = itertools.count(1)
_SIMPLE_DETAIL = re.compile(r"[A-Za-z0-9._/\-]+")
_USERNAME = re.compile(r"[A-Za-z0-9_][A-Za-z0-9._@\-]*")  # no "+": it starts an LMTP detail


class DovecotError(RuntimeError):
    """The test server could not be started, stopped or driven; the message says why."""


@dataclasses.dataclass(frozen=True)
class CertFiles:
    """PEM files for the server; ``ca_pem`` is the CA a client must trust (if known)."""

    cert_pem: Path
    key_pem: Path
    ca_pem: Path | None = None

    def client_context(self) -> ssl.SSLContext:
        """An SSL context that trusts ``ca_pem`` and checks host names."""
        if self.ca_pem is None:
            raise DovecotError("CertFiles has no ca_pem: cannot build a verifying client context")
        return ssl.create_default_context(cafile=str(self.ca_pem))

    def fingerprint(self) -> str:
        """``sha256:HEX`` of the server certificate's DER form (CONTRACT.md's ``fingerprint:``)."""
        pem = self.cert_pem.read_text()
        end = "-----END CERTIFICATE-----"
        der = ssl.PEM_cert_to_DER_cert(pem[: pem.index(end) + len(end)])
        return "sha256:" + hashlib.sha256(der).hexdigest()


@dataclasses.dataclass(frozen=True)
class User:
    """A mail user of the test server. ``maildir`` is the server-side store (created lazily)."""

    name: str
    password: str
    maildir: Path


def make_test_certs(
    directory: Path | str, names: Sequence[str] = ("localhost", "127.0.0.1", "::1")
) -> CertFiles:
    """Make a throw-away CA and a server certificate for ``names`` with trustme.

    Writes ``ca.pem``, ``server.pem`` (certificate chain) and ``server.key`` into ``directory``.
    """
    import trustme

    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    ca = trustme.CA()
    cert = ca.issue_cert(*names)
    paths = CertFiles(directory / "server.pem", directory / "server.key", directory / "ca.pem")
    ca.cert_pem.write_to_path(str(paths.ca_pem))
    paths.cert_pem.write_bytes(b"".join(blob.bytes() for blob in cert.cert_chain_pems))
    paths.key_pem.write_bytes(b"")
    paths.key_pem.chmod(0o600)
    cert.private_key_pem.write_to_path(str(paths.key_pem))
    return paths


def find_binaries() -> tuple[str, str]:
    """Paths of ``dovecot`` and ``doveadm``; sbin directories are searched even if not on PATH."""
    search = os.pathsep.join([os.environ.get("PATH", ""), *_SBIN_DIRS])
    dovecot = shutil.which("dovecot", path=search)
    doveadm = shutil.which("doveadm", path=search)
    if dovecot is None or doveadm is None:
        raise DovecotError(
            "Dovecot is not installed: apt-get install dovecot-imapd dovecot-pop3d dovecot-lmtpd"
        )
    return dovecot, doveadm


def missing_binaries() -> str | None:
    """None if Dovecot can be run here, else a sentence saying what to install."""
    try:
        find_binaries()
    except DovecotError as exc:
        return str(exc)
    return None


def _free_ports(n: int, host: str) -> list[int]:
    """n distinct ports that were free a moment ago (all bound at once so they differ)."""
    socks = []
    try:
        for _ in range(n):
            s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
            s.bind((host, 0))
            socks.append(s)
        return [s.getsockname()[1] for s in socks]
    finally:
        for s in socks:
            s.close()


def _make_traversable(path: Path) -> None:
    """Give every directory from ``path`` up to / the search bit for others (not read)."""
    for p in [path, *path.parents]:
        mode = p.stat().st_mode
        if not mode & 0o001:
            p.chmod((mode & 0o7777) | 0o001)


def _quote(value: str) -> str:
    """A value for dovecot.conf: quoted, so spaces and '#' are kept."""
    if any(c in value for c in '"\\\n'):
        raise DovecotError(f"cannot put {value!r} into dovecot.conf")
    return f'"{value}"'


class Dovecot:
    """A private Dovecot (IMAP, POP3, LMTP; IMAPS, POP3S and STARTTLS with ``tls``) in ``base``.

    Example::

        with Dovecot(tmp_path) as server:
            user = server.add_user()
            server.deliver(user, b"Subject: hi\\r\\n\\r\\nhello\\r\\n")
            with server.imap(user) as client:
                client.select_folder("INBOX")

    Attributes: ``host``, ``imap_port``, ``pop3_port``, ``lmtp_port`` and, with TLS,
    ``imaps_port`` and ``pop3s_port`` (0 without TLS).  The ports are picked when the object is
    made (free at that moment) and kept across ``restart()``; only if one was taken by the time
    Dovecot binds does ``start()`` pick new ones.

    ``die_with_parent`` (Linux, needs util-linux ``setpriv``) makes the kernel stop the server
    when the thread that started it ends, even if ``stop()`` is never called (a killed test run);
    start it from the main thread.  The demo turns it off to leave the server running.
    """

    def __init__(
        self,
        base: Path | str,
        *,
        tls: CertFiles | None = None,
        fsync: bool = False,
        die_with_parent: bool = True,
        start_timeout: float = 15.0,
        oauth2_url: str | None = None,
        special_use: dict[str, str] | None = None,
        imap_capability: str | None = None,
    ) -> None:
        self.base = Path(base).resolve()
        if re.search(r'[\s"\\]', str(self.base)):
            raise DovecotError(f"Dovecot's config cannot name {self.base}: no spaces or quotes")
        self.tls = tls
        self.fsync = fsync
        self.die_with_parent = die_with_parent
        self.start_timeout = start_timeout
        # With an OAuth2 token introspection URL, XOAUTH2 and OAUTHBEARER logins are
        # checked by asking that URL (a tiny HTTP server in the test) about the token.
        self.oauth2_url = oauth2_url
        # Mailbox name -> RFC 6154 flag (e.g. {"[Gmail]/Sent Mail": "\\Sent"}): created for
        # every user and listed with that flag, like Gmail's folders.
        self.special_use = dict(special_use or {})
        # Dovecot's imap_capability: the CAPABILITY list after login, to play a server
        # without some extension (e.g. LITERAL+ or MULTIAPPEND).
        self.imap_capability = imap_capability
        self.host = HOST
        self.imap_port = self.pop3_port = self.lmtp_port = 0
        self.imaps_port = self.pop3s_port = 0  # stay 0 without TLS
        self._pick_ports()

        self.conf_path = self.base / "dovecot.conf"
        self.log_path = self.base / "dovecot.log"
        self.stderr_path = self.base / "dovecot.stderr"
        self.pid_path = self.base / "dovecot.pid"  # the master's pid while it runs
        self.users_dir = self.base / "users"
        self.mail_root = self.base / "mail"
        self.state_dir = self.base / "state"
        # Sockets and pid file; if base is too deep for socket paths, a short temporary
        # directory made at each start and removed at stop.
        self.run_dir = self.base / "run"
        self._short_run_dir = len(str(self.run_dir)) > _MAX_BASE_DIR_LEN

        self._dovecot_bin, self._doveadm_bin = find_binaries()
        self._proc: subprocess.Popen[bytes] | None = None
        self._lock = threading.Lock()
        self._as_root = os.geteuid() == 0
        if self._as_root:
            nobody = pwd.getpwnam("nobody")
            self.mail_uid, self.mail_gid = nobody.pw_uid, nobody.pw_gid
            with contextlib.suppress(KeyError):
                self.mail_gid = grp.getgrnam("nogroup").gr_gid
        else:
            self.mail_uid, self.mail_gid = os.geteuid(), os.getegid()
        self._prepare()

    # -- lifecycle -----------------------------------------------------------------------------

    def _prepare(self) -> None:
        for d in (self.base, self.state_dir, self.mail_root):
            d.mkdir(parents=True, exist_ok=True)
        self.users_dir.mkdir(exist_ok=True)
        self.users_dir.chmod(0o755)  # read by the auth process (user dovecot)
        if self._as_root:
            _make_traversable(self.base)
            os.chown(self.mail_root, self.mail_uid, self.mail_gid)
            self.mail_root.chmod(0o770)

    @property
    def running(self) -> bool:
        return self._proc is not None and self._proc.poll() is None

    @property
    def pid(self) -> int | None:
        return self._proc.pid if self._proc is not None else None

    def start(self) -> Dovecot:
        """Start the server and wait until every listener greets; returns self."""
        if self.running:
            return self
        last_error: DovecotError | None = None
        for _ in range(3):
            if last_error is not None:
                self._pick_ports()
            if self._short_run_dir:
                self.run_dir = Path(tempfile.mkdtemp(prefix="dovecot-run-"))
                self.run_dir.chmod(0o755)  # as Dovecot wants it
            self._write_config()
            try:
                self._spawn()
                self._wait_ready()
            except DovecotError as exc:
                self._kill()
                if "Address already in use" not in str(exc):
                    raise
                last_error = exc  # another process took a port between pick and bind: retry
                continue
            return self
        assert last_error is not None
        raise last_error

    def stop(self, timeout: float = 10.0) -> None:
        """SIGTERM the master (it takes its children along) and wait for it."""
        proc = self._proc
        if proc is None:
            return
        if proc.poll() is None:
            # The whole process group: the master alone waits about a second for its children.
            with contextlib.suppress(ProcessLookupError):
                os.killpg(proc.pid, signal.SIGTERM)
            try:
                proc.wait(timeout)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait(timeout)
        # Login processes hold the listening sockets too: wait for the group to be gone so
        # that a restart can bind the same ports.
        deadline = time.monotonic() + timeout
        with contextlib.suppress(ProcessLookupError):
            while time.monotonic() < deadline:
                os.killpg(proc.pid, 0)
                time.sleep(0.01)
            os.killpg(proc.pid, signal.SIGKILL)
        self._proc = None
        self._cleanup()

    def _cleanup(self) -> None:
        self.pid_path.unlink(missing_ok=True)
        if self._short_run_dir:
            shutil.rmtree(self.run_dir, ignore_errors=True)

    def restart(self) -> Dovecot:
        """Stop and start again on the same ports, keeping users and mail."""
        self.stop()
        return self.start()

    def __enter__(self) -> Dovecot:
        return self.start()

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()

    def _pick_ports(self) -> None:
        ports = _free_ports(5 if self.tls else 3, self.host)
        self.imap_port, self.pop3_port, self.lmtp_port = ports[:3]
        if self.tls:
            self.imaps_port, self.pop3s_port = ports[3:]

    def _spawn(self) -> None:
        self.stderr_path.write_bytes(b"")
        with self.stderr_path.open("ab") as err:
            argv = [self._dovecot_bin, "-F", "-c", str(self.conf_path)]
            setpriv = shutil.which("setpriv")
            if self.die_with_parent and setpriv is not None:
                # util-linux's setpriv sets PR_SET_PDEATHSIG and execs Dovecot in its place.
                argv = [setpriv, "--pdeathsig", "TERM", "--", *argv]
            self._proc = subprocess.Popen(
                argv,
                stdin=subprocess.DEVNULL,
                stdout=err,
                stderr=err,
                start_new_session=True,  # a Ctrl-C meant for the tests must not kill it midway
            )
        self.pid_path.write_text(f"{self._proc.pid}\n")

    def _kill(self) -> None:
        if self._proc is not None:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(self._proc.pid, signal.SIGKILL)  # children too
            self._proc.wait()
            self._proc = None
            self._cleanup()

    def _listeners(self) -> list[tuple[str, int, bytes, bool]]:
        out = [
            ("imap", self.imap_port, b"* OK", False),
            ("pop3", self.pop3_port, b"+OK", False),
            ("lmtp", self.lmtp_port, b"220", False),
        ]
        if self.tls:
            out += [
                ("imaps", self.imaps_port, b"* OK", True),
                ("pop3s", self.pop3s_port, b"+OK", True),
            ]
        return out

    def _wait_ready(self) -> None:
        deadline = time.monotonic() + self.start_timeout
        pending = self._listeners()
        last = ""
        while pending:
            proc = self._proc
            if proc is None or proc.poll() is not None:
                code = None if proc is None else proc.returncode
                raise DovecotError(
                    f"dovecot exited with status {code} while starting{self._tail()}"
                )
            name, port, greeting, tls = pending[0]
            try:
                line = self._greeting(port, tls)
            except (OSError, ssl.SSLError) as exc:
                last = f"{name} on port {port}: {exc}"
            else:
                if line.startswith(greeting):
                    pending.pop(0)
                    continue
                last = f"{name} on port {port} greeted with {line!r}"
            if time.monotonic() > deadline:
                raise DovecotError(
                    f"dovecot did not answer within {self.start_timeout} s ({last}); "
                    f"raise start_timeout if the machine is slow{self._tail()}"
                )
            time.sleep(0.02)
        # A greeting from some other server that took one of our ports would not do.
        time.sleep(0.01)
        if self._proc is None or self._proc.poll() is not None:
            raise DovecotError(f"dovecot exited while starting{self._tail()}")

    def _greeting(self, port: int, tls: bool) -> bytes:
        with socket.create_connection((self.host, port), timeout=2) as raw:
            if tls:
                ctx = ssl.create_default_context()
                ctx.check_hostname = False
                ctx.verify_mode = ssl.CERT_NONE
                with ctx.wrap_socket(raw) as sock:
                    return sock.makefile("rb").readline()
            return raw.makefile("rb").readline()

    def _tail(self, lines: int = 30) -> str:
        parts = []
        for path in (self.stderr_path, self.log_path):
            with contextlib.suppress(OSError):
                text = path.read_text(errors="replace").splitlines()[-lines:]
                if text:
                    parts.append(f"\n--- {path} (tail) ---\n" + "\n".join(text))
        return "".join(parts)

    def log_tail(self, lines: int = 30) -> str:
        """The last lines of Dovecot's stderr and log file, for error messages."""
        return self._tail(lines)

    # -- configuration -------------------------------------------------------------------------

    def _write_config(self) -> None:
        self.conf_path.write_text(self.config_text())

    def config_text(self) -> str:
        """The dovecot.conf this server runs with."""
        q = _quote
        if self._as_root:
            internal_user, internal_group, login_user = "dovecot", "dovecot", "dovenull"
            privileges = ""
        else:
            internal_user = pwd.getpwuid(os.geteuid()).pw_name
            internal_group = grp.getgrgid(os.getegid()).gr_name
            login_user = internal_user
            # Without root there is no chroot and no switching users.
            privileges = "\n".join(
                f"service {svc} {{\n  chroot =\n}}" for svc in ("ipc", "old-stats")
            )
        tls = self.tls
        ssl_lines = "ssl = no"
        imaps = pop3s = ""
        if tls is not None:
            ssl_lines = "\n".join(
                [
                    "ssl = yes",
                    f"ssl_cert = <{tls.cert_pem.resolve()}",
                    f"ssl_key = <{tls.key_pem.resolve()}",
                    "ssl_min_protocol = TLSv1.2",
                    "ssl_prefer_server_ciphers = yes",
                ]
            )
            imaps = (
                f"  inet_listener imaps {{\n    address = {self.host}\n"
                f"    port = {self.imaps_port}\n    ssl = yes\n  }}\n"
            )
            pop3s = (
                f"  inet_listener pop3s {{\n    address = {self.host}\n"
                f"    port = {self.pop3s_port}\n    ssl = yes\n  }}\n"
            )
        chroot = "" if self._as_root else "  chroot =\n"
        special = "".join(
            f'  mailbox "{name}" {{\n    special_use = {flag}\n    auto = create\n  }}\n'
            for name, flag in self.special_use.items()
        )
        oauth_mechs = oauth_passdb = ""
        if self.oauth2_url is not None:
            oauth_conf = self.base / "oauth2.conf.ext"
            oauth_conf.write_text(
                "introspection_mode = auth\n"
                f"introspection_url = {self.oauth2_url}\n"
                "username_attribute = username\n"
                "active_attribute = active\n"
                "active_value = true\n"
            )
            oauth_conf.chmod(0o644)
            oauth_mechs = " xoauth2 oauthbearer"
            oauth_passdb = (
                "passdb {\n  driver = oauth2\n  mechanisms = xoauth2 oauthbearer\n"
                f"  args = {oauth_conf}\n}}\n"
            )
        return f"""\
# Written by tests/servers/dovecot.py; regenerated at every start.
base_dir = {q(str(self.run_dir))}
state_dir = {q(str(self.state_dir))}
instance_name = {q("syncd-test-" + self.base.name)}
log_path = {q(str(self.log_path))}
info_log_path = {q(str(self.log_path))}
auth_verbose = yes
listen = {self.host}
protocols = imap pop3 lmtp
shutdown_clients = yes

default_internal_user = {internal_user}
default_internal_group = {internal_group}
default_login_user = {login_user}
first_valid_uid = {min(self.mail_uid, 500)}
first_valid_gid = {min(self.mail_gid, 1)}

{ssl_lines}
disable_plaintext_auth = no
auth_mechanisms = plain login{oauth_mechs}
auth_username_format = %u
auth_cache_size = 0
{oauth_passdb}passdb {{
  driver = passwd-file
  args = scheme=PLAIN username_format=%u {self.users_dir}/%u
}}
userdb {{
  driver = passwd-file
  args = username_format=%u {self.users_dir}/%u
}}

mail_location = maildir:{self.mail_root}/%u:LAYOUT=fs
mail_fsync = {"optimized" if self.fsync else "never"}
mail_max_userip_connections = 50
namespace inbox {{
  inbox = yes
  separator = /
  prefix =
{special}}}

# Deliver byte for byte: no Received:/Delivered-To:; user+Folder delivers into Folder.
lmtp_add_received_header = no
lmtp_hdr_delivery_address = none
lmtp_save_to_detail_mailbox = yes
lda_mailbox_autocreate = yes
recipient_delimiter = +
{"imap_capability = " + self.imap_capability if self.imap_capability else ""}

service imap-login {{
  inet_listener imap {{
    address = {self.host}
    port = {self.imap_port}
  }}
{imaps}{chroot}}}
service pop3-login {{
  inet_listener pop3 {{
    address = {self.host}
    port = {self.pop3_port}
  }}
{pop3s}{chroot}}}
service lmtp {{
  inet_listener lmtp {{
    address = {self.host}
    port = {self.lmtp_port}
  }}
}}
service auth-worker {{
  user = $default_internal_user
}}
# No growing delays after failed logins: tests of wrong passwords must not slow the others.
auth_failure_delay = 0
service anvil {{
  unix_listener anvil-auth-penalty {{
    mode = 0
  }}
{chroot}}}
{privileges}
"""

    # -- users ---------------------------------------------------------------------------------

    def add_user(self, name: str | None = None, password: str | None = None) -> User:
        """Add a user; without a name, a fresh unique one (``user1``, ``user2``, ...)."""
        with self._lock:
            existing = self._usernames()
            if name is None:
                name = next(f"user{n}" for n in _user_counter if f"user{n}" not in existing)
            elif name in existing:
                raise DovecotError(f"user {name!r} exists already")
            if not _USERNAME.fullmatch(name):
                raise DovecotError(f"user name {name!r}: use letters, digits and ._@-")
            if password is None:
                password = secrets.token_urlsafe(12)
            if any(c in password for c in ":\n\r"):
                raise DovecotError("a test password may not contain ':' or a line break")
            maildir = self.mail_root / name
            line = f"{name}:{{PLAIN}}{password}:{self.mail_uid}:{self.mail_gid}::{maildir}::\n"
            tmp = self.users_dir / f".new-{name}"
            tmp.write_text(line)
            tmp.chmod(0o644)
            tmp.rename(self.users_dir / name)
        return User(name, password, maildir)

    def _usernames(self) -> set[str]:
        return {p.name for p in self.users_dir.iterdir() if not p.name.startswith(".")}

    # -- admin and delivery --------------------------------------------------------------------

    def doveadm(
        self, *args: str, input: bytes | None = None, check: bool = True
    ) -> subprocess.CompletedProcess[str]:
        """Run ``doveadm -c CONF ARGS``; raises DovecotError with its stderr when it fails."""
        argv = [self._doveadm_bin, "-c", str(self.conf_path), *args]
        done = subprocess.run(argv, input=input, capture_output=True, check=False)
        result = subprocess.CompletedProcess(
            argv,
            done.returncode,
            done.stdout.decode("utf-8", "replace"),
            done.stderr.decode("utf-8", "replace"),
        )
        if check and result.returncode != 0:
            raise DovecotError(
                f"doveadm {' '.join(args)} failed with status {result.returncode}: "
                f"{result.stderr.strip() or result.stdout.strip()}"
            )
        return result

    def deliver(
        self,
        user: User,
        raw: bytes,
        folder: str = "INBOX",
        *,
        via: str = "lmtp",
        sender: str = "sender@example.org",
    ) -> bytes:
        """Deliver ``raw`` to ``user``'s ``folder``; returns the message as IMAP now serves it.

        ``via="lmtp"`` (default) is real delivery: LMTP to ``user`` or ``user+folder``, and
        Dovecot prepends ``Return-Path: <sender>``.  Folder names that do not fit an unquoted
        local part, and ``via="save"``, use ``doveadm save`` instead, which stores ``raw``
        unchanged.  Either way the server serves CRLF line ends.  A folder other than INBOX is
        created first (with its parents) if missing.
        """
        if via not in ("lmtp", "save"):
            raise ValueError(f"via must be lmtp or save, not {via!r}")
        if folder != "INBOX":
            self.create_folder(user, folder)
            if not _SIMPLE_DETAIL.fullmatch(folder):
                via = "save"
        if via == "save":
            self.doveadm("save", "-u", user.name, "-m", folder, input=raw)
            return _crlf(raw)
        local, _, domain = user.name.partition("@")
        if folder != "INBOX":
            local = f"{local}+{folder}"
        rcpt = f"{local}@{domain}" if domain else local
        with smtplib.LMTP(self.host, self.lmtp_port, timeout=30) as lmtp:
            refused = lmtp.sendmail(sender, [rcpt], raw)
        if refused:  # pragma: no cover - smtplib raises when the only recipient is refused
            raise DovecotError(f"LMTP refused {rcpt}: {refused}")
        return _crlf(f"Return-Path: <{sender}>\r\n".encode() + raw)

    # -- IMAP helpers --------------------------------------------------------------------------

    def imap(self, user: User, *, tls: str = "none", timeout: float = 30) -> IMAPClient:
        """A logged-in IMAPClient (usable as a context manager: it logs out at the end).

        ``tls``: "none", "starttls" or "implicit" (the latter two need TLS and a CA in CertFiles).
        """
        from imapclient import IMAPClient

        if tls not in ("none", "starttls", "implicit"):
            raise ValueError(f"tls must be none, starttls or implicit, not {tls!r}")
        if tls == "implicit":
            if not self.imaps_port:
                raise DovecotError("this server has no TLS")
            client = IMAPClient(
                self.host,
                port=self.imaps_port,
                ssl=True,
                ssl_context=self._client_context(),
                timeout=timeout,
            )
        else:
            client = IMAPClient(self.host, port=self.imap_port, ssl=False, timeout=timeout)
        try:
            if tls == "starttls":
                client.starttls(self._client_context())
            client.login(user.name, user.password)
        except BaseException:
            with contextlib.suppress(OSError):
                client.shutdown()
            raise
        return client

    def _client_context(self) -> ssl.SSLContext:
        if self.tls is None:
            raise DovecotError("this server has no TLS")
        return self.tls.client_context()  # make_test_certs puts 127.0.0.1 into the certificate

    def create_folder(self, user: User, name: str) -> None:
        """Create ``name`` and any missing parents ("Lists" for "Lists/python")."""
        with self.imap(user) as client:
            _create_with_parents(client, name)

    def append(
        self,
        user: User,
        folder: str,
        raw: bytes,
        flags: Iterable[Flag] = (),
        date: datetime | None = None,
    ) -> int | None:
        """APPEND one message (folder created if missing); returns its UID (APPENDUID)."""
        with self.imap(user) as client:
            if folder != "INBOX":
                _create_with_parents(client, folder)
            resp = client.append(folder, raw, flags=tuple(flags), msg_time=date)
        uids = _appenduids(resp)
        return uids[0] if uids else None

    def messages(self, user: User, folder: str = "INBOX") -> dict[int, tuple[bytes, set[bytes]]]:
        """What the server holds in ``folder``: UID -> (raw message, flags without \\Recent).

        Read-only (EXAMINE and BODY.PEEK): looking does not set \\Seen.
        """
        with self.imap(user) as client:
            client.select_folder(folder, readonly=True)
            uids = client.search()
            data = client.fetch(uids, ["BODY.PEEK[]", "FLAGS"]) if uids else {}
        return {uid: (d[b"BODY[]"], set(d[b"FLAGS"]) - {b"\\Recent"}) for uid, d in data.items()}

    def set_uidvalidity(self, user: User, folder: str, n: int) -> None:
        """Change UIDVALIDITY of ``folder`` in place (``doveadm mailbox update``)."""
        self.doveadm("mailbox", "update", "-u", user.name, "--uid-validity", str(n), folder)

    def fill(
        self,
        user: User,
        folders: Mapping[str, Sequence[tuple[bytes, Sequence[Flag]]]],
        *,
        chunk_bytes: int = 8 << 20,
        chunk_messages: int = 1000,
    ) -> dict[str, list[int]]:
        """Bulk-load messages with MULTIAPPEND; returns the new UIDs per folder, in order.

        Folders (and their parents) are created first.  Messages are sent in chunks of at most
        ``chunk_messages`` messages or ``chunk_bytes`` bytes per command.
        """
        result: dict[str, list[int]] = {}
        with self.imap(user) as client:
            for folder, messages in folders.items():
                if folder != "INBOX":
                    _create_with_parents(client, folder)
                uids: list[int] = []
                for chunk in _chunks(messages, chunk_messages, chunk_bytes):
                    items = [{"msg": raw, "flags": tuple(flags)} for raw, flags in chunk]
                    typ, data = client.multiappend(folder, items)
                    if typ != "OK":
                        raise DovecotError(f"MULTIAPPEND to {folder!r} failed: {typ} {data!r}")
                    uids += _appenduids(b" ".join(data))
                result[folder] = uids
        return result


def _crlf(raw: bytes) -> bytes:
    """``raw`` with CRLF line ends, as Dovecot serves it."""
    return re.sub(rb"\r?\n", b"\r\n", raw)


def _create_with_parents(client: Any, name: str) -> None:
    parts = name.split("/")
    for i in range(1, len(parts) + 1):
        path = "/".join(parts[:i])
        if path.upper() == "INBOX" or client.folder_exists(path):
            continue
        client.create_folder(path)


def _chunks(
    messages: Sequence[tuple[bytes, Sequence[Flag]]], max_count: int, max_bytes: int
) -> Iterator[list[tuple[bytes, Sequence[Flag]]]]:
    chunk: list[tuple[bytes, Sequence[Flag]]] = []
    size = 0
    for item in messages:
        if chunk and (len(chunk) >= max_count or size + len(item[0]) > max_bytes):
            yield chunk
            chunk, size = [], 0
        chunk.append(item)
        size += len(item[0])
    if chunk:
        yield chunk


_APPENDUID = re.compile(rb"\[APPENDUID \d+ ([0-9:,]+)\]")


def _appenduids(resp: bytes | str) -> list[int]:
    """UIDs from an ``[APPENDUID v uid-set]`` response code, in order."""
    if isinstance(resp, str):
        resp = resp.encode()
    m = _APPENDUID.search(resp)
    if m is None:
        return []
    uids: list[int] = []
    for part in m.group(1).split(b","):
        lo, _, hi = part.partition(b":")
        a, b = int(lo), int(hi or lo)
        step = 1 if b >= a else -1
        uids.extend(range(a, b + step, step))
    return uids
