"""Hardening tests: faults on the wire, hostile input on both sides, locks, secrets, modes.

The helpers below are shared by the test modules of this package: :class:`Rig` writes a
config for one account of the test Dovecot (IMAP or POP3, optionally with an SMTP section),
with every port overridable (to put :class:`~tests.hardening.faultproxy.FaultProxy` in
between) and a short ``timeout:``, and runs syncd in this process or as a real process.
The views (:func:`remote_bag`, :func:`local_bag`) are multisets of message bytes in LF form,
so "nothing lost, nothing duplicated" is one comparison.
"""

from __future__ import annotations

import io
import os
import subprocess
import sys
import time
from collections import Counter
from collections.abc import Callable
from contextlib import redirect_stderr, redirect_stdout
from dataclasses import dataclass
from pathlib import Path
from unittest import mock

from syncd import cli
from tests.servers.dovecot import Dovecot, User

REPO = Path(__file__).resolve().parents[2]
TIMEOUT = 1.0
"""The ``timeout:`` of every server section: a stalled server costs about this long."""


def lf(raw: bytes) -> bytes:
    return raw.replace(b"\r\n", b"\n")


def message(i: int, *, body: str = "", subject: str = "hello", size: int = 0) -> bytes:
    """A small RFC 5322 message in CRLF form, unique by ``i``; ``size`` pads the body."""
    pad = ""
    if size:
        line = "x" * 70 + "\r\n"
        pad = line * (size // len(line) + 1)
    return (
        f"From: Alice <alice@example.org>\r\nTo: bob@example.org\r\n"
        f"Subject: {subject} {i}\r\nDate: Mon, 02 Mar 2026 10:00:{i % 60:02d} +0000\r\n"
        f"Message-ID: <h{i}.{os.getpid()}@example.org>\r\n\r\n"
        f"{pad}{body} {i}\r\n{pad}end {i}\r\n"
    ).encode()


@dataclass
class Result:
    code: int
    out: str
    err: str
    seconds: float = 0.0

    @property
    def text(self) -> str:
        return self.out + self.err


@dataclass
class Rig:
    """A syncd config with one account ``acct`` for ``user`` of ``server``."""

    server: Dovecot
    user: User
    root: Path
    kind: str = "imap"  # or "pop3"
    port: int | None = None
    """The IMAP or POP3 port syncd connects to (default: the server's own)."""
    timeout: float = TIMEOUT
    leave_on_server: str = "false"
    smtp_port: int | None = None
    smtp_user: str = ""
    smtp_password: str = ""
    extra: str = ""
    imap_extra: str = ""
    password: str | None = None
    """A literal ``password:`` instead of ``password_command`` (for the permission warning)."""

    def __post_init__(self) -> None:
        self.root.mkdir(parents=True, exist_ok=True)

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
    def outbox(self) -> Path:
        return self.maildir / ".outbox"

    def write_config(self) -> Path:
        pw = self.root / "pw"
        pw.write_text(self.user.password + "\n")
        if self.password is not None:
            secret = f'password: "{self.password}"'
        else:
            secret = f"password_command: cat {pw}"
        if self.kind == "imap":
            port = self.port or self.server.imap_port
            section = f"""    imap:
      host: 127.0.0.1
      port: {port}
      tls: none
      username: {self.user.name}
      {secret}
      timeout: {self.timeout}
{self.imap_extra}"""
        else:
            port = self.port or self.server.pop3_port
            section = f"""    pop3:
      host: 127.0.0.1
      port: {port}
      tls: none
      username: {self.user.name}
      {secret}
      leave_on_server: {self.leave_on_server}
      timeout: {self.timeout}
"""
        smtp = ""
        if self.smtp_port is not None:
            (self.root / "smtp-pw").write_text(self.smtp_password + "\n")
            smtp = f"""    smtp:
      host: 127.0.0.1
      port: {self.smtp_port}
      tls: none
      username: {self.smtp_user}
      password_command: cat {self.root / "smtp-pw"}
      timeout: {self.timeout}
"""
        self.config.write_text(
            f"""state_dir: {self.state_dir}
accounts:
  acct:
    maildir: {self.maildir}
{section}{smtp}{self.extra}"""
        )
        return self.config

    # -- running syncd -----------------------------------------------------------------

    def run(self, *args: str, stdin: bytes = b"", write: bool = True) -> Result:
        """The CLI in this process: fast, and a traceback fails the test loudly."""
        if write:
            self.write_config()
        argv = [args[0], "-c", str(self.config), *args[1:]]
        out, err = io.StringIO(), io.StringIO()
        fake_stdin = io.TextIOWrapper(io.BytesIO(stdin))
        start = time.monotonic()
        with (
            redirect_stdout(out),
            redirect_stderr(err),
            mock.patch.object(sys, "stdin", fake_stdin),
        ):
            try:
                code = cli.main(argv)
            except SystemExit as exc:
                code = int(exc.code or 0)
        return Result(code, out.getvalue(), err.getvalue(), time.monotonic() - start)

    def ok(self, *args: str, stdin: bytes = b"") -> Result:
        r = self.run(*args, stdin=stdin)
        assert r.code == 0, f"syncd {args[0]} exited {r.code}\n{r.text}"
        assert "Traceback" not in r.text, r.text
        return r

    def spawn(
        self,
        *args: str,
        env: dict[str, str] | None = None,
        preexec: Callable[[], None] | None = None,
        stdin: bytes = b"",
        timeout: float = 120,
        write: bool = True,
    ) -> Result:
        """syncd as a real process (resource limits, other users, kill -9)."""
        if write:
            self.write_config()
        start = time.monotonic()
        done = subprocess.run(
            [sys.executable, "-m", "syncd", args[0], "-c", str(self.config), *args[1:]],
            input=stdin,
            capture_output=True,
            env={**os.environ, **(env or {})},
            cwd=REPO,
            timeout=timeout,
            preexec_fn=preexec,
            check=False,
        )
        return Result(
            done.returncode,
            done.stdout.decode("utf-8", "replace"),
            done.stderr.decode("utf-8", "replace"),
            time.monotonic() - start,
        )

    # -- looking at both sides ---------------------------------------------------------

    def remote_bag(self, folder: str = "INBOX") -> Counter[bytes]:
        return remote_bag(self.server, self.user, folder)

    def local_bag(self, folder: str = "INBOX") -> Counter[bytes]:
        return local_bag(self.folder_path(folder))

    def folder_path(self, folder: str = "INBOX") -> Path:
        return self.maildir.joinpath(*folder.split("/"))

    def stray_tmp(self) -> list[Path]:
        """Files left in any tmp/ of the Maildir (the outbox's own tmp/ included)."""
        if not self.maildir.exists():
            return []
        return [p for tmp in self.maildir.rglob("tmp") if tmp.is_dir() for p in tmp.iterdir()]


def remote_bag(server: Dovecot, user: User, folder: str = "INBOX") -> Counter[bytes]:
    return Counter(lf(body) for body, _flags in server.messages(user, folder).values())


def local_bag(path: Path) -> Counter[bytes]:
    out: Counter[bytes] = Counter()
    for sub in ("new", "cur"):
        d = path / sub
        if d.is_dir():
            out.update(p.read_bytes() for p in d.iterdir() if p.is_file())
    return out


def wait_for(predicate: Callable[[], object], timeout: float = 10.0, step: float = 0.05) -> object:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = predicate()
        if value:
            return value
        time.sleep(step)
    return predicate()
