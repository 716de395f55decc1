"""SPECIAL-USE folders (RFC 6154) get stable local names; \\All is not synced; keywords survive."""

from __future__ import annotations

import pytest

from tests.integration.conftest import Account, msg
from tests.servers import require_dovecot
from tests.servers.dovecot import Dovecot

pytestmark = pytest.mark.dovecot

GMAIL = {
    "[Gmail]/Sent Mail": "\\Sent",
    "[Gmail]/Drafts": "\\Drafts",
    "[Gmail]/Trash": "\\Trash",
    "[Gmail]/Spam": "\\Junk",
    "[Gmail]/All Mail": "\\All",
}


@pytest.fixture(scope="module")
def gmail_like(tmp_path_factory):
    require_dovecot()
    with Dovecot(tmp_path_factory.mktemp("gmail") / "server", special_use=GMAIL) as server:
        yield server


def lf(raw: bytes) -> bytes:
    return raw.replace(b"\r\n", b"\n")


def test_special_folders_get_stable_local_names(gmail_like, tmp_path):
    user = gmail_like.add_user()
    gmail_like.append(user, "[Gmail]/Sent Mail", msg(1), flags=(b"\\Seen",))
    gmail_like.append(user, "[Gmail]/Spam", msg(2))
    gmail_like.append(user, "[Gmail]/All Mail", msg(3))
    acct = Account(gmail_like, user, tmp_path)
    r = acct.sync()
    local = sorted(p.name for p in acct.maildir.iterdir() if not p.name.startswith("."))
    assert local == ["Drafts", "INBOX", "Junk", "Sent", "Trash"], r.out
    assert set(acct.local_messages("Sent")) == {lf(msg(1))}
    assert set(acct.local_messages("Junk")) == {lf(msg(2))}
    # A message saved locally into Sent goes to the server's \Sent folder.
    (acct.maildir / "Sent" / "cur" / "1.M1.h:2,S").write_bytes(lf(msg(4)))
    acct.sync()
    bodies = {b for b, _ in acct.remote_messages("[Gmail]/Sent Mail").values()}
    assert bodies == {lf(msg(1)), lf(msg(4))}
    # Nothing from \All was downloaded.
    assert lf(msg(3)) not in {p.read_bytes() for p in acct.maildir.rglob("*:2,*")}


def test_special_folders_can_be_turned_off(gmail_like, tmp_path):
    user = gmail_like.add_user()
    gmail_like.append(user, "[Gmail]/Sent Mail", msg(1))
    acct = Account(gmail_like, user, tmp_path)
    acct.extra = ""
    acct.write_config()
    text = acct.config.read_text().replace(
        "      folders:", "      special_folders: false\n      folders:"
    )
    acct.write_config = lambda: acct.config.write_text(text)  # type: ignore[method-assign]
    acct.sync()
    assert (acct.maildir / "[Gmail]" / "Sent Mail" / "new").is_dir()
    assert not (acct.maildir / "Sent").exists()


def test_keywords_on_the_server_survive_flag_sync(account, dovecot, mail_user):
    dovecot.append(mail_user, "INBOX", msg(1), flags=(b"$Label1", b"Important"))
    account.sync()
    (path,) = account.local_files()
    path.rename(path.parent.parent / "cur" / (path.name.split(":")[0] + ":2,PS"))
    account.sync()
    ((_, flags),) = account.remote_messages().values()
    assert flags == {b"$Label1", b"Important", b"\\Seen", b"$Forwarded"}
