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

The ACK's `keys` also tells whether the collector still takes the key the agent signs with
(`signing_key_left_out`). An ACK of an epoch the file has left is placed by the epoch
journal (`how_epoch_left`): dropped, or a copy put back declared lost.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from enum import Enum

from specs.ack import MAX_ACK_KEYS, Ack


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


def signing_key_left_out(
    keys: Sequence[str] | None, kid: str, *, successor_named: bool, before_switch: bool = False
) -> bool | None:
    """Whether an ACK's `keys` says the collector no longer takes (or never took) key `kid`.

    `keys` names the kids the collector takes the gateway's blocks under as it issues the ACK;
    one without `kid` says the key was revoked, retired or never registered there, and every
    block signed with it is refused. None when the ACK cannot tell: no `keys` (a collector
    before the field), a full list (only the newest MAX_ACK_KEYS: `kid` may be older and
    still taken), one naming a key this outbox announced (`successor_named`: a rotation
    under way, the agent switching to that key; the old one may be retired at once), or one
    answering a block sealed before the ACK that named `kid` and made the agent switch to it
    (`before_switch`): several collectors ACK in any order, and such an ACK may have been
    issued before the collector stored `kid`'s announcement.
    """
    if keys is None or len(keys) >= MAX_ACK_KEYS or before_switch:
        return None
    if kid in keys:
        return False
    return None if successor_named else True


class EpochLeft(Enum):
    """How the outbox file came to be in another epoch than an ACK's, as the journal says."""

    # Another process's start (`edge-agent backfill` opening the file) journals its epoch
    # under the epoch lock before it commits: it declared the ACK's epoch lost already.
    FOR_A_LATER = "for a later epoch"
    # The file's epoch was left before the ACK's: an older copy put back under the agent.
    PUT_BACK = "put back"
    # The journal names one of them or neither (its write failed on a full disk, or its
    # 16 entries let the older go): either of the above, so told apart by neither.
    UNPLACED = "unplaced"


def how_epoch_left(journal: Sequence[str], file_epoch: str, ack_epoch: str) -> EpochLeft:
    """Which `EpochLeft` the journal's epochs (oldest first) make of the file's and the ACK's."""
    if file_epoch not in journal or ack_epoch not in journal:
        return EpochLeft.UNPLACED
    if journal.index(file_epoch) > journal.index(ack_epoch):
        return EpochLeft.FOR_A_LATER
    return EpochLeft.PUT_BACK
