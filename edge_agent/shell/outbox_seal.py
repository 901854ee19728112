"""The outbox's busy statements, each group run as ONE call on the connection's thread.

aiosqlite runs every statement on its connection's own thread: each `await` of a statement,
a fetch or a cursor close is a round trip (a queue put, a thread wake-up, a callback on the
event loop), and the two threads pass the GIL back and forth for each. A seal was seven of
them (BEGIN, chain state read, fetch, close, INSERT, UPDATE, COMMIT), an ACK's chain check
six and its release three more per block. These functions are those statements in plain
sqlite3, called on that thread in one trip (`outbox_transaction.on_thread`); the
transactions, the chain state read inside them and the statements are the same as before.
"""

from __future__ import annotations

import json
import sqlite3
from collections.abc import Sequence
from dataclasses import dataclass

from edge_agent.core.chain import ChainState, Identity, SealedBlock, seal
from edge_agent.core.held_readings import EMPTY_SPAN, reading_span
from edge_agent.core.thinning import imported_keys
from edge_agent.shell.outbox_key_listing import (
    AckKeys,
    KeyLeftOut,
    note_key_listing,
    read_key_left_out,
)
from edge_agent.shell.outbox_schema import ACKED, raise_seq_mark
from edge_agent.shell.outbox_transaction import write_transaction
from specs.records import KeyRecord, Reading, Record
from specs.signing import SigningKey

_CHAIN_STATE_SQL = "SELECT key, value FROM meta WHERE key IN ('epoch', 'last_seq', 'last_hash')"
_INSERT_BLOCK_SQL = (
    "INSERT INTO blocks (epoch, seq, payload, digest, alg, kid, sig, records,"
    " sealed_at, readings, thinned, backfilled, first_t, last_t)"
    " VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)"
)
_ALARM_STATE_SQL = (
    "INSERT INTO alarm_state (name, state, saved_at) VALUES (?, ?, ?)"
    " ON CONFLICT (name) DO UPDATE SET state = excluded.state, saved_at = excluded.saved_at"
)


def read_chain_state(db: sqlite3.Connection) -> ChainState:
    """The chain state as the file has it (another process may have moved it)."""
    values = {str(k): str(v) for k, v in db.execute(_CHAIN_STATE_SQL).fetchall()}
    return ChainState(values["epoch"], int(values["last_seq"]), values["last_hash"])


def _reading_count(records: Sequence[Record]) -> int:
    return sum(1 for r in records if isinstance(r, Reading))


def append_block(  # noqa: PLR0917 - the seal's inputs, passed to the thread as one call
    db: sqlite3.Connection,
    identity: Identity,
    key: SigningKey,
    records: tuple[Record, ...],
    now: float,
    clock_synced: bool,
    thinned: bool,
) -> tuple[SealedBlock, ChainState]:
    """Seal one block inside the caller's open transaction; the block and the new state."""
    state = read_chain_state(db)
    block, new_state = seal(state, identity, records, now=now, clock_synced=clock_synced, key=key)
    # A block without readings gets the empty span, never NULL: NULL is a block sealed before
    # the span columns, whose span an import decodes and stores aside (`outbox_spans`).
    first_t, last_t = reading_span(records) or EMPTY_SPAN
    db.execute(
        _INSERT_BLOCK_SQL,
        (
            block.epoch,
            block.seq,
            block.payload,
            block.digest,
            block.signature.alg,
            block.signature.kid,
            block.signature.sig,
            block.records,
            now,
            _reading_count(records),
            int(thinned),
            len(imported_keys(records)),
            first_t,
            last_t,
        ),
    )
    db.executemany(
        "UPDATE meta SET value = ? WHERE key = ?",
        [(str(new_state.last_seq), "last_seq"), (new_state.last_hash, "last_hash")],
    )
    announced = [r.kid for r in records if isinstance(r, KeyRecord)]
    if announced:
        db.executemany(
            "INSERT OR IGNORE INTO key_announcements (kid, epoch, seq) VALUES (?, ?, ?)",
            [(kid, block.epoch, block.seq) for kid in announced],
        )
    return block, new_state


def seal_transaction(  # noqa: PLR0917 - one call on the connection's thread
    db: sqlite3.Connection,
    identity: Identity,
    key: SigningKey,
    batches: Sequence[tuple[Record, ...]],
    now: float,
    clock_synced: bool,
    alarm_state: tuple[str, bytes] | None,
    backfill_keys: Sequence[tuple[str, str]],
) -> tuple[list[SealedBlock], ChainState]:
    """One `BEGIN IMMEDIATE` transaction: a block per batch, backfill keys, alarm state."""
    with write_transaction(db):
        blocks = []
        for records in batches:
            block, state = append_block(db, identity, key, records, now, clock_synced, False)  # noqa: FBT003
            blocks.append(block)
        if backfill_keys:
            db.executemany(
                "INSERT OR IGNORE INTO backfill_keys (point, t) VALUES (?, ?)", backfill_keys
            )
        if alarm_state is not None:
            db.execute(_ALARM_STATE_SQL, (*alarm_state, now))
    return blocks, state


