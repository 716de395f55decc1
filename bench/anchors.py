"""The tools under test: syncd and the anchors, each configured for one server user.

Every tool writes into ``<work>/Mail`` with the same layout (``INBOX`` and ``Lists/python`` as
nested Maildir directories), so one verifier reads them all.  Each is configured the way its
documentation suggests for a plain two-way (or download) setup; durability settings are left at
their defaults (mbsync ``FSync yes``, OfflineIMAP ``fsync = true``), because that is what users
run.  syncd runs from a snapshot install (``prepare_syncd``).
"""

from __future__ import annotations

import os
import pwd
import re
import shutil
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

from bench import measure

REPO = Path(__file__).resolve().parents[1]
# The syncd that is measured; prepare_syncd() replaces the development install by a snapshot.
SYNCD = Path(sys.executable).with_name("syncd")
if not SYNCD.exists():  # pragma: no cover - a venv always has it after pip install -e
    SYNCD = REPO / ".venv" / "bin" / "syncd"


def prepare_syncd(scratch: Path) -> str:
    """Install a snapshot of ``syncd/`` into a venv of its own, as ``pip install .`` would.

    The repository's .venv has syncd as an *editable* install, whose import hook alone costs
    every start 10-15 ms that a user's regular install does not pay; and the tree may be edited
    while the benchmark runs.  So: a fresh venv (no pip) on the same base interpreter, a copy of
    the package compiled to .pyc, the dependencies taken from .venv through a .pth file, and the
    same console script pip writes.  Returns a description for the report.
    """
    global SYNCD
    import compileall
    import sysconfig

    venv = scratch / "syncd-venv"
    base = getattr(sys, "_base_executable", sys.executable)
    subprocess.run([base, "-m", "venv", "--without-pip", str(venv)], check=True)
    py = venv / "bin" / "python"
    site = Path(
        subprocess.run(
            [str(py), "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])"],
            capture_output=True,
            text=True,
            check=True,
        ).stdout.strip()
    )
    shutil.copytree(
        REPO / "syncd", site / "syncd", ignore=shutil.ignore_patterns("__pycache__", "*.pyc")
    )
    compileall.compile_dir(str(site / "syncd"), quiet=1)
    deps = sysconfig.get_paths()["purelib"]  # .venv's site-packages: imapclient, yaml, ...
    (site / "syncd-bench-deps.pth").write_text(deps + "\n")
    script = venv / "bin" / "syncd"
    script.write_text(
        f"#!{py}\nimport re\nimport sys\nfrom syncd.cli import main\n"
        "if __name__ == '__main__':\n"
        "    sys.argv[0] = re.sub(r'(-script\\.pyw|\\.exe)?$', '', sys.argv[0])\n"
        "    sys.exit(main())\n"
    )
    script.chmod(0o755)
    check = subprocess.run([str(script), "--version"], capture_output=True, text=True)
    if check.returncode != 0:
        return f"development install ({SYNCD}); the snapshot failed: {check.stderr.strip()}"
    SYNCD = script
    return "a snapshot of the working tree, installed non-editable in a venv of its own"


@dataclass(frozen=True)
class Login:
    host: str
    port: int
    user: str
    password: str


class Tool:
    """A configured tool in its own work directory; ``run()`` measures one invocation."""

    name = "tool"
    label = "tool"

    def __init__(self, work: Path, login: Login) -> None:
        self.work = work
        self.login = login
        self.maildir = work / "Mail"
        self.log = work / "log"
        self.runs = 0
        work.mkdir(parents=True, exist_ok=True)
        self.pwfile = work / "pw"
        self.pwfile.write_text(login.password + "\n")
        self.pwfile.chmod(0o600)

    def folder_dir(self, folder: str) -> Path:
        return self.maildir / folder

    def argv(self, port: int | None = None) -> list[str]:
        raise NotImplementedError

    def env(self) -> dict[str, str]:
        return {**os.environ, "HOME": str(self.work)}

    def run(self, port: int | None = None, timeout: float = 3600) -> measure.Run:
        self.runs += 1
        with self.log.open("ab") as f:
            f.write(f"\n=== run {self.runs} ===\n".encode())
        return measure.run(
            self.argv(port), cwd=self.work, env=self.env(), log=self.log, timeout=timeout
        )


# -- IMAP --------------------------------------------------------------------------------------


class SyncdImap(Tool):
    name = label = "syncd"

    def argv(self, port: int | None = None) -> list[str]:
        cfg = self.work / f"config-{port or self.login.port}.yaml"
        if not cfg.exists():
            cfg.write_text(
                f"""state_dir: {self.work / "state"}
accounts:
  bench:
    maildir: {self.maildir}
    layout: verbatim
    imap:
      host: {self.login.host}
      port: {port or self.login.port}
      tls: none
      username: {self.login.user}
      password_command: cat {self.pwfile}
      folders: ["*"]
"""
            )
        return [str(SYNCD), "sync", "-q", "-c", str(cfg)]


