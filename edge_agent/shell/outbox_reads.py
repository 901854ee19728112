"""Reading blocks and counts back from the outbox file, and the blocks kept in memory for it.

Every read runs under the outbox's lock on its one connection (`Outbox` holds the lock);
`read_outbox_stats` alone opens the file itself, read-only, beside a running agent.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Iterable, Sequence
from contextlib import closing
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any, Final, Literal

import aiosqlite

from edge_agent.core.chain import SealedBlock
from edge_agent.shell.outbox_schema import ALARM_STATE_ROW
from specs.block import block_hash
from specs.signing import Signature, SignatureError, SigningKey

# Keys per lookup statement, far below SQLite's host parameter limit.
_KEY_CHUNK: Final = 400
# Bytes of blocks just sealed kept in memory for the publisher (they pile up only while it
# is behind or offline; then the oldest are read back from the file as before).
HANDED_BYTES: Final = 512 * 1024


# The columns that vouch for a block's payload (`as_sealed`), read as bytes: a text column
# whose bytes changed on disk may be no UTF-8 any more (erased flash reads 0xFF), and must
# not fail the read of every block with it.
WITNESS_COLUMNS: Final = (
    "CAST(digest AS BLOB), CAST(alg AS BLOB), CAST(kid AS BLOB), CAST(sig AS BLOB)"
)
# A block's payload, read as bytes whatever type its row now says it holds (one bit of the
# row's header turns a BLOB into TEXT of the same bytes).
PAYLOAD: Final = "CAST(payload AS BLOB)"


def witnesses(values: Sequence[Any]) -> tuple[bytes, Signature]:
    """The digest and the signature stored with a block, from WITNESS_COLUMNS' values."""
    digest, alg, kid, sig = (bytes(value) for value in values)
    return digest, Signature(alg.decode(errors="replace"), kid.decode(errors="replace"), sig)


def sealed_count(value: object) -> int | None:
    """A row's `readings` column as a count, or None when it is none (NULL, or changed on disk).

    It only sizes a declared loss (a gap record's `lost`): a value bytes changed on disk made
    negative, a REAL or a text is no count, and must neither fail the read nor be declared.
    """
    if isinstance(value, int) and value >= 0:
        return value
    return None


def signed_by(key: SigningKey, signature: Signature, payload: bytes) -> bool:
    """Whether `signature` over `payload` is `key`'s (not when its sig, alg or kid changed)."""
    try:
        key.public().verify(signature, payload)
    except SignatureError:
        return False
    return True


def as_sealed(payload: bytes, digest: bytes, signature: Signature, key: SigningKey) -> bool:
    """Whether a block's row vouches for `payload` being its bytes as sealed.

    The row holds two witnesses, both made at the seal: the digest (SHA-256 of the payload)
    and the gateway's signature over it. Either one still matching proves the bytes (damage
    cannot forge a hash or a signature); neither does, and the payload is not guessed at.
    """
    return block_hash(payload).encode() == digest or signed_by(key, signature, payload)


@dataclass(frozen=True, slots=True)
class StoredBlock:
    """A block as read back for (re)sending: the exact sealed bytes and signature.

    `intact` is False when the bytes read back no longer hash to the digest stored with them
    (the payload or the digest changed on disk: `as_sealed` tells which);
    `readings` is how many readings it was sealed with (None for blocks kept in memory).
    """

    epoch: str
    seq: int
    payload: bytes
    signature: Signature
    # What the file said of the block, not the block: a block handed over from memory and
    # the same block read back compare equal.
    intact: bool = field(default=True, compare=False)
    readings: int | None = field(default=None, compare=False)
    # `OutboxFile.moment()` before the read (room made here, other connections' commits):
    # room made since, by this process or another, may have let the block give way
    # (`Delivery.still_held`). None: not known, so read again before it is sent.
    seen: tuple[int, int] | None = field(default=None, compare=False)


def signed_as_read(
    block: StoredBlock, key: SigningKey, replaced: SigningKey | None
) -> StoredBlock | None:
    """`block` signed with `key`, when its row vouches for it as sealed; None: to be mended.

    A block read back before a rotation signed it again (`Outbox.use_key`) carries the
    signature of the key the rotation `replaced`: that vouches for its bytes as well, and a
    new one is made (the signature is detached), with no write and nothing to report.
    """
    if not block.intact:
        return None
    if signed_by(key, block.signature, block.payload):
        return block
    if replaced is not None and signed_by(replaced, block.signature, block.payload):
        return replace(block, signature=key.sign(block.payload))
    return None


