"""Signatures over exact payload bytes, with an algorithm allow-list.

Two algorithms, one API: `ed25519` (pyca/cryptography, always there) and `sm2-sm3` (SM2 over
SM3 with the default user ID, DER signatures; needs the `ganzhi[sm]` extra, see
specs/signing/sm2.py). A SigningKey or VerifyKey carries its algorithm, its key id and a
backend key object (specs/signing/backend.py); callers never look inside that object.

Key id: the first 16 hex digits of SHA-256 over the public key's canonical bytes: the raw
32 bytes for Ed25519, the uncompressed point 04 || x || y for SM2.

Error tree::

    SignatureError
    ├── UnsupportedAlgorithmError   `alg` is not on the allow-list (or its backend is missing)
    └── BadSignatureError           the signature does not verify under the given key
"""

from __future__ import annotations

import base64
import binascii
import functools
import hashlib
import importlib
from collections.abc import Callable
from dataclasses import dataclass
from types import ModuleType
from typing import Final, TypeVar

from cryptography.exceptions import UnsupportedAlgorithm
from cryptography.hazmat.primitives import serialization

from specs.signing import ed25519
from specs.signing.backend import PrivateKeyBackend, PublicKeyBackend
from specs.signing.errors import BadSignatureError, SignatureError, UnsupportedAlgorithmError
from specs.signing.sm2der import is_sm2_key_der

__all__ = [
    "ALLOWED_ALGORITHMS",
    "ED25519",
    "SM2_SM3",
    "SM_EXTRA_HINT",
    "BadSignatureError",
    "Signature",
    "SignatureError",
    "SigningKey",
    "UnsupportedAlgorithmError",
    "VerifyKey",
    "available_algorithms",
    "check_algorithm",
    "generate_signing_key",
    "key_id",
    "load_signing_key",
    "load_verify_key",
    "private_pem",
    "require_available",
    "signature_from_properties",
    "signature_properties",
    "signing_key_from_seed",
]

ED25519: Final = "ed25519"
SM2_SM3: Final = "sm2-sm3"
ALLOWED_ALGORITHMS: Final = frozenset({ED25519, SM2_SM3})
SM_EXTRA_HINT: Final = "install the C-backed SM2 library: pip install 'ganzhi[sm]'"


@functools.cache
def _sm2() -> ModuleType | None:
    """The SM2 backend module, or None when the extra (tongsuopy) is not installed."""
    try:
        return importlib.import_module("specs.signing.sm2")
    except ModuleNotFoundError as exc:
        if exc.name is not None and exc.name.split(".")[0] == "tongsuopy":
            return None
        raise


def available_algorithms() -> frozenset[str]:
    """The allowed algorithms this installation can sign and verify with."""
    return frozenset({ED25519, SM2_SM3}) if _sm2() is not None else frozenset({ED25519})


def check_algorithm(alg: str) -> None:
    """Raise UnsupportedAlgorithmError unless `alg` is allowed and available."""
    if alg not in ALLOWED_ALGORITHMS:
        raise UnsupportedAlgorithmError(f"algorithm {alg!r} is not allowed")
    # Only SM2 needs its backend: asking for Ed25519 must not import tongsuopy (G7: an
    # Ed25519 agent verifies every ACK and would hold the SM2 library for nothing).
    if alg == SM2_SM3 and _sm2() is None:
        raise UnsupportedAlgorithmError(f"algorithm {alg!r} is not available: {SM_EXTRA_HINT}")


def _sm2_backend() -> ModuleType:
    backend = _sm2()
    if backend is None:
        raise UnsupportedAlgorithmError(f"algorithm {SM2_SM3!r} is not available: {SM_EXTRA_HINT}")
    return backend


@dataclass(frozen=True, slots=True)
class Signature:
    """A detached signature as it travels in MQTT user properties."""

    alg: str
    kid: str
    sig: bytes


@dataclass(frozen=True, slots=True)
class SigningKey:
    """A private key with its algorithm and key id."""

    alg: str
    kid: str
    private: PrivateKeyBackend

    def sign(self, payload: bytes) -> Signature:
        """Sign the exact payload bytes."""
        return Signature(self.alg, self.kid, self.private.sign(payload))

    def public(self) -> VerifyKey:
        """The matching public key."""
        return VerifyKey(self.alg, self.kid, self.private.public())


