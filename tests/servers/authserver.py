"""A loopback OAuth2 authorization server for the OAuth2 tests, built on Authlib.

Theory of operation
-------------------
``AuthServer()`` is a context manager that runs a ``ThreadingHTTPServer`` on ``127.0.0.1`` (a free
port) in a daemon thread.  The protocol is Authlib's, not ours: RFC 6749's authorization-code and
refresh-token grants, RFC 7636's PKCE check, RFC 8628's device authorization endpoint and
device-code grant, RFC 7009 revocation and RFC 7662 introspection are Authlib classes; this module
only gives them in-memory storage, an HTTP front end and a few policies.  A mistake in syncd's
OAuth2 client therefore cannot be mirrored by the same mistake in the server it is tested against.

Endpoints (all under ``base_url``):

``/authorize`` (GET)
    The authorization endpoint.  It plays a user who is logged in as ``user`` and consents at once:
    a valid request is answered with a 302 to ``redirect_uri?code=...&state=...``, an invalid one
    with an error redirect (``error=...``) when the client and redirect URI are known, else a 400.
    Policies on top of Authlib: PKCE is required of every request, with
    ``code_challenge_method=S256`` (Authlib's ``CodeChallenge(required=True)`` alone only insists
    on the verifier at the token endpoint); the redirect URI must be a loopback ``http`` URI with an
    explicit port, any port (RFC 8252 section 7.3).
``/token`` (POST)
    ``authorization_code``, ``refresh_token`` and ``urn:ietf:params:oauth:grant-type:device_code``.
    Refresh tokens rotate: every refresh returns a new one and the old one is refused afterwards.
    Access tokens live ``access_lifetime`` seconds (``expires_in`` in the response).
``/device`` (POST)
    RFC 8628 device authorization.  ``interval`` is ``device_interval`` (1 s by default); a poll
    sooner than the current interval after the previous poll of the same device code gets
    ``slow_down`` and raises that code's interval by ``slow_down_step`` (5 s, as RFC 8628 tells
    the client to add).  The first poll is never too early.  After ``device_expires_in`` seconds
    the code gets ``expired_token``.
``/device/verify`` (POST ``user_code=...&action=approve|deny``)
    The ``verification_uri``: where the user types the code and decides; ``approve_device()`` and
    ``deny_device()`` post to it.  An unknown or expired user code is a 400.
``/introspect``
    What Dovecot's oauth2 passdb calls with ``introspection_mode = auth``: a request carrying
    ``Authorization: Bearer TOKEN`` is answered ``{"active": true, "username": USER, ...}`` while
    the access token is unexpired and unrevoked, else ``{"active": false}``.  A POST without a
    bearer token is RFC 7662 introspection with client authentication.
``/revoke`` (POST)
    RFC 7009 revocation (the client may be public).

Test-side helpers: ``browse(url)`` plays the browser (GET the authorization URL, then GET the
``Location`` it redirects to, i.e. the client's loopback listener), ``approve_device()`` and
``deny_device()`` play the user, ``revoke_refresh_tokens()`` and ``expire_access_tokens()`` play the
provider, ``check(token)`` answers what an SMTP test server's authenticator needs, and
``issued_*_tokens``, ``grants_seen`` and ``failed_token_requests`` record what happened.

Clients: one, ``client_id``; public (``token_endpoint_auth_method=none``) unless
``client_secret`` is given, then it must authenticate with the secret (HTTP Basic or in the
form) at the token, device and revocation endpoints.  Every request is handled under one lock,
so the bookkeeping lists are consistent whenever the test reads them between requests.
"""

from __future__ import annotations

import hmac
import http.client
import json
import secrets
import threading
import time
import traceback
import urllib.parse
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from types import TracebackType
from typing import TYPE_CHECKING, Any

