"""Self-tests of the loopback OAuth2 authorization server (tests/servers/authserver.py).

Each test drives the server with urllib the way a correct client does (or, to see a refusal, the
way a wrong one does); the last ones log in to the real Dovecot with its tokens.
"""

from __future__ import annotations

import base64
import hashlib
import json
import queue
import secrets
import threading
import time
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import pytest

from tests.servers import require_dovecot
from tests.servers.authserver import AuthServer, AuthServerError, oauth_dovecot

DEVICE_GRANT = "urn:ietf:params:oauth:grant-type:device_code"


class Listener:
    """The client's one-shot loopback redirect listener: records each request's query."""

    def __init__(self, host: str = "127.0.0.1") -> None:
        got: queue.Queue[dict[str, str]] = queue.Queue()
        self.got = got

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self) -> None:
                query = urllib.parse.urlsplit(self.path).query
                got.put(dict(urllib.parse.parse_qsl(query)))
                self.send_response(200)
                self.send_header("Content-Length", "4")
                self.end_headers()
                self.wfile.write(b"done")

            def log_message(self, *args: Any) -> None:
                pass

        self.httpd = ThreadingHTTPServer((host, 0), Handler)
        self.redirect_uri = f"http://{host}:{self.httpd.server_address[1]}/callback"
        self.thread = threading.Thread(target=self.httpd.serve_forever, args=(0.05,), daemon=True)
        self.thread.start()

    def query(self) -> dict[str, str]:
        return self.got.get(timeout=10)

    def close(self) -> None:
        self.httpd.shutdown()
        self.httpd.server_close()

    def __enter__(self) -> Listener:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


@pytest.fixture
def listener() -> Iterator[Listener]:
    lst = Listener()
    yield lst
    lst.close()


@pytest.fixture
def server() -> Iterator[AuthServer]:
    with AuthServer() as s:
        yield s
    assert s.server_errors == []


def post(url: str, form: dict[str, str], auth: tuple[str, str] | None = None) -> tuple[int, Any]:
    req = urllib.request.Request(url, data=urllib.parse.urlencode(form).encode(), method="POST")
    req.add_header("Content-Type", "application/x-www-form-urlencoded")
    if auth is not None:
        basic = base64.b64encode(f"{auth[0]}:{auth[1]}".encode()).decode()
        req.add_header("Authorization", f"Basic {basic}")
    try:
        with urllib.request.urlopen(req, timeout=10) as resp:
            return resp.status, json.loads(resp.read())
    except urllib.error.HTTPError as e:
        return e.code, json.loads(e.read())


def introspect(server: AuthServer, token: str) -> dict[str, Any]:
    """As Dovecot does it (introspection_mode = auth): GET with the token as bearer."""
    req = urllib.request.Request(server.introspect_url)
    req.add_header("Authorization", f"Bearer {token}")
    with urllib.request.urlopen(req, timeout=10) as resp:
        result: dict[str, Any] = json.loads(resp.read())
        return result


def pkce() -> tuple[str, str]:
    verifier = secrets.token_urlsafe(48)
    digest = hashlib.sha256(verifier.encode("ascii")).digest()
    return verifier, base64.urlsafe_b64encode(digest).rstrip(b"=").decode()


def authorize_url(server: AuthServer, redirect_uri: str, **params: str) -> str:
    query = {
        "response_type": "code",
        "client_id": server.client_id,
        "redirect_uri": redirect_uri,
        "scope": " ".join(server.scopes),
        "state": "st-" + secrets.token_hex(4),
    }
    query.update(params)
    return server.authorize_url + "?" + urllib.parse.urlencode(query)


def code_login(server: AuthServer, listener: Listener, **extra: str) -> dict[str, Any]:
    """The whole authorization-code flow with PKCE S256, as syncd does it; returns the tokens."""
    verifier, challenge = pkce()
    url = authorize_url(
        server, listener.redirect_uri, code_challenge=challenge, code_challenge_method="S256"
    )
    server.browse(url)
    got = listener.query()
    assert got["state"] == urllib.parse.parse_qs(urllib.parse.urlsplit(url).query)["state"][0]
    form = {
        "grant_type": "authorization_code",
        "code": got["code"],
        "redirect_uri": listener.redirect_uri,
        "client_id": server.client_id,
        "code_verifier": verifier,
        **extra,
    }
    status, body = post(server.token_url, form)
    assert status == 200, body
    return body  # type: ignore[no-any-return]


