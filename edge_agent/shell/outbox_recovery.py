"""What the outbox file looks like before the agent trusts it, told against the files beside it.

A file SQLite finds damaged (SQLITE_CORRUPT, SQLITE_NOTADB, a failed `PRAGMA quick_check`, a
state table that is not the outbox's) must not become a crash loop under `Restart=on-failure`:
it is moved aside (`<path>.corrupt-<time>`, with its -wal and -shm) and a new file with a new
epoch starts, carrying an `outbox_corrupt` gap record. Any other failure to read it (another
process's lock, too many open files, an I/O error, a full disk) says nothing of the file:
`OutboxUnavailableError`, the file left as it is for the next start. A missing or emptied
file is no fresh start if the agent has run here before: the epoch journal (`<path>.epochs`, a
small JSON file rewritten atomically whenever an epoch starts) names the epoch whose
undelivered blocks vanished, and an `outbox_restored` gap record says so. A file holding
tables but no outbox state is another program's database (`outbox.path` pointed at the wrong
file): refused, `NotAnOutboxError`, and nothing is written in it.

A file can also come back healthy but older: a WAL cut mid-frame drops the last commits and
SQLite opens the consistent state before them. The seq mark (`<path>.seq`, one small record
overwritten in place after every seal) remembers the highest seq sealed; a file whose last
seq is below it has lost seals, and the agent starts a new epoch declaring the lost range
and the undelivered blocks it seals again (from the lowest: they never come in this epoch).
Both files beside the outbox are `edge_agent.shell.outbox_sidecars`.

What was found is owed to the collector as gap records (`recovery_gaps`), which the outbox
seals into the first block of the file it opens.
"""

from __future__ import annotations

import contextlib
import sqlite3
from collections.abc import Callable, Sequence
from dataclasses import dataclass, replace
from datetime import UTC, datetime
from pathlib import Path
from typing import Final

import structlog

from edge_agent.core.plan import OUTBOX_BUSY_TIMEOUT
from edge_agent.core.seq_mark_record import Mark
from edge_agent.shell.outbox_sidecars import EpochJournal, ProofStandsError
from edge_agent.shell.outbox_space import free_bytes
from hostkit.sqlite_file import holding, named_tables, table_names
from specs.records import GapReason, GapRecord, iso_time

log = structlog.get_logger("edge_agent.outbox")

# What SQLite says of a file that is not a sound database, whatever the disk's state.
_CORRUPTION: Final = frozenset({sqlite3.SQLITE_CORRUPT, sqlite3.SQLITE_NOTADB})
# Reads of the file the disk itself failed (a bad sector, erased flash, a damaged file
# system): the file is damaged where it lies, and each start would fail on it the same way.
_FAILED_READS: Final = frozenset(
    {sqlite3.SQLITE_IOERR_READ, sqlite3.SQLITE_IOERR_SHORT_READ, sqlite3.SQLITE_IOERR_CORRUPTFS}
)
# Free space below which a failed read is put down to the disk, not to the file.
_ROOM_TO_CHECK: Final = 1024 * 1024


@dataclass(frozen=True, slots=True)
class Healthy:
    """The file opens, passes quick_check and knows its epoch."""

    epoch: str
    last_seq: int
    # The lowest seq of its epoch the file holds as not released by an ACK (None: none).
    first_undelivered: int | None = None


@dataclass(frozen=True, slots=True)
class Absent:
    """No file, a 0-byte file, or a database without tables."""

    why: str


@dataclass(frozen=True, slots=True)
class Foreign:
    """Another program's database: it holds tables, and no outbox state among them."""

    why: str


@dataclass(frozen=True, slots=True)
class Corrupt:
    """The file cannot be trusted."""

    why: str


FileState = Healthy | Absent | Foreign | Corrupt


class NotAnOutboxError(Exception):
    """The file at the outbox's path is another program's SQLite database.

    Nothing is written in it or beside it: the message names the file, and the commands exit 2
    (a mistake in `outbox.path`, which no restart mends).
    """


class OutboxUnavailableError(Exception):
    """The file could not be checked or opened, for a reason that is not the file's own.

    It is left as it is: the message names the path and SQLite's error, and the commands
    exit 1 (under systemd the agent is started again, on the same file, epoch and backlog).
    """