from authlib.common.security import generate_token
from authlib.consts import default_json_headers
from authlib.oauth2 import AuthorizationServer
from authlib.oauth2.rfc6749 import (
    AuthorizationCodeMixin,
    ClientMixin,
    InvalidRequestError,
    JsonPayload,
    JsonRequest,
    OAuth2Error,
    OAuth2Payload,
    OAuth2Request,
    TokenMixin,
)
from authlib.oauth2.rfc6749.grants import AuthorizationCodeGrant, RefreshTokenGrant
from authlib.oauth2.rfc6750 import BearerTokenGenerator
from authlib.oauth2.rfc7009 import RevocationEndpoint
from authlib.oauth2.rfc7636 import CodeChallenge
from authlib.oauth2.rfc7662 import IntrospectionEndpoint
from authlib.oauth2.rfc8628 import (
    DEVICE_CODE_GRANT_TYPE,
    DeviceAuthorizationEndpoint,
    DeviceCodeGrant,
    DeviceCredentialDict,
)

if TYPE_CHECKING:
    from tests.servers.dovecot import Dovecot

__all__ = ["AuthServer", "AuthServerError", "oauth_dovecot"]

HOST = "127.0.0.1"
LOOPBACK_HOSTS = frozenset({"127.0.0.1", "localhost", "::1"})
DEFAULT_SCOPES = ("https://mail.example/imap", "https://mail.example/smtp", "offline_access")
CODE_LIFETIME = 600  # seconds an authorization code may wait for its exchange (RFC 6749 4.1.2)


class AuthServerError(Exception):
    """A test-side action (browse, approve_device, ...) got an answer it should not have."""


# -- models: Authlib's mixins over in-memory records ---------------------------------------------


@dataclass
class _Client(ClientMixin):  # type: ignore[misc]
    client_id: str
    client_secret: str | None
    scopes: tuple[str, ...]

    GRANT_TYPES = frozenset({"authorization_code", "refresh_token", DEVICE_CODE_GRANT_TYPE})

    def get_client_id(self) -> str:
        return self.client_id

    def get_default_redirect_uri(self) -> None:
        return None  # the client must always send redirect_uri: its port changes every login

    def get_allowed_scope(self, scope: str | None) -> str:
        if not scope:
            return " ".join(self.scopes)
        return " ".join(s for s in scope.split() if s in self.scopes)

    def check_redirect_uri(self, redirect_uri: str) -> bool:
        """RFC 8252 7.3: a loopback http URI, any port (but an explicit one), no fragment."""
        try:
            parts = urllib.parse.urlsplit(redirect_uri)
            port = parts.port
        except ValueError:
            return False
        return (
            parts.scheme == "http"
            and parts.hostname in LOOPBACK_HOSTS
            and port is not None
            and not parts.fragment
            and not parts.username
        )

    def check_client_secret(self, client_secret: str) -> bool:
        if self.client_secret is None:
            return False
        return hmac.compare_digest(client_secret.encode(), self.client_secret.encode())

    def check_endpoint_auth_method(self, method: str, endpoint: str) -> bool:
        if self.client_secret is None:
            return method == "none"
        return method in ("client_secret_basic", "client_secret_post")

    def check_response_type(self, response_type: str) -> bool:
        return response_type == "code"

    def check_grant_type(self, grant_type: str) -> bool:
        return grant_type in self.GRANT_TYPES


@dataclass
class _AuthorizationCode(AuthorizationCodeMixin):  # type: ignore[misc]
    code: str
    client_id: str
    redirect_uri: str
    scope: str
    user: str
    code_challenge: str | None
    code_challenge_method: str | None
    expires_at: float

    def get_redirect_uri(self) -> str:
        return self.redirect_uri

    def get_scope(self) -> str:
        return self.scope


@dataclass
class _Token(TokenMixin):  # type: ignore[misc]
    client: _Client
    user: str
    scope: str
    access_token: str
    refresh_token: str | None
    grant_type: str
    issued_at: float
    expires_in: int
    access_revoked: bool = False
    refresh_revoked: bool = False
    expired_early: bool = False  # expire_access_tokens()

    def check_client(self, client: _Client) -> bool:
        return client.get_client_id() == self.client.client_id

    def get_scope(self) -> str:
        return self.scope

    def get_expires_in(self) -> int:
        return self.expires_in

    def is_expired(self) -> bool:
        return self.expired_early or time.time() >= self.issued_at + self.expires_in

    def is_revoked(self) -> bool:
        return self.access_revoked

    def get_user(self) -> str:
        return self.user

    def get_client(self) -> _Client:
        return self.client


