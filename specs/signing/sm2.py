"""SM2 signatures over SM3 (GM/T 0003.2 / GB/T 32918.2) through `tongsuopy`, the `ganzhi[sm]` extra.

Why tongsuopy: it is the pyca/cryptography API over Tongsuo (the OpenAtom fork of OpenSSL with
the Chinese algorithms), statically linked into a manylinux abi3 wheel, Apache-2.0. It was the
fastest C-backed candidate measured here (bench/signing.py), and it reads and writes SM2 keys
as PKCS#8 / SubjectPublicKeyInfo PEM with the SM2 curve OID, so key files need no ASN.1 of ours.
Its weak point is maintenance (one release, 2023); the backend sits behind
specs.signing.backend's two protocols so that another library can replace this one module.

What is signed: Tongsuo's EVP_DigestSign with SM3 on an SM2 key computes
e = SM3(Z || M) with Z = SM3(ENTL || ID || a || b || xG || yG || xA || yA) and the default
user ID `1234567812345678` itself, the GM/T 0003.2 signature, not a bare hash of M
(tests/unit/test_sm2_signing.py pins this against the GM/T 0003.5 Annex A vector and the
pure-Python `gmssl` oracle). Signatures are DER (GM/T 0009), randomised per signature.

Importing this module fails with ModuleNotFoundError (name "tongsuopy") without the extra;
specs.signing turns that into "not available, pip install 'ganzhi[sm]'".
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Final

from tongsuopy.crypto import hashes, serialization
from tongsuopy.crypto.asymciphers import ec
from tongsuopy.crypto.exceptions import InternalError, InvalidSignature, UnsupportedAlgorithm

from specs.signing.errors import SignatureError, UnsupportedAlgorithmError
from specs.signing.sm2der import CURVE_ORDER, decode_signature

_CURVE_NAME: Final = "SM2"


def _algorithm() -> Any:  # noqa: ANN401 - tongsuopy ships no type hints
    return ec.ECDSA(hashes.SM3())


@dataclass(frozen=True, slots=True)
class Sm2Public:
    """An SM2 public key (a tongsuopy EllipticCurvePublicKey on the SM2 curve)."""

    key: Any

    def raw(self) -> bytes:
        """The uncompressed point 04 || x || y (65 bytes)."""
        point: bytes = self.key.public_bytes(
            serialization.Encoding.X962, serialization.PublicFormat.UncompressedPoint
        )
        return point

    def verify(self, sig: bytes, payload: bytes) -> bool:
        """Whether the DER signature `sig` signs `payload` (Z with the default user ID)."""
        decode_signature(sig)  # malformed DER is a bad signature, never a backend error
        try:
            self.key.verify(sig, payload, _algorithm())
        except InvalidSignature:
            return False
        except InternalError as exc:
            raise SignatureError(f"SM2 backend could not check the signature: {exc}") from None
        return True

    def pem(self) -> bytes:
        """SPKI PEM (id-ecPublicKey with the SM2 curve OID)."""
        text: bytes = self.key.public_bytes(
            serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
        )
        return text


@dataclass(frozen=True, slots=True)
class Sm2Private:
    """An SM2 private key (a tongsuopy EllipticCurvePrivateKey on the SM2 curve)."""

    key: Any

    def sign(self, payload: bytes) -> bytes:
        """DER signature of SM3(Z || payload)."""
        signature: bytes = self.key.sign(payload, _algorithm())
        return signature

    def public(self) -> Sm2Public:
        """The matching public key."""
        return Sm2Public(self.key.public_key())

    def pem(self) -> bytes:
        """PKCS#8 PEM, unencrypted."""
        text: bytes = self.key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
        return text


def generate() -> Sm2Private:
    """A new random key (d uniform in [1, n-2] from the OS CSPRNG, via Tongsuo)."""
    return Sm2Private(ec.generate_private_key(ec.SM2()))


def from_scalar(d: int) -> Sm2Private:
    """The key with private scalar `d` (golden vectors and tests)."""
    if not 0 < d < CURVE_ORDER - 1:
        raise SignatureError("SM2 private scalar out of range")
    return Sm2Private(ec.derive_private_key(d, ec.SM2()))


def from_seed(seed: bytes) -> Sm2Private:
    """A deterministic key from a seed: d = 1 + (seed as an integer mod n - 2)."""
    return from_scalar(1 + int.from_bytes(seed, "big") % (CURVE_ORDER - 2))


def _check_curve(key: Any) -> None:  # noqa: ANN401 - tongsuopy ships no type hints
    if not isinstance(key, ec.EllipticCurvePrivateKey | ec.EllipticCurvePublicKey):
        raise UnsupportedAlgorithmError("not an elliptic-curve key")
    if key.curve.name != _CURVE_NAME:
        raise UnsupportedAlgorithmError(f"curve {key.curve.name} is not SM2")


def load_private(pem: bytes) -> Sm2Private:
    """Parse an SM2 PKCS#8 (or SEC1) private key PEM."""
    try:
        key = serialization.load_pem_private_key(pem, password=None)
    except (ValueError, TypeError, UnsupportedAlgorithm) as exc:
        raise SignatureError(f"not an SM2 private key PEM: {exc}") from None
    _check_curve(key)
    return Sm2Private(key)


def load_public(pem: bytes) -> Sm2Public:
    """Parse an SM2 SPKI public key PEM."""
    try:
        key = serialization.load_pem_public_key(pem)
    except (ValueError, UnsupportedAlgorithm) as exc:
        raise SignatureError(f"not an SM2 public key PEM: {exc}") from None
    _check_curve(key)
    return Sm2Public(key)