def _stored(epoch: str, seq: int, row: Sequence[Any]) -> StoredBlock:
    """A block from a row (payload, readings, *WITNESS_COLUMNS)."""
    payload = bytes(row[0])
    digest, signature = witnesses(row[2:])
    return StoredBlock(
        epoch,
        seq,
        payload,
        signature,
        intact=block_hash(payload).encode() == digest,
        readings=sealed_count(row[1]),
    )


@dataclass(frozen=True, slots=True)
class OutboxStats:
    """How much waits in the outbox."""

    epoch: str
    last_seq: int
    undelivered: int
    undelivered_records: int
    oldest_undelivered_sealed_at: float | None
    delivered: int


class HandedBlocks:
    """Blocks just sealed, by seq, until `Delivery.get` takes them (oldest first).

    A live block is sent from memory instead of being read back from the file it was just
    written to. The outbox clears them whenever stored blocks may have changed (release, new
    epoch, new key, room made, another process's commit).
    """

    def __init__(self) -> None:
        self._blocks: dict[int, StoredBlock] = {}
        self._bytes = 0

    def keep(self, block: SealedBlock, *, seen: tuple[int, int] | None) -> None:
        """Keep a block just sealed; the oldest go once they hold over HANDED_BYTES.

        `seen`: the file's moment from before its seal (`StoredBlock.seen`).
        """
        self._blocks[block.seq] = StoredBlock(
            block.epoch, block.seq, block.payload, block.signature, seen=seen
        )
        self._bytes += len(block.payload)
        while self._bytes > HANDED_BYTES:
            self.take(next(iter(self._blocks)))  # the oldest

    def take(self, seq: int) -> StoredBlock | None:
        """The block `seq`, no longer kept, if it was."""
        block = self._blocks.pop(seq, None)
        if block is not None:
            self._bytes -= len(block.payload)
        return block

    @property
    def held_bytes(self) -> int:
        """Payload bytes kept."""
        return self._bytes

    def seqs(self) -> list[int]:
        """The seqs kept, oldest first."""
        return list(self._blocks)

    def clear(self) -> None:
        """Keep nothing."""
        self._blocks.clear()
        self._bytes = 0


async def read_alarm_state(db: aiosqlite.Connection) -> bytes | None:
    """The alarm state stored by the last seal that carried one (None before any)."""
    async with db.execute(
        "SELECT state FROM alarm_state WHERE name = ?", (ALARM_STATE_ROW,)
    ) as cursor:
        row = await cursor.fetchone()
    return None if row is None else bytes(row[0])


async def find_backfill_keys(
    db: aiosqlite.Connection, keys: Sequence[tuple[str, str]]
) -> set[tuple[str, str]]:
    """Those of `keys` ((point, t)) that an earlier import has sealed already."""
    found: set[tuple[str, str]] = set()
    for start in range(0, len(keys), _KEY_CHUNK):
        chunk = keys[start : start + _KEY_CHUNK]
        values = ", ".join("(?, ?)" for _ in chunk)
        async with db.execute(
            f"WITH k (point, t) AS (VALUES {values})"
            " SELECT k.point, k.t FROM k JOIN backfill_keys b"
            " ON b.point = k.point AND b.t = k.t",
            [part for key in chunk for part in key],
        ) as cursor:
            found.update((str(p), str(t)) for p, t in await cursor.fetchall())
    return found


async def read_undelivered(
    db: aiosqlite.Connection, epoch: str, *, after: int, limit: int
) -> list[StoredBlock]:
    """Undelivered blocks of `epoch` with seq > `after`, oldest first."""
    async with db.execute(
        f"SELECT seq, {PAYLOAD}, readings, {WITNESS_COLUMNS} FROM blocks"
        " WHERE epoch = ? AND delivered_at IS NULL AND seq > ? ORDER BY seq LIMIT ?",
        (epoch, after, limit),
    ) as cursor:
        rows = await cursor.fetchall()
    return [_stored(epoch, int(r[0]), r[1:]) for r in rows]