class Mbsync(Tool):
    name = label = "mbsync"

    def argv(self, port: int | None = None) -> list[str]:
        rc = self.work / f"mbsyncrc-{port or self.login.port}"
        if not rc.exists():
            self.maildir.mkdir(parents=True, exist_ok=True)
            # isync 1.4 spells it SSLType (TLSType came with 1.5); Path ends with "/".
            rc.write_text(
                f"""IMAPAccount bench
Host {self.login.host}
Port {port or self.login.port}
User {self.login.user}
PassCmd "cat {self.pwfile}"
SSLType None

IMAPStore bench-remote
Account bench

MaildirStore bench-local
Path {self.maildir}/
Inbox {self.maildir}/INBOX
SubFolders Verbatim

Channel bench
Far :bench-remote:
Near :bench-local:
Patterns *
Create Both
Expunge Both
SyncState *
Sync All
"""
            )
        return ["mbsync", "-c", str(rc), "-a", "-q"]


class OfflineImap(Tool):
    name = label = "offlineimap"

    def argv(self, port: int | None = None) -> list[str]:
        rc = self.work / f"offlineimaprc-{port or self.login.port}"
        if not rc.exists():
            self.maildir.mkdir(parents=True, exist_ok=True)
            rc.write_text(
                f"""[general]
accounts = bench
metadata = {self.work / "offlineimap-meta"}

[Account bench]
localrepository = bench-local
remoterepository = bench-remote

[Repository bench-local]
type = Maildir
localfolders = {self.maildir}
sep = /

[Repository bench-remote]
type = IMAP
remotehost = {self.login.host}
remoteport = {port or self.login.port}
remoteuser = {self.login.user}
remotepass = {self.login.password}
ssl = no
starttls = no
"""
            )
        return ["offlineimap", "-c", str(rc), "-o", "-u", "quiet"]


IMAP_TOOLS: dict[str, type[Tool]] = {
    "syncd": SyncdImap,
    "mbsync": Mbsync,
    "offlineimap": OfflineImap,
}


# -- POP3 --------------------------------------------------------------------------------------


class SyncdPop3(Tool):
    name = label = "syncd"

    def argv(self, port: int | None = None) -> list[str]:
        cfg = self.work / "config.yaml"
        if not cfg.exists():
            cfg.write_text(
                f"""state_dir: {self.work / "state"}
accounts:
  bench:
    maildir: {self.maildir}
    layout: verbatim
    pop3:
      host: {self.login.host}
      port: {port or self.login.port}
      tls: none
      username: {self.login.user}
      password_command: cat {self.pwfile}
      leave_on_server: true
      folder: INBOX
"""
            )
        return [str(SYNCD), "sync", "-q", "-c", str(cfg)]


class Getmail(Tool):
    name = label = "getmail"

    def argv(self, port: int | None = None) -> list[str]:
        rc = self.work / "getmailrc"
        gdir = self.work / "getmail"
        if not rc.exists():
            inbox = self.maildir / "INBOX"
            for sub in ("tmp", "new", "cur"):
                (inbox / sub).mkdir(parents=True, exist_ok=True)
            gdir.mkdir(exist_ok=True)
            # getmail refuses to deliver as root; its documented way out is a delivery user.
            as_user = ""
            if os.geteuid() == 0:
                nobody = pwd.getpwnam("nobody")
                as_user = "user = nobody\n"
                for d in (inbox, *(inbox / sub for sub in ("tmp", "new", "cur"))):
                    os.chown(d, nobody.pw_uid, nobody.pw_gid)
            # No Delivered-To:/Received: of its own, so the bytes can be compared.
            rc.write_text(
                f"""[retriever]
type = SimplePOP3Retriever
server = {self.login.host}
port = {port or self.login.port}
username = {self.login.user}
password = {self.login.password}

[destination]
type = Maildir
path = {inbox}/
{as_user}
[options]
verbose = 0
read_all = false
delete = false
delivered_to = false
received = false
"""
            )
        return ["getmail", "--rcfile", str(rc), "--getmaildir", str(gdir), "--quiet"]


# fetchmail hands each message to an MDA process: this one writes it into the Maildir the way
# maildrop or procmail would (tmp/, then a rename into new/), with two execs (cat, mv).
_MDA = """#!/bin/sh
set -e
d="$1"
n="$$.fetchmail"
cat > "$d/tmp/$n"
mv "$d/tmp/$n" "$d/new/$n"
"""


