"""SM2 over SM3 (GM/T 0003.2) through specs.signing, checked against independent implementations.

Oracles: the pure-Python `gmssl` package (its own SM2 and SM3 code, Z with the default user ID
`1234567812345678`), the OpenSSL 3 command line (a third code base, with the ID given
explicitly: OpenSSL 3.0's own default is an empty ID), and the published example of
GM/T 0003.5-2012 / GB/T 32918.5-2017 Annex A (recommended curve, ID 1234567812345678,
message "message digest"; reproduced in OpenSSL test/sm2_internal_test.c).

Needs the `ganzhi[sm]` extra, which `make install` and CI install: these tests do not skip.
"""

from __future__ import annotations

import base64
import hashlib
import secrets
import subprocess
from pathlib import Path
from typing import Final

import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec
from gmssl import func, sm3
from gmssl.sm2 import CryptSM2

from specs.signing import (
    ED25519,
    SM2_SM3,
    BadSignatureError,
    Signature,
    SignatureError,
    SigningKey,
    UnsupportedAlgorithmError,
    VerifyKey,
    generate_signing_key,
    key_id,
    load_signing_key,
    load_verify_key,
    private_pem,
    signing_key_from_seed,
)
from specs.signing import sm2 as sm2_backend
from specs.signing.sm2der import (
    CURVE_OID_DER,
    CURVE_ORDER,
    DEFAULT_USER_ID,
    decode_signature,
    encode_signature,
)

# GM/T 0003.5-2012 Annex A (= GB/T 32918.5-2017 Annex A): digital signature example.
ANNEX_A_D: Final = 0x3945208F7B2144B13F36E38AC6D39F95889393692860B51A42FB81EF4DF7C5B8
ANNEX_A_X: Final = "09F9DF311E5421A150DD7D161E4BC5C672179FAD1833FC076BB08FF356F35020"
ANNEX_A_Y: Final = "CCEA490CE26775A52DC6EA718CC1AA600AED05FBF35E084A6632F6072DA9AD13"
ANNEX_A_MESSAGE: Final = b"message digest"
ANNEX_A_K: Final = "59276E27D506861A16680F3AD9C02DCCEF3CC1FA3CDBE4CE6D54B80DEAC1BC21"
ANNEX_A_Z: Final = "B2E14C5C79C6DF5B85F4FE7ED8DB7A262B9DA7E07CCB0EA9F4747B8CCDA8A4F3"
ANNEX_A_E: Final = "F0B43E94BA45ACCAACE692ED534382EB17E6AB5A19CE7B31F4486FDFC0D28640"
ANNEX_A_R: Final = 0xF5A03B0648D2C4630EEAC513E1BB81A15944DA3827D5B74143AC7EACEEE720B3
ANNEX_A_S: Final = 0xB1B6AA29DF212FD8763182BC0D421CA1BB9038FD1F7F42D4840B69C485BBC1AA

# The SM2 curve's a, b and generator, as Z hashes them (GM/T 0003.5 section 3).
CURVE_A: Final = "FFFFFFFEFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFF00000000FFFFFFFFFFFFFFFC"
CURVE_B: Final = "28E9FA9E9D9F5E344D5A9E4BCF6509A7F39789F515AB8F92DDBCBD414D940E93"
CURVE_G: Final = (
    "32C4AE2C1F1981195F9904466A39C9948FE30BBFF2660BE1715A4589334C74C7"
    "BC3736A2F4F6779C59BDCEE36B692153D0A9877CC62A474002DF32E52139F0A0"
)


def annex_a_key() -> SigningKey:
    private = sm2_backend.from_scalar(ANNEX_A_D)
    return SigningKey(SM2_SM3, key_id(private.public()), private)


def xy_hex(key: VerifyKey) -> str:
    """x || y of an SM2 public key, as gmssl takes it (128 hex digits, no 04 prefix)."""
    return key.public.raw()[1:].hex()


