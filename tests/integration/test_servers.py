"""The test servers themselves: what later tests rely on Dovecot and the corpus to do."""

from __future__ import annotations

import contextlib
import email
import email.policy
import hashlib
import poplib
import random
import socket
import ssl
import time
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
from imapclient import IMAPClient

from tests.servers import require_dovecot
from tests.servers.corpus import make_corpus, make_message
from tests.servers.dovecot import CertFiles, Dovecot, DovecotError, User

dovecot_test = pytest.mark.dovecot

SIMPLE = (
    b"From: Alice <alice@example.org>\r\n"
    b"To: Bob <bob@example.org>\r\n"
    b"Subject: =?utf-8?q?Gr=C3=BC=C3=9Fe?=\r\n"
    b"Date: Mon, 01 Jan 2024 08:00:00 +0000\r\n"
    b"Message-ID: <simple.1@example.org>\r\n"
    b"Content-Type: text/plain; charset=utf-8\r\n"
    b"Content-Transfer-Encoding: 8bit\r\n"
    b"\r\n"
    b"Gr\xc3\xbc\xc3\x9fe aus K\xc3\xb6ln.\r\n"
    b".a line that starts with a dot\r\n"
    b"\r\n"
    b"trailing blank line above\r\n"
)


def fetch_all(client: IMAPClient, folder: str) -> dict[int, dict[bytes, Any]]:
    client.select_folder(folder, readonly=True)
    uids = client.search()
    return client.fetch(uids, ["BODY.PEEK[]", "FLAGS"]) if uids else {}


def server_files(user: User, folder: str = "") -> list[Path]:
    d = user.maildir / folder
    return sorted([*(d / "new").iterdir(), *(d / "cur").iterdir()])


# -- delivery -------------------------------------------------------------------------------------


@dovecot_test
def test_lmtp_delivery_is_served_byte_for_byte(dovecot: Dovecot, mail_user: User) -> None:
    served = dovecot.deliver(mail_user, SIMPLE)
    # Dovecot's LMTP always prepends Return-Path; nothing else is touched.
    assert served == b"Return-Path: <sender@example.org>\r\n" + SIMPLE
    with dovecot.imap(mail_user) as client:
        (msg,) = fetch_all(client, "INBOX").values()
    assert msg[b"BODY[]"] == served
    # Stored with LF, served with CRLF.
    (path,) = server_files(mail_user)
    assert path.read_bytes() == served.replace(b"\r\n", b"\n")


@dovecot_test
def test_lf_message_is_served_with_crlf(dovecot: Dovecot, mail_user: User) -> None:
    raw = SIMPLE.replace(b"\r\n", b"\n")
    served = dovecot.deliver(mail_user, raw, via="save")
    assert served == SIMPLE
    with dovecot.imap(mail_user) as client:
        (msg,) = fetch_all(client, "INBOX").values()
    assert msg[b"BODY[]"] == SIMPLE


@dovecot_test
@pytest.mark.parametrize("folder", ["Lists/python", "Ärger", "[Gmail]/Sent Mail"])
def test_deliver_into_folder(dovecot: Dovecot, mail_user: User, folder: str) -> None:
    served = dovecot.deliver(mail_user, SIMPLE, folder)
    with dovecot.imap(mail_user) as client:
        (msg,) = fetch_all(client, folder).values()
        assert fetch_all(client, "INBOX") == {}
    assert msg[b"BODY[]"] == served


@dovecot_test
def test_big_message_round_trip(dovecot: Dovecot, mail_user: User) -> None:
    raw = make_message(random.Random(1), 1, size_class="big")
    assert len(raw) > 100_000
    served = dovecot.deliver(mail_user, raw)
    with dovecot.imap(mail_user) as client:
        (msg,) = fetch_all(client, "INBOX").values()
    assert msg[b"BODY[]"] == served


# -- users ----------------------------------------------------------------------------------------


@dovecot_test
def test_fresh_user_starts_empty(dovecot: Dovecot) -> None:
    first = dovecot.add_user()
    dovecot.deliver(first, SIMPLE)
    second = dovecot.add_user()
    assert second.name != first.name
    with dovecot.imap(second) as client:
        assert [name for _, _, name in client.list_folders()] == ["INBOX"]
        assert client.select_folder("INBOX")[b"EXISTS"] == 0


@dovecot_test
def test_new_users_can_log_in_at_once(dovecot: Dovecot) -> None:
    # Several users within the same second: Dovecot must re-read the passwd-file every time.
    for _ in range(5):
        user = dovecot.add_user()
        with dovecot.imap(user) as client:
            assert client.select_folder("INBOX")[b"EXISTS"] == 0


