"""Whether a collector ACK may release blocks, or proves the agent's sequence was rolled back.

An outbox restored from a snapshot, or a WAL cut mid-frame, takes the file back to an older
state of the same epoch. The agent then seals seqs the collector already holds with other
bytes, and a plain cumulative ACK ("everything through N is stored") would release blocks
the collector never stored. So before releasing anything the agent checks the ACK against
its own chain:

- the collector says its bytes differ somewhere in this epoch (`conflict`), or
- it has stored beyond the agent's last seq, or
- its block at `acked_through` has another hash than the agent's block at that seq,

and any of these means: release nothing, start a new epoch (with an `outbox_restored` gap
record) and send every undelivered reading again under it.
"""

from __future__ import annotations

from dataclasses import dataclass

from specs.ack import Ack


@dataclass(frozen=True, slots=True)
class Release:
    """The ACK is consistent with the local chain: release through `through`, and `also`."""

    through: int
    also: int | None


@dataclass(frozen=True, slots=True)
class Rollback:
    """The ACK proves that the local sequence state went back in time."""

    why: str


def judge_ack(ack: Ack, *, last_seq: int, local_hash: str | None) -> Release | Rollback:
    """Decide on an ACK of this epoch; `local_hash` is the agent's block hash at acked_through.

    `local_hash` is None when the agent no longer holds that block (pruned after delivery):
    then only the cheaper checks apply.
    """
    if ack.conflict:
        return Rollback("the collector holds other bytes for a seq of this epoch")
    if ack.acked_through > last_seq:
        return Rollback(
            f"the collector stored through seq {ack.acked_through}, beyond the local last"
            f" seq {last_seq}"
        )
    if ack.acked_hash is not None and local_hash is not None and ack.acked_hash != local_hash:
        return Rollback(f"the collector's block {ack.acked_through} differs from the local one")
    return Release(through=ack.acked_through, also=ack.seq)
