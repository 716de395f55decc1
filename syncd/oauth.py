"""OAuth2 for XOAUTH2/OAUTHBEARER logins: ``syncd oauth login`` and the access tokens after it.

Theory of operation
-------------------
``syncd oauth login ACCOUNT`` obtains a refresh token once, interactively, with one of two
flows, and stores it (system keyring, service ``syncd``, key ``ACCOUNT/oauth2-refresh``; or
``refresh_token_store_command``):

* the authorization-code flow with PKCE S256 (RFC 7636) and a loopback redirect (RFC 8252):
  a one-shot HTTP listener on 127.0.0.1 at a random port receives the browser's redirect;
  the ``state`` it carries must be the one sent;
* the device-authorization flow (RFC 8628, ``--device``) for machines without a browser.

Every other command asks :func:`access_token` for an access token when it logs in. One
:class:`TokenCache` per account per process hands the same token to every connection (the
worker's IMAP, the IDLE watchers, SMTP, POP3) and refreshes it before it expires, under a
lock, so a rotated refresh token is never raced by a second refresh. A login the server
refuses with a token from the cache asks :func:`renew` for a fresh one, once. A refresh
token the provider refuses (``invalid_grant``: revoked, expired, password changed) raises
:class:`~syncd.errors.LoginRequired`, and until the stored token changes the cache answers
every later call with the same error without asking the provider again: no retry loop.

Tokens are never logged, written to the config or the state database, or put on a
command line; each one is passed to :func:`syncd.log.register_secret` as soon as it exists.

Why no OAuth2 client library: the client side is three form POSTs to the token endpoint
(code, device code, refresh token) and one to the device endpoint, plus PKCE, which is
``hashlib``/``secrets``/``base64``. Authlib's client needs requests or httpx (two more
dependency trees for four POSTs), and oauthlib builds the request bodies but leaves the
HTTP to the caller while imposing process-wide policy through environment variables
(``OAUTHLIB_INSECURE_TRANSPORT``, ``OAUTHLIB_RELAX_TOKEN_SCOPE``). ``urllib`` with the
system's certificate store does the transport; the tests run the flows against an
authorization server built on Authlib, so a mistake here is not mirrored there.
"""

from __future__ import annotations

import base64
import hashlib
import html
import json
import logging
import secrets
import threading
import time
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, HTTPServer
from typing import Any, Final

from syncd import __version__
from syncd.config import OAuth2Config, OAuth2Provider
from syncd.errors import AuthError, CredentialError, LoginRequired, TransientError
from syncd.log import register_secret

__all__ = [
    "KEYRING_SERVICE",
    "LoginResult",
    "TokenCache",
    "access_token",
    "authorization_code_login",
    "device_login",
    "login",
    "pkce_pair",
    "renew",
    "token_status",
]

log = logging.getLogger(__name__)

KEYRING_SERVICE: Final = "syncd"
HTTP_TIMEOUT: Final = 30.0
LOGIN_TIMEOUT: Final = 300.0
"""Seconds ``syncd oauth login`` waits for the browser (or the device code's approval)."""
EARLY: Final = 60.0
"""Refresh this long before the access token expires (a tenth of its life if that is less)."""
ASSUMED_LIFETIME: Final = 3600.0
"""An access token whose response has no ``expires_in`` is refreshed after this long."""
SLOW_DOWN: Final = 5.0
"""RFC 8628 3.5: ``slow_down`` adds 5 seconds to the polling interval."""

_DEVICE_GRANT: Final = "urn:ietf:params:oauth:grant-type:device_code"
_DONE_PAGE: Final = (
    "<!doctype html><meta charset=utf-8><title>syncd</title>"
    "<p>{text}</p><p>You can close this tab.</p>"
)


# --- the token endpoint ------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Tokens:
    access_token: str
    refresh_token: str | None
    expires_in: float | None
    """Seconds from when the response came; None when the server did not say."""


class _EndpointError(Exception):
    """The endpoint answered with an OAuth2 error (RFC 6749 5.2, RFC 8628 3.5)."""

    def __init__(self, error: str, description: str) -> None:
        super().__init__(f"{error}: {description}" if description else error)
        self.error = error
        self.description = description