@dovecot_test
def test_add_user_with_name_and_password(dovecot: Dovecot) -> None:
    user = dovecot.add_user("me@example.org", "s3cret pass")
    assert (user.name, user.password) == ("me@example.org", "s3cret pass")
    dovecot.deliver(user, SIMPLE)
    with dovecot.imap(user) as client:
        assert client.select_folder("INBOX")[b"EXISTS"] == 1
    with pytest.raises(DovecotError):
        dovecot.add_user("me@example.org")


@dovecot_test
def test_wrong_password_is_refused(dovecot: Dovecot, mail_user: User) -> None:
    from imapclient.exceptions import LoginError

    wrong = User(mail_user.name, mail_user.password + "x", mail_user.maildir)
    with pytest.raises(LoginError):
        dovecot.imap(wrong)


@dovecot_test
def test_many_connections_per_user(dovecot: Dovecot, mail_user: User) -> None:
    # Dovecot's default mail_max_userip_connections is 10; syncd may hold more (IDLE per folder).
    clients = []
    try:
        for _ in range(15):
            clients.append(dovecot.imap(mail_user))
        for client in clients:
            client.noop()
    finally:
        for client in clients:
            client.logout()


# -- folders --------------------------------------------------------------------------------------


@dovecot_test
def test_folders_nest_with_slash(dovecot: Dovecot, mail_user: User) -> None:
    names = ["Lists/python", "Ärger", "A&B", "[Gmail]/Sent Mail", "Sent"]
    for name in names:
        dovecot.create_folder(mail_user, name)
    with dovecot.imap(mail_user) as client:
        listed = {name: delim for _, delim, name in client.list_folders()}
        for name in names:
            client.select_folder(name)
    assert set(listed) == {"INBOX", "Lists", "[Gmail]", *names}
    assert set(listed.values()) == {b"/"}
    # LAYOUT=fs: folders are nested directories (names in modified UTF-7 on disk).
    for sub in ("Lists/python", "&AMQ-rger", "A&-B", "[Gmail]/Sent Mail"):
        assert (mail_user.maildir / sub / "cur").is_dir()


@dovecot_test
def test_create_folder_is_idempotent(dovecot: Dovecot, mail_user: User) -> None:
    dovecot.create_folder(mail_user, "a/b/c")
    dovecot.create_folder(mail_user, "a/b/c")
    dovecot.create_folder(mail_user, "a/b")
    with dovecot.imap(mail_user) as client:
        names = sorted(name for _, _, name in client.list_folders())
    assert names == ["INBOX", "a", "a/b", "a/b/c"]


# -- appending and bulk loading -------------------------------------------------------------------


@dovecot_test
def test_append_with_flags_and_date(dovecot: Dovecot, mail_user: User) -> None:
    date = datetime(2023, 5, 6, 7, 8, 9, tzinfo=UTC)
    uid = dovecot.append(mail_user, "Archive", SIMPLE, flags=[b"\\Seen", "\\Flagged"], date=date)
    assert uid == 1
    with dovecot.imap(mail_user) as client:
        client.select_folder("Archive", readonly=True)
        data = client.fetch([uid], ["FLAGS", "INTERNALDATE", "BODY.PEEK[]"])[uid]
    assert set(data[b"FLAGS"]) - {b"\\Recent"} == {b"\\Seen", b"\\Flagged"}
    assert data[b"INTERNALDATE"].astimezone(UTC) == date
    assert data[b"BODY[]"] == SIMPLE


@dovecot_test
def test_fill_loads_corpus_with_flags(dovecot: Dovecot, mail_user: User) -> None:
    corpus = make_corpus(300, ["INBOX", "Sent", "Lists/python", "Ärger"], seed=7, big_share=0.01)
    uids = dovecot.fill(mail_user, corpus)
    assert {f: len(u) for f, u in uids.items()} == {f: len(m) for f, m in corpus.items()}
    for folder, messages in corpus.items():
        assert uids[folder] == list(range(1, len(messages) + 1))
        served = dovecot.messages(mail_user, folder)
        assert served == {
            uid: (raw, set(flags)) for uid, (raw, flags) in zip(uids[folder], messages, strict=True)
        }


@dovecot_test
def test_fill_in_small_chunks(dovecot: Dovecot, mail_user: User) -> None:
    corpus = make_corpus(25, ["INBOX"], size_class="tiny")
    uids = dovecot.fill(mail_user, corpus, chunk_messages=4)
    assert uids["INBOX"] == list(range(1, 26))


