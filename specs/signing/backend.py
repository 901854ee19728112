"""What an algorithm's backend provides: the key objects inside SigningKey and VerifyKey."""

from __future__ import annotations

from typing import Protocol


class PublicKeyBackend(Protocol):
    """A public key of one algorithm."""

    def raw(self) -> bytes:
        """The public key's canonical bytes: what the key id hashes."""
        ...

    def verify(self, sig: bytes, payload: bytes) -> bool:
        """Whether `sig` is a valid signature of `payload`; SignatureError if it cannot tell."""
        ...

    def pem(self) -> bytes:
        """SubjectPublicKeyInfo PEM text."""
        ...


class PrivateKeyBackend(Protocol):
    """A private key of one algorithm."""

    def sign(self, payload: bytes) -> bytes:
        """The signature of the exact payload bytes."""
        ...

    def public(self) -> PublicKeyBackend:
        """The matching public key."""
        ...

    def pem(self) -> bytes:
        """Unencrypted PKCS#8 PEM text (file mode 0600 protects it)."""
        ...
