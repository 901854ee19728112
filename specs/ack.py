"""The collector's acknowledgement: signed, computed from what the database holds."""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Final

from specs.block import SPEC
from specs.records import RecordFormatError, parse_iso_time
from specs.wirejson import is_count, load_message_json

MAX_ACK_KEYS: Final = 16
"""At most this many kids in an ACK's `keys`, the newest: a full list may leave out a key
the collector still takes."""

MIN_MESSAGE_BYTES: Final = 4 * 1024 * 1024
"""An ACK's `max_message_bytes` at least, the least `ingest.max_message_bytes` a collector's
config takes: above the largest block an agent seals, an alarm event for every reading included
(4.0 MB at the longest fields). An agent ignores a smaller value: split for it, blocks would
shrink to one record each, which it never sends."""


class AckFormatError(ValueError):
    """A payload is not a valid ACK."""


@dataclass(frozen=True, slots=True)
class Ack:
    """Everything up to `acked_through` is stored; `missing` ranges above it are not.

    `seq` names the block whose storage triggered this ACK (an extension of the contract's
    `{epoch, acked_through, missing}`), so the agent can release a block that arrived ahead
    of a hole without waiting for the hole to fill.

    Two more extensions let an agent prove that its sequence state was rolled back (an
    outbox restored from a snapshot re-seals seqs the collector already holds) instead of
    releasing blocks the collector never stored: `acked_hash` is the hash of the stored
    block at `acked_through` (None while nothing is acked), to compare with the agent's own
    block at that seq; `conflict` is true once the collector has seen, in this epoch, a seq
    with other bytes than it holds or a block whose `prev` does not chain onto its stored
    neighbour. An agent seeing either mismatch releases nothing and starts a new epoch.

    `keys` names the kids the collector takes this gateway's blocks under as it issues the
    ACK (registered to the gateway, not revoked, not retired; MAX_ACK_KEYS, the newest),
    so that an agent switches to an announced key only once the collector holds it. None:
    the field is absent, as collectors before it send (encoded only when given).

    `max_message_bytes` is the collector's `ingest.max_message_bytes`: it audits a larger
    payload `too_large` unread and answers nothing, so an agent splits a block over it before
    sending, as one over the broker's packet limit. None: absent (collectors before it).
    """

    gateway: str
    epoch: str
    acked_through: int
    missing: tuple[tuple[int, int], ...]
    seq: int | None
    issued_at: str
    acked_hash: str | None = None
    conflict: bool = False
    keys: tuple[str, ...] | None = None
    max_message_bytes: int | None = None

    def encode(self) -> bytes:
        """Canonical bytes of the ACK."""
        body: dict[str, object] = {
            "spec": SPEC,
            "gateway": self.gateway,
            "epoch": self.epoch,
            "acked_through": self.acked_through,
            "missing": [list(r) for r in self.missing],
            "seq": self.seq,
            "issued_at": self.issued_at,
            "acked_hash": self.acked_hash,
            "conflict": self.conflict,
        }
        if self.keys is not None:
            body["keys"] = list(self.keys)
        if self.max_message_bytes is not None:
            body["max_message_bytes"] = self.max_message_bytes
        return json.dumps(body, separators=(",", ":"), sort_keys=True).encode("utf-8")


def _count(value: object, name: str) -> int:
    if not is_count(value):
        raise AckFormatError(f"ack field {name!r} must be an integer >= 0")
    return value


def _kids(value: object) -> tuple[str, ...] | None:
    if value is None:
        return None
    if not isinstance(value, list) or not all(isinstance(kid, str) for kid in value):
        raise AckFormatError("ack 'keys' must be a list of key ids")
    return tuple(value)


def _limit(value: object) -> int | None:
    if value is None:
        return None
    if is_count(value) and value > 0:
        return value
    raise AckFormatError("ack 'max_message_bytes' must be an integer > 0")


def decode_ack(payload: bytes) -> Ack:
    """Parse an ACK payload; raise AckFormatError with the reason.

    Fields it does not know are ignored, so that a collector may extend the ACK (as `seq`,
    `acked_hash`, `conflict`, `keys` and `max_message_bytes` did) without cutting older agents off.
    """
    body = load_message_json(payload, AckFormatError, "ack: ")
    if not isinstance(body, dict) or body.get("spec") != SPEC:
        raise AckFormatError("ack is not a gz/1 object")
    missing_raw = body.get("missing")
    if not isinstance(missing_raw, list):
        raise AckFormatError("ack 'missing' must be a list")
    missing: list[tuple[int, int]] = []
    for item in missing_raw:
        if not isinstance(item, list) or len(item) != 2:  # noqa: PLR2004 - [from, to]
            raise AckFormatError("ack 'missing' entries must be [from, to]")
        low, high = _count(item[0], "missing"), _count(item[1], "missing")
        if low > high:
            raise AckFormatError("ack 'missing' range is reversed")
        missing.append((low, high))
    seq = body.get("seq")
    gateway, epoch, issued_at = body.get("gateway"), body.get("epoch"), body.get("issued_at")
    if not isinstance(gateway, str) or not isinstance(epoch, str) or not isinstance(issued_at, str):
        raise AckFormatError("ack 'gateway', 'epoch' and 'issued_at' must be strings")
    try:
        # The agent weighs ACKs by when they were issued (a lower acked_through is a restored
        # collector's only when issued well after the mark's): a made-up time would decide.
        parse_iso_time(issued_at)
    except RecordFormatError as exc:
        raise AckFormatError(f"ack 'issued_at': {exc}") from None
    acked_hash, conflict = body.get("acked_hash"), body.get("conflict", False)
    if acked_hash is not None and not isinstance(acked_hash, str):
        raise AckFormatError("ack 'acked_hash' must be a string or null")
    if not isinstance(conflict, bool):
        raise AckFormatError("ack 'conflict' must be a boolean")
    return Ack(
        gateway=gateway,
        epoch=epoch,
        acked_through=_count(body.get("acked_through"), "acked_through"),
        missing=tuple(missing),
        seq=None if seq is None else _count(seq, "seq"),
        issued_at=issued_at,
        acked_hash=acked_hash,
        conflict=conflict,
        keys=_kids(body.get("keys")),
        max_message_bytes=_limit(body.get("max_message_bytes")),
    )
