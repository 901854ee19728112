"""The block: a sealed, hash-chained batch of records, encoded as canonical UTF-8 JSON.

A block's bytes are produced once, at sealing, and never again: signatures and hashes cover
those exact bytes, and resends send them unchanged. Decoding never re-encodes.
"""

from __future__ import annotations

import hashlib
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Final

from specs.record_wire import record_from_wire
from specs.records import Record, RecordFormatError, parse_iso_time, record_json
from specs.wirejson import canonical_json, load_message_json

SPEC: Final = "gz/1"
GENESIS: Final = "0" * 64
MAX_SEQ: Final = 2**63 - 1  # fits a signed 64-bit column on every storage backend
DOMAINS: Final = frozenset({"WHP", "WKK", "YHBZ", "MK", "BP"})
MAX_BLOCK_READINGS: Final = 4000
"""The most records an agent seals into one block of readings: `outbox.flush_readings` at most,
a backfill block, each block of a thinned replacement (its alarm events may come on top).
4,000 readings are ~640 KB of JSON, 1.3 MB at the longest names and flags; a collector takes
messages up to `ingest.max_message_bytes` (16 MiB by default), and a broker from
`collector broker-config` drops any larger.
"""


class BlockFormatError(ValueError):
    """A payload is not a valid gz/1 block."""


@dataclass(frozen=True, slots=True)
class BlockHeader:
    """Who sealed a block, where it sits in its chain, and when."""

    gateway: str
    enterprise: str
    district: str
    domain: str
    epoch: str
    seq: int
    prev: str
    sealed_at: str
    clock: str
    mine_code: str | None = None  # coal mines (domain MK) only: the 9-digit mine code


@dataclass(frozen=True, slots=True)
class Block:
    """A decoded block together with the exact bytes it came from."""

    header: BlockHeader
    records: tuple[Record, ...]
    payload: bytes

    @property
    def digest(self) -> str:
        """Hash of the exact payload bytes; the next block's `prev`."""
        return block_hash(self.payload)


def block_hash(payload: bytes) -> str:
    """SHA-256 of the payload bytes, hex."""
    return hashlib.sha256(payload).hexdigest()


def encode_block(header: BlockHeader, records: Sequence[Record]) -> bytes:
    """Canonical bytes of a block: sorted keys, no spaces, UTF-8, no NaN.

    Exactly `canonical_json` of the whole body (tests/unit/test_canonical_encoding.py): the
    header's keys sort around "records" (clock..prev before it, sealed_at, seq, spec after),
    so the body is the header's two halves with the records' own canonical texts between.
    """
    before: dict[str, object] = {
        "clock": header.clock,
        "district": header.district,
        "domain": header.domain,
        "enterprise": header.enterprise,
        "epoch": header.epoch,
        "gateway": header.gateway,
        "prev": header.prev,
    }
    if header.mine_code is not None:
        before["mine_code"] = header.mine_code
    after = {"sealed_at": header.sealed_at, "seq": header.seq, "spec": SPEC}
    return "".join(
        (
            canonical_json(before)[:-1],
            ',"records":[',
            ",".join(map(record_json, records)),
            "],",
            canonical_json(after)[1:],
        )
    ).encode("utf-8")


def reference_encode_block(header: BlockHeader, records: Sequence[Record]) -> bytes:
    """The block as one `canonical_json` of the whole body (the definition encode_block meets)."""
    body: dict[str, object] = {
        "spec": SPEC,
        "gateway": header.gateway,
        "enterprise": header.enterprise,
        "district": header.district,
        "domain": header.domain,
        "epoch": header.epoch,
        "seq": header.seq,
        "prev": header.prev,
        "sealed_at": header.sealed_at,
        "clock": header.clock,
        "records": [record.to_wire() for record in records],
    }
    if header.mine_code is not None:
        body["mine_code"] = header.mine_code
    return canonical_json(body).encode("utf-8")


def _field(body: dict[str, object], key: str, kind: type) -> object:
    value = body.get(key)
    if not isinstance(value, kind) or isinstance(value, bool):
        raise BlockFormatError(f"block field {key!r} must be {kind.__name__}")
    return value


def _mine_code(body: dict[str, object], domain: str) -> str | None:
    mine_code = body.get("mine_code")
    if mine_code is None:
        if domain == "MK":
            raise BlockFormatError("a coal mine (domain MK) block must carry its mine_code")
        return None
    if not (isinstance(mine_code, str) and len(mine_code) == 9 and mine_code.isdigit()):  # noqa: PLR2004
        raise BlockFormatError("mine_code must be 9 digits")
    return mine_code


def decode_block(payload: bytes) -> Block:
    """Parse and check a block's payload; raise BlockFormatError with the reason."""
    body = load_message_json(payload, BlockFormatError, "")
    if not isinstance(body, dict):
        raise BlockFormatError("block must be a JSON object")
    if body.get("spec") != SPEC:
        raise BlockFormatError(f"spec {body.get('spec')!r} is not {SPEC}")
    seq = _field(body, "seq", int)
    assert isinstance(seq, int)  # noqa: S101 - narrowed by _field
    if not 1 <= seq <= MAX_SEQ:
        raise BlockFormatError(f"seq must be in 1..{MAX_SEQ}")
    texts = {
        key: _field(body, key, str)
        for key in ("gateway", "enterprise", "district", "domain", "epoch", "prev")
    }
    sealed_at = str(_field(body, "sealed_at", str))
    clock = str(_field(body, "clock", str))
    if texts["domain"] not in DOMAINS:
        raise BlockFormatError(f"domain {texts['domain']!r} is unknown")
    if clock not in {"synced", "unsynced"}:
        raise BlockFormatError("clock must be 'synced' or 'unsynced'")
    mine_code = _mine_code(body, str(texts["domain"]))
    raw_records = body.get("records")
    if not isinstance(raw_records, list):
        raise BlockFormatError("records must be a list")
    try:
        parse_iso_time(sealed_at)
        records = tuple(record_from_wire(r) for r in raw_records)
    except RecordFormatError as exc:
        raise BlockFormatError(str(exc)) from None
    header = BlockHeader(
        gateway=str(texts["gateway"]),
        enterprise=str(texts["enterprise"]),
        district=str(texts["district"]),
        domain=str(texts["domain"]),
        epoch=str(texts["epoch"]),
        seq=seq,
        prev=str(texts["prev"]),
        sealed_at=sealed_at,
        clock=clock,
        mine_code=mine_code,
    )
    return Block(header, records, payload)