@dataclass
class _Store:
    """Everything the server knows; guarded by AuthServer._lock."""

    codes: dict[str, _AuthorizationCode] = field(default_factory=dict)
    by_access: dict[str, _Token] = field(default_factory=dict)
    by_refresh: dict[str, _Token] = field(default_factory=dict)
    devices: dict[str, DeviceCredentialDict] = field(default_factory=dict)  # by device_code
    device_grants: dict[str, tuple[str, bool]] = field(default_factory=dict)  # user_code ->


# -- Authlib's grants and endpoints, given storage ------------------------------------------------


class _PKCE(CodeChallenge):  # type: ignore[misc]
    """Authlib's PKCE check, with the server's policy: a challenge is required, and S256."""

    SUPPORTED_CODE_CHALLENGE_METHOD = ("S256",)

    def validate_code_challenge(self, grant: Any, redirect_uri: str | None) -> None:
        data = grant.request.payload.data
        if not data.get("code_challenge"):
            raise InvalidRequestError("Missing 'code_challenge': PKCE is required")
        if data.get("code_challenge_method") != "S256":
            raise InvalidRequestError("'code_challenge_method=S256' is required")
        super().validate_code_challenge(grant, redirect_uri)


class _AuthorizationCodeGrant(AuthorizationCodeGrant):  # type: ignore[misc]
    TOKEN_ENDPOINT_AUTH_METHODS = ("client_secret_basic", "client_secret_post", "none")

    def save_authorization_code(self, code: str, request: OAuth2Request) -> None:
        data = request.payload.data
        self.server.store.codes[code] = _AuthorizationCode(
            code=code,
            client_id=request.client.get_client_id(),
            redirect_uri=request.payload.redirect_uri,
            scope=request.scope,
            user=request.user,
            code_challenge=data.get("code_challenge"),
            code_challenge_method=data.get("code_challenge_method"),
            expires_at=time.time() + CODE_LIFETIME,
        )

    def query_authorization_code(self, code: str, client: _Client) -> _AuthorizationCode | None:
        item = self.server.store.codes.get(code)
        if item and item.client_id == client.get_client_id() and item.expires_at > time.time():
            return item
        return None

    def delete_authorization_code(self, authorization_code: _AuthorizationCode) -> None:
        self.server.store.codes.pop(authorization_code.code, None)

    def authenticate_user(self, authorization_code: _AuthorizationCode) -> str:
        return authorization_code.user


class _RefreshTokenGrant(RefreshTokenGrant):  # type: ignore[misc]
    TOKEN_ENDPOINT_AUTH_METHODS = ("client_secret_basic", "client_secret_post", "none")
    INCLUDE_NEW_REFRESH_TOKEN = True  # rotation: each refresh returns a new refresh token

    def authenticate_refresh_token(self, refresh_token: str) -> _Token | None:
        token = self.server.store.by_refresh.get(refresh_token)
        if token is not None and not token.refresh_revoked:
            return token
        return None

    def authenticate_user(self, refresh_token: _Token) -> str:
        return refresh_token.user

    def revoke_old_credential(self, refresh_token: _Token) -> None:
        refresh_token.refresh_revoked = True


class _DeviceAuthorizationEndpoint(DeviceAuthorizationEndpoint):  # type: ignore[misc]
    CLIENT_AUTH_METHODS = ("client_secret_basic", "client_secret_post", "none")

    @property
    def INTERVAL(self) -> int:
        return int(self.server.owner.device_interval)

    @property
    def EXPIRES_IN(self) -> int:
        return int(self.server.owner.device_expires_in)

    def get_verification_uri(self) -> str:
        return self.server.owner.verification_uri

    def save_device_credential(self, client_id: str, scope: str | None, data: dict) -> None:
        cred = DeviceCredentialDict(client_id=client_id, scope=scope, **data)
        cred["expires_at"] = time.time() + data["expires_in"]
        cred["last_poll"] = None
        self.server.store.devices[data["device_code"]] = cred


