"""Golden vectors (specs/examples/): reproducible, signed, decodable, and valid per schema."""

from __future__ import annotations

import copy
import json
from collections.abc import Callable
from dataclasses import replace
from pathlib import Path
from typing import Any

import pytest
from jsonschema import Draft202012Validator  # type: ignore[import-untyped]

from specs.ack import decode_ack
from specs.block import DOMAINS, GENESIS, Block, BlockFormatError, block_hash, decode_block
from specs.catalogue import default_catalogue
from specs.meta import decode_meta
from specs.records import AlarmEvent, AlarmRecord, GapReason, GapRecord, Reading
from specs.signing import (
    BadSignatureError,
    Signature,
    SignatureError,
    UnsupportedAlgorithmError,
    key_id,
    load_verify_key,
)
from specs.status import decode_status
from tests.support import golden

EXAMPLES = golden.EXAMPLES
SCHEMAS = EXAMPLES.parent / "schemas"
MANIFEST: dict[str, Any] = json.loads((EXAMPLES / "manifest.json").read_text(encoding="utf-8"))
VECTORS: list[dict[str, Any]] = MANIFEST["vectors"]
ACCEPTED = [v for v in VECTORS if v["expect"] == "accept"]
REJECTED = [v for v in VECTORS if v["expect"] == "reject"]
SIGNED = [v for v in ACCEPTED if v["signature"] is not None]
BLOCKS = [v for v in ACCEPTED if v["kind"] == "block"]


def _name(vector: dict[str, Any]) -> str:
    return str(vector["name"])


def _payload(vector: dict[str, Any]) -> bytes:
    return (EXAMPLES / str(vector["payload"])).read_bytes()


def _sidecar(vector: dict[str, Any]) -> dict[str, Any]:
    data: dict[str, Any] = json.loads((EXAMPLES / str(vector["signature"])).read_text("utf-8"))
    return data


def _verify(vector: dict[str, Any]) -> None:
    """Check a vector as a third party would: key file from the manifest, sidecar, bytes."""
    key_entry = MANIFEST["keys"][vector["key"]]
    key = load_verify_key((EXAMPLES / key_entry["public_key"]).read_bytes())
    side = _sidecar(vector)
    key.verify(Signature(side["alg"], side["kid"], bytes.fromhex(side["sig"])), _payload(vector))


def _validator(kind: str) -> Draft202012Validator:
    schema = json.loads((SCHEMAS / f"{kind}.schema.json").read_text(encoding="utf-8"))
    Draft202012Validator.check_schema(schema)
    return Draft202012Validator(schema)


def _errors(kind: str, instance: object) -> list[str]:
    return [error.message for error in _validator(kind).iter_errors(instance)]


# --- (a) regeneration ---------------------------------------------------------------------------


def test_regenerating_gives_byte_identical_files(tmp_path: Path) -> None:
    golden.write(tmp_path)
    made = {p.name: p.read_bytes() for p in tmp_path.iterdir()}
    shipped = {p.name: p.read_bytes() for p in EXAMPLES.iterdir() if p.name not in golden.KEPT}
    assert made == shipped
    assert golden.differences(EXAMPLES) == []
    assert golden.main(["--check"]) == 0


def test_check_mode_reports_a_changed_file(tmp_path: Path) -> None:
    golden.write(tmp_path)
    (tmp_path / "block-whp-1.json").write_bytes(b"{}")
    (tmp_path / "stray.json").write_bytes(b"{}")
    assert golden.differences(tmp_path) == ["block-whp-1.json", "stray.json"]
    assert golden.main(["--check", "--dir", str(tmp_path)]) == 1


def test_every_domain_has_a_block_and_every_kind_a_vector() -> None:
    domains = {decode_block(_payload(v)).header.domain for v in BLOCKS}
    assert domains == DOMAINS
    assert {v["kind"] for v in ACCEPTED} == {"block", "ack", "meta", "status"}


# --- (b) signatures and hashes ----------------------------------------------------------------


