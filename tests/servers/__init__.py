"""Real servers for tests: a private Dovecot (``dovecot.py``), Courier-IMAP (``courier.py``)
and Cyrus IMAP (``cyrus.py``) unpacked from Debian's packages, and sample mail (``corpus.py``).

``require_dovecot()`` is what a fixture calls first: it skips the test when Dovecot is not
installed, or fails it when ``SYNCD_REQUIRE_SERVERS=1`` says the servers must be there (CI).
"""

from __future__ import annotations

import os

from tests.servers.dovecot import missing_binaries


def servers_required() -> bool:
    """True when ``SYNCD_REQUIRE_SERVERS=1``: a missing server fails instead of skipping."""
    return os.environ.get("SYNCD_REQUIRE_SERVERS", "") not in ("", "0")


def skip_or_fail(reason: str) -> None:
    """Skip the test, or fail it when servers are required."""
    import pytest  # here, so that the demo and benchmarks can import this package without it

    if servers_required():
        pytest.fail(f"{reason} (SYNCD_REQUIRE_SERVERS=1 forbids skipping)", pytrace=False)
    pytest.skip(reason)


def require_courier() -> None:
    """Skip (or fail) when Courier's Debian packages are not in the cache (scripts/setup-env)."""
    from tests.servers.courier import missing_packages

    reason = missing_packages()
    if reason is not None:
        skip_or_fail(reason)


def require_dovecot() -> None:
    """Skip (or fail, see ``servers_required``) when the Dovecot binaries are missing."""
    reason = missing_binaries()
    if reason is not None:
        skip_or_fail(reason)
