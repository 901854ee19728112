"""The test PKI: self-signed OPC UA application certificates for tests, benches and the demo.

`make_test_pki` writes a server certificate (for the simulators' OPC UA server, whose
application URI is `SERVER_URI`), a client certificate that server is told to trust, and a
rogue client certificate with the same URI that it is not. RSA 2048 with SHA-256, as
Basic256Sha256 requires. Not for production: nothing here is a CA, and keys are unencrypted.
"""

from __future__ import annotations

import datetime as dt
import socket
from dataclasses import dataclass
from typing import TYPE_CHECKING

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import rsa
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

if TYPE_CHECKING:
    from pathlib import Path

__all__ = ["SERVER_URI", "TestPki", "make_test_pki"]

SERVER_URI = "urn:ganzhi:sim:slope-server"
"""The application URI of the simulators' OPC UA server, which its certificate must name."""


@dataclass(frozen=True, slots=True)
class TestPki:
    """Certificate and key files written by `make_test_pki` (PEM)."""

    __test__ = False  # not a pytest test class, despite the name

    server_cert: Path
    server_key: Path
    client_cert: Path
    client_key: Path
    rogue_cert: Path
    rogue_key: Path
    client_uri: str
    server_uri: str


def _self_signed(
    key: rsa.RSAPrivateKey, name: str, uri: str, usage: x509.ObjectIdentifier, host: str
) -> x509.Certificate:
    """An OPC UA application instance certificate (Part 6 6.2.2), self-signed."""
    subject = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, name)])
    now = dt.datetime.now(dt.UTC)
    return (
        x509.CertificateBuilder()
        .subject_name(subject)
        .issuer_name(subject)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - dt.timedelta(minutes=5))
        .not_valid_after(now + dt.timedelta(days=365))
        .add_extension(
            x509.SubjectAlternativeName(
                [
                    x509.UniformResourceIdentifier(uri),
                    *(x509.DNSName(name) for name in dict.fromkeys((host, socket.gethostname()))),
                ]
            ),
            critical=False,
        )
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
        .add_extension(
            x509.KeyUsage(
                digital_signature=True,
                content_commitment=True,
                key_encipherment=True,
                data_encipherment=True,
                key_agreement=False,
                key_cert_sign=False,
                crl_sign=False,
                encipher_only=False,
                decipher_only=False,
            ),
            critical=True,
        )
        .add_extension(x509.ExtendedKeyUsage([usage]), critical=False)
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(key.public_key()), critical=False)
        .sign(key, hashes.SHA256())
    )


def _write_pair(
    directory: Path, stem: str, uri: str, usage: x509.ObjectIdentifier, host: str
) -> tuple[Path, Path]:
    """Write `<stem>-cert.pem` and `<stem>-key.pem` (the key 0600)."""
    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    cert = _self_signed(key, f"Ganzhi {stem}", uri, usage, host)
    cert_path, key_path = directory / f"{stem}-cert.pem", directory / f"{stem}-key.pem"
    cert_path.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    key_path.touch(mode=0o600)
    key_path.write_bytes(
        key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
    )
    return cert_path, key_path


def make_test_pki(
    directory: Path,
    *,
    client_uri: str = "urn:ganzhi:edge-agent",
    host: str = "localhost",
) -> TestPki:
    """Write self-signed test certificates: the server, a client it trusts, a rogue client.

    `host` and this machine's host name go into subjectAltName. For tests and the demo only.
    """
    directory.mkdir(parents=True, exist_ok=True)
    server = _write_pair(directory, "server", SERVER_URI, ExtendedKeyUsageOID.SERVER_AUTH, host)
    client = _write_pair(directory, "client", client_uri, ExtendedKeyUsageOID.CLIENT_AUTH, host)
    rogue = _write_pair(directory, "rogue", client_uri, ExtendedKeyUsageOID.CLIENT_AUTH, host)
    return TestPki(*server, *client, *rogue, client_uri=client_uri, server_uri=SERVER_URI)
