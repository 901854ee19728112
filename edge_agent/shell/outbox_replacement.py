"""Which blocks hold what a block that gave way to room-making kept, as the outbox file tells.

Room made on a full outbox deletes the oldest undelivered blocks and seals what is left of
them at the head, in one transaction (`RoomMaker._replace`): the replacement's records are a
gap record per run of seqs that gave way (`thinned` or `outbox_full`), then the records kept,
MAX_BLOCK_READINGS to a block, every block marked `thinned`. The process that made the room
tells its own publisher (`Delivery.on_replaced`); room made by another process (`edge-agent
backfill` importing into the same full outbox) is told by nobody, and a live block of the
agent's that gave way there is found gone. This reads the file for it: the first undelivered
replacement block after the gone seq whose gap records declare it, and the blocks sealed with
it as its continuation (the seqs after it, each marked `thinned` and sealed at the same moment
while the one before is full: only a replacement's last block holds fewer records). The
readings of the block that gave way, newest among those that gave way with it, are most often
in the last of them.

A replacement that itself gave way since carries the gap record on, whole: the block found
then is the newer replacement, and its continuation. A replacement holding exactly a multiple
of MAX_BLOCK_READINGS records is followed by the next room made in the same seal, if any:
that one is taken along. Neither loses a block: what is not found goes as backlog, in order.
"""

from __future__ import annotations

import sqlite3
from typing import Final

from edge_agent.shell.outbox_missing import declared_by
from edge_agent.shell.outbox_reads import PAYLOAD, WITNESS_COLUMNS
from specs.block import MAX_BLOCK_READINGS
from specs.signing import SigningKey

# Replacements only (room-making seals them `thinned`; so does a split of one, whose parts
# carry no declaration of room made), undelivered, oldest first.
_REPLACEMENTS_SQL: Final = (
    f"SELECT seq, records, sealed_at, {PAYLOAD}, {WITNESS_COLUMNS} FROM blocks"
    " WHERE epoch = ? AND seq > ? AND thinned = 1 AND delivered_at IS NULL ORDER BY seq"
)


def replacement_of(
    db: sqlite3.Connection, epoch: str, seq: int, key: SigningKey
) -> tuple[int, ...]:
    """The seqs of the undelivered blocks room made sealed in place of `epoch`'s block `seq`.

    On the connection's thread (`on_thread`). None found: it was not given way to room made
    (delivered, declared damaged, split), or its replacement is delivered or gone too. A block
    whose row does not vouch for its payload is passed over (`declared_by`).
    """
    found: list[int] = []
    last: tuple[int, int, float] | None = None  # the last found: seq, records, sealed_at
    rows = db.execute(_REPLACEMENTS_SQL, (epoch, seq))
    try:
        for held, records, sealed_at, *block in rows:
            if last is not None:
                if (held, sealed_at) != (last[0] + 1, last[2]) or last[1] < MAX_BLOCK_READINGS:
                    break  # the next room made, or another block
            else:
                spans = declared_by([(held, *block)], epoch, key).get(held, [])
                if not any(low <= seq and (high is None or seq <= high) for low, high in spans):
                    continue
            found.append(int(held))
            last = (int(held), int(records), float(sealed_at))
    finally:
        rows.close()
    return tuple(found)
