"""OAuth2 logins (XOAUTH2 and OAUTHBEARER) against a real Dovecot.

Dovecot's oauth2 passdb asks a token introspection endpoint about each bearer token; the
test runs that endpoint as a tiny HTTP server on loopback that knows one valid token.
"""

from __future__ import annotations

import json
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest

from tests.integration.conftest import Account, msg
from tests.servers import require_dovecot
from tests.servers.dovecot import Dovecot

pytestmark = pytest.mark.dovecot

TOKEN = "ya29.test-token-5f1c"


@pytest.fixture(scope="module")
def oauth_dovecot(tmp_path_factory):
    require_dovecot()
    seen: list[str] = []
    users: dict[str, str] = {}

    class Introspect(BaseHTTPRequestHandler):
        def do_GET(self):
            auth = self.headers.get("Authorization", "")
            seen.append(auth)
            token = auth.removeprefix("Bearer ").strip()
            body = {"active": token in users}
            if token in users:
                body["username"] = users[token]
            data = json.dumps(body).encode()
            self.send_response(200)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            self.wfile.write(data)

        do_POST = do_GET

        def log_message(self, *args):
            pass

    httpd = ThreadingHTTPServer(("127.0.0.1", 0), Introspect)
    thread = threading.Thread(target=httpd.serve_forever, daemon=True)
    thread.start()
    url = f"http://127.0.0.1:{httpd.server_address[1]}/introspect"
    base = tmp_path_factory.mktemp("dovecot-oauth")
    with Dovecot(base / "server", oauth2_url=url) as server:
        server.tokens = users  # type: ignore[attr-defined]
        yield server
    httpd.shutdown()
    httpd.server_close()


@pytest.mark.parametrize("mech", ["xoauth2", "oauthbearer"])
def test_oauth2_login_with_token_command(oauth_dovecot, tmp_path, mech):
    user = oauth_dovecot.add_user()
    oauth_dovecot.tokens[TOKEN + mech] = user.name
    oauth_dovecot.append(user, "INBOX", msg(1))
    acct = Account(oauth_dovecot, user, tmp_path)
    acct.write_config()
    token_file = tmp_path / "token"
    token_file.write_text(TOKEN + mech + "\n")
    text = acct.config.read_text().replace(
        f"password_command: cat {tmp_path / 'pw'}",
        f"auth: {mech}\n      token_command: cat {token_file}",
    )
    acct.write_config = lambda: acct.config.write_text(text)  # type: ignore[method-assign]
    r = acct.run("sync", "-vv")
    assert r.code == 0 and "1 downloaded" in r.out, (r.err, oauth_dovecot.log_tail(40))
    assert TOKEN not in r.out + r.err
    # A revoked token is an authentication error, reported as such.
    del oauth_dovecot.tokens[TOKEN + mech]
    r = acct.sync(expect=1)
    assert "login refused" in r.err
    assert TOKEN not in r.err