def refresh(server: AuthServer, refresh_token: str) -> tuple[int, Any]:
    form = {
        "grant_type": "refresh_token",
        "refresh_token": refresh_token,
        "client_id": server.client_id,
    }
    return post(server.token_url, form)


# -- authorization code + PKCE --------------------------------------------------------------------


def test_code_flow_with_pkce(server: AuthServer, listener: Listener) -> None:
    tokens = code_login(server, listener)
    assert tokens["token_type"] == "Bearer"
    assert tokens["expires_in"] == 3600
    assert set(tokens["scope"].split()) == set(server.scopes)
    assert server.issued_access_tokens == [tokens["access_token"]]
    assert server.issued_refresh_tokens == [tokens["refresh_token"]]
    assert server.grants_seen == ["authorization_code"]
    assert server.check(tokens["access_token"]) == "alice"
    assert server.check(tokens["refresh_token"]) is None  # not an access token
    assert server.check("made-up") is None
    body = introspect(server, tokens["access_token"])
    assert body["active"] is True and body["username"] == "alice"
    assert introspect(server, "made-up") == {"active": False}


def test_code_is_single_use(server: AuthServer, listener: Listener) -> None:
    verifier, challenge = pkce()
    server.browse(
        authorize_url(
            server, listener.redirect_uri, code_challenge=challenge, code_challenge_method="S256"
        )
    )
    form = {
        "grant_type": "authorization_code",
        "code": listener.query()["code"],
        "redirect_uri": listener.redirect_uri,
        "client_id": server.client_id,
        "code_verifier": verifier,
    }
    assert post(server.token_url, form)[0] == 200
    status, body = post(server.token_url, form)
    assert (status, body["error"]) == (400, "invalid_grant")


def test_wrong_verifier_is_invalid_grant(server: AuthServer, listener: Listener) -> None:
    _, challenge = pkce()
    server.browse(
        authorize_url(
            server, listener.redirect_uri, code_challenge=challenge, code_challenge_method="S256"
        )
    )
    code = listener.query()["code"]
    other_verifier, _ = pkce()
    form = {
        "grant_type": "authorization_code",
        "code": code,
        "redirect_uri": listener.redirect_uri,
        "client_id": server.client_id,
        "code_verifier": other_verifier,
    }
    status, body = post(server.token_url, form)
    assert (status, body["error"]) == (400, "invalid_grant")
    # Without any verifier: refused as well.
    del form["code_verifier"]
    status, body = post(server.token_url, form)
    assert (status, body["error"]) == (400, "invalid_request")
    assert server.failed_token_requests == [
        ("authorization_code", "invalid_grant"),
        ("authorization_code", "invalid_request"),
    ]
    assert server.issued_access_tokens == [] and server.grants_seen == []


@pytest.mark.parametrize(
    "params",
    [
        {},  # no PKCE at all
        {"code_challenge_method": "S256"},  # a method but no challenge
        {"code_challenge": "x" * 43, "code_challenge_method": "plain"},
        {"code_challenge": "x" * 43},  # method defaults to plain
    ],
)
def test_authorization_without_s256_challenge_is_refused(
    server: AuthServer, listener: Listener, params: dict[str, str]
) -> None:
    url = authorize_url(server, listener.redirect_uri, **params)
    server.browse(url)  # an error redirect to the client, which it must show
    got = listener.query()
    assert got["error"] == "invalid_request" and "code" not in got
    assert got["state"] == urllib.parse.parse_qs(urllib.parse.urlsplit(url).query)["state"][0]


def test_redirect_uri_must_be_loopback_any_port(server: AuthServer) -> None:
    _, challenge = pkce()
    pk = {"code_challenge": challenge, "code_challenge_method": "S256"}
    for uri in ("https://client.example/cb", "http://192.0.2.1:8080/cb", "http://127.0.0.1/cb"):
        with pytest.raises(AuthServerError, match="400"):
            server.browse(authorize_url(server, uri, **pk))
    # localhost, with any port, is fine (RFC 8252 7.3)
    with Listener("localhost") as lst:
        server.browse(authorize_url(server, lst.redirect_uri, **pk))
        assert "code" in lst.query()


