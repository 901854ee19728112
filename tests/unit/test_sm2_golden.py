"""Golden SM2 vectors (specs/examples/sm2/): reproducible, and judged alike by us and the oracle.

The signatures were made by the pure-Python gmssl package with published k; here our verifier
(the C-backed `ganzhi[sm]` backend) must accept and reject exactly what the manifest says, and
the oracle must agree, so the two implementations are checked against each other through files
a third party can use alone.
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path
from typing import Any

import pytest
from gmssl.sm2 import CryptSM2

from specs.ack import decode_ack
from specs.block import decode_block
from specs.meta import decode_meta
from specs.signing import (
    SM2_SM3,
    BadSignatureError,
    Signature,
    VerifyKey,
    load_verify_key,
    signing_key_from_seed,
)
from specs.signing import sm2 as sm2_backend
from specs.signing.sm2der import CURVE_ORDER, decode_signature, encode_signature
from tests.support import golden_sm2

SM2 = golden_sm2.EXAMPLES
MANIFEST: dict[str, Any] = json.loads((SM2 / "manifest.json").read_text(encoding="utf-8"))
VECTORS: list[dict[str, Any]] = MANIFEST["vectors"]
ACCEPTED = [v for v in VECTORS if v["expect"] == "accept"]
REJECTED = [v for v in VECTORS if v["expect"] == "reject"]
DECODERS = {"block": decode_block, "ack": decode_ack, "meta": decode_meta}


def _name(vector: dict[str, Any]) -> str:
    return str(vector["name"])


def _key(vector: dict[str, Any]) -> VerifyKey:
    return load_verify_key((SM2 / MANIFEST["keys"][vector["key"]]["public_key"]).read_bytes())


def _payload(vector: dict[str, Any]) -> bytes:
    return (SM2 / str(vector["payload"])).read_bytes()


def _sidecar(vector: dict[str, Any]) -> dict[str, Any]:
    data: dict[str, Any] = json.loads((SM2 / str(vector["signature"])).read_text("utf-8"))
    return data


def _oracle_accepts(key: VerifyKey, sig: bytes, payload: bytes) -> bool:
    r, s = decode_signature(sig)
    oracle = CryptSM2(private_key="", public_key=key.public.raw()[1:].hex())
    return bool(oracle.verify_with_sm3(f"{r:064x}{s:064x}", payload))


def test_regenerating_gives_byte_identical_files(tmp_path: Path) -> None:
    golden_sm2.write(tmp_path)
    made = {p.name: p.read_bytes() for p in tmp_path.iterdir()}
    shipped = {p.name: p.read_bytes() for p in SM2.iterdir() if p.name not in golden_sm2.KEPT}
    assert made == shipped
    assert golden_sm2.main(["--check"]) == 0


def test_keys_follow_the_published_seed_rule() -> None:
    for name, entry in MANIFEST["keys"].items():
        key = load_verify_key((SM2 / entry["public_key"]).read_bytes())
        seed = hashlib.sha256(entry["seed_label"].encode("ascii")).digest()
        made = signing_key_from_seed(seed, SM2_SM3).public()
        assert (made.kid, made.public_pem()) == (key.kid, key.public_pem()), name
        assert int(entry["private_scalar"], 16) == 1 + int.from_bytes(seed, "big") % (
            CURVE_ORDER - 2
        )
        assert key.kid == entry["kid"] == hashlib.sha256(key.public.raw()).hexdigest()[:16]
        assert key.alg == entry["alg"] == SM2_SM3


@pytest.mark.parametrize("vector", ACCEPTED, ids=_name)
def test_accepted_vectors_verify_with_ours_and_with_the_oracle(vector: dict[str, Any]) -> None:
    key, side, payload = _key(vector), _sidecar(vector), _payload(vector)
    assert (side["alg"], side["kid"]) == (SM2_SM3, key.kid)
    assert side["hash"] == hashlib.sha256(payload).hexdigest()
    sig = bytes.fromhex(side["sig"])
    assert encode_signature(*decode_signature(sig)) == sig  # strict DER
    key.verify(Signature(side["alg"], side["kid"], sig), payload)
    assert _oracle_accepts(key, sig, payload)
    DECODERS[vector["kind"]](payload)  # and the payload is a valid message of its kind


@pytest.mark.parametrize("vector", REJECTED, ids=_name)
def test_rejected_vectors_fail_with_ours_and_with_the_oracle(vector: dict[str, Any]) -> None:
    key, side, payload = _key(vector), _sidecar(vector), _payload(vector)
    sig = bytes.fromhex(side["sig"])
    with pytest.raises(BadSignatureError):
        key.verify(Signature(side["alg"], side["kid"], sig), payload)
    assert not _oracle_accepts(key, sig, payload)


def test_the_published_example_verifies_with_ours() -> None:
    example = json.loads((SM2 / MANIFEST["published"]).read_text(encoding="utf-8"))
    assert example["user_id"] == MANIFEST["user_id"] == "1234567812345678"
    public = sm2_backend.from_scalar(int(example["private_key"], 16)).public()
    assert public.raw().hex() == example["public_key"]
    sig = encode_signature(int(example["r"], 16), int(example["s"], 16))
    message = example["message"].encode("ascii")
    assert public.verify(sig, message)
    assert not public.verify(sig, message + b".")