def oracle(key: VerifyKey, private_scalar: int | None = None) -> CryptSM2:
    private = "" if private_scalar is None else f"{private_scalar:064x}"
    checker = CryptSM2(private_key=private, public_key="")
    # Set after construction: gmssl's constructor takes a key that starts with "04" for a
    # prefixed one and strips it with lstrip("04"), eating x's own leading 0 and 4 digits
    # (x begins with "04" once in 256 keys; the oracle then failed on a good signature).
    checker.public_key = xy_hex(key)
    return checker


def raw_rs(der: bytes) -> str:
    r, s = decode_signature(der)
    return f"{r:064x}{s:064x}"


def der_of(raw_hex: str) -> bytes:
    return encode_signature(int(raw_hex[:64], 16), int(raw_hex[64:], 16))


def sm3_hex(data: bytes) -> str:
    return str(sm3.sm3_hash(func.bytes_to_list(data)))


def z_value(key: VerifyKey) -> bytes:
    """Z = SM3(ENTL || ID || a || b || xG || yG || xA || yA) with the default ID, by hand."""
    entl = (len(DEFAULT_USER_ID) * 8).to_bytes(2, "big")
    material = entl + DEFAULT_USER_ID + bytes.fromhex(CURVE_A + CURVE_B + CURVE_G)
    return bytes.fromhex(sm3_hex(material + key.public.raw()[1:]))


# --- the published example ------------------------------------------------------------------


def test_the_annex_a_private_key_gives_the_published_public_key() -> None:
    public = annex_a_key().public()
    assert public.public.raw() == bytes.fromhex("04" + ANNEX_A_X + ANNEX_A_Y)
    assert public.kid == hashlib.sha256(public.public.raw()).hexdigest()[:16]


def test_z_and_e_of_the_annex_a_example() -> None:
    public = annex_a_key().public()
    z = z_value(public)
    assert z.hex().upper() == ANNEX_A_Z
    assert sm3_hex(z + ANNEX_A_MESSAGE).upper() == ANNEX_A_E
    # The oracle hashes the same way (and so is a fair judge of ours below).
    assert str(oracle(public)._sm3_z(ANNEX_A_MESSAGE)).upper() == ANNEX_A_E


def test_the_oracle_reproduces_the_published_signature_from_the_published_k() -> None:
    public = annex_a_key().public()
    raw = oracle(public, ANNEX_A_D).sign_with_sm3(ANNEX_A_MESSAGE, ANNEX_A_K.lower())
    assert (int(raw[:64], 16), int(raw[64:], 16)) == (ANNEX_A_R, ANNEX_A_S)


def test_ours_verifies_the_published_signature() -> None:
    public = annex_a_key().public()
    der = encode_signature(ANNEX_A_R, ANNEX_A_S)
    public.verify(Signature(SM2_SM3, public.kid, der), ANNEX_A_MESSAGE)
    with pytest.raises(BadSignatureError):
        public.verify(Signature(SM2_SM3, public.kid, der), b"message digesT")


def test_ours_signs_the_annex_a_message_so_that_the_oracle_verifies_it() -> None:
    key = annex_a_key()
    signature = key.sign(ANNEX_A_MESSAGE)
    assert signature.alg == SM2_SM3
    assert oracle(key.public()).verify_with_sm3(raw_rs(signature.sig), ANNEX_A_MESSAGE)


# --- interoperation with the gmssl oracle ---------------------------------------------------

PAYLOADS: Final = [
    b"",
    b"x",
    b'{"gateway":"91360100MA35GW001H-GW01","seq":1}',
    "储罐液位 8.57 m".encode(),
    secrets.token_bytes(3000),
]


@pytest.mark.parametrize("payload", PAYLOADS, ids=lambda p: f"{len(p)}B")
def test_the_oracle_verifies_our_signatures(payload: bytes) -> None:
    key = generate_signing_key(SM2_SM3)
    signature = key.sign(payload)
    assert signature.sig[0] == 0x30  # DER SEQUENCE
    assert encode_signature(*decode_signature(signature.sig)) == signature.sig  # strict DER
    assert oracle(key.public()).verify_with_sm3(raw_rs(signature.sig), payload)