def _post(url: str, form: Mapping[str, str], what: str) -> dict[str, Any]:
    """POST ``form`` to ``url``; the JSON answer, or _EndpointError / TransientError / AuthError."""
    body = urllib.parse.urlencode(form).encode("ascii")
    request = urllib.request.Request(  # noqa: S310 - config checked: https, or http to loopback
        url,
        data=body,
        headers={
            "Content-Type": "application/x-www-form-urlencoded",
            "Accept": "application/json",
            "User-Agent": f"syncd/{__version__}",
        },
        method="POST",
    )
    try:
        with urllib.request.urlopen(request, timeout=HTTP_TIMEOUT) as response:  # noqa: S310
            raw = response.read()
    except urllib.error.HTTPError as exc:
        raw = exc.read()
        data = _json(raw)
        if data is not None and isinstance(data.get("error"), str):
            raise _EndpointError(data["error"], str(data.get("error_description") or "")) from None
        if exc.code >= 500 or exc.code == 429:
            raise TransientError(f"{what}: {url} answered {exc.code} {exc.reason}") from None
        raise AuthError(f"{what}: {url} answered {exc.code} {exc.reason}") from None
    except (urllib.error.URLError, OSError) as exc:
        reason = exc.reason if isinstance(exc, urllib.error.URLError) else exc
        raise TransientError(f"{what}: cannot reach {url}: {reason}") from None
    data = _json(raw)
    if data is None:
        raise TransientError(f"{what}: {url} did not answer with a JSON object")
    if isinstance(data.get("error"), str):  # some servers say 200 with an error
        raise _EndpointError(data["error"], str(data.get("error_description") or ""))
    return data


def _json(raw: bytes) -> dict[str, Any] | None:
    try:
        data = json.loads(raw.decode("utf-8"))
    except (UnicodeDecodeError, ValueError):
        return None
    return data if isinstance(data, dict) else None


def _client_form(cfg: OAuth2Config) -> dict[str, str]:
    form = {"client_id": cfg.client_id}
    secret = _client_secret(cfg)
    if secret is not None:
        form["client_secret"] = secret
    return form


def _client_secret(cfg: OAuth2Config) -> str | None:
    secret = cfg.client_secret
    if cfg.client_secret_command is not None:
        secret = _run(cfg.client_secret_command, f"accounts.{cfg.account}.oauth2.client_secret")
    if secret:
        register_secret(secret)
    return secret


def _tokens(data: dict[str, Any], cfg: OAuth2Config, what: str) -> Tokens:
    access = data.get("access_token")
    if not isinstance(access, str) or not access:
        raise AuthError(f"{what}: the answer of {cfg.token_url} holds no access_token")
    register_secret(access)
    refresh = data.get("refresh_token")
    if isinstance(refresh, str) and refresh:
        register_secret(refresh)
    else:
        refresh = None
    expires = data.get("expires_in")
    try:
        lifetime = float(expires) if expires is not None else None
    except (TypeError, ValueError):
        lifetime = None
    return Tokens(access, refresh, lifetime)


def _token_request(cfg: OAuth2Config, form: dict[str, str], what: str) -> Tokens:
    for value in form.values():
        register_secret(value)
    try:
        data = _post(cfg.token_url, {**form, **_client_form(cfg)}, what)
    except _EndpointError as exc:
        if exc.error == "invalid_grant":
            raise LoginRequired(
                f"{what}: the OAuth2 provider refused the refresh token ({exc}); it was "
                "revoked or has expired",
                account=cfg.account,
            ) from None
        if exc.error in ("invalid_client", "unauthorized_client"):
            raise AuthError(
                f"{what}: the OAuth2 provider refused the client ({exc}); check client_id "
                f"and client_secret in accounts.{cfg.account}.oauth2"
            ) from None
        if exc.error == "temporarily_unavailable":
            raise TransientError(f"{what}: {exc}") from None
        raise _Refused(exc.error, f"{what}: the OAuth2 provider said {exc}") from None
    return _tokens(data, cfg, what)


class _Refused(AuthError):
    """The token endpoint's OAuth2 error that has no meaning of its own here."""

    def __init__(self, error: str, message: str) -> None:
        super().__init__(message)
        self.error = error


# --- where the refresh token lives --------------------------------------------------------


def _where(cfg: OAuth2Config) -> str:
    if cfg.refresh_token_command is not None:
        return f"refresh_token_command ({cfg.refresh_token_command})"
    return f'the system keyring (service "{KEYRING_SERVICE}", key "{cfg.keyring_key}")'