@pytest.mark.parametrize("vector", SIGNED, ids=_name)
def test_signature_verifies_with_the_documented_key_and_hash_matches(
    vector: dict[str, Any],
) -> None:
    _verify(vector)
    side = _sidecar(vector)
    assert side["hash"] == block_hash(_payload(vector))
    assert side["alg"] == "ed25519"


def test_documented_keys_match_the_pem_files_and_the_readme() -> None:
    readme = (EXAMPLES / "README.md").read_text(encoding="utf-8")
    for name, entry in MANIFEST["keys"].items():
        pem = (EXAMPLES / entry["public_key"]).read_bytes()
        key = load_verify_key(pem)
        assert key.kid == entry["kid"] == key_id(key.public)
        assert golden.KEY_NAMES[name].kid == key.kid
        assert entry["kid"] in readme
        assert entry["seed"] in readme
        assert entry["seed_label"] in readme
        assert pem.decode("ascii").strip() in readme


def test_blocks_chain_by_hash() -> None:
    first = decode_block((EXAMPLES / "block-whp-1.json").read_bytes())
    second = decode_block((EXAMPLES / "block-whp-2.json").read_bytes())
    assert first.header.prev == GENESIS
    assert (second.header.epoch, second.header.seq) == (first.header.epoch, 2)
    assert second.header.prev == first.digest


def test_tampered_block_does_not_verify() -> None:
    with pytest.raises(BadSignatureError):
        _verify(next(v for v in REJECTED if v["name"] == "reject-block-tampered"))


def test_algorithm_off_the_allow_list_is_refused() -> None:
    with pytest.raises(UnsupportedAlgorithmError):
        _verify(next(v for v in REJECTED if v["name"] == "reject-block-alg"))


def test_ack_signed_by_the_gateway_is_not_an_ack() -> None:
    with pytest.raises(SignatureError):
        _verify(next(v for v in REJECTED if v["name"] == "reject-ack-forged"))


def test_coal_block_without_mine_code_does_not_decode_although_signed() -> None:
    vector = next(v for v in REJECTED if v["name"] == "reject-block-mk-no-mine-code")
    _verify(vector)  # the signature is fine: only the format check catches it
    with pytest.raises(BlockFormatError, match="mine_code"):
        decode_block(_payload(vector))
    assert _errors("block", json.loads(_payload(vector)))


def test_every_rejected_vector_says_why() -> None:
    assert len(REJECTED) == 4
    assert all(v["why"] for v in REJECTED)


# --- (c) decoding ------------------------------------------------------------------------------


@pytest.mark.parametrize("vector", BLOCKS, ids=_name)
def test_block_decodes_with_readings_alarms_and_a_gap(vector: dict[str, Any]) -> None:
    block = decode_block(_payload(vector))
    assert block.payload == _payload(vector)
    if block.header.domain == "MK":
        assert block.header.mine_code == "610632007"
    if block.header.seq > 1:
        return
    kinds = {type(r) for r in block.records}
    assert kinds == {Reading, AlarmRecord, GapRecord}
    events = [(r.alarm_id, r.event) for r in block.records if isinstance(r, AlarmRecord)]
    assert [event for _, event in events] == [AlarmEvent.RAISE, AlarmEvent.CLEAR]
    assert events[0][0] == events[1][0]


def test_gap_records_speak_every_reason_with_and_without_a_seq_range() -> None:
    gaps = [
        record
        for vector in BLOCKS
        for record in decode_block(_payload(vector)).records
        if isinstance(record, GapRecord)
    ]
    assert {gap.reason for gap in gaps} == set(GapReason)
    for gap in gaps:
        block_epochs = {decode_block(_payload(v)).header.epoch for v in BLOCKS}
        assert gap.epoch not in block_epochs  # each names an earlier epoch, or none
        assert (gap.epoch is None) == (gap.from_seq is None)
    assert any(g.epoch is not None and g.to_seq is None and g.lost is None for g in gaps)
    assert any(g.to_seq is not None and g.lost and g.t_from and g.t_to for g in gaps)
    assert any(g.epoch is None and g.lost for g in gaps)


