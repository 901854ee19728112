"""The province CA and issued certificates as PEM files; private keys are 0600.

The CA lives in the folder the collector config names (`certs.ca_dir`): `ca.crt` and `ca.key`,
its revocation list `ca.crl`, and a copy of every certificate it issued in `issued/`, by
serial number (what `certs revoke` looks names up in).
Issued certificates go to an output folder as `<name>.crt` and `<name>.key`, beside a copy of
`ca.crt`, ready to be copied to a gateway or a broker.

Error tree::

    PkiError
    ├── CaExistsError    `certs ca init` found a CA already there and kept it
    └── CaMissingError   no CA yet: run `collector certs ca init`
"""

from __future__ import annotations

import os
import stat
from pathlib import Path
from typing import Final

from cryptography import x509
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec

from collector.pki.certificates import Issued
from hostkit.atomicfile import sync_directory, write_aside

CA_CERT: Final = "ca.crt"
CA_KEY: Final = "ca.key"
CA_CRL: Final = "ca.crl"
ISSUED: Final = "issued"
_PRIVATE: Final = 0o600
_PUBLIC: Final = 0o644
_PRIVATE_FOLDER: Final = 0o700


class PkiError(Exception):
    """A certificate or key file cannot be written or read."""


class CaExistsError(PkiError):
    """A CA exists in that folder already; it is never overwritten."""


class CaMissingError(PkiError):
    """There is no CA in that folder yet."""


def _key_pem(issued: Issued) -> bytes:
    return issued.key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    )


def _cert_pem(certificate: x509.Certificate) -> bytes:
    return certificate.public_bytes(serialization.Encoding.PEM)


def _write(path: Path, data: bytes, mode: int, *, replace: bool = True) -> None:
    """Write `data` to `path` whole or not at all, created with `mode` (never wider, even briefly).

    Durably: the folder is synced once the file is in place.

    With `replace` false an existing file is kept and `FileExistsError` raised.
    """
    temporary = write_aside(path, data, mode)
    try:
        temporary.chmod(mode)  # the umask may have narrowed a public file's mode
        if replace:
            temporary.replace(path)
        else:
            os.link(temporary, path)
    finally:
        temporary.unlink(missing_ok=True)
    sync_directory(path.parent)  # the rename or link, and the temporary's removal, durable


def _private_folder(folder: Path) -> None:
    """Make `folder` 0700, or refuse one already there that the group or others may look into.

    Refused, not tightened, as an exposed private key is: the folder may be one others need
    (the config's own folder, say), and a chmod would lock them out unseen.
    """
    try:
        folder.mkdir(mode=_PRIVATE_FOLDER, parents=True)
    except FileExistsError:
        status = folder.stat()
        mode = stat.S_IMODE(status.st_mode)
        if stat.S_ISDIR(status.st_mode) and mode & 0o077:
            raise PkiError(
                f"{folder} has mode {mode:04o}, open to group or others, and would hold the CA's"
                f" private key; run `chmod 700 {folder}` (or name a new folder in certs.ca_dir)"
            ) from None


def init_ca(ca_dir: Path, ca: Issued) -> None:
    """Store a new CA in `ca_dir` (made 0700; an existing folder must be); never replace a CA."""
    key_path, cert_path = ca_dir / CA_KEY, ca_dir / CA_CERT
    if key_path.exists() or cert_path.exists():
        raise CaExistsError(f"{ca_dir} holds a CA already; refusing to replace it")
    try:
        _private_folder(ca_dir)
        _write(key_path, _key_pem(ca), _PRIVATE, replace=False)
        _write(cert_path, _cert_pem(ca.certificate), _PUBLIC, replace=False)
    except FileExistsError:
        raise CaExistsError(f"{ca_dir} holds a CA already; refusing to replace it") from None
    except OSError as exc:
        raise PkiError(f"cannot create the CA in {ca_dir}: {exc.strerror or exc}") from None


