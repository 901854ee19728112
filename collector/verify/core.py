"""Pure checks of stored blocks: the signature over the exact stored bytes, and the chain.

A stored block is checked on its own, from what the storage hands over with it: its bytes,
signature and stored hash, and the hash of the stored block just below it in its epoch. So a
run over millions of blocks keeps nothing but counts and the (bounded) list of findings.

A block is *broken* for one or more of these reasons:

- `hash_mismatch`: the stored hash is not SHA-256 of the stored bytes;
- `unknown_key`: its kid is not a registered key of the block's gateway (revoked keys still
  verify what they signed: revocation rejects new blocks, it never un-signs stored ones);
- `bad_signature`: the signature does not verify over the stored bytes;
- `misplaced`: the stored (gateway, epoch, seq) is not what the signed header says;
- `chain_break`: its signed `prev` is not the stored hash of seq - 1 of its epoch (GENESIS
  for seq 1).

A seq with no stored block below a stored one is a *hole*: reported as such, never as a break
(the chain across it cannot be checked). Seqs at or below the epoch's `pruned_through` are no
hole: retention deleted their blocks with their readings' month
(`collector.storage.block_retention`).
"""

from __future__ import annotations

import enum
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Final

from collector.model import GatewayKey
from specs.block import GENESIS, block_hash
from specs.signing import Signature, SignatureError, VerifyKey, load_verify_key
from specs.wirejson import WireJsonError, load_wire_json

MAX_LISTED: Final = 1000
"""Findings listed per report; the counts stay exact beyond it (memory stays flat)."""


class BrokenReason(enum.StrEnum):
    """Why a stored block fails re-verification."""

    HASH_MISMATCH = "hash_mismatch"
    UNKNOWN_KEY = "unknown_key"
    BAD_SIGNATURE = "bad_signature"
    MISPLACED = "misplaced"
    CHAIN_BREAK = "chain_break"


@dataclass(frozen=True, slots=True)
class StoredBlock:
    """A stored block as re-verification needs it.

    `below_seq` is the highest stored seq under `seq` in the same epoch (None: none stored),
    `below_hash` that block's stored hash; `pruned_through` the highest seq of the epoch
    whose block retention deleted (0: none).
    """

    gateway: str
    epoch: str
    seq: int
    payload: bytes
    signature: Signature
    stored_hash: str
    received_at: float
    below_seq: int | None = None
    below_hash: str | None = None
    pruned_through: int = 0


StoredBlockAfter = tuple[str, str, int]
"""Keyset position of a page of stored blocks: (gateway, epoch, seq) of the last one."""


@dataclass(frozen=True, slots=True)
class BrokenBlock:
    """One reason one stored block fails."""

    gateway: str
    epoch: str
    seq: int
    reason: BrokenReason
    detail: str


@dataclass(frozen=True, slots=True)
class Hole:
    """Seqs from_seq..to_seq of (gateway, epoch) missing below a stored block."""

    gateway: str
    epoch: str
    from_seq: int
    to_seq: int


@dataclass(frozen=True, slots=True)
class VerifyReport:
    """What a run found: counts are exact, `broken` and `holes` list the first MAX_LISTED."""

    blocks: int = 0
    verified: int = 0
    broken: tuple[BrokenBlock, ...] = ()
    holes: tuple[Hole, ...] = ()
    truncated: bool = False

    @property
    def clean(self) -> bool:
        """Whether every block verified (holes are not breaks)."""
        return self.blocks == self.verified


@dataclass(frozen=True, slots=True)
class RingKey:
    """A registered key with its parsed form, or why its stored PEM does not parse."""

    registered: GatewayKey
    parsed: VerifyKey | SignatureError


KeyRing = Mapping[str, RingKey]
"""The registered keys by kid, revoked ones included on purpose."""


def key_ring(keys: Iterable[GatewayKey]) -> dict[str, RingKey]:
    """Parse each registered key once, for a whole run."""
    ring: dict[str, RingKey] = {}
    for key in keys:
        try:
            parsed: VerifyKey | SignatureError = load_verify_key(key.public_pem)
        except SignatureError as exc:
            parsed = exc
        ring[key.kid] = RingKey(key, parsed)
    return ring


def _signed_header(payload: bytes) -> Mapping[str, object] | None:
    """The signed header fields of a block's bytes, or None when they are not a JSON object."""
    try:
        body = load_wire_json(payload)
    except WireJsonError:
        return None
    return body if isinstance(body, dict) else None


