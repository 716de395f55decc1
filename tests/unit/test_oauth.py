"""syncd.oauth against the real loopback authorization server (Authlib), in this process.

No protocol is mocked: tokens come from tests/servers/authserver.py over HTTP, the keyring is
the file-backed backend, and commands are real shell commands. Only the token cache's clock
is ours, so "later" does not need a wait.
"""

from __future__ import annotations

import threading
import urllib.error
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import keyring
import pytest

from syncd import oauth
from syncd.config import OAuth2Config, OAuth2Provider
from syncd.errors import AuthError, CredentialError, LoginRequired
from syncd.log import redact
from tests.servers.authserver import AuthServer
from tests.servers.filekeyring import FileKeyring


@pytest.fixture
def store(tmp_path: Path) -> Iterator[FileKeyring]:
    previous = keyring.get_keyring()
    ring = FileKeyring(tmp_path / "keyring.json")
    keyring.set_keyring(ring)
    try:
        yield ring
    finally:
        keyring.set_keyring(previous)


def config(auth: AuthServer, **extra: str) -> OAuth2Config:
    return OAuth2Config(
        account="work",
        provider=OAuth2Provider.CUSTOM,
        client_id=auth.client_id,
        auth_url=auth.authorize_url,
        token_url=auth.token_url,
        device_url=auth.device_url,
        scopes=tuple(auth.scopes),
        **extra,  # type: ignore[arg-type]
    )


def browser_login(auth: AuthServer, cfg: OAuth2Config, *, visit=None) -> oauth.LoginResult:
    """``oauth.login`` with the test as the browser: it follows the printed URL."""
    lines: list[str] = []

    def say(text: str) -> None:
        lines.append(text)
        for word in text.split():
            if word.startswith(auth.authorize_url):
                threading.Thread(target=visit or auth.browse, args=(word,), daemon=True).start()

    return oauth.login(cfg, device=False, say=say, open_browser=False, timeout=20)


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def test_pkce_pair_is_rfc7636_s256() -> None:
    verifier, challenge = oauth.pkce_pair()
    assert 43 <= len(verifier) <= 128
    assert set(verifier) <= set(
        "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-._~"
    )
    # RFC 7636 appendix B's example, through the same function's arithmetic.
    assert len(challenge) == 43 and "=" not in challenge
    assert oauth.pkce_pair()[0] != verifier


def test_login_stores_the_refresh_token_and_the_cache_refreshes_early(store: FileKeyring) -> None:
    with AuthServer(access_lifetime=600) as auth:
        cfg = config(auth)
        result = browser_login(auth, cfg)
        assert "system keyring" in result.where and result.expires_in == 600
        first_refresh = auth.issued_refresh_tokens[-1]
        assert store.get_password("syncd", "work/oauth2-refresh") == first_refresh
        assert redact(f"x {first_refresh} y") == "x *** y"  # masked in any log line

        clock = Clock()
        cache = oauth.TokenCache(cfg, clock=clock)
        token = cache.get()
        assert auth.check(token) == auth.user
        clock.now += 500  # within 600 - 60 s: the cached token
        assert cache.get() == token
        clock.now += 45  # 545 s: less than 60 s left, refreshed before it expires
        newer = cache.get()
        assert newer != token and auth.check(newer) == auth.user
        assert auth.grants_seen == ["authorization_code", "refresh_token", "refresh_token"]
        # The server rotates refresh tokens; the keyring follows.
        assert store.get_password("syncd", "work/oauth2-refresh") == auth.issued_refresh_tokens[-1]
        assert auth.issued_refresh_tokens[-1] != first_refresh
        where, obtained, left = cache.status()
        assert "work/oauth2-refresh" in where and obtained
        assert left is not None and 599 <= left <= 600


