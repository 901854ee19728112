"""The collector's acknowledgement: signed, computed from what the database holds."""

from __future__ import annotations

import json
from dataclasses import dataclass

from specs.block import SPEC
from specs.wirejson import WireJsonError, load_wire_json


class AckFormatError(ValueError):
    """A payload is not a valid ACK."""


@dataclass(frozen=True, slots=True)
class Ack:
    """Everything up to `acked_through` is stored; `missing` ranges above it are not.

    `seq` names the block whose storage triggered this ACK (an extension of the contract's
    `{epoch, acked_through, missing}`), so the agent can release a block that arrived ahead
    of a hole without waiting for the hole to fill.
    """

    gateway: str
    epoch: str
    acked_through: int
    missing: tuple[tuple[int, int], ...]
    seq: int | None
    issued_at: str

    def encode(self) -> bytes:
        """Canonical bytes of the ACK."""
        body = {
            "spec": SPEC,
            "gateway": self.gateway,
            "epoch": self.epoch,
            "acked_through": self.acked_through,
            "missing": [list(r) for r in self.missing],
            "seq": self.seq,
            "issued_at": self.issued_at,
        }
        return json.dumps(body, separators=(",", ":"), sort_keys=True).encode("utf-8")


def _count(value: object, name: str) -> int:
    if not isinstance(value, int) or isinstance(value, bool) or value < 0:
        raise AckFormatError(f"ack field {name!r} must be an integer >= 0")
    return value


def decode_ack(payload: bytes) -> Ack:
    """Parse an ACK payload; raise AckFormatError with the reason."""
    try:
        body = load_wire_json(payload)
    except WireJsonError as exc:
        raise AckFormatError(f"ack: {exc}") from None
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
    return Ack(
        gateway=gateway,
        epoch=epoch,
        acked_through=_count(body.get("acked_through"), "acked_through"),
        missing=tuple(missing),
        seq=None if seq is None else _count(seq, "seq"),
        issued_at=issued_at,
    )
