"""X.509 certificates of the broker isolation: the province CA, and what it signs.

Pure: every function takes its keys and its validity window and returns objects; nothing here
reads a clock or a file. Keys are ECDSA P-256 with SHA-256 signatures, which every TLS stack a
gateway or broker may run (OpenSSL, mbedTLS, EMQX's Erlang) verifies.

A client certificate's subject common name is the MQTT identity the broker takes as the
username and the client id (Mosquitto `use_identity_as_username`, `use_username_as_clientid`),
which its ACL patterns name as `%u`: the gateway id for a gateway, a collector identity
(`gz-collector`, `gz-collector-2`, ...) for each collector process.
"""

from __future__ import annotations

import ipaddress
import re
import unicodedata
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Final

from cryptography import x509
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

COLLECTOR_IDENTITY: Final = "gz-collector"
"""The common name of a collector's client certificate when there is one collector.

Each collector process needs its own identity (`gz-collector-<name>`): the broker makes it
the client id, and two clients with one id take the connection from each other. None can be
a gateway id (those are `{credit code}-GW{NN}`), so no gateway certificate carries a
collector's rights.
"""
_COLLECTOR_IDENTITY = re.compile(r"^gz-collector(-[a-z0-9]+)*$")


def check_collector_identity(name: str) -> str:
    """Validate a collector identity: `gz-collector`, or it followed by `-` words (a-z, 0-9)."""
    if not _COLLECTOR_IDENTITY.fullmatch(name) or len(name) > 64:  # noqa: PLR2004 - CN bound
        raise ValueError(
            f"collector identity {name!r} must be gz-collector or gz-collector-<name> (a-z, 0-9),"
            " at most 64 characters"
        )
    return name


PrivateKey = ec.EllipticCurvePrivateKey


@dataclass(frozen=True, slots=True)
class Validity:
    """When a certificate is valid: [not_before, not_after], aware datetimes."""

    not_before: datetime
    not_after: datetime

    def __post_init__(self) -> None:
        if self.not_before.tzinfo is None or self.not_after.tzinfo is None:
            raise ValueError("certificate validity needs timezone-aware datetimes")
        if self.not_after <= self.not_before:
            raise ValueError("a certificate must end after it starts")


BACKDATE: Final = timedelta(hours=1)
"""Certificates start this long before they are issued, for clocks a little behind ours."""


def validity_from(now: datetime, days: float) -> Validity:
    """Valid from a little before `now` for `days` days."""
    if days <= 0:
        raise ValueError("a certificate must be valid for more than 0 days")
    # datetime ends where X.509 time does, at 9999-12-31; NaN and infinity end nowhere.
    last_day = (datetime.max.replace(tzinfo=now.tzinfo) - now).days
    if not days <= last_day:
        raise ValueError(
            f"a certificate can be valid until 9999-12-31 at the latest: {last_day} days"
            f" from now, not {days:g}"
        )
    return Validity(now - BACKDATE, now + timedelta(days=days))


@dataclass(frozen=True, slots=True)
class Issued:
    """A certificate and its private key."""

    certificate: x509.Certificate
    key: PrivateKey


def new_key() -> PrivateKey:
    """A fresh ECDSA P-256 private key."""
    return ec.generate_private_key(ec.SECP256R1())


def _name(common_name: str) -> x509.Name:
    return x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, common_name)])


def create_ca(common_name: str, validity: Validity, key: PrivateKey | None = None) -> Issued:
    """A self-signed CA that signs only end-entity certificates (path length 0)."""
    key = key or new_key()
    public = key.public_key()
    certificate = (
        x509.CertificateBuilder()
        .subject_name(_name(common_name))
        .issuer_name(_name(common_name))
        .public_key(public)
        .serial_number(x509.random_serial_number())
        .not_valid_before(validity.not_before)
        .not_valid_after(validity.not_after)
        .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
        .add_extension(_key_usage(key_cert_sign=True, crl_sign=True), critical=True)
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(public), critical=False)
        .sign(key, hashes.SHA256())
    )
    return Issued(certificate, key)


def _key_usage(
    *, digital_signature: bool = False, key_cert_sign: bool = False, crl_sign: bool = False
) -> x509.KeyUsage:
    """The key usages a certificate here allows: signing, or a CA's certificates and CRLs."""
    return x509.KeyUsage(
        digital_signature=digital_signature,
        content_commitment=False,
        key_encipherment=False,
        data_encipherment=False,
        key_agreement=False,
        key_cert_sign=key_cert_sign,
        crl_sign=crl_sign,
        encipher_only=False,
        decipher_only=False,
    )


def _end_entity(
    ca: Issued,
    common_name: str,
    validity: Validity,
    usage: x509.ObjectIdentifier,
    *,
    key: PrivateKey | None,
    alt_names: Sequence[x509.GeneralName] = (),
) -> Issued:
    key = key or new_key()
    public = key.public_key()
    builder = (
        x509.CertificateBuilder()
        .subject_name(_name(common_name))
        .issuer_name(ca.certificate.subject)
        .public_key(public)
        .serial_number(x509.random_serial_number())
        .not_valid_before(validity.not_before)
        .not_valid_after(validity.not_after)
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
        .add_extension(_key_usage(digital_signature=True), critical=True)
        .add_extension(x509.ExtendedKeyUsage([usage]), critical=False)
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(public), critical=False)
        .add_extension(
            x509.AuthorityKeyIdentifier.from_issuer_public_key(ca.key.public_key()),
            critical=False,
        )
    )
    if alt_names:
        builder = builder.add_extension(x509.SubjectAlternativeName(alt_names), critical=False)
    return Issued(builder.sign(ca.key, hashes.SHA256()), key)


