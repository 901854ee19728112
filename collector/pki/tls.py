"""The collector's TLS context for an `mqtts://` broker (config `broker_tls`)."""

from __future__ import annotations

import ssl
import stat
from pathlib import Path

from collector.pki.store import PkiError
from configkit.network import TlsConfig
from hostkit import tls as hostkit_tls
from hostkit.tls import TlsFileError


def _private_key_mode(key: Path) -> None:
    try:
        mode = stat.S_IMODE(key.stat().st_mode)
    except OSError as exc:
        raise PkiError(f"cannot read broker_tls key {key}: {exc.strerror or exc}") from None
    if mode & 0o077:
        raise PkiError(f"{key} has mode {mode:04o}; a private key must be 0600")


def client_context(tls: TlsConfig | None) -> ssl.SSLContext:
    """Verify the broker against `tls.ca` (else the system's trust store); present `tls.cert`.

    Raises PkiError naming the file that is missing, unreadable or not what it should be.
    """
    ca, cert, key = (None, None, None) if tls is None else (tls.ca, tls.cert, tls.key)
    if cert is not None and key is not None:
        _private_key_mode(key)
    try:
        return hostkit_tls.client_context(ca, cert, key, setting="broker_tls")
    except TlsFileError as exc:
        raise PkiError(str(exc)) from None