def test_threads_share_one_refresh(store: FileKeyring) -> None:
    with AuthServer() as auth:
        cfg = config(auth)
        browser_login(auth, cfg)
        cache = oauth.TokenCache(cfg)
        got: list[str] = []
        threads = [threading.Thread(target=lambda: got.append(cache.get())) for _ in range(8)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        assert len(set(got)) == 1 and len(got) == 8
        assert auth.grants_seen.count("refresh_token") == 1


def test_renew_after_a_refusal_refreshes_once_for_all_callers(store: FileKeyring) -> None:
    with AuthServer() as auth:
        cfg = config(auth)
        browser_login(auth, cfg)
        cache = oauth.TokenCache(cfg)
        stale = cache.get()
        auth.expire_access_tokens()
        assert auth.check(stale) is None
        assert cache.renew(stale) is True
        fresh = cache.get()
        assert fresh != stale and auth.check(fresh) == auth.user
        # A second connection that was refused the same stale token: no second refresh.
        assert cache.renew(stale) is True
        assert cache.get() == fresh
        assert auth.grants_seen.count("refresh_token") == 2


def test_revoked_refresh_token_means_login_required_and_is_not_sent_again(
    store: FileKeyring,
) -> None:
    with AuthServer() as auth:
        cfg = config(auth)
        browser_login(auth, cfg)
        cache = oauth.TokenCache(cfg)
        auth.revoke_refresh_tokens()
        with pytest.raises(LoginRequired) as err:
            cache.get()
        assert "run: syncd oauth login work" in str(err.value)
        assert err.value.command == "syncd oauth login work"
        assert len(auth.failed_token_requests) == 1
        for _ in range(5):
            with pytest.raises(LoginRequired):
                cache.get()
        assert len(auth.failed_token_requests) == 1  # no loop against the provider
        # After a new login the same cache works again.
        browser_login(auth, cfg)
        assert auth.check(cache.get()) == auth.user


def test_no_stored_token_says_what_to_run(store: FileKeyring) -> None:
    with AuthServer() as auth:
        with pytest.raises(LoginRequired) as err:
            oauth.TokenCache(config(auth)).get()
        assert str(err.value).startswith("no OAuth2 token for work in the system keyring")
        assert str(err.value).endswith("run: syncd oauth login work")
        assert auth.grants_seen == []


def test_wrong_state_is_refused_and_nothing_stored(store: FileKeyring) -> None:
    with AuthServer() as auth:
        cfg = config(auth)

        def forged(url: str) -> None:
            # Whatever the provider would say, the redirect arrives with another state.
            redirect = url.split("redirect_uri=", 1)[1].split("&", 1)[0]
            target = urllib.request.unquote(redirect) + "?code=stolen&state=forged"
            with pytest.raises(urllib.error.HTTPError):
                urllib.request.urlopen(target, timeout=10)

        with pytest.raises(AuthError, match="different state"):
            browser_login(auth, cfg, visit=forged)
        assert store.get_password("syncd", "work/oauth2-refresh") is None
        assert auth.grants_seen == []


def test_provider_error_on_the_redirect_is_reported(store: FileKeyring) -> None:
    with AuthServer() as auth:
        cfg = config(auth)

        def denied(url: str) -> None:
            state = url.split("state=", 1)[1].split("&", 1)[0]
            redirect = url.split("redirect_uri=", 1)[1].split("&", 1)[0]
            target = urllib.request.unquote(redirect) + f"?error=access_denied&state={state}"
            with pytest.raises(urllib.error.HTTPError):
                urllib.request.urlopen(target, timeout=10)

        with pytest.raises(AuthError, match="refused the login: access_denied"):
            browser_login(auth, cfg, visit=denied)


def test_device_flow_slows_down_when_told(store: FileKeyring) -> None:
    with AuthServer(device_interval=1) as auth:
        cfg = config(auth)
        waits: list[float] = []
        codes: list[str] = []

        def say(text: str) -> None:
            if text.startswith("On any device"):
                codes.append(text.split()[-1])

        def sleep(seconds: float) -> None:
            waits.append(seconds)
            if len(waits) <= 2:
                return  # the second poll comes too early on purpose: slow_down
            if len(waits) == 3:
                auth.approve_device(codes[0])
            threading.Event().wait(seconds)

        tokens = oauth.device_login(cfg, say=say, sleep=sleep)
        assert auth.check(tokens.access_token) == auth.user
        assert waits[:3] == [1.0, 1.0, 6.0]  # RFC 8628 3.5: five seconds more after slow_down


def test_device_flow_expired_and_denied(store: FileKeyring) -> None:
    with (
        AuthServer(device_interval=1, device_expires_in=1) as auth,
        pytest.raises(AuthError, match="expired"),
    ):
        oauth.device_login(config(auth), say=lambda _: None)
    with AuthServer(device_interval=1) as auth:
        codes: list[str] = []

        def say(text: str) -> None:
            if text.startswith("On any device"):
                codes.append(text.split()[-1])
                auth.deny_device(codes[0])

        with pytest.raises(AuthError, match="declined"):
            oauth.device_login(config(auth), say=say)


def test_refresh_token_commands_for_pass_users(tmp_path: Path, store: FileKeyring) -> None:
    secret_file = tmp_path / "pass-entry"
    with AuthServer() as auth:
        cfg = config(
            auth,
            refresh_token_command=f"cat {secret_file}",
            refresh_token_store_command=f"cat > {secret_file}",
        )
        result = browser_login(auth, cfg)
        assert "refresh_token_command" in result.where
        assert secret_file.read_text() == auth.issued_refresh_tokens[-1] + "\n"
        assert oauth.TokenCache(cfg).get()
        # Rotation went through the store command too; the keyring was never used.
        assert secret_file.read_text() == auth.issued_refresh_tokens[-1] + "\n"
        assert not store.path.exists()


def test_read_only_refresh_token_command_refuses_login_before_the_browser(
    store: FileKeyring,
) -> None:
    with AuthServer() as auth:
        cfg = config(auth, refresh_token_command="pass show mail/work")
        with pytest.raises(CredentialError, match="refresh_token_store_command"):
            oauth.login(cfg, device=False, say=lambda _: None, open_browser=False, timeout=1)
        assert auth.grants_seen == []


def test_a_refresh_raced_by_another_process_takes_the_rotated_token(tmp_path: Path) -> None:
    current, old, flag = tmp_path / "current", tmp_path / "old", tmp_path / "flag"
    # Process B's read comes just before process A's refresh: it sees the old token once.
    stale_once = f"if [ -e {flag} ]; then cat {current}; else touch {flag}; cat {old}; fi"
    with AuthServer() as auth:
        store_cmd = f"cat > {current}"
        a = config(
            auth, refresh_token_command=f"cat {current}", refresh_token_store_command=store_cmd
        )
        b = config(auth, refresh_token_command=stale_once, refresh_token_store_command=store_cmd)
        browser_login(auth, a)
        old.write_text(current.read_text())
        assert oauth.TokenCache(a).get()  # A rotates the refresh token
        token = oauth.TokenCache(b).get()  # B sends the old one, is refused, reads again
        assert auth.check(token) == auth.user
        assert len(auth.failed_token_requests) == 1
        assert current.read_text() == auth.issued_refresh_tokens[-1] + "\n"


def test_a_rotated_token_the_store_refuses_is_used_from_memory(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    entry, flag = tmp_path / "entry", tmp_path / "flag"
    store_once = f"if [ -e {flag} ]; then echo locked >&2; exit 1; fi; touch {flag}; cat > {entry}"
    with AuthServer() as auth:
        cfg = config(
            auth, refresh_token_command=f"cat {entry}", refresh_token_store_command=store_once
        )
        browser_login(auth, cfg)  # the one store that works
        clock = Clock()
        cache = oauth.TokenCache(cfg, clock=clock)
        with caplog.at_level("WARNING", logger="syncd.oauth"):
            first = cache.get()
        assert "could not be stored" in caplog.text and "locked" in caplog.text
        clock.now += 3600
        second = cache.get()  # the entry still holds a dead token; memory has the live one
        assert second != first and auth.check(second) == auth.user
        assert auth.failed_token_requests == []
        assert not any(t in caplog.text for t in auth.issued_refresh_tokens)