# -- other protocols and admin --------------------------------------------------------------------


@dovecot_test
def test_pop3_sees_delivered_mail(dovecot: Dovecot, mail_user: User) -> None:
    served = dovecot.deliver(mail_user, SIMPLE)
    pop = poplib.POP3(dovecot.host, dovecot.pop3_port, timeout=30)
    try:
        pop.user(mail_user.name)
        pop.pass_(mail_user.password)
        assert pop.stat()[0] == 1
        _, lines, _ = pop.retr(1)
        _, uidls, _ = pop.uidl()
    finally:
        pop.quit()
    # poplib strips the CRLFs and undoes dot-stuffing.
    assert b"\r\n".join(lines) + b"\r\n" == served
    assert len(uidls) == 1


@dovecot_test
def test_set_uidvalidity(dovecot: Dovecot, mail_user: User) -> None:
    dovecot.deliver(mail_user, SIMPLE)
    with dovecot.imap(mail_user) as client:
        before = client.select_folder("INBOX")[b"UIDVALIDITY"]
    dovecot.set_uidvalidity(mail_user, "INBOX", before + 1000)
    with dovecot.imap(mail_user) as client:
        info = client.select_folder("INBOX")
    assert info[b"UIDVALIDITY"] == before + 1000
    assert info[b"EXISTS"] == 1


@dovecot_test
def test_doveadm_reaches_the_server(dovecot: Dovecot, mail_user: User) -> None:
    dovecot.deliver(mail_user, SIMPLE, "Lists/python")
    out = dovecot.doveadm("mailbox", "status", "-u", mail_user.name, "messages", "Lists/python")
    assert out.stdout.split() == ["Lists/python", "messages=1"]
    with pytest.raises(DovecotError, match="doveadm"):
        dovecot.doveadm("mailbox", "status", "-u", mail_user.name, "messages", "Nope")


# -- lifecycle ------------------------------------------------------------------------------------


@pytest.fixture
def own_dovecot(tmp_path: Path) -> Iterator[Dovecot]:
    """A private server for tests that stop or break it."""
    require_dovecot()
    with Dovecot(tmp_path / "server") as server:
        yield server


@dovecot_test
def test_restart_keeps_mail_users_and_ports(own_dovecot: Dovecot) -> None:
    user = own_dovecot.add_user()
    own_dovecot.deliver(user, SIMPLE)
    own_dovecot.set_uidvalidity(user, "INBOX", 4242)
    ports = (own_dovecot.imap_port, own_dovecot.pop3_port, own_dovecot.lmtp_port)
    own_dovecot.restart()
    assert (own_dovecot.imap_port, own_dovecot.pop3_port, own_dovecot.lmtp_port) == ports
    with own_dovecot.imap(user) as client:
        info = client.select_folder("INBOX")
    assert (info[b"EXISTS"], info[b"UIDVALIDITY"]) == (1, 4242)


@dovecot_test
def test_stop_closes_the_ports(own_dovecot: Dovecot) -> None:
    user = own_dovecot.add_user()
    own_dovecot.stop()
    assert not own_dovecot.running
    with pytest.raises(OSError):
        own_dovecot.imap(user, timeout=5)
    own_dovecot.stop()  # stopping twice is fine
    own_dovecot.start()
    with own_dovecot.imap(user) as client:
        client.noop()


@dovecot_test
def test_start_failure_shows_the_log(tmp_path: Path) -> None:
    require_dovecot()
    missing = CertFiles(tmp_path / "no-cert.pem", tmp_path / "no-key.pem")
    server = Dovecot(tmp_path / "server", tls=missing, start_timeout=5)
    with pytest.raises(DovecotError, match=r"no-cert\.pem"):
        server.start()
    assert not server.running


@dovecot_test
def test_start_is_fast(tmp_path: Path) -> None:
    require_dovecot()
    t0 = time.monotonic()
    with Dovecot(tmp_path / "server") as server:
        started = time.monotonic() - t0
        t0 = time.monotonic()
        server.add_user()
        added = time.monotonic() - t0
    assert started < 5
    assert added < 0.5


# -- TLS ------------------------------------------------------------------------------------------


@dovecot_test
@pytest.mark.parametrize("mode", ["implicit", "starttls"])
def test_tls_verifies_with_the_test_ca(tls_dovecot: Dovecot, mode: str) -> None:
    user = tls_dovecot.add_user()
    tls_dovecot.deliver(user, SIMPLE)
    with tls_dovecot.imap(user, tls=mode) as client:
        assert client.select_folder("INBOX")[b"EXISTS"] == 1
        version = client._imap.sock.version()  # the negotiated protocol
    assert version in ("TLSv1.2", "TLSv1.3")


