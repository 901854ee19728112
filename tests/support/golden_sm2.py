"""Golden SM2 vectors of gz/1, made deterministically into `specs/examples/sm2/`.

    python -m tests.support.golden_sm2           # rewrite specs/examples/sm2/ (README.md kept)
    python -m tests.support.golden_sm2 --check   # exit 1 when a file differs from what is made

The payloads are the Ed25519 set's own files (`../block-whp-1.json` ...): the same bytes,
signed with SM2 over SM3 (GM/T 0003.2, default user ID, DER). SM2 signatures are randomised,
so to make the same bytes every time the per-signature k comes from a published rule
(`k = 1 + SHA-256(label || vector name || payload) mod (n - 1)`) and the signing is done by the
pure-Python `gmssl` package, which takes k: the vectors do not come from the code they test.
The keys' scalars come from seeds as the Ed25519 keys' do; the test keys are public.
"""

from __future__ import annotations

import hashlib
import sys
from dataclasses import dataclass
from typing import Final

from gmssl import func, sm3
from gmssl.sm2 import CryptSM2

from specs.block import block_hash
from specs.signing import SM2_SM3, SigningKey, signing_key_from_seed
from specs.signing.sm2der import CURVE_ORDER, DEFAULT_USER_ID, encode_signature
from tests.support.generated_folder import GeneratedFolder, json_file
from tests.support.golden import EXAMPLES as ED25519_EXAMPLES

EXAMPLES: Final = ED25519_EXAMPLES / "sm2"
KEPT: Final = frozenset({"README.md"})

GATEWAY_SEED_LABEL: Final = b"ganzhi gz/1 golden vectors: gateway SM2 test key"
COLLECTOR_SEED_LABEL: Final = b"ganzhi gz/1 golden vectors: collector SM2 test key"
NONCE_LABEL: Final = b"ganzhi gz/1 golden vectors: SM2 k"
GATEWAY_KEY: Final = signing_key_from_seed(hashlib.sha256(GATEWAY_SEED_LABEL).digest(), SM2_SM3)
COLLECTOR_KEY: Final = signing_key_from_seed(hashlib.sha256(COLLECTOR_SEED_LABEL).digest(), SM2_SM3)
KEYS: Final = {
    "gateway-sm2-test": (GATEWAY_KEY, GATEWAY_SEED_LABEL),
    "collector-sm2-test": (COLLECTOR_KEY, COLLECTOR_SEED_LABEL),
}

# GM/T 0003.5-2012 Annex A (= GB/T 32918.5-2017 Annex A), the published signature example.
ANNEX_A: Final = {
    "source": "GM/T 0003.5-2012 Annex A = GB/T 32918.5-2017 Annex A (SM2 recommended curve)",
    "user_id": DEFAULT_USER_ID.decode("ascii"),
    "message": "message digest",
    "private_key": "3945208f7b2144b13f36e38ac6d39f95889393692860b51a42fb81ef4df7c5b8",
    "public_key": (
        "0409f9df311e5421a150dd7d161e4bc5c672179fad1833fc076bb08ff356f35020"
        "ccea490ce26775a52dc6ea718cc1aa600aed05fbf35e084a6632f6072da9ad13"
    ),
    "k": "59276e27d506861a16680f3ad9c02dccef3cc1fa3cdbe4ce6d54b80deac1bc21",
    "z": "b2e14c5c79c6df5b85f4fe7ed8db7a262b9da7e07ccb0ea9f4747b8ccda8a4f3",
    "e": "f0b43e94ba45accaace692ed534382eb17e6ab5a19ce7b31f4486fdfc0d28640",
    "r": "f5a03b0648d2c4630eeac513e1bb81a15944da3827d5b74143ac7eaceee720b3",
    "s": "b1b6aa29df212fd8763182bc0d421ca1bb9038fd1f7f42d4840b69c485bbc1aa",
}


@dataclass(frozen=True, slots=True)
class Sm2Vector:
    """One SM2 signature over a payload of the Ed25519 set."""

    name: str
    kind: str  # block | ack | meta
    payload: str  # file name in specs/examples/
    key: str  # KEYS entry
    expect: str = "accept"
    why: str | None = None
    signed_payload: str | None = None  # reject vectors: the file the signature was made over
    without_z: bool = False  # reject vectors: e = SM3(M), Z left out