def test_unknown_client_is_refused(server: AuthServer, listener: Listener) -> None:
    _, challenge = pkce()
    url = authorize_url(
        server,
        listener.redirect_uri,
        client_id="someone-else",
        code_challenge=challenge,
        code_challenge_method="S256",
    )
    with pytest.raises(AuthServerError, match="400"):
        server.browse(url)
    _, body = post(server.device_url, {"client_id": "someone-else"})
    assert body["error"] == "invalid_client"
    _, body = post(
        server.token_url,
        {"grant_type": "refresh_token", "refresh_token": "x", "client_id": "someone-else"},
    )
    assert body["error"] == "invalid_client"


def test_confidential_client_needs_its_secret(listener: Listener) -> None:
    with AuthServer(client_secret="s3cret") as server:
        verifier, challenge = pkce()
        pk = {"code_challenge": challenge, "code_challenge_method": "S256"}
        server.browse(authorize_url(server, listener.redirect_uri, **pk))
        form = {
            "grant_type": "authorization_code",
            "code": listener.query()["code"],
            "redirect_uri": listener.redirect_uri,
            "client_id": server.client_id,
            "code_verifier": verifier,
        }
        assert post(server.token_url, form)[1]["error"] == "invalid_client"  # no secret
        _, body = post(server.token_url, {**form, "client_secret": "wrong"})
        assert body["error"] == "invalid_client"
        status, body = post(server.token_url, form, auth=(server.client_id, "wrong"))
        assert (status, body["error"]) == (401, "invalid_client")
        status, body = post(server.token_url, form, auth=(server.client_id, "s3cret"))
        assert status == 200, body
        status, body = post(
            server.token_url,
            {
                "grant_type": "refresh_token",
                "refresh_token": body["refresh_token"],
                "client_id": server.client_id,
                "client_secret": "s3cret",
            },
        )
        assert status == 200, body


# -- refresh tokens --------------------------------------------------------------------------------


def test_refresh_tokens_rotate(listener: Listener) -> None:
    with AuthServer(access_lifetime=60) as server:
        first = code_login(server, listener)
        status, second = refresh(server, first["refresh_token"])
        assert status == 200, second
        assert second["expires_in"] == 60
        assert second["refresh_token"] != first["refresh_token"]
        assert second["access_token"] != first["access_token"]
        assert server.check(second["access_token"]) == "alice"
        # The old refresh token was used up.
        status, body = refresh(server, first["refresh_token"])
        assert (status, body["error"]) == (400, "invalid_grant")
        status, third = refresh(server, second["refresh_token"])
        assert status == 200, third
        assert server.grants_seen == ["authorization_code", "refresh_token", "refresh_token"]
        assert server.issued_refresh_tokens == [
            first["refresh_token"],
            second["refresh_token"],
            third["refresh_token"],
        ]
        assert server.failed_token_requests == [("refresh_token", "invalid_grant")]


def test_revoked_refresh_token_is_invalid_grant(server: AuthServer, listener: Listener) -> None:
    tokens = code_login(server, listener)
    server.revoke_refresh_tokens()
    status, body = refresh(server, tokens["refresh_token"])
    assert (status, body["error"]) == (400, "invalid_grant")
    assert server.check(tokens["access_token"]) is None
    assert introspect(server, tokens["access_token"]) == {"active": False}
    # A new login works again.
    tokens = code_login(server, listener)
    assert server.check(tokens["access_token"]) == "alice"


def test_rfc7009_revocation(server: AuthServer, listener: Listener) -> None:
    tokens = code_login(server, listener)
    form = {"token": tokens["refresh_token"], "client_id": server.client_id}
    assert post(server.revoke_url, form)[0] == 200
    assert refresh(server, tokens["refresh_token"])[1]["error"] == "invalid_grant"
    assert server.check(tokens["access_token"]) is None


# -- access token expiry ---------------------------------------------------------------------------


def test_expire_access_tokens(server: AuthServer, listener: Listener) -> None:
    tokens = code_login(server, listener)
    assert introspect(server, tokens["access_token"])["active"] is True
    server.expire_access_tokens()
    assert introspect(server, tokens["access_token"]) == {"active": False}
    assert server.check(tokens["access_token"]) is None
    # The refresh token still works and gives an active access token.
    status, body = refresh(server, tokens["refresh_token"])
    assert status == 200 and server.check(body["access_token"]) == "alice"


def test_access_tokens_expire_after_their_lifetime(listener: Listener) -> None:
    with AuthServer(access_lifetime=1) as server:
        start = time.monotonic()
        tokens = code_login(server, listener)
        assert tokens["expires_in"] == 1
        deadline = start + 10
        while server.check(tokens["access_token"]) is not None:
            assert time.monotonic() < deadline, "the access token never expired"
            time.sleep(0.05)
        assert time.monotonic() - start >= 1
        assert introspect(server, tokens["access_token"]) == {"active": False}