# What an operator is told of SQLite's other errors, by primary result code.
_CAUSES: Final = {
    sqlite3.SQLITE_BUSY: ": another process holds it locked (a sqlite3 shell, say)",
    sqlite3.SQLITE_LOCKED: ": another process holds it locked (a sqlite3 shell, say)",
    sqlite3.SQLITE_CANTOPEN: (
        ": it or its -wal or -shm cannot be opened (too many open files, a link to nowhere"
        " or a device in their place)"
    ),
    sqlite3.SQLITE_IOERR: ": reading or writing it or its -wal or -shm failed",
}


def _primary(error: sqlite3.Error) -> int:
    """SQLite's primary result code of `error` (the low byte of the extended one)."""
    return int(getattr(error, "sqlite_errorcode", 0)) & 0xFF


def file_is_damaged(error: sqlite3.Error) -> bool:
    """Whether SQLite's `error` says the outbox file itself is damaged.

    A lock, a file it cannot open or a failed write say nothing of what the file holds.
    """
    extended = int(getattr(error, "sqlite_errorcode", 0))
    return _primary(error) in _CORRUPTION or extended in _FAILED_READS


def outbox_unavailable(path: Path, error: sqlite3.Error, doing: str) -> OutboxUnavailableError:
    """What to raise when SQLite failed to `doing` ("check", "open") the outbox at `path`.

    Reading a WAL-mode file makes its -shm (and -wal): on a full disk that fails with 'disk
    I/O error', which says nothing of the file either, and the message says so.
    """
    if free_bytes(path.parent) < _ROOM_TO_CHECK:
        return OutboxUnavailableError(
            f"{path}: cannot {doing} the outbox: its disk has no room ({error});"
            " free some space, the agent then starts on it as it was"
        )
    name = getattr(error, "sqlite_errorname", None) or type(error).__name__
    return OutboxUnavailableError(
        f"{path}: cannot {doing} the outbox: {error} ({name}){_CAUSES.get(_primary(error), '')};"
        " it is left as it is, and the agent starts on it as it was once that is mended"
    )


def _foreign(path: Path, tables: frozenset[str]) -> Foreign | None:
    """A database holding `tables` without the outbox's `meta`: another program's (None: not).

    The outbox's tables are made with `meta` first, so a start cut short leaves `meta` or none.
    """
    if not tables or "meta" in tables:
        return None
    return Foreign(
        f"{path} is not a Ganzhi outbox: an SQLite database with other tables"
        f" ({named_tables(tables)}) and no outbox state; it is left as it is: give outbox.path"
        " a new file (or an empty one)"
    )


def foreign_database(path: Path) -> str | None:
    """Why the file at `path` is another program's database, read-only (None: it is not one).

    None too when SQLite cannot tell (not a database, locked, unreadable to this user): the
    start looks again (`inspect_outbox`) and says what it finds.
    """
    found = holding(path)
    foreign = None if found is None else _foreign(path, found.tables)
    return None if foreign is None else foreign.why


def inspect_outbox(path: Path, busy_timeout: float = OUTBOX_BUSY_TIMEOUT) -> FileState:
    """Look at the file without changing what it holds (a WAL is recovered, as any open does).

    Another process's lock is waited for `busy_timeout` seconds, then SQLITE_BUSY.
    """
    if not path.exists():
        return Absent("no outbox file")
    if path.stat().st_size == 0:
        return Absent("the outbox file is empty (0 bytes)")
    try:
        found = _read_state(path, busy_timeout)
    except sqlite3.DatabaseError as exc:
        return _unreadable(path, exc)
    if not isinstance(found, tuple):
        return found
    (meta, first_undelivered) = found
    epoch, last_seq = meta.get("epoch"), meta.get("last_seq")
    if not isinstance(epoch, str) or not str(last_seq).isdigit():
        return Corrupt("the outbox state (epoch, last_seq) is incomplete")
    return Healthy(epoch, int(str(last_seq)), first_undelivered)


def _unreadable(path: Path, error: sqlite3.DatabaseError) -> Corrupt:
    """A file SQLite could not read: Corrupt only when SQLite says the file is damaged.

    A lock, too many open files, a failed write or a full disk says nothing of the file: moved
    aside, its undelivered blocks would be abandoned for a cause that passes. Raised as
    OutboxUnavailableError instead, and the file stays (whatever the disk's room, SQLite's
    verdict of damage stands). A read the disk failed is the file's own: left, it would keep
    the agent restarting on it for ever, polling nothing.
    """
    if file_is_damaged(error):
        return Corrupt(f"{type(error).__name__}: {error}")
    raise outbox_unavailable(path, error, "check") from error


