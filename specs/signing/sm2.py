"""SM2 signatures over SM3 (GM/T 0003.2 / GB/T 32918.2) through `tongsuopy`, the `ganzhi[sm]` extra.

The candidates on PyPI (Python 3.11, x86_64; sign/s and verify/s of one process on a loaded
2-core machine, all in one run, ~100-byte message, SM2 with Z):

    package               backing                        sign/s  verify/s  release  licence
    tongsuopy 1.0.1       Tongsuo 8.3.2, static, abi3     ~2800  2200-3100  2023-02  Apache-2.0
    gmssl-pyx 2.1.0       GmSSL 3.2.0, C ext., cp311       ~150   650-850   2026-09  Apache-2.0
    gmssl-fast 0.1.0      GmSSL via Rust; raw r||s, no ID  ~500   300-450   2026-09  Apache-2.0
    gmssl-python, pygmssl ctypes over a system libgmssl   (GmSSL 3 is not in Debian: no install)
    gmssl 3.2.2 (oracle)  pure Python                    70-130     40-60   2023-02  BSD
    gmalg, snowland-smx   pure Python                      ~50      ~30     2026     MIT, BSD

Chosen: tongsuopy. It is the pyca/cryptography API over Tongsuo (the OpenAtom fork of OpenSSL
with the Chinese algorithms), statically linked into one wheel (no system library), 3-4x the
verify rate of the next C-backed candidate, and it reads and writes SM2 keys as PKCS#8 /
SubjectPublicKeyInfo PEM with the SM2 curve OID, so key files need no ASN.1 of ours. Its weak
point is maintenance: one release (2023), bundling Tongsuo 8.3.2 (2022). gmssl-pyx is the
maintained fallback (slower; 64-byte raw keys, so PKCS#8/SPKI would be ours to write). The
backend sits behind specs.signing.backend's two protocols, so replacing it is this one module.
Neither tongsuopy nor gmssl-pyx offers an aarch64 wheel: an ARM gateway needs a source build
(or signs with Ed25519).

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