# -- device authorization (RFC 8628) ---------------------------------------------------------------


def device_start(server: AuthServer) -> dict[str, Any]:
    status, body = post(
        server.device_url, {"client_id": server.client_id, "scope": " ".join(server.scopes)}
    )
    assert status == 200, body
    return body  # type: ignore[no-any-return]


def device_poll(server: AuthServer, device_code: str) -> tuple[int, Any]:
    form = {"grant_type": DEVICE_GRANT, "device_code": device_code, "client_id": server.client_id}
    return post(server.token_url, form)


def test_device_flow(listener: Listener) -> None:
    with AuthServer(device_interval=1, slow_down_step=1) as server:
        dev = device_start(server)
        assert dev["interval"] == 1 and dev["expires_in"] == 600
        assert dev["verification_uri"] == server.base_url + "/device/verify"
        assert dev["user_code"] in dev["verification_uri_complete"]
        status, body = device_poll(server, dev["device_code"])
        assert (status, body["error"]) == (400, "authorization_pending")
        # At once again: too fast.
        status, body = device_poll(server, dev["device_code"])
        assert (status, body["error"]) == (400, "slow_down")
        server.approve_device(dev["user_code"])
        # A client that heeds slow_down waits interval + 5 s (here the server's step is 1 s).
        time.sleep(dev["interval"] + 1)
        status, tokens = device_poll(server, dev["device_code"])
        assert status == 200, tokens
        assert server.check(tokens["access_token"]) == "alice"
        assert "refresh_token" in tokens
        assert server.grants_seen == [DEVICE_GRANT]
        assert server.failed_token_requests == [
            (DEVICE_GRANT, "authorization_pending"),
            (DEVICE_GRANT, "slow_down"),
        ]
        # The device code is used up; its refresh token works like any other.
        assert device_poll(server, dev["device_code"])[0] == 400
        assert refresh(server, tokens["refresh_token"])[0] == 200


def test_device_flow_denied(server: AuthServer) -> None:
    dev = device_start(server)
    server.deny_device(dev["user_code"])
    status, body = device_poll(server, dev["device_code"])
    assert (status, body["error"]) == (400, "access_denied")
    assert server.issued_access_tokens == []


def test_device_code_expires() -> None:
    with AuthServer(device_expires_in=0) as server:
        dev = device_start(server)
        status, body = device_poll(server, dev["device_code"])
        assert (status, body["error"]) == (400, "expired_token")
        with pytest.raises(AuthServerError):
            server.approve_device(dev["user_code"])


def test_unknown_user_code_cannot_be_approved(server: AuthServer) -> None:
    with pytest.raises(AuthServerError, match="400"):
        server.approve_device("BCDF-GHJK")


# -- the real Dovecot ------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def env(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[AuthServer, Any]]:
    require_dovecot()
    with oauth_dovecot(tmp_path_factory.mktemp("authserver") / "dovecot") as pair:
        yield pair


@pytest.mark.dovecot
@pytest.mark.parametrize("mech", ["xoauth2", "oauthbearer"])
def test_dovecot_accepts_our_tokens_until_they_expire(
    env: tuple[AuthServer, Any], listener: Listener, mech: str
) -> None:
    from imapclient import IMAPClient
    from imapclient.exceptions import LoginError

    server, dovecot = env
    tokens = code_login(server, listener)

    def login(token: str) -> None:
        with IMAPClient("127.0.0.1", port=dovecot.imap_port, ssl=False, timeout=10) as imap:
            if mech == "xoauth2":
                imap.oauth2_login(server.user, token)
            else:
                imap.oauthbearer_login(server.user, token)
            assert imap.select_folder("INBOX")[b"EXISTS"] >= 0

    login(tokens["access_token"])
    with pytest.raises(LoginError):
        login("not-a-token-" + secrets.token_hex(8))
    server.expire_access_tokens()
    with pytest.raises(LoginError):
        login(tokens["access_token"])
    # A refreshed token is accepted again; a revoked one is not.
    status, body = refresh(server, tokens["refresh_token"])
    assert status == 200, body
    login(body["access_token"])
    server.revoke_refresh_tokens()
    with pytest.raises(LoginError):
        login(body["access_token"])
