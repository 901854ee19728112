"""OPC UA security: the certificate and key files, checked, and a session opened with them.

The files are read and parsed before any socket opens (a bad file is a configuration problem,
named as such); the server is asked which endpoints it offers before the secure channel is
set up, so a policy or mode it does not offer is a clear error rather than a timeout; a
pinned server certificate must be the one the server announces.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

from asyncua import ua
from asyncua.crypto import security_policies, uacrypto
from cryptography import x509
from cryptography.hazmat.primitives.serialization import (
    Encoding,
    load_der_private_key,
    load_pem_private_key,
)

from drivers.opcua.model import OpcUaSecurityError, SecurityMode, SecurityPolicy, UaSecurity

if TYPE_CHECKING:
    from pathlib import Path

    from asyncua.client.client import Client

APPLICATION_URI = "urn:ganzhi:edge-agent"
"""The agent's application URI when its certificate names none."""

POLICY_CLASSES: dict[SecurityPolicy, type[security_policies.SecurityPolicy]] = {
    SecurityPolicy.BASIC256SHA256: security_policies.SecurityPolicyBasic256Sha256,
}
UA_MODES = {
    SecurityMode.SIGN: ua.MessageSecurityMode.Sign,
    SecurityMode.SIGN_AND_ENCRYPT: ua.MessageSecurityMode.SignAndEncrypt,
}


@dataclass(slots=True)
class Material:
    """Security files, loaded and converted for asyncua (which guesses formats by suffix)."""

    cert_der: bytes
    key: bytes
    key_format: str
    server_cert_der: bytes | None
    application_uri: str


async def open_session(
    client: Client,
    *,
    device_id: str,
    security: UaSecurity | None,
    material: Material | None,
    username: str | None,
    password: str | None,
) -> None:
    """Check the server offers our policy and mode, set security and user, connect."""
    policy_uri = (
        POLICY_CLASSES[security.policy].URI
        if security is not None
        else security_policies.SecurityPolicyNone.URI
    )
    ua_mode = UA_MODES[security.mode] if security is not None else ua.MessageSecurityMode.None_
    # Ask first (over an unsecured channel, as OPC UA discovery does) so that a mode the
    # server does not offer is a clear error, not a silent server and a timeout.
    endpoints = await client.connect_and_get_server_endpoints()
    offered = [e for e in endpoints if e.SecurityPolicyUri == policy_uri]
    chosen = next((e for e in offered if e.SecurityMode == ua_mode), None)
    if chosen is None:
        have = sorted({describe(e.SecurityPolicyUri, e.SecurityMode) for e in endpoints})
        want = describe(policy_uri, ua_mode)
        raise OpcUaSecurityError(
            f"{device_id}: server offers no {want} endpoint (it offers {', '.join(have)})"
        )
    if security is not None and material is not None:
        announced = first_der(chosen.ServerCertificate or b"")
        server_der = material.server_cert_der or announced
        if not server_der:
            raise OpcUaSecurityError(f"{device_id}: server announced no certificate")
        if material.server_cert_der is not None and announced and announced != server_der:
            raise OpcUaSecurityError(
                f"{device_id}: server certificate differs from the pinned server_cert"
            )
        client.application_uri = material.application_uri
        await _set_security(client, security, material, server_der, ua_mode, device_id=device_id)
    if username is not None:
        client.set_user(username)
        if password is not None:
            client.set_password(password)
    await client.connect()


async def _set_security(
    client: Client,
    security: UaSecurity,
    material: Material,
    server_der: bytes,
    ua_mode: ua.MessageSecurityMode,
    *,
    device_id: str,
) -> None:
    """Hand the checked files to asyncua's security policy."""
    try:
        await client.set_security(
            POLICY_CLASSES[security.policy],
            uacrypto.CertProperties(material.cert_der, "der"),
            uacrypto.CertProperties(material.key, material.key_format, security.key_password),
            server_certificate=uacrypto.CertProperties(server_der, "der"),
            mode=ua_mode,
        )
    except (ValueError, TypeError) as exc:
        # cryptography's complaints about a key or certificate the policy cannot use
        # (wrong type or size): a security configuration error, not a bug here.
        raise OpcUaSecurityError(f"{device_id}: {exc}") from exc


def describe(policy_uri: str, mode: ua.MessageSecurityMode) -> str:
    """``Basic256Sha256/SignAndEncrypt``: how a technician names an endpoint."""
    return f"{policy_uri.rsplit('#', 1)[-1]}/{mode.name.rstrip('_')}"


def first_der(blob: bytes) -> bytes:
    """Return the first certificate of a DER chain (servers may append their CA chain)."""
    if len(blob) < 2:  # noqa: PLR2004 -- tag and length bytes
        return b""
    length, offset = blob[1], 2
    if length & 0x80:  # long form: the low bits count the length bytes that follow
        count = length & 0x7F
        length = int.from_bytes(blob[2 : 2 + count], "big")
        offset = 2 + count
    return bytes(blob[: offset + length])


def _read_file(path: Path, what: str) -> bytes:
    """Read a small security file; a missing or unreadable one is a security error."""
    try:
        return path.read_bytes()
    except OSError as exc:
        raise OpcUaSecurityError(f"cannot read {what} {path}: {exc.strerror or exc}") from exc


def _certificate_der(data: bytes, path: Path, what: str) -> bytes:
    """Return a PEM or DER certificate as DER, checked by parsing it."""
    try:
        if data.lstrip().startswith(b"-----BEGIN"):
            return x509.load_pem_x509_certificate(data).public_bytes(Encoding.DER)
        return x509.load_der_x509_certificate(data).public_bytes(Encoding.DER)
    except ValueError as exc:
        raise OpcUaSecurityError(f"{what} {path} is not a certificate: {exc}") from exc


def load_material(security: UaSecurity) -> Material:
    """Read and check the certificate and key files (a few KB, once per connect)."""
    cert_der = _certificate_der(_read_file(security.cert, "certificate"), security.cert, "cert")
    key = _read_file(security.key, "private key")
    key_format = "pem" if key.lstrip().startswith(b"-----BEGIN") else "der"
    _check_private_key(key, key_format, security)
    server_der = None
    if security.server_cert is not None:
        server_der = _certificate_der(
            _read_file(security.server_cert, "server certificate"),
            security.server_cert,
            "server_cert",
        )
    uri = security.application_uri or _certificate_uri(cert_der) or APPLICATION_URI
    return Material(cert_der, key, key_format, server_der, uri)


def _check_private_key(key: bytes, key_format: str, security: UaSecurity) -> None:
    """Parse the private key once so a wrong file or password is named as such."""
    password = security.key_password.encode() if security.key_password is not None else None
    load = load_pem_private_key if key_format == "pem" else load_der_private_key
    try:
        load(key, password)
    except (ValueError, TypeError) as exc:  # TypeError: password given/missing vs encryption
        raise OpcUaSecurityError(f"private key {security.key} cannot be loaded: {exc}") from exc


def _certificate_uri(cert_der: bytes) -> str | None:
    """The application URI in a certificate's subjectAltName, which servers compare with ours."""
    cert = x509.load_der_x509_certificate(cert_der)
    try:
        san = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName)
    except x509.ExtensionNotFound:
        return None
    uris = san.value.get_values_for_type(x509.UniformResourceIdentifier)
    return uris[0] if uris else None