@dataclass(frozen=True, slots=True)
class VerifyKey:
    """A public key with its algorithm and key id."""

    alg: str
    kid: str
    public: PublicKeyBackend

    def verify(self, signature: Signature, payload: bytes) -> None:
        """Raise a SignatureError unless `signature` is valid for `payload` under this key."""
        check_algorithm(signature.alg)
        if signature.alg != self.alg:
            raise UnsupportedAlgorithmError(
                f"signature algorithm {signature.alg} does not match key algorithm {self.alg}"
            )
        if signature.kid != self.kid:
            raise BadSignatureError(f"key id {signature.kid} is not {self.kid}")
        if not self.public.verify(signature.sig, payload):
            raise BadSignatureError("signature does not verify")

    def public_pem(self) -> bytes:
        """PEM text of the public key (SubjectPublicKeyInfo)."""
        return self.public.pem()


def key_id(public: PublicKeyBackend) -> str:
    """Key id: the first 16 hex digits of SHA-256 over the public key's canonical bytes."""
    return hashlib.sha256(public.raw()).hexdigest()[:16]


def _signing_key(alg: str, private: PrivateKeyBackend) -> SigningKey:
    return SigningKey(alg, key_id(private.public()), private)


def _verify_key(alg: str, public: PublicKeyBackend) -> VerifyKey:
    return VerifyKey(alg, key_id(public), public)


def generate_signing_key(alg: str = ED25519) -> SigningKey:
    """A new random key of `alg`; UnsupportedAlgorithmError when it is not available."""
    check_algorithm(alg)
    if alg == SM2_SM3:
        return _signing_key(SM2_SM3, _sm2_backend().generate())
    return _signing_key(ED25519, ed25519.generate())


def signing_key_from_seed(seed: bytes, alg: str = ED25519) -> SigningKey:
    """A deterministic key from a 32-byte seed (golden vectors and tests only)."""
    check_algorithm(alg)
    if alg == SM2_SM3:
        return _signing_key(SM2_SM3, _sm2_backend().from_seed(seed))
    return _signing_key(ED25519, ed25519.from_seed(seed))


def private_pem(key: SigningKey) -> bytes:
    """PKCS#8 PEM text of a private key (unencrypted: file mode 0600 protects it)."""
    return key.private.pem()


def _pem_body(pem: bytes) -> bytes:
    """The DER inside a PEM block (b"" when it is not one): enough to tell SM2 keys apart."""
    lines = pem.strip().splitlines()
    if len(lines) < 2 or not lines[0].startswith(b"-----BEGIN "):  # noqa: PLR2004
        return b""
    try:
        return base64.b64decode(b"".join(line.strip() for line in lines[1:-1]), validate=True)
    except binascii.Error:
        return b""


_Ed25519 = TypeVar("_Ed25519", ed25519.Ed25519Private, ed25519.Ed25519Public)


def _ed25519_key(
    pem: bytes, side: str, load: Callable[[bytes], object], want: type[_Ed25519]
) -> _Ed25519:
    """The Ed25519 `side` key ("private", "public") that pyca/cryptography's `load` reads."""
    try:
        loaded = load(pem)
    except (ValueError, TypeError) as exc:  # TypeError: a private key that wants a password
        raise SignatureError(f"not a {side} key PEM: {exc}") from None
    except UnsupportedAlgorithm as exc:
        raise UnsupportedAlgorithmError(f"unsupported {side} key: {exc}") from None
    key = ed25519.from_loaded(loaded)
    if not isinstance(key, want):
        raise UnsupportedAlgorithmError(f"only Ed25519 and SM2 {side} keys are supported")
    return key


def load_signing_key(pem: bytes) -> SigningKey:
    """Parse a private key PEM (Ed25519 or SM2); UnsupportedAlgorithmError for other keys."""
    if is_sm2_key_der(_pem_body(pem)):
        return _signing_key(SM2_SM3, _sm2_backend().load_private(pem))
    load = functools.partial(serialization.load_pem_private_key, password=None)
    return _signing_key(ED25519, _ed25519_key(pem, "private", load, ed25519.Ed25519Private))


def load_verify_key(pem: bytes) -> VerifyKey:
    """Parse a public key PEM (Ed25519 or SM2); UnsupportedAlgorithmError for other keys."""
    if is_sm2_key_der(_pem_body(pem)):
        return _verify_key(SM2_SM3, _sm2_backend().load_public(pem))
    load = serialization.load_pem_public_key
    return _verify_key(ED25519, _ed25519_key(pem, "public", load, ed25519.Ed25519Public))


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


def require_available(alg: str) -> str:
    """`alg` itself when this installation can use it (a config validator); else ValueError."""
    check_algorithm(alg)
    return alg