def load_ca(ca_dir: Path) -> Issued:
    """Read the CA from `ca_dir`; refuse a key that others may read."""
    key_path, cert_path = ca_dir / CA_KEY, ca_dir / CA_CERT
    try:
        mode = stat.S_IMODE(key_path.stat().st_mode)
        key_pem = key_path.read_bytes()
        cert_pem = cert_path.read_bytes()
    except FileNotFoundError:
        raise CaMissingError(
            f"no CA in {ca_dir}; create it with `collector certs ca init`"
        ) from None
    except OSError as exc:
        raise PkiError(f"cannot read the CA in {ca_dir}: {exc.strerror or exc}") from None
    if mode & 0o077:
        raise PkiError(f"{key_path} has mode {mode:04o}; a private key must be 0600")
    try:
        key = serialization.load_pem_private_key(key_pem, password=None)
        certificate = x509.load_pem_x509_certificate(cert_pem)
    except ValueError as exc:
        raise PkiError(f"the CA in {ca_dir} is unreadable: {exc}") from None
    if not isinstance(key, ec.EllipticCurvePrivateKey):
        raise PkiError(f"{key_path} is not an ECDSA key")
    if key.public_key() != certificate.public_key():
        raise PkiError(f"{key_path} is not the key of {cert_path}")
    return Issued(certificate, key)


def write_issued(out_dir: Path, name: str, issued: Issued, ca: x509.Certificate) -> Path:
    """Write `<name>.crt`, `<name>.key` (0600) and `ca.crt` into `out_dir`; return the cert path.

    Files already there are replaced whole (a reissued certificate takes the old one's place).
    """
    cert_path = out_dir / f"{name}.crt"
    try:
        out_dir.mkdir(parents=True, exist_ok=True)
        _write(out_dir / f"{name}.key", _key_pem(issued), _PRIVATE)
        _write(cert_path, _cert_pem(issued.certificate), _PUBLIC)
        _write(out_dir / CA_CERT, _cert_pem(ca), _PUBLIC)
    except OSError as exc:
        raise PkiError(
            f"cannot write {name} certificate to {out_dir}: {exc.strerror or exc}"
        ) from None
    return cert_path


def write_text(path: Path, text: str) -> None:
    """Write a public text file (a config) whole or not at all, replacing what was there."""
    try:
        _write(path, text.encode(), _PUBLIC)
    except OSError as exc:
        raise PkiError(f"cannot write {path}: {exc.strerror or exc}") from None


def record_issued(ca_dir: Path, certificate: x509.Certificate) -> None:
    """Keep a copy of an issued certificate in the CA's folder, so it can be revoked by name."""
    folder = ca_dir / ISSUED
    try:
        folder.mkdir(mode=_PRIVATE_FOLDER, exist_ok=True)
        _write(folder / f"{certificate.serial_number:x}.crt", _cert_pem(certificate), _PUBLIC)
    except OSError as exc:
        raise PkiError(
            f"cannot record the certificate in {folder}: {exc.strerror or exc}"
        ) from None


def issued_certificates(ca_dir: Path) -> tuple[x509.Certificate, ...]:
    """Every certificate the CA recorded as issued."""
    folder = ca_dir / ISSUED
    try:
        files = sorted(folder.glob("*.crt"))
        return tuple(x509.load_pem_x509_certificate(path.read_bytes()) for path in files)
    except OSError as exc:
        raise PkiError(f"cannot read {folder}: {exc.strerror or exc}") from None
    except ValueError as exc:
        raise PkiError(f"a certificate in {folder} is unreadable: {exc}") from None


def load_crl(ca_dir: Path) -> x509.CertificateRevocationList | None:
    """The CA's revocation list, or None before the first one."""
    path = ca_dir / CA_CRL
    try:
        return x509.load_pem_x509_crl(path.read_bytes())
    except FileNotFoundError:
        return None
    except OSError as exc:
        raise PkiError(f"cannot read {path}: {exc.strerror or exc}") from None
    except ValueError as exc:
        raise PkiError(f"{path} is unreadable: {exc}") from None


def write_crl(path: Path, crl: x509.CertificateRevocationList) -> None:
    """Write a revocation list (PEM) whole or not at all."""
    try:
        _write(path, crl.public_bytes(serialization.Encoding.PEM), _PUBLIC)
    except OSError as exc:
        raise PkiError(f"cannot write {path}: {exc.strerror or exc}") from None
