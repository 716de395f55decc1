"""The switch from mbsync or OfflineIMAP: the real tool fills a Maildir from the real Dovecot,
`syncd import` translates its config, and the first `syncd sync` only matches messages."""

from __future__ import annotations

import io
import os
import re
import shutil
import subprocess
from contextlib import redirect_stderr, redirect_stdout
from pathlib import Path

import pytest

from syncd import cli
from tests.integration.conftest import Result, msg
from tests.servers import skip_or_fail

pytestmark = pytest.mark.dovecot

# 50 messages in three folders (and the parent "Lists", which Dovecot creates as a folder).
FOLDERS = {"INBOX": 20, "Archive": 15, "Lists/python": 15}


def _flags(i: int) -> list[bytes]:
    return [f for f, on in ((b"\\Seen", i % 2), (b"\\Flagged", i % 7 == 0)) if on]


def fill(dovecot, user) -> dict[str, dict[int, tuple[bytes, set[bytes]]]]:
    n = 0
    content = {}
    for folder, count in FOLDERS.items():
        content[folder] = [(msg(n + i, subject=folder), _flags(n + i)) for i in range(count)]
        n += count
    dovecot.fill(user, content)
    return server_state(dovecot, user)


def server_state(dovecot, user) -> dict[str, dict[int, tuple[bytes, set[bytes]]]]:
    return {folder: dovecot.messages(user, folder) for folder in (*FOLDERS, "Lists")}


def local_files(root: Path) -> set[str]:
    return {
        str(p.relative_to(root))
        for p in root.rglob("*")
        if p.is_file() and p.parent.name in ("cur", "new")
    }


def run(*argv: str) -> Result:
    out, err = io.StringIO(), io.StringIO()
    with redirect_stdout(out), redirect_stderr(err):
        try:
            code = cli.main(list(argv))
        except SystemExit as exc:
            code = int(exc.code or 0)
    return Result(code, out.getvalue(), err.getvalue())


def need(binary: str, package: str) -> str:
    found = shutil.which(binary)
    if found is None:
        skip_or_fail(f"{binary} is not installed (apt-get install {package})")
    assert found is not None
    return found


def tool(argv: list[str], home: Path) -> None:
    done = subprocess.run(
        argv,
        capture_output=True,
        text=True,
        env={**os.environ, "HOME": str(home)},
        timeout=300,
        check=False,
    )
    assert done.returncode == 0, f"{argv[0]} failed:\n{done.stdout}\n{done.stderr}"


def first_sync(config: Path, before, dovecot, user, maildir: Path) -> Result:
    """Run syncd on the imported config and check that it only matched."""
    files = local_files(maildir)
    assert len(files) == sum(FOLDERS.values())
    r = run("sync", "-c", str(config))
    assert r.code == 0, f"syncd sync exited {r.code}\n{r.out}\n{r.err}"
    for folder, count in FOLDERS.items():
        assert re.search(rf"/{re.escape(folder)}: {count} matched$", r.out, re.M), r.out
    assert "downloaded" not in r.out, r.out
    assert "uploaded" not in r.out, r.out
    assert server_state(dovecot, user) == before
    assert local_files(maildir) == files
    again = run("sync", "-c", str(config))
    assert again.code == 0 and again.out == "", again.out + again.err
    return r


@pytest.fixture
def home(tmp_path, monkeypatch) -> Path:
    """A private state dir for syncd (the imported config has no state_dir)."""
    monkeypatch.setenv("XDG_STATE_HOME", str(tmp_path / "state"))
    return tmp_path


def test_mbsync_to_syncd_downloads_nothing_twice(dovecot, mail_user, home):
    mbsync = need("mbsync", "isync")
    before = fill(dovecot, mail_user)
    secret = home / "password"
    secret.write_text(mail_user.password + "\n")
    maildir = home / "Mail"
    maildir.mkdir()
    rc = home / "mbsyncrc"
    rc.write_text(
        f"""# written by test_migrate
IMAPAccount test
Host 127.0.0.1
Port {dovecot.imap_port}
User {mail_user.name}
PassCmd "cat {secret}"
SSLType None
AuthMechs LOGIN

IMAPStore test-remote
Account test

MaildirStore test-local
Path {maildir}/
Inbox {maildir}/INBOX
SubFolders Verbatim

Channel test
Far :test-remote:
Near :test-local:
Patterns *
Create Near
Sync Pull
SyncState *
"""
    )
    original = rc.read_bytes()
    tool([mbsync, "-c", str(rc), "-a"], home)

    config = home / "syncd.yaml"
    r = run("import", "mbsync", str(rc), "-o", str(config))
    assert r.code == 0, r.err
    assert rc.read_bytes() == original
    sync_line = rc.read_text().splitlines().index("Sync Pull") + 1
    assert f"not translated: line {sync_line}: `Sync Pull` — syncd always syncs both ways" in r.err
    text = config.read_text()
    assert f"password_command: cat {secret}" in text
    assert "tls: none" in text and f"maildir: {maildir}" in text
    assert (config.stat().st_mode & 0o777) == 0o600

    first_sync(config, before, dovecot, mail_user, maildir)


@pytest.mark.parametrize("sep", ["/", "."])
def test_offlineimap_to_syncd_downloads_nothing_twice(dovecot, mail_user, home, sep):
    offlineimap = need("offlineimap", "offlineimap3")
    before = fill(dovecot, mail_user)
    secret = home / "password"
    secret.write_text(mail_user.password + "\n")
    maildir = home / "Mail"
    maildir.mkdir()
    rc = home / "offlineimaprc"
    rc.write_text(
        f"""[general]
accounts = test
metadata = {home}/offlineimap-metadata

[Account test]
localrepository = local
remoterepository = remote

[Repository local]
type = Maildir
localfolders = {maildir}
sep = {sep}

[Repository remote]
type = IMAP
remotehost = 127.0.0.1
remoteport = {dovecot.imap_port}
remoteuser = {mail_user.name}
remotepassfile = {secret}
ssl = no
starttls = no
"""
    )
    tool([offlineimap, "-c", str(rc), "-o", "-u", "quiet"], home)

    config = home / "syncd.yaml"
    r = run("import", "offlineimap", str(rc), "-o", str(config))
    assert r.code == 0, r.err
    assert f"password_command: cat {secret}" in config.read_text()
    if sep == ".":
        # OfflineIMAP's Lists.python is not what layout verbatim reads; the import says
        # so and prints the renames that make it so. Doing them makes the switch clean.
        assert (maildir / "Lists.python").is_dir()
        renames = re.findall(r"`(mkdir -p [^`]+)`", r.err)
        assert renames == [
            f"mkdir -p {maildir}/Lists && mv {maildir}/Lists.python {maildir}/Lists/python"
        ], r.err
        for command in renames:
            subprocess.run(command, shell=True, check=True)
    else:
        assert "sep" not in r.err
    first_sync(config, before, dovecot, mail_user, maildir)
