"""syncd against servers whose personal namespace is ``INBOX.`` with separator ".":
Courier-IMAP 5 and Cyrus IMAP 3.6, both real and unpacked from Debian's packages.

The shared tests run on Courier over TCP (a loopback listener that starts one imapd per
connection) and over ``tunnel:`` (imapd on the tunnel's stdin/stdout), both PREAUTH, and
on Cyrus over TCP with a LOGIN.
"""

from __future__ import annotations

import contextlib
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from tests.integration.conftest import REPO, Account, msg
from tests.servers import require_courier, skip_or_fail
from tests.servers.courier import Courier, CourierUser
from tests.servers.cyrus import Cyrus, CyrusUser
from tests.servers.cyrus import missing_packages as cyrus_missing

pytestmark = [pytest.mark.courier]


def lf(raw: bytes) -> bytes:
    return raw.replace(b"\r\n", b"\n")


def wait_for(predicate, timeout: float = 20.0, step: float = 0.05):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = predicate()
        if value:
            return value
        time.sleep(step)
    return predicate()


@pytest.fixture(scope="module")
def courier(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Courier]:
    require_courier()
    with Courier(tmp_path_factory.mktemp("courier")) as server:
        yield server


@pytest.fixture(scope="module")
def cyrus(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Cyrus]:
    reason = cyrus_missing()
    if reason is not None:
        skip_or_fail(reason)
    with Cyrus(tmp_path_factory.mktemp("cyrus")) as server:
        yield server


@dataclass
class CourierAccount(Account):
    """An Account on Courier (over TCP with PREAUTH, or through ``tunnel:``) or on Cyrus
    (``transport="login"``: TCP with LOGIN)."""

    transport: str = "tcp"

    def write_config(self) -> Path:
        user: CourierUser = self.user  # type: ignore[assignment]
        folders = ", ".join(f'"{f}"' for f in self.folders)
        if self.transport == "login":
            cyrus_user: CyrusUser = self.user  # type: ignore[assignment]
            where = (
                f"host: 127.0.0.1\n      port: {cyrus_user.port}\n      tls: none\n"
                f"      username: {cyrus_user.name}\n      password_command: echo any"
            )
        elif self.transport == "tunnel":
            where = f"tunnel: {user.command}"
        else:
            # PREAUTH: syncd never asks for the secret; the config still names one.
            where = (
                f"host: 127.0.0.1\n      port: {user.port}\n      tls: none\n"
                f"      username: {user.name}\n      password_command: echo unused"
            )
        self.config.write_text(
            f"""state_dir: {self.state_dir}
accounts:
  {self.name}:
    maildir: {self.maildir}
    layout: {self.layout}
    imap:
      {where}
      folders: [{folders}]
{self.extra}"""
        )
        return self.config

    def remote_messages(self, folder: str = "INBOX") -> dict[int, tuple[bytes, set[bytes]]]:
        return self.server.messages(self.user, folder)  # type: ignore[attr-defined,no-any-return]


@pytest.fixture(params=["courier-tcp", "courier-tunnel", "cyrus"])
def acct(request, tmp_path: Path) -> CourierAccount:
    """A fresh user on a server with the ``INBOX.`` namespace, and its syncd account."""
    if request.param == "cyrus":
        server = request.getfixturevalue("cyrus")
        return CourierAccount(server, server.add_user(), tmp_path, transport="login")
    server = request.getfixturevalue("courier")
    transport = request.param.removeprefix("courier-")
    return CourierAccount(server, server.add_user(), tmp_path, transport=transport)


def local_folders(acct: Account) -> set[str]:
    root = acct.maildir
    return {
        str(p.parent.relative_to(root)) for p in root.rglob("cur") if (p.parent / "new").is_dir()
    }