def issue_client(
    ca: Issued, identity: str, validity: Validity, key: PrivateKey | None = None
) -> Issued:
    """A TLS client certificate whose common name is `identity` (a gateway id, or the collector's).

    `validity` may lie wholly in the past: tests make expired certificates this way.
    """
    return _end_entity(ca, identity, validity, ExtendedKeyUsageOID.CLIENT_AUTH, key=key)


_HOST_LABEL: Final = re.compile(r"(?!-)[A-Za-z0-9-]{1,63}(?<!-)")
COMMON_NAME_MAX: Final = 64
"""X.509's upper bound on a common name (RFC 5280 ub-common-name)."""
_HOST_NAME_MAX: Final = 253


def check_server_name(name: str) -> str:
    """`name` if a certificate can be valid for it: an IP address or a DNS host name.

    Raises ValueError saying why not (a space, an empty label, a label starting with '-').
    """
    try:
        ipaddress.ip_address(name)
    except ValueError:
        labels = name.removesuffix(".").split(".")
        if len(name) > _HOST_NAME_MAX or not all(_HOST_LABEL.fullmatch(label) for label in labels):
            raise ValueError(
                f"{name!r} is no host name or address: labels of letters, digits and '-'"
                " joined by dots (broker.example), or an IP address"
            ) from None
    return name


def check_ca_name(name: str) -> str:
    """`name` if it can be a CA's common name: 1 to 64 bytes of UTF-8, no control characters.

    Raises ValueError saying why not (the certificate builder's own error is a traceback). The
    builder counts UTF-8 bytes: a Chinese character is three.
    """
    size = len(name.encode("utf-8"))
    if not 1 <= size <= COMMON_NAME_MAX:
        raise ValueError(
            f"a CA name is its certificate's common name: 1 to {COMMON_NAME_MAX} bytes of UTF-8"
            f" (a Chinese character is 3), not {size}"
        )
    if any(unicodedata.category(char) == "Cc" for char in name):
        raise ValueError(f"{name!r}: a CA name has no control characters (line breaks, tabs)")
    return name


def server_alt_name(name: str) -> x509.GeneralName:
    """An IP address or a DNS name clients reach the broker by, as a subject alternative name."""
    try:
        return x509.IPAddress(ipaddress.ip_address(name))
    except ValueError:
        return x509.DNSName(name)


def issue_server(
    ca: Issued, names: Sequence[str], validity: Validity, key: PrivateKey | None = None
) -> Issued:
    """The broker's TLS server certificate, valid for every host name or address in `names`."""
    if not names:
        raise ValueError("a server certificate needs at least one host name or address")
    return _end_entity(
        ca,
        names[0],
        validity,
        ExtendedKeyUsageOID.SERVER_AUTH,
        key=key,
        alt_names=[server_alt_name(name) for name in names],
    )


def common_name(certificate: x509.Certificate) -> str:
    """The subject common name of `certificate` (the broker username it maps to)."""
    values = certificate.subject.get_attributes_for_oid(NameOID.COMMON_NAME)
    return str(values[0].value) if values else ""


@dataclass(frozen=True, slots=True)
class Revoked:
    """A certificate taken back: its serial number, and when."""

    serial: int
    at: datetime


def revocation_list(
    ca: Issued, revoked: Sequence[Revoked], now: datetime, number: int
) -> x509.CertificateRevocationList:
    """The CA's CRL listing `revoked`, the `number`-th it published.

    It is valid until the CA expires: a broker with a CRL past its next update refuses every
    client, and this one is only ever replaced by a newer one, not renewed on a schedule.
    """
    builder = (
        x509.CertificateRevocationListBuilder()
        .issuer_name(ca.certificate.subject)
        .last_update(now)
        .next_update(max(ca.certificate.not_valid_after_utc, now + timedelta(days=1)))
        .add_extension(x509.CRLNumber(number), critical=False)
        .add_extension(
            x509.AuthorityKeyIdentifier.from_issuer_public_key(ca.key.public_key()),
            critical=False,
        )
    )
    for entry in revoked:
        builder = builder.add_revoked_certificate(
            x509.RevokedCertificateBuilder()
            .serial_number(entry.serial)
            .revocation_date(entry.at)
            .build()
        )
    return builder.sign(ca.key, hashes.SHA256())


def revoked_in(crl: x509.CertificateRevocationList) -> tuple[Revoked, ...]:
    """The entries of a CRL."""
    return tuple(Revoked(entry.serial_number, entry.revocation_date_utc) for entry in crl)


def crl_number(crl: x509.CertificateRevocationList) -> int:
    """The CRL's sequence number (0 when it has none)."""
    try:
        return int(crl.extensions.get_extension_for_class(x509.CRLNumber).value.crl_number)
    except x509.ExtensionNotFound:
        return 0