@pytest.mark.parametrize("vector", BLOCKS, ids=_name)
def test_block_records_agree_with_the_catalogue(vector: dict[str, Any]) -> None:
    catalogue = default_catalogue()
    block: Block = decode_block(_payload(vector))
    readings = {(r.point, r.t): r for r in block.records if isinstance(r, Reading)}
    for record in block.records:
        if isinstance(record, Reading):
            indicator = catalogue.get(record.quota)
            assert indicator is not None
            assert indicator.domain in {block.header.domain, "GAS"}
            assert record.unit == indicator.unit
        elif isinstance(record, AlarmRecord):
            indicator = catalogue.get(record.quota)
            assert indicator is not None
            assert record.level in indicator.alarms
            trigger = readings[record.point, record.trigger_t]  # names its reading
            assert trigger.quota == record.quota
            if record.related is not None:
                assert any(point == record.related for point, _ in readings)


def test_ack_and_meta_decode() -> None:
    ack = decode_ack((EXAMPLES / "ack-whp.json").read_bytes())
    assert (ack.acked_through, ack.missing, ack.seq) == (2, ((3, 4),), 5)
    assert ack.acked_hash == block_hash((EXAMPLES / "block-whp-2.json").read_bytes())
    assert ack.conflict is False
    assert ack.keys == (MANIFEST["keys"]["gateway-test"]["kid"],)
    assert ack.gateway == golden.WHP.gateway
    # As collectors before `max_message_bytes` send it; the same ACK saying it is a vector of
    # its own, so that an ACK without the field stays one (receivers ignore unknown fields).
    assert ack.max_message_bytes is None
    limited = decode_ack((EXAMPLES / "ack-whp-limit.json").read_bytes())
    assert limited == replace(ack, max_message_bytes=16 * 1024 * 1024)
    meta = decode_meta((EXAMPLES / "meta-mk.json").read_bytes())
    assert meta.mine_code == "610632007"
    assert decode_meta((EXAMPLES / "meta-whp.json").read_bytes()).points[0].quota == "WHP-LT"


def test_status_is_what_the_heartbeat_publishes() -> None:
    online = json.loads((EXAMPLES / "status-online.json").read_bytes())
    assert online["online"] is True
    assert set(online) == {"online", "epoch", "last_seq", "undelivered", "t"}
    offline = decode_status((EXAMPLES / "status-offline.json").read_bytes())
    assert (offline.online, offline.epoch) == (False, None)


# --- (d) JSON Schemas -----------------------------------------------------------------------------


@pytest.mark.parametrize("vector", ACCEPTED, ids=_name)
def test_vector_validates_against_its_schema(vector: dict[str, Any]) -> None:
    assert vector["schema"] == f"../schemas/{vector['kind']}.schema.json"
    assert _errors(vector["kind"], json.loads(_payload(vector))) == []


def test_schemas_speak_the_catalogues_vocabulary() -> None:
    block = json.loads((SCHEMAS / "block.schema.json").read_text(encoding="utf-8"))
    defs = block["$defs"]
    assert set(defs["domain"]["enum"]) == DOMAINS
    assert set(defs["alarm"]["properties"]["level"]["enum"]) == set(
        default_catalogue().alarm_levels
    )


def _whp_block() -> dict[str, Any]:
    data: dict[str, Any] = json.loads((EXAMPLES / "block-whp-1.json").read_bytes())
    return data


def _record(data: dict[str, Any], kind: str) -> dict[str, Any]:
    record: dict[str, Any] = next(r for r in data["records"] if r["type"] == kind)
    return record


Mutation = Callable[[dict[str, Any]], object]