class _DeviceCodeGrant(DeviceCodeGrant):  # type: ignore[misc]
    def query_device_credential(self, device_code: str) -> DeviceCredentialDict | None:
        cred = self.server.store.devices.get(device_code)
        if cred is not None:  # remember when the client polled, for should_slow_down
            now = time.monotonic()
            cred["previous_poll"], cred["last_poll"] = cred["last_poll"], now
        return cred

    def query_user_grant(self, user_code: str) -> tuple[str, bool] | None:
        return self.server.store.device_grants.get(user_code)

    def should_slow_down(self, credential: DeviceCredentialDict) -> bool:
        previous = credential.get("previous_poll")
        if previous is None or credential["last_poll"] - previous >= credential["interval"]:
            return False
        credential["interval"] += self.server.owner.slow_down_step
        return True

    def create_token_response(self) -> tuple[int, dict, list]:
        result = super().create_token_response()
        # A device code is good for one token response.
        cred = self.request.credential
        self.server.store.devices.pop(cred["device_code"], None)
        return result


class _TokenLookup:
    def query_token(self, token_string: str, token_type_hint: str | None) -> _Token | None:
        store = self.server.store  # type: ignore[attr-defined]
        if token_type_hint == "refresh_token":
            return store.by_refresh.get(token_string)
        token = store.by_access.get(token_string)
        if token is None and token_type_hint is None:
            token = store.by_refresh.get(token_string)
        return token


class _RevocationEndpoint(_TokenLookup, RevocationEndpoint):  # type: ignore[misc]
    CLIENT_AUTH_METHODS = ("client_secret_basic", "client_secret_post", "none")

    def revoke_token(self, token: _Token, request: OAuth2Request) -> None:
        # Revoking a refresh token revokes its access token too; an access token goes alone.
        token.access_revoked = True
        if request.form.get("token") == token.refresh_token:
            token.refresh_revoked = True


class _IntrospectionEndpoint(_TokenLookup, IntrospectionEndpoint):  # type: ignore[misc]
    CLIENT_AUTH_METHODS = ("client_secret_basic", "client_secret_post", "none")

    def query_token(self, token_string: str, token_type_hint: str | None) -> _Token | None:
        # Only access tokens are introspected: "active" is about the access token's life.
        return self.server.store.by_access.get(token_string)

    def check_permission(self, token: _Token, client: _Client, request: OAuth2Request) -> bool:
        return token.check_client(client)

    def introspect_token(self, token: _Token) -> dict[str, Any]:
        return {
            "active": True,
            "username": token.user,
            "client_id": token.client.client_id,
            "scope": token.scope,
            "token_type": "Bearer",
        }

    def bearer_payload(self, token_string: str) -> dict[str, Any]:
        """Dovecot's introspection_mode=auth: the token is the request's bearer credential."""
        return self.create_introspection_payload(self.query_token(token_string, "access_token"))


# -- the HTTP front end ---------------------------------------------------------------------------


class _Payload(OAuth2Payload):  # type: ignore[misc]
    def __init__(self, values: Mapping[str, Sequence[str]]) -> None:
        self._datalist = {k: list(v) for k, v in values.items()}
        self._data = {k: v[0] for k, v in values.items()}

    @property
    def data(self) -> dict[str, str]:
        return self._data

    @property
    def datalist(self) -> dict[str, list[str]]:
        return self._datalist


class _Request(OAuth2Request):  # type: ignore[misc]
    def __init__(self, method: str, uri: str, headers: Any, body: bytes) -> None:
        super().__init__(method, uri, headers=headers)
        query = urllib.parse.parse_qs(urllib.parse.urlsplit(uri).query, keep_blank_values=True)
        form = urllib.parse.parse_qs(body.decode("utf-8", "replace"), keep_blank_values=True)
        self._args = {k: v[0] for k, v in query.items()}
        self._form = {k: v[0] for k, v in form.items()}
        self.payload = _Payload(form if method == "POST" else query)

    @property
    def args(self) -> dict[str, str]:
        return self._args

    @property
    def form(self) -> dict[str, str]:
        return self._form


class _JsonPayload(JsonPayload):  # type: ignore[misc]
    def __init__(self, body: bytes) -> None:
        self._body = body

    @property
    def data(self) -> Any:
        return json.loads(self._body or b"{}")


_Response = tuple[int, bytes, list[tuple[str, str]]]


