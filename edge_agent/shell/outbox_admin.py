"""The outbox seen from outside the agent: stats, export and resend on the SQLite file.

Stats and export open the file read-only and read one consistent snapshot (a WAL reader never
blocks the running agent's seals); export streams rows, so memory does not grow with the
outbox. Resend is one short `BEGIN IMMEDIATE` write transaction that waits for the agent's
seal in progress (busy timeout). Every SQLite or payload error becomes `OutboxAccessError`.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Generator
from contextlib import closing
from dataclasses import dataclass
from pathlib import Path
from typing import Final

from edge_agent.core.outbox_view import ExportedBlock, PayloadError, count_readings
from edge_agent.core.plan import OUTBOX_BUSY_TIMEOUT
from edge_agent.shell.outbox_transaction import write_transaction

MAX_SEQ: Final = 2**63 - 1


class OutboxAccessError(Exception):
    """The outbox file is missing, not an outbox, or could not be read or written."""


class ResendPastEndError(Exception):
    """`outbox resend --from-seq` names a seq after the last one sealed: nothing to resend."""

    def __init__(self, *, epoch: str, from_seq: int, last_seq: int) -> None:
        super().__init__(
            f"--from-seq {from_seq} is past the last sealed seq {last_seq} of epoch {epoch}:"
            " no block to resend"
        )
        self.epoch = epoch
        self.from_seq = from_seq
        self.last_seq = last_seq


@dataclass(frozen=True, slots=True)
class OutboxSummary:
    """`outbox stats`: what waits in the outbox and how big the file is."""

    epoch: str
    last_seq: int
    undelivered_blocks: int
    undelivered_readings: int
    oldest_undelivered_age_s: float | None
    bytes: int
    max_bytes: int

    def to_json(self) -> dict[str, object]:
        """The `--json` object (DESIGN section 6 names its keys)."""
        age = self.oldest_undelivered_age_s
        return {
            "epoch": self.epoch,
            "last_seq": self.last_seq,
            "undelivered_blocks": self.undelivered_blocks,
            "undelivered_readings": self.undelivered_readings,
            "oldest_undelivered_age_s": None if age is None else round(age, 3),
            "bytes": self.bytes,
            "max_bytes": self.max_bytes,
        }


@dataclass(frozen=True, slots=True)
class ResendResult:
    """`outbox resend`: blocks of `epoch` from `from_seq` on, by what happened to them.

    `marked` were delivered and wait again; `waiting` were not delivered yet anyway; `pruned`
    were delivered and deleted after retention, so they cannot be sent again.
    """

    epoch: str
    from_seq: int
    last_seq: int
    marked: int
    waiting: int
    pruned: int


def _connect(path: Path, mode: str) -> sqlite3.Connection:
    if not path.exists():
        raise OutboxAccessError(f"{path}: no outbox yet (the agent has not run)")
    uri = f"{path.resolve().as_uri()}?mode={mode}"
    try:
        return sqlite3.connect(uri, uri=True, timeout=OUTBOX_BUSY_TIMEOUT, isolation_level=None)
    except sqlite3.Error as exc:
        raise OutboxAccessError(f"{path}: {exc}") from None


def _chain(db: sqlite3.Connection, path: Path) -> tuple[str, int]:
    # An empty file or another program's database has no `meta` table: not "no such table".
    has_meta = db.execute("SELECT 1 FROM sqlite_master WHERE type = 'table' AND name = 'meta'")
    values = (
        {str(k): str(v) for k, v in db.execute("SELECT key, value FROM meta")}
        if has_meta.fetchone()
        else {}
    )
    if "epoch" not in values or "last_seq" not in values:
        raise OutboxAccessError(f"{path}: not an outbox (no chain state)")
    return values["epoch"], int(values["last_seq"])


def _file_bytes(path: Path) -> int:
    wal = path.with_name(path.name + "-wal")
    return sum(p.stat().st_size for p in (path, wal) if p.exists())


def _undelivered_readings(db: sqlite3.Connection, path: Path) -> int:
    """Reading records (not alarm or gap records) in undelivered blocks.

    From the `readings` column where the agent wrote it; blocks sealed before that column
    existed are counted from their payloads, row by row, so memory stays flat.
    """
    columns = {str(row[1]) for row in db.execute("PRAGMA table_info(blocks)")}
    unknown = "delivered_at IS NULL"
    counted = 0
    if "readings" in columns:
        (counted,) = db.execute(
            "SELECT COALESCE(SUM(readings), 0) FROM blocks WHERE delivered_at IS NULL"
        ).fetchone()
        unknown += " AND readings IS NULL"
    readings = int(counted)
    for seq, payload in db.execute(f"SELECT seq, payload FROM blocks WHERE {unknown}"):
        try:
            readings += count_readings(bytes(payload))
        except PayloadError as exc:
            raise OutboxAccessError(f"{path}: block {seq}: {exc}") from None
    return readings


def summarize(path: Path, *, max_bytes: int, now: float) -> OutboxSummary:
    """Counts of one snapshot of the outbox at `path`; readings counted from the payloads.

    Raises:
        OutboxAccessError: the file is missing, not an outbox, or unreadable.
    """
    with closing(_connect(path, "ro")) as db:
        try:
            db.execute("BEGIN")  # one snapshot for every count below
            epoch, last_seq = _chain(db, path)
            blocks, oldest = db.execute(
                "SELECT COUNT(*), MIN(sealed_at) FROM blocks WHERE delivered_at IS NULL"
            ).fetchone()
            readings = _undelivered_readings(db, path)
            db.execute("COMMIT")
        except sqlite3.Error as exc:
            raise OutboxAccessError(f"{path}: {exc}") from None
        size = _file_bytes(path)
    return OutboxSummary(
        epoch=epoch,
        last_seq=last_seq,
        undelivered_blocks=int(blocks),
        undelivered_readings=readings,
        oldest_undelivered_age_s=None if oldest is None else max(0.0, now - float(oldest)),
        bytes=size,
        max_bytes=max_bytes,
    )


def export_blocks(
    path: Path, *, from_seq: int = 1, to_seq: int = MAX_SEQ
) -> Generator[ExportedBlock, None, None]:
    """Stored blocks with `from_seq <= seq <= to_seq`, by epoch and seq, from one snapshot.

    A generator: the connection stays open (and the snapshot fixed) until it is exhausted
    or closed.

    Raises:
        OutboxAccessError: the file is missing, not an outbox, or unreadable.
    """
    with closing(_connect(path, "ro")) as db:
        try:
            db.execute("BEGIN")
            _chain(db, path)
            rows = db.execute(
                "SELECT epoch, seq, payload, alg, kid, sig, delivered_at IS NOT NULL FROM blocks"
                " WHERE seq BETWEEN ? AND ? ORDER BY epoch, seq",
                (from_seq, to_seq),
            )
            for epoch, seq, payload, alg, kid, sig, delivered in rows:
                yield ExportedBlock(
                    str(epoch),
                    int(seq),
                    bytes(payload),
                    str(alg),
                    str(kid),
                    bytes(sig),
                    bool(delivered),
                )
            db.execute("COMMIT")
        except sqlite3.Error as exc:
            raise OutboxAccessError(f"{path}: {exc}") from None


def mark_for_resend(path: Path, *, from_seq: int) -> ResendResult:
    """Mark delivered blocks of the current epoch with seq >= `from_seq` undelivered again.

    One immediate transaction, waiting up to OUTBOX_BUSY_TIMEOUT for a seal in progress.

    Raises:
        OutboxAccessError: the file is missing, not an outbox, or could not be written.
        ResendPastEndError: `from_seq` is after the current epoch's last seq (nothing written).
    """
    with closing(_connect(path, "rw")) as db:
        try:
            db.execute("PRAGMA synchronous=FULL")
            with write_transaction(db):
                epoch, last_seq = _chain(db, path)
                if from_seq > last_seq:
                    raise ResendPastEndError(epoch=epoch, from_seq=from_seq, last_seq=last_seq)
                present, waiting = db.execute(
                    "SELECT COUNT(*), COUNT(*) FILTER (WHERE delivered_at IS NULL) FROM blocks"
                    " WHERE epoch = ? AND seq >= ?",
                    (epoch, from_seq),
                ).fetchone()
                marked = db.execute(
                    "UPDATE blocks SET delivered_at = NULL"
                    " WHERE epoch = ? AND seq >= ? AND delivered_at IS NOT NULL",
                    (epoch, from_seq),
                ).rowcount
        except sqlite3.Error as exc:
            raise OutboxAccessError(f"{path}: {exc}") from None
    expected = max(0, last_seq - from_seq + 1)
    return ResendResult(
        epoch=epoch,
        from_seq=from_seq,
        last_seq=last_seq,
        marked=marked,
        waiting=int(waiting),
        pruned=max(0, expected - int(present)),
    )