def _load_refresh_token(cfg: OAuth2Config) -> str:
    """The stored refresh token; LoginRequired when there is none."""
    if cfg.refresh_token_command is not None:
        token = _run(cfg.refresh_token_command, f"accounts.{cfg.account}.oauth2")
    else:
        import keyring
        import keyring.errors

        try:
            token = keyring.get_password(KEYRING_SERVICE, cfg.keyring_key) or ""
        except keyring.errors.NoKeyringError as exc:
            raise CredentialError(_no_keyring(cfg, exc)) from exc
        except Exception as exc:  # backends raise their own types (dbus, jeepney, ...)
            raise CredentialError(
                f"accounts.{cfg.account}.oauth2: the system keyring failed: {exc}; unlock it"
            ) from exc
    token = token.strip()
    if not token:
        raise LoginRequired(
            f"no OAuth2 token for {cfg.account} in {_where(cfg)}", account=cfg.account
        )
    register_secret(token)
    return token


def _store_refresh_token(cfg: OAuth2Config, token: str) -> None:
    register_secret(token)
    if cfg.refresh_token_command is not None:
        if cfg.refresh_token_store_command is None:
            raise CredentialError(_read_only(cfg))
        _run(
            cfg.refresh_token_store_command,
            f"accounts.{cfg.account}.oauth2.refresh_token_store_command",
            stdin=token + "\n",
            want_output=False,
        )
        return
    import keyring
    import keyring.errors

    try:
        keyring.set_password(KEYRING_SERVICE, cfg.keyring_key, token)
    except keyring.errors.NoKeyringError as exc:
        raise CredentialError(_no_keyring(cfg, exc)) from exc
    except Exception as exc:  # backends raise their own types (dbus, jeepney, ...)
        raise CredentialError(
            f"could not store the OAuth2 token of {cfg.account} in the system keyring: {exc}"
        ) from exc


def _read_only(cfg: OAuth2Config) -> str:
    return (
        f"accounts.{cfg.account}.oauth2: refresh_token_command only reads the token; add "
        "refresh_token_store_command (it gets the token on its standard input, e.g. "
        "`pass insert -m -f mail/work-oauth`), or remove refresh_token_command to keep the "
        "token in the system keyring"
    )


def _no_keyring(cfg: OAuth2Config, exc: Exception) -> str:
    return (
        f"accounts.{cfg.account}.oauth2: no system keyring is available ({exc}); install and "
        "unlock one (GNOME Keyring, KWallet, KeePassXC's Secret Service), or set "
        "refresh_token_command and refresh_token_store_command (a password store such as pass)"
    )


def _run(command: str, where: str, *, stdin: str | None = None, want_output: bool = True) -> str:
    from syncd.credentials import run_secret_command

    return run_secret_command(command, where, stdin=stdin, want_output=want_output)


# --- the cache ----------------------------------------------------------------------------