class _Server(AuthorizationServer):  # type: ignore[misc]
    """Authlib's framework-agnostic authorization server, wired to http.server."""

    def __init__(self, owner: AuthServer) -> None:
        super().__init__(scopes_supported=list(owner.scopes))
        self.owner = owner
        self.store = _Store()

    def query_client(self, client_id: str) -> _Client | None:
        client = self.owner._client
        return client if client_id == client.client_id else None

    def save_token(self, token: dict[str, Any], request: OAuth2Request) -> None:
        grant_type = request.payload.grant_type
        record = _Token(
            client=request.client,
            user=request.user,
            scope=token.get("scope", ""),
            access_token=token["access_token"],
            refresh_token=token.get("refresh_token"),
            grant_type=grant_type,
            issued_at=time.time(),
            expires_in=int(token.get("expires_in", 0)) or 10**9,
        )
        self.store.by_access[record.access_token] = record
        self.owner.issued_access_tokens.append(record.access_token)
        if record.refresh_token is not None:
            self.store.by_refresh[record.refresh_token] = record
            self.owner.issued_refresh_tokens.append(record.refresh_token)
        self.owner.grants_seen.append(grant_type)

    def send_signal(self, name: str, *args: Any, **kwargs: Any) -> None:
        pass

    def create_oauth2_request(self, request: Any) -> OAuth2Request:
        if isinstance(request, OAuth2Request):
            return request
        raise TypeError(f"not a request: {request!r}")

    def create_json_request(self, request: Any) -> JsonRequest:
        json_request = JsonRequest(request.method, request.uri, request.headers)
        json_request.payload = _JsonPayload(request._body_bytes)
        return json_request

    def handle_response(self, status: int, body: Any, headers: Any) -> _Response:
        data = json.dumps(body).encode() if isinstance(body, dict) else (body or "").encode()
        return status, data, list(headers or [])


def _json_response(status: int, body: Mapping[str, Any]) -> _Response:
    return status, json.dumps(body).encode(), list(default_json_headers)


