"""Fixtures for syncd against the real Dovecot: an account config per test and runners."""

from __future__ import annotations

import io
import os
import subprocess
import sys
from collections.abc import Iterator
from contextlib import redirect_stderr, redirect_stdout
from dataclasses import dataclass, field
from pathlib import Path

import pytest

from syncd import cli
from tests.servers import require_dovecot
from tests.servers.authserver import AuthServer, oauth_dovecot
from tests.servers.dovecot import Dovecot
from tests.servers.profiles import PROFILES, ProfileServer

REPO = Path(__file__).resolve().parents[2]


@dataclass
class Result:
    code: int
    out: str
    err: str


def _replace(path: Path, text: str) -> None:
    """Write ``path`` whole in one rename: a running daemon reading it (its password
    command, a config reload) never sees it empty or half written."""
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(text)
    os.replace(tmp, path)


@dataclass
class Account:
    """A syncd config for one fresh Dovecot user, and ways to run syncd on it."""

    server: object
    user: object
    root: Path
    name: str = "acct"
    layout: str = "verbatim"
    folders: list[str] = field(default_factory=lambda: ["*"])
    extra: str = ""
    secret: str = "command"  # or "keyring": no secret in the config at all

    @property
    def maildir(self) -> Path:
        return self.root / "Mail"

    @property
    def state_dir(self) -> Path:
        return self.root / "state"

    @property
    def config(self) -> Path:
        return self.root / "config.yaml"

    def write_config(self) -> Path:
        pw = self.root / "pw"
        _replace(pw, self.user.password + "\n")  # type: ignore[attr-defined]
        folders = ", ".join(f'"{f}"' for f in self.folders)
        secret = f"password_command: cat {pw}" if self.secret == "command" else "auth: password"
        _replace(
            self.config,
            f"""state_dir: {self.state_dir}
accounts:
  {self.name}:
    maildir: {self.maildir}
    layout: {self.layout}
    imap:
      host: 127.0.0.1
      port: {self.server.imap_port}
      tls: none
      username: {self.user.name}
      {secret}
      folders: [{folders}]
{self.extra}""",
        )
        return self.config

    def run(self, *args: str) -> Result:
        """Run the CLI in this process (fast); returns exit code and output."""
        self.write_config()
        out, err = io.StringIO(), io.StringIO()
        argv = [args[0], "-c", str(self.config), *args[1:]]
        with redirect_stdout(out), redirect_stderr(err):
            try:
                code = cli.main(argv)
            except SystemExit as exc:
                code = int(exc.code or 0)
        return Result(code, out.getvalue(), err.getvalue())

    def sync(self, *args: str, expect: int = 0) -> Result:
        r = self.run("sync", *args)
        assert r.code == expect, f"syncd sync exited {r.code}\nstdout:\n{r.out}\nstderr:\n{r.err}"
        return r

    def spawn(
        self, *args: str, env: dict[str, str] | None = None
    ) -> subprocess.CompletedProcess[str]:
        """Run syncd as a real process (for crash tests)."""
        self.write_config()
        return subprocess.run(
            [sys.executable, "-m", "syncd", args[0], "-c", str(self.config), *args[1:]],
            capture_output=True,
            text=True,
            env={**os.environ, **(env or {})},
            cwd=REPO,
            timeout=300,
        )

    # -- looking at the local side ------------------------------------------------------

    def local_files(self, folder: str = "INBOX") -> list[Path]:
        base = self.maildir / folder if self.layout == "verbatim" else self.maildir
        if self.layout != "verbatim" and folder != "INBOX":
            base = self.maildir / ("." + folder.replace("/", "."))
        out: list[Path] = []
        for sub in ("new", "cur"):
            d = base / sub
            if d.is_dir():
                out.extend(sorted(p for p in d.iterdir() if not p.name.startswith(".")))
        return out

    def local_messages(self, folder: str = "INBOX") -> dict[bytes, str]:
        """Message bytes -> Maildir flag letters, for every local message in ``folder``."""
        out: dict[bytes, str] = {}
        for p in self.local_files(folder):
            letters = p.name.split(":2,", 1)[1] if ":2," in p.name else ""
            out[p.read_bytes()] = letters
        return out

    # -- looking at the remote side -----------------------------------------------------

    def remote_messages(self, folder: str = "INBOX") -> dict[int, tuple[bytes, set[bytes]]]:
        """UID -> (bytes as LF, flags) on the server."""
        with self.server.imap(self.user) as c:  # type: ignore[attr-defined]
            c.select_folder(folder, readonly=True)
            uids = c.search("ALL")
            rows = c.fetch(uids, ["BODY.PEEK[]", "FLAGS"]) if uids else {}
            return {
                uid: (d[b"BODY[]"].replace(b"\r\n", b"\n"), set(d[b"FLAGS"]) - {b"\\Recent"})
                for uid, d in rows.items()
            }


def msg(i: int, subject: str = "hello", body: str = "body", extra: str = "") -> bytes:
    """A small RFC 5322 message in CRLF form, unique by ``i``."""
    return (
        f"From: Alice <alice@example.org>\r\nTo: bob@example.org\r\n"
        f"Subject: {subject} {i}\r\nDate: Mon, 02 Mar 2026 10:00:{i % 60:02d} +0000\r\n"
        f"Message-ID: <m{i}.{os.getpid()}@example.org>\r\n{extra}\r\n{body} {i}\r\n"
    ).encode()


@pytest.fixture
def account(dovecot, mail_user, tmp_path) -> Account:
    return Account(dovecot, mail_user, tmp_path)


# -- server profiles (issue 12) -----------------------------------------------------------------


@pytest.fixture(scope="session", params=list(PROFILES))
def server_profile(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[ProfileServer]:
    """One Dovecot per profile for the session, behind a guard that holds syncd to the
    profile's extensions (see tests/servers/profiles.py)."""
    require_dovecot()  # fails instead of skipping under SYNCD_REQUIRE_SERVERS=1
    profile = PROFILES[request.param]
    base = tmp_path_factory.mktemp(f"dovecot-{profile.name}")
    with Dovecot(base, imap_capability=profile.capability) as server:
        front = ProfileServer(server, profile)
        try:
            yield front
        finally:
            front.close()


@pytest.fixture
def profile_account(server_profile: ProfileServer, tmp_path: Path) -> Iterator[Account]:
    """A fresh user on the profile's server; the test fails if syncd used an extension the
    profile does not advertise."""
    guard = server_profile.guard
    guard.violations.clear()
    yield Account(server_profile, server_profile.add_user(), tmp_path)
    assert not guard.violations, (
        f"syncd used what {server_profile.profile.name} does not advertise: {guard.violations}"
    )


# -- OAuth2 (issue 15) ----------------------------------------------------------------------------


@pytest.fixture
def oauth_env(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[tuple[AuthServer, Dovecot]]:
    """A loopback OAuth2 authorization server (tests/servers/authserver.py) and a Dovecot whose
    oauth2 passdb asks it about every XOAUTH2/OAUTHBEARER token; both fresh for each test.

    The Dovecot user ``authserver.user`` exists (its ``User`` is ``authserver.mail_user``, for
    ``Account``).  AuthServer keywords come from indirect parametrization, e.g. short tokens:
    ``@pytest.mark.parametrize("oauth_env", [{"access_lifetime": 3}], indirect=True)``.
    """
    require_dovecot()
    kwargs = getattr(request, "param", {})
    with oauth_dovecot(tmp_path_factory.mktemp("oauth") / "dovecot", **kwargs) as pair:
        yield pair
