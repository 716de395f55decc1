"""TLS and secrets for IMAP against a real Dovecot with a throwaway CA (trustme)."""

from __future__ import annotations

import logging

import pytest

from tests.integration.conftest import Account, msg

pytestmark = pytest.mark.dovecot


def tls_account(server, tmp_path, *, tls: str, port: int, extra: str) -> Account:
    user = server.add_user()
    server.append(user, "INBOX", msg(1))
    acct = Account(server, user, tmp_path)
    acct.write_config()
    text = acct.config.read_text()
    text = text.replace(f"port: {server.imap_port}", f"port: {port}")
    text = text.replace("tls: none", f"tls: {tls}\n      {extra}".rstrip())
    # Freeze the edited config: Account.run() rewrites it, so patch write_config.
    acct.write_config = lambda: acct.config.write_text(text)  # type: ignore[method-assign]
    return acct


@pytest.mark.parametrize("mode", ["implicit", "starttls"])
def test_tls_with_private_ca(tls_dovecot, tmp_path, mode):
    port = tls_dovecot.imaps_port if mode == "implicit" else tls_dovecot.imap_port
    acct = tls_account(
        tls_dovecot,
        tmp_path,
        tls=mode,
        port=port,
        extra=f"ca_file: {tls_dovecot.tls.ca_pem}",
    )
    acct.write_config()
    acct.config.write_text(acct.config.read_text().replace("127.0.0.1", "localhost"))
    text = acct.config.read_text()
    acct.write_config = lambda: acct.config.write_text(text)  # type: ignore[method-assign]
    r = acct.sync()
    assert "1 downloaded" in r.out


def test_untrusted_certificate_is_refused(tls_dovecot, tmp_path):
    acct = tls_account(tls_dovecot, tmp_path, tls="implicit", port=tls_dovecot.imaps_port, extra="")
    r = acct.sync(expect=1)
    assert "certificate not trusted" in r.err
    assert "ca_file" in r.err  # tells the user what to do
    assert not acct.maildir.exists() or not list(acct.maildir.rglob("cur/*"))


def test_wrong_host_name_is_refused(tmp_path):
    from tests.servers.dovecot import Dovecot, make_test_certs

    # A certificate for another name, served on 127.0.0.1, signed by a CA we trust.
    certs = make_test_certs(tmp_path / "certs", names=("mail.example.org",))
    with Dovecot(tmp_path / "server", tls=certs) as server:
        (tmp_path / "acct").mkdir()
        acct = tls_account(
            server,
            tmp_path / "acct",
            tls="implicit",
            port=server.imaps_port,
            extra=f"ca_file: {certs.ca_pem}",
        )
        r = acct.sync(expect=1)
    assert "certificate not trusted" in r.err
    assert "mismatch" in r.err or "match" in r.err


def test_fingerprint_pinning(tls_dovecot, tmp_path):
    # Pinning replaces the CA check: no ca_file, yet the pinned certificate is accepted,
    # written in capitals with colons as users paste it.
    digest = tls_dovecot.tls.fingerprint().removeprefix("sha256:")
    pasted = "sha256:" + ":".join(digest[i : i + 2] for i in range(0, 64, 2)).upper()
    (tmp_path / "good").mkdir()
    acct = tls_account(
        tls_dovecot,
        tmp_path / "good",
        tls="implicit",
        port=tls_dovecot.imaps_port,
        extra=f'fingerprint: "{pasted}"',
    )
    r = acct.sync()
    assert "1 downloaded" in r.out
    (tmp_path / "bad").mkdir()
    acct2 = tls_account(
        tls_dovecot,
        tmp_path / "bad",
        tls="implicit",
        port=tls_dovecot.imaps_port,
        extra="fingerprint: sha256:" + "00" * 32,
    )
    r = acct2.sync(expect=1)
    assert "does not match" in r.err and "refusing to log in" in r.err


def test_starttls_not_offered_is_a_hard_failure(dovecot, mail_user, tmp_path):
    # The plain test server has no TLS at all, so it does not offer STARTTLS.
    acct = tls_account(dovecot, tmp_path, tls="starttls", port=dovecot.imap_port, extra="")
    r = acct.sync(expect=1)
    assert "does not offer STARTTLS" in r.err
    assert not list(acct.maildir.rglob("cur/*")) if acct.maildir.exists() else True


def test_password_never_appears_in_logs_state_or_output(account, dovecot, mail_user, caplog):
    caplog.set_level(logging.DEBUG)
    dovecot.append(mail_user, "INBOX", msg(1))
    results = [account.sync("-vv"), account.run("status", "--json"), account.run("check")]
    account.user = type(mail_user)(mail_user.name, mail_user.password + "x", mail_user.maildir)
    results.append(account.sync("-vv", expect=1))
    secret = mail_user.password
    for r in results:
        assert secret not in r.out and secret not in r.err
    assert secret not in caplog.text
    for path in account.state_dir.rglob("*"):
        if path.is_file():
            assert secret.encode() not in path.read_bytes(), path


def test_password_from_the_system_keyring(account, dovecot, mail_user, tmp_path, monkeypatch):
    import io

    import keyring

    from tests.servers.filekeyring import FileKeyring

    previous = keyring.get_keyring()
    keyring.set_keyring(FileKeyring(tmp_path / "keyring.json"))
    try:
        account.secret = "keyring"
        dovecot.append(mail_user, "INBOX", msg(1))
        r = account.sync(expect=1)
        assert "syncd password set acct imap" in r.err  # says how to fix it
        monkeypatch.setattr("sys.stdin", io.StringIO(mail_user.password + "\n"))
        r = account.run("password", "set", "acct", "imap")
        assert r.code == 0, r.err
        assert keyring.get_password("syncd", "acct/imap") == mail_user.password
        r = account.sync()
        assert "1 downloaded" in r.out
    finally:
        keyring.set_keyring(previous)