class TokenCache:
    """One account's access token, shared by every thread of this process.

    The lock is held across a refresh, so only one refresh runs at a time and a rotated
    refresh token is stored before anyone uses the old one again.
    """

    def __init__(self, cfg: OAuth2Config, clock: Callable[[], float] = time.monotonic) -> None:
        self.cfg = cfg
        self._clock = clock
        self._lock = threading.Lock()
        self._access: str | None = None
        self._refresh_at = 0.0
        self._expires_at: float | None = None
        self._unsaved: str | None = None
        """A rotated refresh token the store would not take: used from memory instead."""
        self._refused: str | None = None
        """A refresh token the provider refused: not sent again."""

    def get(self) -> str:
        """A valid access token: the cached one, or a fresh one if it is (nearly) expired."""
        with self._lock:
            if self._access is not None and self._clock() < self._refresh_at:
                return self._access
            return self._refresh()

    def renew(self, refused: str) -> bool:
        """The server refused ``refused``: refresh unless that was done meanwhile.

        True when a different token is now to be had (try the login once more), False when
        ``refused`` did not come from this cache.
        """
        with self._lock:
            if self._access != refused:
                return self._access is not None
            log.info(
                "%s: the server refused the OAuth2 access token; refreshing it", self.cfg.account
            )
            self._access = None
            self._refresh()
            return True

    def status(self) -> tuple[str, bool, float | None]:
        """(where the refresh token is kept, whether an access token was obtained, seconds
        until it expires: None when the provider did not say)."""
        with self._lock:
            left = None if self._expires_at is None else self._expires_at - self._clock()
            return _where(self.cfg), self._access is not None, left

    def _refresh(self) -> str:
        cfg = self.cfg
        token = self._unsaved or _load_refresh_token(cfg)
        if token == self._refused:
            raise LoginRequired(
                f"accounts.{cfg.account}.oauth2: the OAuth2 provider refused the stored refresh "
                "token earlier (revoked or expired)",
                account=cfg.account,
            )
        what = f"accounts.{cfg.account}.oauth2: refreshing the access token"
        started = self._clock()
        try:
            tokens = _token_request(
                cfg, {"grant_type": "refresh_token", "refresh_token": token}, what
            )
        except LoginRequired:
            # Another process (a `syncd sync` beside the daemon) may have refreshed at the
            # same moment and had the token rotated under us: its successor is stored.
            stored = _load_refresh_token(cfg)
            if stored in (token, self._refused):
                self._refused, self._unsaved, self._access = token, None, None
                raise
            token = stored
            try:
                tokens = _token_request(
                    cfg, {"grant_type": "refresh_token", "refresh_token": token}, what
                )
            except LoginRequired:
                self._refused, self._unsaved, self._access = token, None, None
                raise
        lifetime = tokens.expires_in if tokens.expires_in is not None else ASSUMED_LIFETIME
        self._access = tokens.access_token
        self._expires_at = started + lifetime if tokens.expires_in is not None else None
        self._refresh_at = started + lifetime - min(EARLY, lifetime / 10)
        if tokens.refresh_token is not None and tokens.refresh_token != token:
            # Rotation (RFC 6749 6, OAuth 2.1): the old one may already be dead.
            self._unsaved = tokens.refresh_token
            try:
                _store_refresh_token(cfg, tokens.refresh_token)
                self._unsaved = None
            except CredentialError as exc:
                log.warning(
                    "%s: the provider sent a new refresh token that could not be stored (%s); "
                    "it is used until syncd stops, then `syncd oauth login %s` may be needed",
                    cfg.account,
                    exc,
                    cfg.account,
                )
        log.debug("%s: new OAuth2 access token, valid for %s s", cfg.account, f"{lifetime:.0f}")
        return tokens.access_token


_caches: dict[OAuth2Config, TokenCache] = {}
_caches_lock = threading.Lock()


def _cache(cfg: OAuth2Config) -> TokenCache:
    with _caches_lock:
        cache = _caches.get(cfg)
        if cache is None:
            cache = _caches[cfg] = TokenCache(cfg)
        return cache


def access_token(cfg: OAuth2Config) -> str:
    """An access token for the account of ``cfg`` (cached for the process, refreshed early).

    Raises LoginRequired (no refresh token, or the provider refused it), CredentialError
    (keyring or command failed), TransientError (provider unreachable) or AuthError.
    """
    return _cache(cfg).get()


def renew(cfg: OAuth2Config, refused: str) -> bool:
    """After a server refused ``refused``: True if a fresh token is ready to try once."""
    return _cache(cfg).renew(refused)


def token_status(cfg: OAuth2Config) -> tuple[str, bool, float | None]:
    """For ``syncd check``: :meth:`TokenCache.status` of the account's cache."""
    return _cache(cfg).status()


# --- the interactive flows ----------------------------------------------------------------


def pkce_pair() -> tuple[str, str]:
    """(code_verifier, S256 code_challenge) as RFC 7636 4.1-4.2 define them."""
    verifier = secrets.token_urlsafe(64)  # 86 characters of [A-Za-z0-9_-]
    digest = hashlib.sha256(verifier.encode("ascii")).digest()
    challenge = base64.urlsafe_b64encode(digest).rstrip(b"=").decode("ascii")
    return verifier, challenge


@dataclass
class _Redirect:
    state: str
    params: dict[str, str] | None = None
    problem: str | None = None


def _listener(expect: _Redirect, done: threading.Event) -> HTTPServer:
    class Handler(BaseHTTPRequestHandler):
        timeout = 10  # a connection that never sends its request does not hold the login

        def do_GET(self) -> None:
            query = urllib.parse.urlsplit(self.path).query
            params = dict(urllib.parse.parse_qsl(query, keep_blank_values=True))
            if "state" not in params and "code" not in params and "error" not in params:
                self._answer(404, "This is syncd's login listener; nothing here.")
                return  # /favicon.ico and the like: keep waiting
            if done.is_set():
                self._answer(409, "syncd already has its answer.")
                return
            if not secrets.compare_digest(params.get("state", ""), expect.state):
                expect.problem = (
                    "the browser came back with a different state than syncd sent (a "
                    "stale tab, or a forged redirect); nothing was stored"
                )
                self._answer(400, "The login was refused: the state does not match.")
            elif "error" in params:
                expect.params = params
                self._answer(400, f"The login failed: {params['error']}.")
            else:
                expect.params = params
                self._answer(200, "syncd got the authorization.")
            done.set()

        def _answer(self, code: int, text: str) -> None:
            body = _DONE_PAGE.format(text=html.escape(text)).encode("utf-8")
            self.send_response(code)
            self.send_header("Content-Type", "text/html; charset=utf-8")
            self.send_header("Content-Length", str(len(body)))
            self.send_header("Cache-Control", "no-store")
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, format: str, *args: Any) -> None:
            pass  # the query holds the code: never on stderr

    return HTTPServer(("127.0.0.1", 0), Handler)


