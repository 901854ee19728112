"""An agent's outbox file read from outside, read-only: what it has committed so far, and
the seq mark beside it."""

from __future__ import annotations

import sqlite3
from contextlib import closing
from pathlib import Path

from edge_agent.core.plan import OUTBOX_SEQ_MARK_TIMEOUT
from edge_agent.shell.outbox_seq_mark import SeqMark
from specs.block import decode_block
from specs.records import GapReason, GapRecord, Reading, Record


def read_only(path: Path) -> sqlite3.Connection:
    """A read-only connection to the outbox file at `path` (a running agent may hold it)."""
    return sqlite3.connect(f"file:{path}?mode=ro", uri=True)


def committed_records(path: Path) -> list[Record]:
    """Every record the outbox at `path` holds, block by block in the order they were stored."""
    with closing(read_only(path)) as db:
        rows = db.execute("SELECT payload FROM blocks ORDER BY rowid").fetchall()
    return [record for (payload,) in rows for record in decode_block(bytes(payload)).records]


def committed_readings(path: Path) -> list[Reading]:
    """Every reading the outbox at `path` holds, whole (flags included), block by block."""
    return [record for record in committed_records(path) if isinstance(record, Reading)]


def sealed_blocks(path: Path) -> int:
    """Blocks the outbox at `path` holds (0 before the file or its tables exist)."""
    if not path.exists():
        return 0
    try:
        with closing(read_only(path)) as db:
            return int(db.execute("SELECT COUNT(*) FROM blocks").fetchone()[0])
    except sqlite3.OperationalError:  # the file exists, its tables not yet
        return 0


def committed_gap_records(path: Path) -> list[GapRecord]:
    """Every gap record the blocks committed in the outbox at `path` carry."""
    return [record for record in committed_records(path) if isinstance(record, GapRecord)]


def gap_ranges(path: Path, reason: GapReason) -> list[tuple[int | None, int | None]]:
    """The (from_seq, to_seq) of each committed gap record of `reason`, in the file's order."""
    return [(g.from_seq, g.to_seq) for g in committed_gap_records(path) if g.reason == reason]


def declared_lost(path: Path, epoch: str) -> int:
    """How many `outbox_restored` records in the file declare `epoch` lost from seq 1."""
    return sum(
        1
        for gap in committed_gap_records(path)
        if (gap.reason, gap.epoch, gap.from_seq) == (GapReason.OUTBOX_RESTORED, epoch, 1)
    )


def newest_seq(path: Path) -> tuple[str, int]:
    """The file's epoch and its newest seq, as its chain state (`meta`) holds them."""
    with closing(read_only(path)) as db:
        meta = dict(db.execute("SELECT key, value FROM meta").fetchall())
    return str(meta["epoch"]), int(meta["last_seq"])


def first_undelivered(path: Path, epoch: str) -> int:
    """The lowest seq of `epoch` the file holds undelivered: a rolled-back file's first seq
    declared (its undelivered blocks are sealed again under the new epoch)."""
    with closing(read_only(path)) as db:
        (first,) = db.execute(
            "SELECT min(seq) FROM blocks WHERE epoch = ? AND delivered_at IS NULL", (epoch,)
        ).fetchone()
    return int(first)


async def marked_seq(path: Path) -> tuple[str, int]:
    """The epoch and seq of the seq mark beside the outbox at `path` (there must be one)."""
    mark = await SeqMark.beside(path, OUTBOX_SEQ_MARK_TIMEOUT).read()
    assert mark is not None
    return mark.epoch, mark.seq
