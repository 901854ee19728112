"""The client side of a TLS link to an `mqtts://` broker: CA, client certificate and key.

Both programs read the same three files (CA, client certificate, its key); a file that is
missing, unreadable or not what it should be is reported once here, naming the setting and the
file, instead of surfacing as a bare `ssl.SSLError` from deep inside a start-up.
"""

from __future__ import annotations

import ssl
from pathlib import Path
from typing import TYPE_CHECKING, Literal

from configkit.issues import NotAFileError, open_file_to_read
from hostkit.keyfiles import not_a_key_file_message, not_there

if TYPE_CHECKING:  # the running agent reads no config models (pydantic stays unloaded)
    from configkit.issues import KeyPath
    from configkit.network import TlsConfig

TlsField = Literal["ca", "cert", "key"]


class TlsFileError(Exception):
    """A file of a TLS setting cannot be used; `field` is the setting's key that names it."""

    def __init__(self, field: TlsField, problem: str) -> None:
        super().__init__(problem)
        self.field: TlsField = field


def _reason(exc: OSError | ssl.SSLError) -> str:
    return str(exc.strerror or exc)


class _EncryptedKeyError(Exception):
    """The key file asks for a pass phrase."""


def _no_pass_phrase() -> bytes:
    # Asked only for an encrypted key. Without this, OpenSSL asks on the terminal, and a
    # program started from a shell waits there for good; a service has no one to answer.
    raise _EncryptedKeyError


def client_context(
    ca: Path | None, cert: Path | None = None, key: Path | None = None, *, setting: str
) -> ssl.SSLContext:
    """Verify the broker against `ca` (else the system's trust store); present `cert` and `key`.

    `setting` is the config key the files are given under (`broker_tls`, `uplink.tls`), for the
    message. Raises TlsFileError naming the file that cannot be loaded and why.
    """
    files: tuple[tuple[TlsField, Path | None], ...] = (("ca", ca), ("cert", cert), ("key", key))
    for field, path in files:
        _refuse_unless_a_file(field, path, setting)
    try:
        context = ssl.create_default_context(cafile=ca)
    except (OSError, ssl.SSLError) as exc:
        raise TlsFileError("ca", f"cannot load {setting} ca {ca}: {_reason(exc)}") from None
    if cert is not None and key is not None:
        problem = f"cannot load {setting} cert {cert} with key {key}"
        try:
            context.load_cert_chain(cert, key, password=_no_pass_phrase)
        except _EncryptedKeyError:
            raise TlsFileError(
                "cert", f"{problem}: the key is encrypted; give it unencrypted (mode 0600)"
            ) from None
        except (OSError, ssl.SSLError) as exc:
            raise TlsFileError("cert", f"{problem}: {_reason(exc)}") from None
    return context


def _refuse_unless_a_file(field: TlsField, path: Path | None, setting: str) -> None:
    """TlsFileError for a FIFO or a device at `path`: OpenSSL would wait on a FIFO for ever.

    Whatever else is wrong with the file (missing, unreadable) OpenSSL says when it loads it.
    """
    if path is None:
        return
    try:
        open_file_to_read(path).close()
    except NotAFileError as exc:
        what = "certificate file" if field != "key" else "key file"
        problem = not_a_key_file_message(path, exc.instead, what)
        raise TlsFileError(field, f"cannot load {setting} {field} {problem}") from None
    except OSError:
        return


def tls_file_problems(
    tls: TlsConfig | None, at: KeyPath, *, missing_ok: bool = False
) -> list[tuple[KeyPath, str]]:
    """What stops the TLS files given at config key `at` from loading (nothing when they load).

    Loaded as the program will load them at start, so that a CA that is no certificate or a
    key not its certificate's is refused at its line before anything is opened. `missing_ok`:
    files not there yet are no problem (`check` before the certificates are issued).
    """
    if tls is None:
        return []
    files = [path for path in (tls.ca, tls.cert, tls.key) if path is not None]
    if missing_ok and any(not_there(path) for path in files):
        return []
    try:
        client_context(tls.ca, tls.cert, tls.key, setting=".".join(map(str, at)))
    except TlsFileError as exc:
        return [((*at, exc.field), str(exc))]
    return []