class AuthServer:
    """The loopback authorization server; see the module docstring."""

    def __init__(
        self,
        *,
        client_id: str = "syncd-test",
        client_secret: str | None = None,
        access_lifetime: int = 3600,
        scopes: Sequence[str] = DEFAULT_SCOPES,
        user: str = "alice",
        device_interval: int = 1,
        device_expires_in: int = 600,
        slow_down_step: int = 5,
    ) -> None:
        self.client_id = client_id
        self.client_secret = client_secret
        self.access_lifetime = access_lifetime
        self.scopes = tuple(scopes)
        self.user = user
        self.device_interval = device_interval
        self.device_expires_in = device_expires_in
        self.slow_down_step = slow_down_step
        self.issued_refresh_tokens: list[str] = []
        self.issued_access_tokens: list[str] = []
        self.grants_seen: list[str] = []
        self.failed_token_requests: list[tuple[str, str]] = []
        self.last_redirect: str | None = None  # the Location browse() followed last
        self.mail_user: Any = None  # the Dovecot User, set by oauth_dovecot()
        self.server_errors: list[str] = []  # tracebacks of requests that crashed the server
        self._client = _Client(client_id, client_secret, self.scopes)
        self._lock = threading.RLock()
        self._auth = _Server(self)
        self._auth.register_token_generator(
            "default",
            BearerTokenGenerator(
                access_token_generator=lambda **kw: generate_token(48),
                refresh_token_generator=lambda **kw: generate_token(48),
                expires_generator=lambda client, grant_type: self.access_lifetime,
            ),
        )
        self._auth.register_grant(_AuthorizationCodeGrant, [_PKCE(required=True)])
        self._auth.register_grant(_RefreshTokenGrant)
        self._auth.register_grant(_DeviceCodeGrant)
        self._auth.register_endpoint(_DeviceAuthorizationEndpoint)
        self._auth.register_endpoint(_RevocationEndpoint)
        self._introspection = _IntrospectionEndpoint(self._auth)
        self._auth.register_endpoint(self._introspection)
        self._httpd: ThreadingHTTPServer | None = None
        self._thread: threading.Thread | None = None
        self.base_url = ""

    # -- URLs --------------------------------------------------------------------------------

    @property
    def authorize_url(self) -> str:
        return self.base_url + "/authorize"

    @property
    def token_url(self) -> str:
        return self.base_url + "/token"

    @property
    def device_url(self) -> str:
        return self.base_url + "/device"

    @property
    def verification_uri(self) -> str:
        return self.base_url + "/device/verify"

    @property
    def introspect_url(self) -> str:
        return self.base_url + "/introspect"

    @property
    def revoke_url(self) -> str:
        return self.base_url + "/revoke"

    # -- life cycle --------------------------------------------------------------------------

    def start(self) -> AuthServer:
        owner = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def do_GET(self) -> None:
                self._serve()

            def do_POST(self) -> None:
                self._serve()

            def _serve(self) -> None:
                length = int(self.headers.get("Content-Length") or 0)
                body = self.rfile.read(length) if length else b""
                try:
                    status, data, headers = owner._dispatch(
                        self.command, self.path, self.headers, body
                    )
                except Exception:  # a bug here: tell the client and the test, do not hang
                    trace = traceback.format_exc()
                    owner.server_errors.append(trace)
                    status, data, headers = 500, trace.encode(), [("Content-Type", "text/plain")]
                self.send_response(status)
                for name, value in headers:
                    self.send_header(name, value)
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

            def log_message(self, format: str, *args: Any) -> None:
                pass

        self._httpd = ThreadingHTTPServer((HOST, 0), Handler)
        self._httpd.daemon_threads = True
        self.base_url = f"http://{HOST}:{self._httpd.server_address[1]}"
        self._thread = threading.Thread(
            target=self._httpd.serve_forever, args=(0.05,), name="authserver", daemon=True
        )
        self._thread.start()
        return self

    def stop(self) -> None:
        if self._httpd is not None:
            self._httpd.shutdown()
            self._httpd.server_close()
            self._httpd = None
        if self._thread is not None:
            self._thread.join(10)
            self._thread = None

    def __enter__(self) -> AuthServer:
        return self.start()

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()

    # -- request handling --------------------------------------------------------------------

    def _dispatch(self, method: str, target: str, headers: Any, body: bytes) -> _Response:
        path = urllib.parse.urlsplit(target).path
        try:
            request = _Request(method, self.base_url + target, headers, body)
        except OAuth2Error as error:
            return _json_response(400, dict(error.get_body()))
        request._body_bytes = body
        with self._lock:
            if path == "/authorize" and method == "GET":
                return self._authorize(request)
            if path == "/token" and method == "POST":
                return self._token(request)
            if path == "/device" and method == "POST":
                return self._auth.create_endpoint_response("device_authorization", request)
            if path == "/device/verify":
                return self._verify_device(request)
            if path == "/introspect":
                auth = headers.get("Authorization") or ""
                scheme, _, credential = auth.partition(" ")
                if scheme.lower() == "bearer":
                    return _json_response(200, self._introspection.bearer_payload(credential))
                if method == "POST":
                    return self._auth.create_endpoint_response("introspection", request)
            if path == "/revoke" and method == "POST":
                return self._auth.create_endpoint_response("revocation", request)
        return _json_response(404, {"error": "not_found", "error_description": path})

    def _authorize(self, request: _Request) -> _Response:
        try:
            grant = self._auth.get_consent_grant(request, end_user=self.user)
        except OAuth2Error as error:
            return self._auth.handle_error_response(request, error)
        # The user is logged in and consents: Authlib validates again and issues the code.
        return self._auth.create_authorization_response(request, grant_user=self.user, grant=grant)

    def _token(self, request: _Request) -> _Response:
        grant_type = request.payload.grant_type or ""
        status, data, headers = self._auth.create_token_response(request)
        if status != 200:
            error = json.loads(data).get("error", "") if data else ""
            self.failed_token_requests.append((grant_type, error))
        return status, data, headers

    def _verify_device(self, request: _Request) -> _Response:
        values = request.form if request.method == "POST" else request.args
        user_code = values.get("user_code", "").strip().upper()
        action = values.get("action", "")
        if request.method != "POST" or action not in ("approve", "deny"):
            return _json_response(400, {"error": "post user_code and action=approve|deny"})
        now = time.time()
        pending = [
            c
            for c in self._auth.store.devices.values()
            if c["user_code"] == user_code and c["expires_at"] > now
        ]
        if not pending:
            return _json_response(400, {"error": "unknown or expired user_code"})
        self._auth.store.device_grants[user_code] = (self.user, action == "approve")
        return _json_response(200, {"user_code": user_code, "action": action})

    # -- what the test does ------------------------------------------------------------------

    def browse(self, url: str) -> None:
        """The browser: GET the authorization URL and follow its redirect to the client."""
        status, location, body = _get(url)
        if status not in (301, 302, 303, 307, 308) or not location:
            raise AuthServerError(f"GET {url}: {status} {body[:500]!r}, not a redirect")
        self.last_redirect = location
        status, _, body = _get(location)
        if not 200 <= status < 400:
            raise AuthServerError(f"GET {location}: {status} {body[:500]!r}")

    def approve_device(self, user_code: str) -> None:
        """The user types ``user_code`` at ``verification_uri`` and approves."""
        self._device_decision(user_code, "approve")

    def deny_device(self, user_code: str) -> None:
        """The user types ``user_code`` at ``verification_uri`` and refuses."""
        self._device_decision(user_code, "deny")

    def _device_decision(self, user_code: str, action: str) -> None:
        form = urllib.parse.urlencode({"user_code": user_code, "action": action}).encode()
        status, body = _post(self.verification_uri, form)
        if status != 200:
            raise AuthServerError(f"{action} {user_code}: {status} {body[:500]!r}")

    def revoke_refresh_tokens(self) -> None:
        """Revoke every refresh token and the access tokens issued with them."""
        with self._lock:
            for token in self._auth.store.by_access.values():
                token.refresh_revoked = token.access_revoked = True

    def expire_access_tokens(self) -> None:
        """Every access token issued so far is inactive from now on (refresh tokens stay)."""
        with self._lock:
            for token in self._auth.store.by_access.values():
                token.expired_early = True

    def check(self, access_token: str) -> str | None:
        """The username the access token belongs to if it is active, else None."""
        with self._lock:
            payload = self._introspection.bearer_payload(access_token)
        return payload.get("username") if payload.get("active") else None


