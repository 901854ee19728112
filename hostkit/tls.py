"""The client side of a TLS link to an `mqtts://` broker: CA, client certificate and key.

Both programs read the same three files (CA, client certificate, its key); a file that is
missing, unreadable or not what it should be is reported once here, naming the setting and the
file, instead of surfacing as a bare `ssl.SSLError` from deep inside a start-up.
"""

from __future__ import annotations

import ssl
from pathlib import Path
from typing import Literal

TlsField = Literal["ca", "cert", "key"]


class TlsFileError(Exception):
    """A file of a TLS setting cannot be used; `field` is the setting's key that names it."""

    def __init__(self, field: TlsField, problem: str) -> None:
        super().__init__(problem)
        self.field: TlsField = field


def _reason(exc: OSError | ssl.SSLError) -> str:
    return str(exc.strerror or exc)


def client_context(
    ca: Path | None, cert: Path | None = None, key: Path | None = None, *, setting: str
) -> ssl.SSLContext:
    """Verify the broker against `ca` (else the system's trust store); present `cert` and `key`.

    `setting` is the config key the files are given under (`broker_tls`, `uplink.tls`), for the
    message. Raises TlsFileError naming the file that cannot be loaded and why.
    """
    try:
        context = ssl.create_default_context(cafile=ca)
    except (OSError, ssl.SSLError) as exc:
        raise TlsFileError("ca", f"cannot load {setting} ca {ca}: {_reason(exc)}") from None
    if cert is not None and key is not None:
        try:
            context.load_cert_chain(cert, key)
        except (OSError, ssl.SSLError) as exc:
            raise TlsFileError(
                "cert", f"cannot load {setting} cert {cert} with key {key}: {_reason(exc)}"
            ) from None
    return context