def test_layout_leaves_out_the_namespace_and_new_folders_reach_the_server(acct):
    server = acct.server
    user = acct.user
    server.append(user, "INBOX", msg(1))
    server.append(user, "INBOX.Archive", msg(2), flags=[b"\\Seen"])
    server.create_folder(user, "INBOX.Lists")
    server.append(user, "INBOX.Lists.python", msg(3), flags=[b"\\Flagged"])
    r = acct.sync()
    assert "3 downloaded" in r.out or r.out.count("1 downloaded") == 3, r.out
    assert local_folders(acct) >= {"INBOX", "Archive", "Lists/python"}
    assert not (acct.maildir / "INBOX" / "Archive").exists()
    assert acct.local_messages("Archive") == {lf(msg(2)): "S"}
    assert acct.local_messages("Lists/python") == {lf(msg(3)): "F"}

    # A new local top-level folder is INBOX.Projects on the server, not a refused CREATE.
    projects = acct.maildir / "Projects"
    for sub in ("cur", "new", "tmp"):
        (projects / sub).mkdir(parents=True)
    (projects / "cur" / "1.M1.h:2,S").write_bytes(lf(msg(4)))
    r = acct.sync()
    assert "error" not in (r.out + r.err).lower(), r.out + r.err
    assert "INBOX.Projects" in server.folders(user)
    assert [(lf(raw), f) for raw, f in acct.remote_messages("INBOX.Projects").values()] == [
        (lf(msg(4)), {b"\\Seen"})
    ]
    again = acct.sync()
    assert "uploaded" not in again.out and "downloaded" not in again.out, again.out
    check = acct.run("check")
    assert check.code == 0, check.out + check.err
    assert "folders: namespace 'INBOX.' (from NAMESPACE), separator '.'" in check.out, check.out


def test_flags_and_deletions_both_ways(acct):
    server = acct.server
    user = acct.user
    server.append(user, "INBOX.Archive", msg(1))
    server.append(user, "INBOX.Archive", msg(2))
    server.append(user, "INBOX.Archive", msg(3))
    acct.sync()
    assert len(acct.local_messages("Archive")) == 3
    uids = {lf(raw): uid for uid, (raw, _) in acct.remote_messages("INBOX.Archive").items()}

    # Server -> local: \Flagged and the $Forwarded keyword on 1 (Courier keeps keywords in
    # its own courierimapkeywords/ files), and 2 expunged.
    server.set_flags(user, "INBOX.Archive", uids[lf(msg(1))], [b"\\Flagged", b"$Forwarded"])
    server.delete(user, "INBOX.Archive", uids[lf(msg(2))])
    # Local -> server: 3 read and forwarded.
    (f3,) = (p for p in acct.local_files("Archive") if p.read_bytes() == lf(msg(3)))
    f3.rename(f3.parent.parent / "cur" / (f3.name.split(":2,")[0] + ":2,PS"))
    acct.sync()
    assert acct.local_messages("Archive") == {lf(msg(1)): "FP", lf(msg(3)): "PS"}
    remote = {lf(raw): flags for raw, flags in acct.remote_messages("INBOX.Archive").values()}
    assert remote == {
        lf(msg(1)): {b"\\Flagged", b"$Forwarded"},
        lf(msg(3)): {b"\\Seen", b"$Forwarded"},
    }

    # Local deletion reaches the server.
    (f1,) = (p for p in acct.local_files("Archive") if p.read_bytes() == lf(msg(1)))
    f1.unlink()
    acct.sync()
    remote = {lf(raw) for raw, _ in acct.remote_messages("INBOX.Archive").values()}
    assert remote == {lf(msg(3))}