def chain_position(db: sqlite3.Connection, seq: int) -> tuple[ChainState, str | None]:
    """The chain state and the digest of block `seq` of its epoch, if still held."""
    state = read_chain_state(db)
    row = db.execute(
        "SELECT digest FROM blocks WHERE epoch = ? AND seq = ?", (state.epoch, seq)
    ).fetchone()
    return state, None if row is None else str(row[0])


@dataclass(frozen=True, slots=True)
class Released:
    """What an ACK released, and the signing key left out of `keys` as it stands after it."""

    blocks: int
    announcements: int
    left_out: KeyLeftOut | None
    # The epoch's seq 1 row itself is delivered (after this release): what it carries is at
    # the collector. Not when seq 1 gave way (split as too_large, thinned): its records
    # went into later rows, and an ACK covers seq 1 by the record declaring it.
    first_delivered: bool


def release(  # noqa: PLR0917 - the ACK's inputs, one call on the connection's thread
    db: sqlite3.Connection,
    epoch: str,
    through: int,
    also: int | None,
    now: float,
    keys: AckKeys,
    signing_kid: str,
    times: tuple[float, float] | None,
    *,
    ask_first: bool = True,
) -> Released:
    """Mark blocks (and the key announcements they carry) delivered: seq <= through, + also.

    `times` are the ACK's `issued_at` (the collector's clock) and its bound by the agent's
    clock (`missing_blocks.mark_time`), kept with the `acked` mark it
    raises. `keys` is the ACK's: an announcement it releases whose kid it does not name is refused
    (`refused_at`), and one it names is taken even where the ACK releases no block of it
    (the key notice); None (an ACK from a collector before `keys`) refuses nothing. Whether it
    leaves out `signing_kid`, the key the outbox signs with, is kept in `meta`
    (`note_key_listing`).

    One transaction, committed without an fsync of its own (synchronous=NORMAL for it): a
    release lost to a power cut only sends those blocks again, which the collector stores
    once, and the next seal's commit (FULL) syncs the log with it anyway. Before, each ACK
    cost two fsyncs (the two UPDATEs committed one by one), as many as the seals themselves.
    """
    bounds = (now, epoch, through, -1 if also is None else also)
    verdict = (json.dumps(list(keys or ())), None if keys is None else now)
    db.execute("PRAGMA synchronous=NORMAL")
    try:
        with write_transaction(db):
            blocks = db.execute(
                "UPDATE blocks SET delivered_at = ?"
                " WHERE epoch = ? AND delivered_at IS NULL AND (seq <= ? OR seq = ?)",
                bounds,
            ).rowcount
            raise_seq_mark(db, ACKED, epoch, through, times)
            announcements = db.execute(
                "UPDATE key_announcements SET refused_at = CASE WHEN kid IN"
                " (SELECT value FROM json_each(?)) THEN NULL ELSE ? END, delivered_at = ?"
                " WHERE epoch = ? AND delivered_at IS NULL AND (seq <= ? OR seq = ?)",
                (*verdict, *bounds),
            ).rowcount
            # `keys` naming an announced kid says the collector took it, whatever the ACK
            # releases: an announcement stored ahead of a hole whose own ACK was lost is
            # released by no later ACK once the old key is retired (the resends refused,
            # answered by the key notice), and the agent would sign with that key for ever.
            if keys is not None:
                announcements += db.execute(
                    "UPDATE key_announcements SET refused_at = NULL, delivered_at = ?"
                    " WHERE delivered_at IS NULL AND kid IN (SELECT value FROM json_each(?))",
                    (now, verdict[0]),
                ).rowcount
            # An ACK with no `seq` answers no block: the collector's key notice, sent when it
            # refused a block for its key, is no older than the switch.
            answered = None if also is None else (epoch, also)
            note_key_listing(db, keys, signing_kid, now, answered=answered)
            left_out = read_key_left_out(db)
            # Asked only until the epoch journal has been told (`Delivery.mark_delivered`).
            first = (
                db.execute(
                    "SELECT 1 FROM blocks WHERE epoch = ? AND seq = 1 AND delivered_at IS NOT NULL",
                    (epoch,),
                ).fetchone()
                if ask_first
                else None
            )
    finally:
        db.execute("PRAGMA synchronous=FULL")
    return Released(blocks, announcements, left_out, first_delivered=first is not None)
