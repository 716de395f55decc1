from __future__ import annotations

import os
from collections.abc import Iterator

import pytest
from hypothesis import settings

from tests.servers import require_dovecot
from tests.servers.dovecot import Dovecot, User, make_test_certs

settings.register_profile("dev", deadline=None)
settings.register_profile("ci", derandomize=True, deadline=None, max_examples=200)
settings.load_profile("ci" if os.environ.get("CI") else "dev")


@pytest.fixture(autouse=True, scope="session")
def _private_cache(tmp_path_factory: pytest.TempPathFactory) -> Iterator[None]:
    """``syncd sendmail`` keeps notes in $XDG_CACHE_HOME: the suite's, not the user's."""
    old = os.environ.get("XDG_CACHE_HOME")
    os.environ["XDG_CACHE_HOME"] = str(tmp_path_factory.mktemp("xdg-cache"))
    yield
    if old is None:
        os.environ.pop("XDG_CACHE_HOME", None)
    else:
        os.environ["XDG_CACHE_HOME"] = old


@pytest.fixture(scope="session")
def dovecot(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Dovecot]:
    """One private Dovecot for the whole session; each test takes a fresh user (mail_user)."""
    require_dovecot()
    server = Dovecot(tmp_path_factory.mktemp("dovecot"))
    with server:
        yield server


@pytest.fixture
def mail_user(dovecot: Dovecot) -> User:
    """A new, empty user on the session's Dovecot."""
    return dovecot.add_user()


@pytest.fixture(scope="session")
def tls_dovecot(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Dovecot]:
    """A second Dovecot with TLS: IMAPS/POP3S listeners and STARTTLS, trustme certificates."""
    require_dovecot()
    base = tmp_path_factory.mktemp("dovecot-tls")
    with Dovecot(base / "server", tls=make_test_certs(base / "certs")) as server:
        yield server
