"""Security and users of the simulators' OPC UA server.

With `SimSecurity` the server offers Basic256Sha256 (Sign and SignAndEncrypt by default),
optionally no unsecured endpoint at all, and trusts only the listed client certificates; with
users it asks for a user name and password (or also allows anonymous sessions).
"""

from __future__ import annotations

import hmac
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from asyncua import ua
from asyncua.common.utils import ServiceError
from asyncua.crypto.permission_rules import User, UserRole
from asyncua.server.user_managers import UserManager
from asyncua.ua.status_codes import StatusCodes
from cryptography import x509
from cryptography.hazmat.primitives import hashes

if TYPE_CHECKING:
    from collections.abc import Mapping
    from pathlib import Path

    from asyncua.server.internal_server import InternalServer
    from asyncua.server.server import Server

__all__ = ["SimSecurity", "Users", "configure_security"]

_POLICY_TYPES = {
    "Sign": ua.SecurityPolicyType.Basic256Sha256_Sign,
    "SignAndEncrypt": ua.SecurityPolicyType.Basic256Sha256_SignAndEncrypt,
}


@dataclass(frozen=True, slots=True)
class SimSecurity:
    """The simulator's security: its certificate, whom it trusts, which modes it offers.

    `trusted` lists client certificate files; None trusts every client certificate.
    """

    cert: Path
    key: Path
    trusted: tuple[Path, ...] | None = ()
    modes: tuple[str, ...] = ("SignAndEncrypt", "Sign")
    allow_unsecured: bool = False


def _fingerprint(data: bytes) -> bytes:
    """SHA-256 over a certificate's DER, from PEM or DER input."""
    if data.lstrip().startswith(b"-----BEGIN"):
        cert = x509.load_pem_x509_certificate(data)
    else:
        cert = x509.load_der_x509_certificate(data)
    return cert.fingerprint(hashes.SHA256())


class Users(UserManager):
    """asyncua user manager: the configured user names and passwords, anonymous if allowed."""

    def __init__(self, users: Mapping[str, str], *, allow_anonymous: bool) -> None:
        self._users = dict(users)
        self._anonymous = allow_anonymous

    def get_user(
        self,
        iserver: InternalServer,  # noqa: ARG002 -- asyncua's signature
        username: str | None = None,
        password: str | None = None,
        certificate: Any = None,  # noqa: ANN401, ARG002 -- asyncua's signature
    ) -> User | None:
        """Return the session's user, or None to refuse it (BadUserAccessDenied)."""
        if username is None:
            return User(role=UserRole.User) if self._anonymous else None
        expected = self._users.get(username)
        if expected is None or password is None:
            return None
        if not hmac.compare_digest(expected.encode(), password.encode()):
            return None
        return User(role=UserRole.User, name=username)


def _pem_or_der(data: bytes) -> str:
    """Return "pem" or "der", as asyncua names the encoding of a certificate or key file."""
    return "pem" if data.lstrip().startswith(b"-----") else "der"


async def configure_security(
    server: Server,
    security: SimSecurity | None,
    users: Mapping[str, str],
    *,
    allow_anonymous: bool,
) -> None:
    """Set the server's endpoints, identity tokens, certificate and trust list."""
    if users and not allow_anonymous:
        server.set_identity_tokens([ua.UserNameIdentityToken])
    elif users:
        server.set_identity_tokens([ua.AnonymousIdentityToken, ua.UserNameIdentityToken])
    if security is None:
        server.set_security_policy([ua.SecurityPolicyType.NoSecurity])
        return
    policies = [_POLICY_TYPES[mode] for mode in security.modes]
    if security.allow_unsecured:
        policies.append(ua.SecurityPolicyType.NoSecurity)
    server.set_security_policy(policies)
    cert = security.cert.read_bytes()
    key = security.key.read_bytes()
    await server.load_certificate(cert, _pem_or_der(cert))
    await server.load_private_key(key, None, _pem_or_der(key))
    if security.trusted is None:
        return
    trusted = {_fingerprint(path.read_bytes()) for path in security.trusted}

    async def validate(cert: x509.Certificate, _app: ua.ApplicationDescription) -> None:
        if cert.fingerprint(hashes.SHA256()) not in trusted:
            raise ServiceError(StatusCodes.BadCertificateUntrusted)

    server.set_certificate_validator(validate)