def _read_state(
    path: Path, busy_timeout: float
) -> tuple[dict[object, object], int | None] | Corrupt | Foreign | Absent:
    """The meta table's rows, and the lowest undelivered seq of the epoch they name."""
    with contextlib.closing(sqlite3.connect(path, timeout=busy_timeout)) as db:
        problems = [str(row[0]) for row in db.execute("PRAGMA quick_check").fetchall()]
        if problems != ["ok"]:
            return Corrupt("quick_check: " + "; ".join(problems[:3]))
        tables = table_names(db)
        if "meta" not in tables:
            return _foreign(path, tables) or Absent("the file holds no tables")
        try:
            meta = dict(db.execute("SELECT key, value FROM meta").fetchall())
        except sqlite3.OperationalError as exc:
            if _primary(exc) != sqlite3.SQLITE_ERROR:
                raise
            return Corrupt(f"its meta table is not the outbox's: {exc}")
        if "blocks" not in tables:  # a first start cut short while making the tables
            return meta, None
        (first,) = db.execute(
            "SELECT min(seq) FROM blocks WHERE epoch = ? AND delivered_at IS NULL",
            (str(meta.get("epoch")),),
        ).fetchone()
        return meta, None if first is None else int(first)


def quarantine(path: Path, now: float) -> Path:
    """Move a corrupt file (and its -wal, -shm) aside; return the new name of the file."""
    stamp = datetime.fromtimestamp(now, UTC).strftime("%Y%m%dT%H%M%SZ")
    target = path.with_name(f"{path.name}.corrupt-{stamp}")
    for suffix in ("", "-wal", "-shm"):
        source = path.with_name(path.name + suffix)
        if source.exists():
            source.replace(target.with_name(target.name + suffix))
    return target


def declared_gap(
    reason: GapReason, epoch: str | None, from_seq: int | None, now: float
) -> GapRecord:
    """A gap record for blocks of `epoch` from `from_seq` on that will never come."""
    return GapRecord(
        t=iso_time(now),
        reason=reason,
        lost=None,
        epoch=epoch,
        from_seq=from_seq if epoch is not None else None,
    )


def _resealed_gap(epoch: str, from_seq: int, to_seq: int, now: float) -> GapRecord:
    """Seqs of `epoch` that never come there, their readings sealed again in another: none lost."""
    return GapRecord(
        t=iso_time(now),
        reason=GapReason.OUTBOX_RESTORED,
        lost=0,
        epoch=epoch,
        from_seq=from_seq,
        to_seq=to_seq,
    )


def _kept_from(kept: Sequence[GapRecord], *, lost: int | None) -> list[int]:
    """First seqs of the records `kept` that declare `lost` readings (0, or None: unknown)."""
    return [g.from_seq for g in kept if g.from_seq is not None and g.lost == lost]


def _sealed_nothing(journal: EpochJournal, owed: Sequence[GapRecord], file_epoch: str) -> bool:
    """Whether the journal's epoch, whose first block declares `owed`, sealed nothing.

    Its start gave up this very file's epoch (declared); the proof journaled with its entry
    (`record`'s `unsealed`, synced) was never taken back: cut short, or its first block failed.
    A restart loop there starts one such epoch a start, and declared by the next, each added
    a record (the same losses). The seq mark never naming it proves nothing: not synced (a
    power cut), given up on (`seq_mark_given_up`), moved by a copy put back under the agent.
    """
    return journal.latest_sealed_nothing() and file_epoch in {gap.epoch for gap in owed}


def _taken_back(journal: EpochJournal, epoch: str) -> None:
    """`epoch`, found committed: its proof of sealing nothing taken back, else refused."""
    try:
        journal.sealed_in(epoch)
    except ProofStandsError as exc:
        why = "the file holds that epoch; nothing more is sealed in it until it is taken back"
        raise OutboxUnavailableError(f"{exc}: {why}; {exc.remedy}") from exc


def with_owed(gaps: list[GapRecord], owed: Sequence[GapRecord]) -> list[GapRecord]:
    """`gaps`, and those `owed` of epochs they do not declare (an earlier start's, not sealed).

    An owed record of `lost` 0 (seqs whose readings the journal's epoch seals again) reads
    `lost` unknown: the file that would hold them sealed again is gone, replaced or rolled
    back, and the start that declared it may have been cut short before it moved a block.
    """
    declared = {gap.epoch for gap in gaps}
    kept = (replace(g, lost=None) if g.lost == 0 else g for g in owed if g.epoch not in declared)
    return [*gaps, *kept]