def authorization_code_login(
    cfg: OAuth2Config,
    *,
    say: Callable[[str], None],
    open_browser: bool = True,
    timeout: float = LOGIN_TIMEOUT,
) -> Tokens:
    """The authorization-code flow with PKCE and a loopback redirect (RFC 7636, RFC 8252)."""
    verifier, challenge = pkce_pair()
    register_secret(verifier)
    expect = _Redirect(state=secrets.token_urlsafe(24))
    done = threading.Event()
    server = _listener(expect, done)
    server.timeout = 0.5
    port = server.server_address[1]
    # Microsoft registers "http://localhost" and matches any port; Google and RFC 8252 7.3
    # want the IP literal, which no hosts file can point elsewhere.
    host = "localhost" if cfg.provider is OAuth2Provider.MICROSOFT else "127.0.0.1"
    redirect_uri = f"http://{host}:{port}/"
    query = {
        "response_type": "code",
        "client_id": cfg.client_id,
        "redirect_uri": redirect_uri,
        "scope": " ".join(cfg.scopes),
        "state": expect.state,
        "code_challenge": challenge,
        "code_challenge_method": "S256",
        **dict(cfg.auth_params),
    }
    sep = "&" if "?" in cfg.auth_url else "?"
    url = cfg.auth_url + sep + urllib.parse.urlencode(query, quote_via=urllib.parse.quote)
    try:
        say(f"Open this URL in a browser and sign in as the account's user:\n\n  {url}\n")
        if open_browser and _open_browser(url):
            say("(a browser window was opened for it)")
        say(f"Waiting up to {timeout:.0f} s for the browser to come back to {redirect_uri} ...")
        deadline = time.monotonic() + timeout
        while not done.is_set():
            if time.monotonic() > deadline:
                raise AuthError(
                    f"no answer from the browser within {timeout:.0f} s; nothing was stored. "
                    "Run the command again, or use --device on a machine without a browser"
                )
            server.handle_request()
    finally:
        server.server_close()
    if expect.problem is not None:
        raise AuthError(expect.problem)
    params = expect.params or {}
    if "error" in params:
        detail = params.get("error_description") or ""
        raise AuthError(
            f"the provider refused the login: {params['error']}"
            + (f" ({detail})" if detail else "")
            + _consent_hint(cfg, params["error"])
        )
    code = params.get("code")
    if not code:
        raise AuthError("the browser came back without an authorization code")
    register_secret(code)
    return _token_request(
        cfg,
        {
            "grant_type": "authorization_code",
            "code": code,
            "redirect_uri": redirect_uri,
            "code_verifier": verifier,
        },
        "exchanging the authorization code",
    )


def _open_browser(url: str) -> bool:
    import os
    import sys
    import webbrowser

    graphical = any(os.environ.get(v) for v in ("DISPLAY", "WAYLAND_DISPLAY", "BROWSER"))
    if not graphical and sys.platform != "darwin":
        return False  # webbrowser would start lynx or w3m in this terminal, over our output
    try:
        webbrowser.get()  # webbrowser.Error when there is none (no DISPLAY, no BROWSER)
        return webbrowser.open(url)
    except webbrowser.Error:
        return False


def _consent_hint(cfg: OAuth2Config, error: str) -> str:
    if error in ("access_denied", "consent_required", "interaction_required"):
        if cfg.provider is OAuth2Provider.MICROSOFT:
            return (
                "; if your organisation blocks user consent, an administrator must grant "
                "consent to the app (Entra admin center, Enterprise applications)"
            )
        if cfg.provider is OAuth2Provider.GOOGLE:
            return (
                "; an app in Testing mode only lets in the test users listed on its OAuth "
                "consent screen"
            )
    return ""