@pytest.mark.parametrize("payload", PAYLOADS, ids=lambda p: f"{len(p)}B")
def test_ours_verifies_the_oracles_signatures(payload: bytes) -> None:
    d = 1 + secrets.randbelow(CURVE_ORDER - 2)
    key = sm2_backend.from_scalar(d)
    public = VerifyKey(SM2_SM3, key_id(key.public()), key.public())
    raw = oracle(public, d).sign_with_sm3(payload)
    public.verify(Signature(SM2_SM3, public.kid, der_of(raw)), payload)


def test_a_signature_of_the_bare_message_hash_without_z_is_rejected() -> None:
    """Some libraries sign SM3(M) and leave Z out; that is not GM/T 0003.2 and must not pass."""
    d = 1 + secrets.randbelow(CURVE_ORDER - 2)
    key = sm2_backend.from_scalar(d)
    public = VerifyKey(SM2_SM3, key_id(key.public()), key.public())
    bare = oracle(public, d).sign(bytes.fromhex(sm3_hex(b"payload")), secrets.token_hex(32))
    with pytest.raises(BadSignatureError):
        public.verify(Signature(SM2_SM3, public.kid, der_of(bare)), b"payload")


def test_the_oracle_rejects_a_signature_of_another_message() -> None:
    key = generate_signing_key(SM2_SM3)
    signature = key.sign(b"payload")
    assert not oracle(key.public()).verify_with_sm3(raw_rs(signature.sig), b"payloaD")


# --- interoperation with the OpenSSL 3 command line ------------------------------------------


def _openssl(*args: str, data: bytes | None = None) -> subprocess.CompletedProcess[bytes]:
    return subprocess.run(["openssl", *args], input=data, capture_output=True, check=False)


def test_openssl_keys_and_signatures_work_both_ways(tmp_path: Path) -> None:
    key_file, pub_file, message = tmp_path / "k.pem", tmp_path / "k.pub", tmp_path / "m"
    our_sig, their_sig = tmp_path / "ours.sig", tmp_path / "theirs.sig"
    assert _openssl("genpkey", "-algorithm", "SM2", "-out", str(key_file)).returncode == 0
    assert _openssl("pkey", "-in", str(key_file), "-pubout", "-out", str(pub_file)).returncode == 0
    message.write_bytes(b"gz/1 block bytes")
    distid = ("-pkeyopt", "distid:" + DEFAULT_USER_ID.decode())
    key = load_signing_key(key_file.read_bytes())
    public = load_verify_key(pub_file.read_bytes())
    assert (key.alg, public.alg, key.kid) == (SM2_SM3, SM2_SM3, public.kid)

    our_sig.write_bytes(key.sign(message.read_bytes()).sig)
    verified = _openssl(
        "pkeyutl", "-verify", "-rawin", "-digest", "sm3", "-pubin", "-inkey", str(pub_file),
        "-in", str(message), "-sigfile", str(our_sig), *distid,
    )  # fmt: skip
    assert verified.returncode == 0, verified.stderr

    signed = _openssl(
        "pkeyutl", "-sign", "-rawin", "-digest", "sm3", "-inkey", str(key_file),
        "-in", str(message), "-out", str(their_sig), *distid,
    )  # fmt: skip
    assert signed.returncode == 0, signed.stderr
    public.verify(Signature(SM2_SM3, public.kid, their_sig.read_bytes()), message.read_bytes())
    # And our PEM files read back in OpenSSL.
    pem = tmp_path / "ours.pem"
    pem.write_bytes(private_pem(key))
    assert _openssl("pkey", "-in", str(pem), "-pubout").stdout == public.public_pem()


# --- keys -------------------------------------------------------------------------------------