def test_a_server_folder_with_no_local_name_is_skipped_with_the_fix(acct, caplog):
    """INBOX.INBOX would be a second local INBOX: a warning naming the exclusion that
    silences it, and the other folders sync."""
    server, user = acct.server, acct.user
    server.append(user, "INBOX", msg(1))
    server.append(user, "INBOX.INBOX", msg(2))
    server.append(user, "INBOX.Archive", msg(3))
    acct.sync()
    assert acct.local_messages() == {lf(msg(1)): ""}
    assert acct.local_messages("Archive") == {lf(msg(3)): ""}
    said = [r.getMessage() for r in caplog.records if "INBOX.INBOX" in r.getMessage()]
    assert said and '"!INBOX.INBOX"' in said[0], said
    caplog.clear()
    acct.folders = ["*", "!INBOX.INBOX"]
    acct.sync()
    assert not [r for r in caplog.records if "INBOX.INBOX" in r.getMessage()]
    assert acct.local_messages() == {lf(msg(1)): ""}


def test_an_alert_before_preauth_is_not_a_login_prompt(tmp_path_factory, tmp_path, caplog):
    """Without gam_server, Courier greets with ``* OK [ALERT] ...`` and then ``* PREAUTH``."""
    require_courier()
    with Courier(tmp_path_factory.mktemp("courier-nogamin"), gamin=False) as server:
        user = server.add_user()
        greeting = subprocess.run(
            user.command, shell=True, input=b"a LOGOUT\r\n", capture_output=True, timeout=30
        ).stdout
        assert greeting.startswith(b"* OK [ALERT] Filesystem notification"), greeting
        assert b"\r\n* PREAUTH" in greeting
        server.append(user, "INBOX", msg(1))
        for transport in ("tunnel", "tcp"):
            a = CourierAccount(server, user, tmp_path / transport, transport=transport)
            (tmp_path / transport).mkdir()
            r = a.sync()
            assert "1 downloaded" in r.out, r.out + r.err
            assert a.local_messages() == {lf(msg(1)): ""}
    # RFC 3501 asks clients to show an ALERT to the user: a warning (once per process).
    assert "the IMAP server says: [ALERT] Filesystem notification" in caplog.text


@contextlib.contextmanager
def running_daemon(acct: CourierAccount, settings: str) -> Iterator[Path]:
    """``syncd run`` on ``acct`` with extra ``imap:`` settings; yields its log file."""
    acct.write_config()
    text = acct.config.read_text().replace("      folders:", settings + "      folders:")
    acct.config.write_text(text)
    log = acct.root / "daemon.log"
    with log.open("w") as logf:
        proc = subprocess.Popen(
            [sys.executable, "-m", "syncd", "run", "-c", str(acct.config), "-v"],
            stdout=logf,
            stderr=subprocess.STDOUT,
            cwd=REPO,
        )
        try:
            yield log
        finally:
            proc.send_signal(signal.SIGTERM)
            try:
                proc.wait(15)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()
    assert proc.returncode == 0, log.read_text()


def test_daemon_hears_new_mail_through_idle(courier, tmp_path):
    """gam_server runs, so Courier's IDLE reports mail delivered into the Maildir (new/);
    polling is set to an hour."""
    user = courier.add_user()
    acct = CourierAccount(courier, user, tmp_path, transport="tcp")
    with running_daemon(acct, "      poll_interval: 3600\n") as log:
        # After the first sync, with IDLE on INBOX up, only IDLE can bring new mail in
        # time: the next poll is an hour away.
        assert wait_for(lambda: "INBOX: created locally" in log.read_text()), log.read_text()
        assert wait_for(lambda: "IDLE on INBOX" in log.read_text()), log.read_text()
        courier.deliver(user, msg(7))
        assert wait_for(lambda: lf(msg(7)) in acct.local_messages("INBOX")), log.read_text()


def test_daemon_polls_cyrus(cyrus, tmp_path):
    """Without IDLE (idle: []), the daemon finds new mail in INBOX and INBOX.Archive by
    polling, and names the folders as a sync does."""
    user = cyrus.add_user()
    cyrus.append(user, "INBOX.Archive", msg(1))
    acct = CourierAccount(cyrus, user, tmp_path, transport="login")
    with running_daemon(acct, "      idle: []\n      poll_interval: 1\n") as log:
        assert wait_for(lambda: "Archive: created locally" in log.read_text()), log.read_text()
        cyrus.append(user, "INBOX", msg(2))
        cyrus.append(user, "INBOX.Archive", msg(3))
        assert wait_for(lambda: lf(msg(2)) in acct.local_messages("INBOX")), log.read_text()
        assert wait_for(lambda: set(acct.local_messages("Archive")) == {lf(msg(1)), lf(msg(3))}), (
            log.read_text()
        )
    assert not (acct.maildir / "INBOX" / "Archive").exists()


