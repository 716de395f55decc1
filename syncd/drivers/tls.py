"""TLS for every server driver: verified by default, a private CA, or a pinned certificate."""

from __future__ import annotations

import hashlib
import ssl
from typing import TYPE_CHECKING

from syncd.errors import TLSError

if TYPE_CHECKING:
    from syncd.config import ServerConfig


def make_context(server: ServerConfig) -> ssl.SSLContext:
    """The SSL context for ``server``: system CAs and host name check unless configured.

    With ``fingerprint`` the chain is not checked at all; :func:`check_pin` must then be
    called on the connected socket before anything secret is sent.
    """
    ctx = ssl.create_default_context(ssl.Purpose.SERVER_AUTH)
    ctx.minimum_version = ssl.TLSVersion.TLSv1_2
    if server.fingerprint:
        ctx.check_hostname = False
        ctx.verify_mode = ssl.CERT_NONE
    elif server.ca_file is not None:
        try:
            ctx.load_verify_locations(cafile=str(server.ca_file))
        except (OSError, ssl.SSLError) as exc:
            raise TLSError(f"{server.role}: cannot read ca_file {server.ca_file}: {exc}") from exc
    return ctx


def check_pin(sock: object, server: ServerConfig) -> None:
    """Compare the peer certificate's SHA-256 with the configured ``fingerprint``."""
    if not server.fingerprint:
        return
    if not isinstance(sock, ssl.SSLSocket):
        raise TLSError(f"{server.role}: a fingerprint is configured but the connection has no TLS")
    der = sock.getpeercert(binary_form=True)
    got = hashlib.sha256(der or b"").hexdigest()
    if got != server.fingerprint:
        raise TLSError(
            f"{server.role} server {server.host}: certificate fingerprint sha256:{got} does not "
            f"match the configured sha256:{server.fingerprint}; refusing to log in"
        )


def describe(exc: ssl.SSLError, server: ServerConfig) -> str:
    """A sentence naming what went wrong with the server's certificate."""
    if isinstance(exc, ssl.SSLCertVerificationError):
        reason = exc.verify_message or getattr(exc, "reason", None) or str(exc)
        return (
            f"{server.role} server {server.host}:{server.port}: certificate not trusted "
            f"({reason}); set ca_file for a private CA or fingerprint to pin it"
        )
    reason = getattr(exc, "reason", None) or exc
    return f"{server.role} server {server.host}:{server.port}: TLS failed: {reason}"