def device_login(
    cfg: OAuth2Config,
    *,
    say: Callable[[str], None],
    sleep: Callable[[float], None] = time.sleep,
    clock: Callable[[], float] = time.monotonic,
) -> Tokens:
    """The device-authorization flow (RFC 8628): show a code, poll until it is approved."""
    if cfg.device_url is None:
        raise AuthError(
            f"accounts.{cfg.account}.oauth2 has no device_url, so --device cannot work; add "
            "one, or sign in with a browser (without --device)"
        )
    form = {"scope": " ".join(cfg.scopes), **_client_form(cfg)}
    try:
        data = _post(cfg.device_url, form, "starting the device login")
    except _EndpointError as exc:
        hint = ""
        if cfg.provider is OAuth2Provider.GOOGLE and exc.error in (
            "invalid_scope",
            "invalid_request",
        ):
            hint = (
                "; Google's device flow does not allow the Gmail scope: sign in with a browser "
                "(without --device)"
            )
        if cfg.provider is OAuth2Provider.MICROSOFT and exc.error in (
            "unauthorized_client",
            "invalid_client",
        ):
            hint = '; turn on "Allow public client flows" in the app registration'
        raise AuthError(f"the provider refused the device login: {exc}{hint}") from None
    device_code = data.get("device_code")
    user_code = data.get("user_code")
    # Google answers verification_url (its name from before RFC 8628).
    verify = data.get("verification_uri") or data.get("verification_url")
    if not all(isinstance(v, str) and v for v in (device_code, user_code, verify)):
        raise AuthError(f"{cfg.device_url} did not answer with a device and user code")
    assert isinstance(device_code, str) and isinstance(user_code, str)
    register_secret(device_code)
    interval = _seconds(data.get("interval"), 5.0)
    deadline = clock() + _seconds(data.get("expires_in"), 600.0)
    complete = data.get("verification_uri_complete")
    say(f"On any device, open {verify} and enter the code:\n\n  {user_code}\n")
    if isinstance(complete, str) and complete:
        say(f"(or open {complete}, which has the code in it)")
    say("Waiting for the sign-in ...")
    while True:
        sleep(interval)
        if clock() > deadline:
            raise AuthError("the code expired before the sign-in; run the command again")
        try:
            return _token_request(
                cfg,
                {"grant_type": _DEVICE_GRANT, "device_code": device_code},
                "finishing the device login",
            )
        except _Refused as exc:
            error = exc.error
            if error == "authorization_pending":
                continue
            if error == "slow_down":
                interval += SLOW_DOWN
                continue
            if error == "expired_token":
                raise AuthError(
                    "the code expired before the sign-in; run the command again"
                ) from None
            if error == "access_denied":
                raise AuthError(
                    "the sign-in was declined on the provider's page; nothing was stored"
                    + _consent_hint(cfg, "access_denied")
                ) from None
            raise


def _seconds(value: object, default: float) -> float:
    try:
        seconds = float(value)  # type: ignore[arg-type]
    except (TypeError, ValueError):
        return default
    return seconds if seconds > 0 else default


@dataclass(frozen=True, slots=True)
class LoginResult:
    where: str
    """Where the refresh token was stored, in words."""
    expires_in: float | None
    """The first access token's lifetime in seconds (None: the server did not say)."""


def login(
    cfg: OAuth2Config,
    *,
    device: bool,
    say: Callable[[str], None],
    open_browser: bool = True,
    timeout: float = LOGIN_TIMEOUT,
) -> LoginResult:
    """``syncd oauth login``: run a flow, store the refresh token, say where."""
    if cfg.refresh_token_command is not None and cfg.refresh_token_store_command is None:
        raise CredentialError(_read_only(cfg))  # before the user signs in, not after
    if device:
        tokens = device_login(cfg, say=say)
    else:
        tokens = authorization_code_login(cfg, say=say, open_browser=open_browser, timeout=timeout)
    if tokens.refresh_token is None:
        hint = ""
        if cfg.provider is OAuth2Provider.MICROSOFT or "offline_access" not in cfg.scopes:
            hint = " (Microsoft and most servers only send one for the offline_access scope)"
        raise AuthError(f"the provider sent no refresh token{hint}; nothing was stored")
    _store_refresh_token(cfg, tokens.refresh_token)
    with _caches_lock:
        _caches.pop(cfg, None)
    return LoginResult(where=_where(cfg), expires_in=tokens.expires_in)