class Fetchmail(Tool):
    name = label = "fetchmail"

    def argv(self, port: int | None = None) -> list[str]:
        rc = self.work / "fetchmailrc"
        if not rc.exists():
            inbox = self.maildir / "INBOX"
            for sub in ("tmp", "new", "cur"):
                (inbox / sub).mkdir(parents=True, exist_ok=True)
            mda = self.work / "mda.sh"
            mda.write_text(_MDA)
            mda.chmod(0o755)
            rc.write_text(
                f"""set no bouncemail
set no syslog
poll {self.login.host} service {port or self.login.port} protocol pop3 uidl
  auth password
  user "{self.login.user}" there with password "{self.login.password}" is "root" here
  options keep fetchall no rewrite sslproto ''
  mda "{mda} {inbox}"
"""
            )
            rc.chmod(0o600)
        return [
            "fetchmail",
            "-f",
            str(rc),
            "--idfile",
            str(self.work / "fetchids"),
            "--pidfile",
            str(self.work / "fetchmail.pid"),
            "--nodetach",
            "--silent",
        ]

    def env(self) -> dict[str, str]:
        return {**super().env(), "FETCHMAILHOME": str(self.work)}


POP3_TOOLS: dict[str, type[Tool]] = {
    "syncd": SyncdPop3,
    "getmail": Getmail,
    "fetchmail": Fetchmail,
}


# -- SMTP --------------------------------------------------------------------------------------


class SyncdOutbox(Tool):
    """``syncd sendmail`` per message to queue (timed apart), ``syncd send`` to drain."""

    name = label = "syncd"

    def __init__(self, work: Path, login: Login, imap: Login) -> None:
        super().__init__(work, login)
        self.imap = imap
        self.config = work / "config.yaml"
        self.config.write_text(
            f"""state_dir: {self.work / "state"}
accounts:
  bench:
    maildir: {self.maildir}
    from: [bench@example.org]
    imap:
      host: {imap.host}
      port: {imap.port}
      tls: none
      username: {imap.user}
      password_command: cat {self.pwfile}
    smtp:
      host: {login.host}
      port: {login.port}
      tls: none
      username: {login.user}
      password_command: cat {self.pwfile}
      sent_folder: null
"""
        )
        self.pwfile.write_text(imap.password + "\n")

    def queue_argv(self, rcpt: str) -> list[str]:
        return [str(SYNCD), "sendmail", "-c", str(self.config), "-i", "--", rcpt]

    def argv(self, port: int | None = None) -> list[str]:
        return [str(SYNCD), "send", "-q", "-c", str(self.config)]


class Msmtp(Tool):
    name = label = "msmtp"

    def __init__(self, work: Path, login: Login) -> None:
        super().__init__(work, login)
        self.rc = work / "msmtprc"
        self.rc.write_text(
            f"""defaults
tls off
logfile

account bench
host {login.host}
port {login.port}
from bench@example.org
auth plain
user {login.user}
passwordeval "cat {self.pwfile}"

account default : bench
"""
        )
        self.rc.chmod(0o600)

    def send_argv(self, rcpt: str) -> list[str]:
        # What mutt runs (and msmtpq in the end): one process per message, -oi, explicit rcpt.
        return ["msmtp", "-C", str(self.rc), "-a", "bench", "-oi", "--", rcpt]


# -- versions ----------------------------------------------------------------------------------


def _first(argv: list[str], pattern: str) -> str | None:
    if shutil.which(argv[0]) is None:
        return None
    try:
        done = subprocess.run(argv, capture_output=True, text=True, timeout=20, check=False)
    except (OSError, subprocess.TimeoutExpired):
        return None
    m = re.search(pattern, done.stdout + done.stderr)
    return m.group(1) if m else (done.stdout + done.stderr).strip().splitlines()[0]


def versions() -> dict[str, str | None]:
    from tests.servers.dovecot import find_binaries

    try:
        dovecot = find_binaries()[0]
    except Exception:
        dovecot = "dovecot"
    syncd = _first([str(SYNCD), "--version"], r"syncd (\S+)")
    return {
        "syncd": syncd,
        "dovecot": _first([dovecot, "--version"], r"^(\S+)"),
        "mbsync": _first(["mbsync", "--version"], r"isync (\S+)"),
        "offlineimap": _first(["offlineimap", "--version"], r"^(\S+)"),
        "getmail": _first(["getmail", "--version"], r"getmail (\S+)"),
        "fetchmail": _first(["fetchmail", "-V"], r"fetchmail release (\S+?)\+"),
        "msmtp": _first(["msmtp", "--version"], r"msmtp version (\S+)"),
    }


def installed(tool: str) -> bool:
    return tool == "syncd" or shutil.which(tool) is not None