@dovecot_test
def test_certificate_fingerprint_matches_the_served_one(tls_dovecot: Dovecot) -> None:
    assert tls_dovecot.tls is not None
    ctx = ssl.create_default_context()
    ctx.check_hostname = False
    ctx.verify_mode = ssl.CERT_NONE
    with (
        socket.create_connection((tls_dovecot.host, tls_dovecot.imaps_port), timeout=10) as raw,
        ctx.wrap_socket(raw) as sock,
    ):
        der = sock.getpeercert(binary_form=True)
    assert der is not None
    assert tls_dovecot.tls.fingerprint() == "sha256:" + hashlib.sha256(der).hexdigest()


@dovecot_test
def test_pop3s_verifies_with_the_test_ca(tls_dovecot: Dovecot) -> None:
    assert tls_dovecot.tls is not None
    user = tls_dovecot.add_user()
    tls_dovecot.deliver(user, SIMPLE)
    ctx = tls_dovecot.tls.client_context()
    for pop in (
        poplib.POP3_SSL(tls_dovecot.host, tls_dovecot.pop3s_port, context=ctx, timeout=30),
        poplib.POP3(tls_dovecot.host, tls_dovecot.pop3_port, timeout=30),
    ):
        try:
            if not isinstance(pop, poplib.POP3_SSL):
                pop.stls(ctx)
            pop.user(user.name)
            pop.pass_(user.password)
            assert pop.stat()[0] == 1
        finally:
            pop.quit()


@dovecot_test
def test_tls_without_the_ca_fails_verification(tls_dovecot: Dovecot) -> None:
    system_store = ssl.create_default_context()
    with pytest.raises(ssl.SSLCertVerificationError):
        IMAPClient(
            tls_dovecot.host,
            port=tls_dovecot.imaps_port,
            ssl=True,
            ssl_context=system_store,
            timeout=10,
        )
    client = IMAPClient(tls_dovecot.host, port=tls_dovecot.imap_port, ssl=False, timeout=10)
    try:
        with pytest.raises(ssl.SSLCertVerificationError):
            client.starttls(system_store)
    finally:
        with contextlib.suppress(OSError):  # starttls closed the socket already
            client.shutdown()


# -- corpus (no server) ---------------------------------------------------------------------------


def test_corpus_is_deterministic_and_well_formed() -> None:
    folders = ["INBOX", "Sent", "Archive", "Lists/python", "Ärger"]
    corpus = make_corpus(400, folders, seed=3, big_share=0.02)
    assert corpus == make_corpus(400, folders, seed=3, big_share=0.02)
    assert corpus != make_corpus(400, folders, seed=4, big_share=0.02)
    assert list(corpus) == folders
    assert sum(len(m) for m in corpus.values()) == 400
    assert all(corpus[f] for f in folders)
    ids = set()
    seen = flagged = big = nonascii_subject = eightbit = 0
    for messages in corpus.values():
        for raw, flags in messages:
            assert b"\n" not in raw.replace(b"\r\n", b"")
            assert max(len(line) for line in raw.split(b"\r\n")) <= 998
            msg = email.message_from_bytes(raw, policy=email.policy.default)
            assert not msg.defects
            for header in ("From", "To", "Subject", "Date", "Message-ID"):
                assert msg[header], header
            ids.add(msg["Message-ID"])
            seen += b"\\Seen" in flags
            flagged += b"\\Flagged" in flags
            big += len(raw) >= 100_000
            nonascii_subject += not str(msg["Subject"]).isascii()
            eightbit += not raw.isascii()
    assert len(ids) == 400
    assert 80 <= seen <= 160  # ~30%
    assert 5 <= flagged <= 40  # ~5%
    assert 1 <= big <= 25  # ~2%
    assert nonascii_subject > 20
    assert eightbit > 20


def test_message_size_classes() -> None:
    rng = random.Random(0)
    for _ in range(20):
        assert len(make_message(rng, 1, size_class="tiny")) < 1_500
        assert 2_000 <= len(make_message(rng, 1)) <= 25_000
    sizes = [len(make_message(rng, i, size_class="big")) for i in range(5)]
    assert all(100_000 <= s <= 1_400_000 for s in sizes)
    raw = make_message(rng, 1, size_class="big")
    msg = email.message_from_bytes(raw, policy=email.policy.default)
    (attachment,) = list(msg.iter_attachments())
    assert 100_000 <= len(attachment.get_content()) <= 1_000_000