def recovery_gaps(
    path: Path,
    journal: EpochJournal,
    noted: Mark | None,
    now: float,
    *,
    busy_timeout: float = OUTBOX_BUSY_TIMEOUT,
    vouch: Callable[[Mark, tuple[str, int] | None], Mark | None],
) -> tuple[list[GapRecord], bool]:
    """Gap records owed for what happened to the file while the agent was away.

    Returns the gaps and whether the file's own epoch must be abandoned too (it is not the
    file last used here). A corrupt file is moved aside first; another program's database
    raises NotAnOutboxError, left as it is. Another process's lock is waited for `busy_timeout`
    seconds (then OutboxUnavailableError).

    `noted`: the seq mark, read before the file is (`vouch`, given the file's epoch and last
    seq: None when the mark, written before its checksum, is not to be trusted). Its writers
    note a seq only once committed (`OutboxFile`), and a file's seq never goes back within an
    epoch but by a rollback: so a file read after the mark and below it lost seals. Read after
    the file, the mark may name a seal another process (the running agent, beside `edge-agent
    backfill`) committed in between: a healthy file taken for one rolled back, a new epoch
    started beside the agent, its blocks declared lost.

    What the journal's latest epoch's first block declares (`EpochJournal.owed`) is declared
    again whenever the file does not show that block committed: the start that began it may
    have been cut short before (a new file's epoch commits before its first block), or the
    file holding it is gone. Sealed again as recorded, it is no new loss at the collector.
    """
    known = journal.latest()
    found = inspect_outbox(path, busy_timeout)
    file_at = (found.epoch, found.last_seq) if isinstance(found, Healthy) else None
    noted = noted if noted is None or noted.checksummed else vouch(noted, file_at)
    committed = isinstance(found, Healthy) and found.epoch == known and found.last_seq > 0
    owed = [] if committed else journal.owed()
    if committed and known is not None:
        _taken_back(journal, known)
    if isinstance(found, Foreign):
        raise NotAnOutboxError(found.why)
    if isinstance(found, Corrupt):
        moved = quarantine(path, now)
        log.error("outbox_corrupt_moved_aside", path=str(path), moved_to=str(moved), why=found.why)
        return with_owed([declared_gap(GapReason.OUTBOX_CORRUPT, known, 1, now)], owed), False
    if isinstance(found, Absent):
        if known is None:
            return [], False  # a first start
        log.error("outbox_lost", path=str(path), why=found.why, epoch=known)
        return with_owed([declared_gap(GapReason.OUTBOX_RESTORED, known, 1, now)], owed), False
    if noted is not None and noted.epoch == found.epoch and noted.seq > found.last_seq:
        # Healthy but older: a WAL cut (or a copy put back) lost seals after this one. The
        # epoch's later seqs can no longer be vouched for, sent or not: lost, unknown. Its
        # undelivered blocks, sealed again under the new epoch, never come in this one either:
        # declared from the lowest, or the collector keeps any it lacks as holes for good,
        # but with nothing lost (their readings come in the new epoch). A start that found it
        # so and was cut short before its new epoch's first block committed may have sealed
        # room made for that block at the lost seqs: the journal kept what it declared.
        kept = [g for g in owed if g.epoch == found.epoch]
        first = min([found.last_seq + 1, *_kept_from(kept, lost=None)])
        undelivered = [] if found.first_undelivered is None else [found.first_undelivered]
        resealed = min([first, *undelivered, *_kept_from(kept, lost=0)])
        log.error(
            "outbox_rolled_back",
            path=str(path),
            epoch=found.epoch,
            last_seq=found.last_seq,
            sealed_through=noted.seq,
            lost_from=first,
            resealed_from=resealed,
        )
        restored = [declared_gap(GapReason.OUTBOX_RESTORED, found.epoch, first, now)]
        if resealed < first:
            restored.insert(0, _resealed_gap(found.epoch, resealed, first - 1, now))
        return with_owed(restored, owed), True
    if known is not None and known != found.epoch:
        # Not the file last used here: an older copy, or another site's. Its seqs and those
        # of the journal's epoch can no longer be vouched for, unless that epoch sealed nothing.
        log.error("outbox_replaced", path=str(path), epoch=found.epoch, expected=known)
        left = _sealed_nothing(journal, owed, found.epoch)
        lost = [found.epoch] if left else [known, found.epoch]
        restored = [declared_gap(GapReason.OUTBOX_RESTORED, e, 1, now) for e in lost]
        return with_owed(restored, owed), True
    if owed:
        # The journal's epoch at seq 0: the start that made the file was cut short after its
        # epoch committed, before its first block did.
        log.error("outbox_first_block_missing", path=str(path), epoch=found.epoch)
    return owed, False