async def read_undelivered_block(
    db: aiosqlite.Connection, epoch: str, seq: int
) -> StoredBlock | None:
    """The block `seq` of `epoch` if it is still undelivered."""
    async with db.execute(
        f"SELECT {PAYLOAD}, readings, {WITNESS_COLUMNS} FROM blocks"
        " WHERE epoch = ? AND seq = ? AND delivered_at IS NULL",
        (epoch, seq),
    ) as cursor:
        row = await cursor.fetchone()
    return None if row is None else _stored(epoch, seq, row)


async def read_data_version(db: aiosqlite.Connection) -> int:
    """`PRAGMA data_version`: it moves only on other connections' commits."""
    async with db.execute("PRAGMA data_version") as cursor:
        row = await cursor.fetchone()
    return 0 if row is None else int(row[0])


AnnouncementState = Literal["announced", "taken", "refused"]
"""Where the announcements of one key stand: one ACKed by an ACK naming the key (or by one
without `keys`, from a collector before them) is `taken`; else one still waiting in the
outbox is `announced`; else one ACKed by an ACK that does not name the key (the collector
stored the block and refused the key) is `refused`."""

# Per announcement of a kid: ACKed, refused by its ACK, and its block still held (a block
# sealed again under a new epoch, or given way to a full outbox, leaves its row behind: the
# records it carried are in a block of their own, with a row of its own).
_ANNOUNCEMENTS_SQL = (
    "SELECT a.delivered_at IS NOT NULL, a.refused_at IS NOT NULL, EXISTS (SELECT 1 FROM"
    " blocks b WHERE b.epoch = a.epoch AND b.seq = a.seq) FROM key_announcements a"
    " WHERE a.kid = ?"
)


async def announcement_state(db: aiosqlite.Connection, kid: str) -> AnnouncementState | None:
    """How the collector answered the announcements of key `kid`; None: none stands."""
    async with db.execute(_ANNOUNCEMENTS_SQL, (kid,)) as cursor:
        rows = [
            (bool(acked), bool(refused), bool(held))
            for acked, refused, held in await cursor.fetchall()
        ]
    if any(acked and not refused for acked, refused, _ in rows):
        return "taken"
    if any(held and not acked for acked, _, held in rows):
        return "announced"
    return "refused" if any(acked for acked, _, _ in rows) else None


_META_SQL = "SELECT key, value FROM meta"
_UNDELIVERED_SQL = (
    "SELECT COUNT(*), COALESCE(SUM(records), 0), MIN(sealed_at) FROM blocks"
    " WHERE delivered_at IS NULL"
)
_DELIVERED_SQL = "SELECT COUNT(*) FROM blocks WHERE delivered_at IS NOT NULL"


async def read_stats(db: aiosqlite.Connection) -> OutboxStats:
    """Counts for `edge-agent status` and the heartbeat, on the outbox's connection."""
    async with db.execute(_META_SQL) as cursor:
        meta = await cursor.fetchall()
    async with db.execute(_UNDELIVERED_SQL) as cursor:
        undelivered = await cursor.fetchone()
    async with db.execute(_DELIVERED_SQL) as cursor:
        delivered = await cursor.fetchone()
    return _stats(meta, undelivered, delivered)


def read_outbox_stats(path: Path) -> OutboxStats:
    """Outbox counts read without disturbing a running agent (read-only, WAL readers)."""
    with closing(sqlite3.connect(f"file:{path}?mode=ro", uri=True)) as db:
        return _stats(
            db.execute(_META_SQL).fetchall(),
            db.execute(_UNDELIVERED_SQL).fetchone(),
            db.execute(_DELIVERED_SQL).fetchone(),
        )


def _stats(meta: Iterable[Any], undelivered: Any, delivered: Any) -> OutboxStats:  # noqa: ANN401 - SQLite rows
    values = {str(k): str(v) for k, v in meta}
    return OutboxStats(
        epoch=values["epoch"],
        last_seq=int(values["last_seq"]),
        undelivered=int(undelivered[0]),
        undelivered_records=int(undelivered[1]),
        oldest_undelivered_sealed_at=None if undelivered[2] is None else float(undelivered[2]),
        delivered=int(delivered[0]),
    )
