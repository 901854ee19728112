"""Ed25519 (RFC 8032) through pyca/cryptography, a required dependency."""

from __future__ import annotations

from dataclasses import dataclass

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey


@dataclass(frozen=True, slots=True)
class Ed25519Public:
    """An Ed25519 public key."""

    key: Ed25519PublicKey

    def raw(self) -> bytes:
        """The raw 32-byte public key."""
        return self.key.public_bytes(serialization.Encoding.Raw, serialization.PublicFormat.Raw)

    def verify(self, sig: bytes, payload: bytes) -> bool:
        """Whether `sig` signs `payload`."""
        try:
            self.key.verify(sig, payload)
        except InvalidSignature:
            return False
        return True

    def pem(self) -> bytes:
        """SPKI PEM."""
        return self.key.public_bytes(
            serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
        )


@dataclass(frozen=True, slots=True)
class Ed25519Private:
    """An Ed25519 private key."""

    key: Ed25519PrivateKey

    def sign(self, payload: bytes) -> bytes:
        """The 64-byte signature (deterministic)."""
        return self.key.sign(payload)

    def public(self) -> Ed25519Public:
        """The matching public key."""
        return Ed25519Public(self.key.public_key())

    def pem(self) -> bytes:
        """PKCS#8 PEM."""
        return self.key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )


def generate() -> Ed25519Private:
    """A new random key."""
    return Ed25519Private(Ed25519PrivateKey.generate())


def from_seed(seed: bytes) -> Ed25519Private:
    """The key of a 32-byte seed."""
    return Ed25519Private(Ed25519PrivateKey.from_private_bytes(seed))


def from_loaded(key: object) -> Ed25519Private | Ed25519Public | None:
    """Wrap a key that pyca/cryptography loaded, or None when it is not an Ed25519 key."""
    if isinstance(key, Ed25519PrivateKey):
        return Ed25519Private(key)
    if isinstance(key, Ed25519PublicKey):
        return Ed25519Public(key)
    return None