def _get(url: str) -> tuple[int, str | None, bytes]:
    """One GET, redirects not followed: (status, Location, body)."""
    parts = urllib.parse.urlsplit(url)
    conn = http.client.HTTPConnection(parts.hostname or HOST, parts.port or 80, timeout=30)
    try:
        target = parts.path or "/"
        if parts.query:
            target += "?" + parts.query
        conn.request("GET", target, headers={"Connection": "close"})
        resp = conn.getresponse()
        return resp.status, resp.getheader("Location"), resp.read()
    finally:
        conn.close()


def _post(url: str, form: bytes) -> tuple[int, bytes]:
    parts = urllib.parse.urlsplit(url)
    conn = http.client.HTTPConnection(parts.hostname or HOST, parts.port or 80, timeout=30)
    try:
        headers = {"Content-Type": "application/x-www-form-urlencoded", "Connection": "close"}
        conn.request("POST", parts.path, body=form, headers=headers)
        resp = conn.getresponse()
        return resp.status, resp.read()
    finally:
        conn.close()


@contextmanager
def oauth_dovecot(base: Path, **authserver_kwargs: Any) -> Iterator[tuple[AuthServer, Dovecot]]:
    """An AuthServer and a Dovecot whose oauth2 passdb introspects that server's tokens.

    The Dovecot has a user named ``authserver.user``, its ``User`` (name, password, maildir) in
    ``authserver.mail_user``: Dovecot's oauth2 passdb checks that the token's ``username`` is
    the login name, and the userdb must know that user.  Dovecot's own config for this
    (``oauth2.conf.ext``: ``introspection_mode = auth``, ``username_attribute = username``,
    ``active_attribute = active``, ``active_value = true``) is written by ``Dovecot`` itself.
    """
    from tests.servers.dovecot import Dovecot

    with (
        AuthServer(**authserver_kwargs) as authserver,
        Dovecot(base, oauth2_url=authserver.introspect_url) as dovecot,
    ):
        authserver.mail_user = dovecot.add_user(authserver.user, secrets.token_urlsafe(12))
        yield authserver, dovecot
