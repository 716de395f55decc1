"""IMAP over a command's stdin/stdout (tunnel:), as mbsync's Tunnel, with PREAUTH."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.integration.conftest import Account, msg

pytestmark = pytest.mark.dovecot

IMAP_BIN = Path("/usr/lib/dovecot/imap")


@pytest.mark.skipif(not IMAP_BIN.exists(), reason="Dovecot's imap binary is not installed")
def test_sync_through_a_tunnel(dovecot, mail_user, tmp_path):
    dovecot.append(mail_user, "INBOX", msg(1), flags=(b"\\Seen",))
    acct = Account(dovecot, mail_user, tmp_path)
    acct.write_config()
    lines = acct.config.read_text().splitlines()
    imap_at = lines.index("    imap:")
    tunnel = f"{IMAP_BIN} -c {dovecot.conf_path} -u {mail_user.name}"
    kept = [
        line
        for line in lines[imap_at + 1 :]
        if not line.strip().startswith(("host:", "port:", "tls:", "username:", "password_command:"))
    ]
    text = "\n".join([*lines[: imap_at + 1], f"      tunnel: {tunnel}", *kept]) + "\n"
    acct.write_config = lambda: acct.config.write_text(text)  # type: ignore[method-assign]
    r = acct.sync()
    assert "1 downloaded" in r.out
    cur = acct.maildir / "INBOX" / "cur"
    (cur / "2.M2.h:2,FS").write_bytes(msg(2).replace(b"\r\n", b"\n"))
    r = acct.sync()
    assert "1 uploaded" in r.out
    assert len(acct.remote_messages()) == 2
    r = acct.run("check")
    assert r.code == 0, r.out + r.err


def test_tunnel_excludes_host_settings(tmp_path):
    from syncd.config import parse_config
    from syncd.errors import ConfigError

    base = "accounts:\n  a:\n    maildir: /tmp/m-tunnel\n    imap:\n      tunnel: ssh x imap\n"
    cfg = parse_config(base)
    assert cfg.accounts[0].imap is not None
    assert cfg.accounts[0].imap.tunnel == "ssh x imap"
    with pytest.raises(ConfigError, match="no meaning with tunnel"):
        parse_config(base + "      host: example.org\n")