VECTORS: Final = (
    Sm2Vector("block-whp-1", "block", "block-whp-1.json", "gateway-sm2-test"),
    Sm2Vector("block-whp-2", "block", "block-whp-2.json", "gateway-sm2-test"),
    Sm2Vector("block-mk-1", "block", "block-mk-1.json", "gateway-sm2-test"),
    Sm2Vector("meta-whp", "meta", "meta-whp.json", "gateway-sm2-test"),
    Sm2Vector("ack-whp", "ack", "ack-whp.json", "collector-sm2-test"),
    Sm2Vector(
        "reject-block-tampered",
        "block",
        "reject-block-tampered.json",
        "gateway-sm2-test",
        "reject",
        "the signature is block-whp-1's; one reading was changed after signing",
        signed_payload="block-whp-1.json",
    ),
    Sm2Vector(
        "reject-block-without-z",
        "block",
        "block-whp-1.json",
        "gateway-sm2-test",
        "reject",
        "signs SM3(M) without Z (no user ID, no public key): not a GM/T 0003.2 signature",
        without_z=True,
    ),
)


def _private_scalar(key: SigningKey) -> int:
    """d of a seeded golden key, by the rule specs.signing uses (kept here in the open)."""
    label = next(label for k, label in KEYS.values() if k.kid == key.kid)
    return 1 + int.from_bytes(hashlib.sha256(label).digest(), "big") % (CURVE_ORDER - 2)


def nonce(name: str, payload: bytes) -> int:
    """The per-signature k of a vector."""
    digest = hashlib.sha256(NONCE_LABEL + name.encode("ascii") + payload).digest()
    return 1 + int.from_bytes(digest, "big") % (CURVE_ORDER - 1)


def oracle_signature(key: SigningKey, name: str, payload: bytes, *, without_z: bool) -> bytes:
    """DER signature made by the gmssl package with the vector's k."""
    oracle = CryptSM2(
        private_key=f"{_private_scalar(key):064x}", public_key=key.public().public.raw()[1:].hex()
    )
    k = f"{nonce(name, payload):064x}"
    if without_z:
        digest = bytes.fromhex(sm3.sm3_hash(func.bytes_to_list(payload)))
        raw = str(oracle.sign(digest, k))
    else:
        raw = str(oracle.sign_with_sm3(payload, k))
    return encode_signature(int(raw[:64], 16), int(raw[64:], 16))


def golden_files() -> dict[str, bytes]:
    """Every generated file of specs/examples/sm2/ by name, with its exact bytes."""
    files = {f"{name}.pub.pem": key.public().public_pem() for name, (key, _) in KEYS.items()}
    entries: list[dict[str, object]] = []
    for vector in VECTORS:
        key = KEYS[vector.key][0]
        signed = (ED25519_EXAMPLES / (vector.signed_payload or vector.payload)).read_bytes()
        sig = oracle_signature(key, vector.name, signed, without_z=vector.without_z)
        files[f"{vector.name}.sig.json"] = json_file(
            {
                "alg": SM2_SM3,
                "kid": key.kid,
                "sig": sig.hex(),
                "k": f"{nonce(vector.name, signed):064x}",
                "hash": block_hash((ED25519_EXAMPLES / vector.payload).read_bytes()),
                "key": vector.key,
            }
        )
        entries.append(
            {
                "name": vector.name,
                "kind": vector.kind,
                "payload": f"../{vector.payload}",
                "signature": f"{vector.name}.sig.json",
                "key": vector.key,
                "expect": vector.expect,
                "why": vector.why,
            }
        )
    files["gmt-0003.5-annex-a.json"] = json_file(ANNEX_A)
    files["manifest.json"] = json_file(
        {
            "spec": "gz/1",
            "alg": SM2_SM3,
            "user_id": DEFAULT_USER_ID.decode("ascii"),
            "note": "TEST KEYS ONLY: the seeds are public. See README.md.",
            "keys": {
                name: {
                    "alg": SM2_SM3,
                    "kid": key.kid,
                    "public_key": f"{name}.pub.pem",
                    "seed_label": label.decode("ascii"),
                    "private_scalar": f"{_private_scalar(key):064x}",
                }
                for name, (key, label) in KEYS.items()
            },
            "vectors": entries,
            "published": "gmt-0003.5-annex-a.json",
        }
    )
    return files


FOLDER: Final = GeneratedFolder(
    default=EXAMPLES,
    kept=KEPT,
    generate=golden_files,
    prog="python -m tests.support.golden_sm2",
    description="Regenerate specs/examples/sm2/, or with --check report what differs.",
)
differences: Final = FOLDER.differences
write: Final = FOLDER.write
main: Final = FOLDER.main


if __name__ == "__main__":
    sys.exit(main())
