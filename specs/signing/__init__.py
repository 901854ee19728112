"""Signatures over exact payload bytes, with an algorithm allow-list.

Error tree::

    SignatureError
    ├── UnsupportedAlgorithmError   `alg` is not on the allow-list (or its backend is missing)
    └── BadSignatureError           the signature does not verify under the given key
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from typing import Final

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey

ED25519: Final = "ed25519"
SM2_SM3: Final = "sm2-sm3"
# sm2-sm3 is on the contract's allow-list but needs a C-backed library (an optional extra that
# is not built yet); until then it is rejected like any unknown algorithm, with its own reason.
ALLOWED_ALGORITHMS: Final = frozenset({ED25519, SM2_SM3})
AVAILABLE_ALGORITHMS: Final = frozenset({ED25519})


class SignatureError(ValueError):
    """A signature cannot be made or checked."""


class UnsupportedAlgorithmError(SignatureError):
    """The algorithm is not allowed, or allowed but not available in this build."""


class BadSignatureError(SignatureError):
    """The signature does not verify."""


@dataclass(frozen=True, slots=True)
class Signature:
    """A detached signature as it travels in MQTT user properties."""

    alg: str
    kid: str
    sig: bytes


@dataclass(frozen=True, slots=True)
class SigningKey:
    """A private key with its key id."""

    alg: str
    kid: str
    private: Ed25519PrivateKey

    def sign(self, payload: bytes) -> Signature:
        """Sign the exact payload bytes."""
        return Signature(self.alg, self.kid, self.private.sign(payload))

    def public(self) -> VerifyKey:
        """The matching public key."""
        return VerifyKey(self.alg, self.kid, self.private.public_key())


@dataclass(frozen=True, slots=True)
class VerifyKey:
    """A public key with its key id."""

    alg: str
    kid: str
    public: Ed25519PublicKey

    def verify(self, signature: Signature, payload: bytes) -> None:
        """Raise a SignatureError unless `signature` is valid for `payload` under this key."""
        check_algorithm(signature.alg)
        if signature.alg != self.alg:
            raise UnsupportedAlgorithmError(
                f"signature algorithm {signature.alg} does not match key algorithm {self.alg}"
            )
        if signature.kid != self.kid:
            raise BadSignatureError(f"key id {signature.kid} is not {self.kid}")
        try:
            self.public.verify(signature.sig, payload)
        except InvalidSignature:
            raise BadSignatureError("signature does not verify") from None

    def public_pem(self) -> bytes:
        """PEM text of the public key."""
        return self.public.public_bytes(
            serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
        )


def check_algorithm(alg: str) -> None:
    """Raise UnsupportedAlgorithmError unless `alg` is allowed and available."""
    if alg not in ALLOWED_ALGORITHMS:
        raise UnsupportedAlgorithmError(f"algorithm {alg!r} is not allowed")
    if alg not in AVAILABLE_ALGORITHMS:
        raise UnsupportedAlgorithmError(f"algorithm {alg!r} is not available in this build")


def key_id(public: Ed25519PublicKey) -> str:
    """Key id: the first 16 hex digits of SHA-256 over the raw public key."""
    raw = public.public_bytes(serialization.Encoding.Raw, serialization.PublicFormat.Raw)
    return hashlib.sha256(raw).hexdigest()[:16]


def generate_signing_key() -> SigningKey:
    """A new random Ed25519 key."""
    private = Ed25519PrivateKey.generate()
    return SigningKey(ED25519, key_id(private.public_key()), private)


def signing_key_from_seed(seed: bytes) -> SigningKey:
    """A deterministic Ed25519 key from a 32-byte seed (golden vectors and tests only)."""
    private = Ed25519PrivateKey.from_private_bytes(seed)
    return SigningKey(ED25519, key_id(private.public_key()), private)


def private_pem(key: SigningKey) -> bytes:
    """PKCS#8 PEM text of a private key (unencrypted: file mode 0600 protects it)."""
    return key.private.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    )


def load_signing_key(pem: bytes) -> SigningKey:
    """Parse a private key PEM; raise UnsupportedAlgorithmError for a non-Ed25519 key."""
    try:
        private = serialization.load_pem_private_key(pem, password=None)
    except ValueError as exc:
        raise SignatureError(f"not a private key PEM: {exc}") from None
    if not isinstance(private, Ed25519PrivateKey):
        raise UnsupportedAlgorithmError("only Ed25519 private keys are supported")
    return SigningKey(ED25519, key_id(private.public_key()), private)


def load_verify_key(pem: bytes) -> VerifyKey:
    """Parse a public key PEM; raise UnsupportedAlgorithmError for a non-Ed25519 key."""
    try:
        public = serialization.load_pem_public_key(pem)
    except ValueError as exc:
        raise SignatureError(f"not a public key PEM: {exc}") from None
    if not isinstance(public, Ed25519PublicKey):
        raise UnsupportedAlgorithmError("only Ed25519 public keys are supported")
    return VerifyKey(ED25519, key_id(public), public)


def signature_properties(signature: Signature) -> list[tuple[str, str]]:
    """The MQTT 5 user properties that carry a signature."""
    return [("alg", signature.alg), ("kid", signature.kid), ("sig", signature.sig.hex())]


def signature_from_properties(properties: list[tuple[str, str]] | None) -> Signature:
    """Read `alg`, `kid`, `sig` from MQTT 5 user properties; SignatureError when absent."""
    found = dict(properties or [])
    try:
        return Signature(found["alg"], found["kid"], bytes.fromhex(found["sig"]))
    except KeyError as exc:
        raise SignatureError(f"user property {exc.args[0]!r} is missing") from None
    except ValueError:
        raise SignatureError("user property 'sig' is not hex") from None