def test_a_local_name_the_server_cannot_take_fails_once_with_the_fix(courier, tmp_path):
    """Local "v1.2" would be two nested folders on Courier: refused, with the exclude to add;
    the next syncs warn and succeed, and the other folders sync throughout."""
    user = courier.add_user()
    acct = CourierAccount(courier, user, tmp_path)
    courier.append(user, "INBOX", msg(1))
    bad = acct.maildir / "v1.2"
    for sub in ("cur", "new", "tmp"):
        (bad / sub).mkdir(parents=True)
    (bad / "cur" / "1.M1.h:2,S").write_bytes(lf(msg(2)))
    first = acct.run("sync")
    assert first.code != 0
    said = first.out + first.err
    assert "v1.2" in said and '"!v1.2"' in said and "separator" in said, said
    assert acct.local_messages() == {lf(msg(1)): ""}
    courier.append(user, "INBOX", msg(3))
    second = acct.sync()
    assert lf(msg(3)) in acct.local_messages()
    assert not any(n.startswith("INBOX.v1") for n in courier.folders(user))
    acct.folders = ["*", "!v1.2"]
    assert acct.sync().code == 0
    assert second.code == 0


def test_an_account_synced_before_namespaces_keeps_its_folder_names(courier, tmp_path):
    """Synced with the prefix in local names (as syncd did before, here by namespace: ""),
    then upgraded: the old names stay, nothing is downloaded again or deleted."""
    user = courier.add_user()
    acct = CourierAccount(courier, user, tmp_path)
    courier.append(user, "INBOX", msg(1))
    courier.append(user, "INBOX.Archive", msg(2))
    acct.extra = ""
    plain = acct.write_config
    old_style = '      namespace: ""\n      folders:'

    def write_old() -> Path:
        path = plain()
        path.write_text(path.read_text().replace("      folders:", old_style))
        return path

    acct.write_config = write_old  # type: ignore[method-assign]
    acct.sync()
    assert acct.local_messages("INBOX/Archive") == {lf(msg(2)): ""}
    acct.write_config = plain  # type: ignore[method-assign]
    r = acct.sync()
    assert "downloaded" not in r.out and "deleted" not in r.out, r.out
    assert acct.local_messages("INBOX/Archive") == {lf(msg(2)): ""}
    assert not (acct.maildir / "Archive").exists()
    courier.append(user, "INBOX.Archive", msg(3))
    acct.sync()
    assert set(acct.local_messages("INBOX/Archive")) == {lf(msg(2)), lf(msg(3))}
    assert courier.folders(user) == {"INBOX", "INBOX.Archive"}

    # Switching to the new names, as the README says: namespace: "INBOX." explicitly.
    def write_new() -> Path:
        path = plain()
        path.write_text(
            path.read_text().replace("      folders:", '      namespace: "INBOX."\n      folders:')
        )
        return path

    acct.write_config = write_new  # type: ignore[method-assign]
    r = acct.sync()
    assert set(acct.local_messages("Archive")) == {lf(msg(2)), lf(msg(3))}, r.out + r.err
    assert not (acct.maildir / "INBOX" / "Archive").exists(), r.out + r.err
    assert courier.folders(user) == {"INBOX", "INBOX.Archive"}
    assert len(acct.remote_messages("INBOX.Archive")) == 2
    assert acct.local_messages() == {lf(msg(1)): ""}
    again = acct.sync()
    assert again.out.strip() == "", again.out
