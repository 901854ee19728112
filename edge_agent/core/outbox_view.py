"""Pure views of stored blocks for `edge-agent outbox`: reading counts and the export document."""

from __future__ import annotations

import base64
import json
from collections.abc import Iterable, Iterator
from dataclasses import dataclass


class PayloadError(ValueError):
    """A stored payload is not a block this agent could have sealed."""


@dataclass(frozen=True, slots=True)
class ExportedBlock:
    """A block as `outbox export` shows it: the exact sealed bytes and their signature."""

    epoch: str
    seq: int
    payload: bytes
    alg: str
    kid: str
    sig: bytes
    delivered: bool

    def to_json(self) -> dict[str, object]:
        """The export entry: payload as its exact text, signature in base64.

        Raises:
            PayloadError: the payload is not UTF-8.
        """
        try:
            text = self.payload.decode("utf-8")
        except UnicodeDecodeError:
            raise PayloadError(f"block {self.seq}: payload is not UTF-8") from None
        return {
            "epoch": self.epoch,
            "seq": self.seq,
            "payload": text,
            "alg": self.alg,
            "kid": self.kid,
            "sig": base64.b64encode(self.sig).decode("ascii"),
            "delivered": self.delivered,
        }


def count_readings(payload: bytes) -> int:
    """How many of a block's records are readings (not alarm events or gap records).

    Raises:
        PayloadError: the payload is not a JSON block with a `records` list.
    """
    try:
        body = json.loads(payload)
    except ValueError:  # JSONDecodeError and UnicodeDecodeError
        raise PayloadError("payload is not JSON") from None
    records = body.get("records") if isinstance(body, dict) else None
    if not isinstance(records, list):
        raise PayloadError("payload has no records list")
    return sum(1 for r in records if isinstance(r, dict) and r.get("type") == "reading")


def export_document(blocks: Iterable[ExportedBlock]) -> Iterator[str]:
    """`{"blocks": [...]}` as text pieces, one block per piece: written as it is read.

    Raises:
        PayloadError: a payload is not UTF-8 (raised when that block's piece is due).
    """
    yield '{"blocks": ['
    separator = "\n"
    for block in blocks:
        yield separator + json.dumps(block.to_json(), ensure_ascii=False)
        separator = ",\n"
    yield "\n]}\n"