BROKEN_BLOCKS: list[tuple[str, Mutation]] = [
    ("no spec", lambda d: d.pop("spec")),
    ("other spec", lambda d: d.update(spec="gz/2")),
    ("seq 0", lambda d: d.update(seq=0)),
    ("seq as text", lambda d: d.update(seq="1")),
    ("short prev", lambda d: d.update(prev="00")),
    ("unknown domain", lambda d: d.update(domain="XX")),
    ("clock", lambda d: d.update(clock="maybe")),
    ("extra field", lambda d: d.update(signature="x")),
    ("time without offset", lambda d: d.update(sealed_at="2025-03-01T08:00:00")),
    ("bad gateway", lambda d: d.update(gateway="GW01")),
    ("mine code of 8 digits", lambda d: d.update(mine_code="61063200")),
    ("MK without mine code", lambda d: d.update(domain="MK")),
    ("reading quality", lambda d: _record(d, "reading").update(quality="fine")),
    ("reading value text", lambda d: _record(d, "reading").update(value="8.5")),
    ("reading without flags", lambda d: _record(d, "reading").pop("flags")),
    ("unknown record type", lambda d: _record(d, "gap").update(type="note")),
    ("gap lost negative", lambda d: _record(d, "gap").update(lost=-1)),
    ("gap reason off the list", lambda d: _record(d, "gap").update(reason="device_unreachable")),
    ("gap seqs without epoch", lambda d: _record(d, "gap").update(epoch=None)),
    ("gap epoch without from_seq", lambda d: _record(d, "gap").update(from_seq=None)),
    ("gap without to_seq", lambda d: _record(d, "gap").pop("to_seq")),
    ("gap from without offset", lambda d: _record(d, "gap").update(to="2025-03-01T08:00:00")),
    ("alarm event", lambda d: _record(d, "alarm").update(event="ack")),
    ("alarm level", lambda d: _record(d, "alarm").update(level="purple")),
    ("alarm without trigger", lambda d: _record(d, "alarm").pop("trigger_t")),
]


@pytest.mark.parametrize(("why", "mutate"), BROKEN_BLOCKS, ids=[w for w, _ in BROKEN_BLOCKS])
def test_broken_block_does_not_validate(why: str, mutate: Mutation) -> None:
    data = copy.deepcopy(_whp_block())
    mutate(data)
    assert _errors("block", data), why


def test_broken_ack_meta_and_status_do_not_validate() -> None:
    ack = json.loads((EXAMPLES / "ack-whp.json").read_bytes())
    for broken in (
        {**ack, "missing": [[3, 4, 5]]},
        {**ack, "missing": [[3]]},
        {**ack, "acked_through": -1},
        {k: v for k, v in ack.items() if k != "epoch"},
        {**ack, "acked_hash": "a39d"},
        {**ack, "conflict": "false"},
        {k: v for k, v in ack.items() if k != "conflict"},
        {**ack, "keys": ack["keys"][0]},
        {**ack, "keys": ["C8E6DABAF38C25A3"]},
        {**ack, "keys": ack["keys"] * 2},
    ):
        assert _errors("ack", broken)
    # `keys` is optional: an ACK of a collector before it is still one.
    assert _errors("ack", {k: v for k, v in ack.items() if k != "keys"}) == []
    limited = json.loads((EXAMPLES / "ack-whp-limit.json").read_bytes())
    assert _errors("ack", {**limited, "max_message_bytes": 0})
    assert _errors("ack", {**limited, "max_message_bytes": "16MiB"})
    meta = json.loads((EXAMPLES / "meta-mk.json").read_bytes())
    point = meta["points"][0]
    for broken in (
        {**meta, "kind": "block"},
        {**meta, "mine_code": None},  # a coal gateway names its mine
        {**meta, "points": [{k: v for k, v in point.items() if k != "quota"}]},
        {**meta, "points": [{**point, "thresholds": {"high": "1.0"}}]},
    ):
        assert _errors("meta", broken)
    for status in (
        {"online": "yes"},
        {},
        {"online": True},
        {"online": False},  # the will carries its connect time
        {"online": True, "epoch": "", "last_seq": 1, "undelivered": 0, "t": 1.0},
    ):
        assert _errors("status", status)