def test_pem_round_trip_keeps_algorithm_kid_and_the_sm2_curve_oid() -> None:
    key = generate_signing_key(SM2_SM3)
    again = load_signing_key(private_pem(key))
    public = load_verify_key(key.public().public_pem())
    assert (again.alg, again.kid, public.alg, public.kid) == (SM2_SM3, key.kid) * 2
    assert b"BEGIN PRIVATE KEY" in private_pem(key)  # PKCS#8
    assert b"BEGIN PUBLIC KEY" in public.public_pem()  # SubjectPublicKeyInfo
    for pem in (private_pem(key), public.public_pem()):
        assert CURVE_OID_DER in _der(pem)
    public.verify(again.sign(b"p"), b"p")


def _der(pem: bytes) -> bytes:
    return base64.b64decode(b"".join(pem.strip().splitlines()[1:-1]))


def test_seeded_sm2_keys_are_deterministic_and_distinct_from_ed25519_ones() -> None:
    seed = bytes(range(32))
    first, second = signing_key_from_seed(seed, SM2_SM3), signing_key_from_seed(seed, SM2_SM3)
    assert first.kid == second.kid
    assert private_pem(first) == private_pem(second)
    assert first.kid != signing_key_from_seed(seed).kid


def test_sm2_and_ed25519_keys_do_not_accept_each_others_signatures() -> None:
    sm2_key, ed_key = generate_signing_key(SM2_SM3), generate_signing_key(ED25519)
    sm2_signature = sm2_key.sign(b"p")
    with pytest.raises(UnsupportedAlgorithmError, match="does not match"):
        ed_key.public().verify(Signature(SM2_SM3, ed_key.kid, sm2_signature.sig), b"p")
    with pytest.raises(UnsupportedAlgorithmError, match="does not match"):
        sm2_key.public().verify(ed_key.sign(b"p"), b"p")


def test_an_sm2_signature_under_another_sm2_key_is_rejected() -> None:
    signer, other = generate_signing_key(SM2_SM3), generate_signing_key(SM2_SM3)
    forged = Signature(SM2_SM3, other.kid, signer.sign(b"p").sig)
    with pytest.raises(BadSignatureError):
        other.public().verify(forged, b"p")


# --- malformed signatures are bad signatures, never backend errors -----------------------------

GOOD_R, GOOD_S = 0x1234, 0x5678


@pytest.mark.parametrize(
    "sig",
    [
        b"",
        b"\x30",
        b"\x30\x00",
        b"x" * 70,
        encode_signature(GOOD_R, GOOD_S) + b"\x00",  # trailing bytes
        b"\x30\x07\x02\x02\x00\x12\x02\x01\x56",  # INTEGER with a needless leading zero
        b"\x30\x06\x02\x01\x80\x02\x01\x01",  # negative r
        encode_signature(0, GOOD_S),
        encode_signature(GOOD_R, CURVE_ORDER),
        b"\x30\x81\x06\x02\x01\x01\x02\x01\x01",  # long-form length for a short body
    ],
)
def test_malformed_der_is_a_bad_signature(sig: bytes) -> None:
    public = generate_signing_key(SM2_SM3).public()
    with pytest.raises(BadSignatureError):
        public.verify(Signature(SM2_SM3, public.kid, sig), b"p")


def test_keys_of_other_curves_and_garbage_are_refused_with_signature_errors() -> None:
    p256 = ec.generate_private_key(ec.SECP256R1())
    private = p256.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    )
    public = p256.public_key().public_bytes(
        serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
    )
    with pytest.raises(UnsupportedAlgorithmError):
        load_signing_key(private)
    with pytest.raises(UnsupportedAlgorithmError):
        load_verify_key(public)
    # An SM2 key whose PEM body was damaged is still recognised as SM2, and refused as a PEM.
    sm2_pem = generate_signing_key(SM2_SM3).public().public_pem()
    damaged = sm2_pem.replace(b"\nM", b"\nA", 1)
    for pem in (b"not a key", damaged):
        with pytest.raises(SignatureError):
            load_verify_key(pem)