def _signature_findings(block: StoredBlock, keys: KeyRing) -> list[tuple[BrokenReason, str]]:
    kid = block.signature.kid
    held = keys.get(kid)
    if held is None:
        return [(BrokenReason.UNKNOWN_KEY, f"key {kid} is not registered")]
    if held.registered.gateway != block.gateway:
        owner = held.registered.gateway
        return [(BrokenReason.UNKNOWN_KEY, f"key {kid} is a key of {owner}, not of this gateway")]
    if isinstance(held.parsed, SignatureError):
        return [(BrokenReason.BAD_SIGNATURE, f"registered key {kid} is unusable: {held.parsed}")]
    try:
        held.parsed.verify(block.signature, block.payload)
    except SignatureError as exc:
        return [(BrokenReason.BAD_SIGNATURE, f"{exc} (key {kid})")]
    return []


def _chain_findings(
    block: StoredBlock, header: Mapping[str, object] | None
) -> list[tuple[BrokenReason, str]]:
    if header is None:
        return []  # unreadable bytes: the signature or hash finding says so already
    prev = header.get("prev")
    if block.seq == 1:
        if prev != GENESIS:
            return [(BrokenReason.CHAIN_BREAK, f"seq 1 has prev {prev}, not GENESIS")]
        return []
    if block.below_seq != block.seq - 1 or prev == block.below_hash:
        return []  # a hole below (nothing to chain onto), or a link that holds
    detail = f"prev {prev} is not the hash {block.below_hash} of the stored seq {block.seq - 1}"
    return [(BrokenReason.CHAIN_BREAK, detail)]


def _place_findings(
    block: StoredBlock, header: Mapping[str, object] | None
) -> list[tuple[BrokenReason, str]]:
    if header is None:
        return []
    signed = (header.get("gateway"), header.get("epoch"), header.get("seq"))
    stored = (block.gateway, block.epoch, block.seq)
    if signed == stored:
        return []
    detail = (
        f"stored as {stored[0]} {stored[1]} seq {stored[2]},"
        f" signed as {signed[0]} {signed[1]} seq {signed[2]}"
    )
    return [(BrokenReason.MISPLACED, detail)]


def check_block(block: StoredBlock, keys: KeyRing) -> tuple[BrokenBlock, ...]:
    """Every reason `block` fails re-verification (none: it verifies)."""
    findings: list[tuple[BrokenReason, str]] = []
    actual = block_hash(block.payload)
    if actual != block.stored_hash:
        findings.append(
            (BrokenReason.HASH_MISMATCH, f"stored hash {block.stored_hash}, bytes hash {actual}")
        )
    findings.extend(_signature_findings(block, keys))
    header = _signed_header(block.payload)
    findings.extend(_place_findings(block, header))
    findings.extend(_chain_findings(block, header))
    return tuple(
        BrokenBlock(block.gateway, block.epoch, block.seq, reason, detail)
        for reason, detail in findings
    )


def hole_below(block: StoredBlock) -> Hole | None:
    """The seqs missing right under `block` in its epoch, if any (none that retention pruned)."""
    low = max(1 if block.below_seq is None else block.below_seq + 1, block.pruned_through + 1)
    if low > block.seq - 1:
        return None
    return Hole(block.gateway, block.epoch, low, block.seq - 1)


def tally(report: VerifyReport, block: StoredBlock, keys: KeyRing) -> VerifyReport:
    """The report after checking one more block."""
    broken = check_block(block, keys)
    hole = hole_below(block)
    room = MAX_LISTED - len(report.broken)
    listed_broken = report.broken + broken[: max(room, 0)]
    listed_holes = report.holes
    truncated = report.truncated or len(broken) > room
    if hole is not None:
        if len(report.holes) < MAX_LISTED:
            listed_holes = (*report.holes, hole)
        else:
            truncated = True
    return VerifyReport(
        blocks=report.blocks + 1,
        verified=report.verified + (not broken),
        broken=listed_broken,
        holes=listed_holes,
        truncated=truncated,
    )


def report_json(report: VerifyReport) -> dict[str, object]:
    """The report as `GET /v1/audit/verify` and `collector verify --json` print it."""
    return {
        "blocks": report.blocks,
        "verified": report.verified,
        "broken": [
            {
                "gateway": b.gateway,
                "epoch": b.epoch,
                "seq": b.seq,
                "reason": b.reason.value,
                "detail": b.detail,
            }
            for b in report.broken
        ],
        "holes": [
            {"gateway": h.gateway, "epoch": h.epoch, "from_seq": h.from_seq, "to_seq": h.to_seq}
            for h in report.holes
        ],
        "truncated": report.truncated,
    }
