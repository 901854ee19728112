"""The import's shell: stream a CSV file through the row parser into sealed outbox blocks.

Memory stays flat whatever the file size: rows are read one at a time and at most one block's
readings are held. A (point, t) held already is found without remembering the file: within
the block being built by a dict, and against everything the outbox holds (live readings the
agent sealed, earlier blocks of this run, earlier runs) by the time span of its blocks
(`outbox_held`), and the `backfill_keys` each import's seal writes in its own transaction
(retention deletes them with the delivered blocks that carry their readings: `outbox_prune`).
The same value and quality is a duplicate, another a conflict, named (`held_readings`). One
import at a time per outbox (a lock file beside it), so the look-up and the seal that follows
it cannot race another import of the same rows.
"""

from __future__ import annotations

import csv
import errno
import fcntl
import io
import os
import re
import sqlite3
import stat
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Final, Protocol, Self

from configkit.issues import not_a_regular_file
from edge_agent.backfill.rows import Columns, HeaderError, Rejection, RowParser, parse_header
from edge_agent.core.held_readings import Key, compare, described, same_reading
from edge_agent.shell.outbox import Outbox
from edge_agent.shell.outbox_spans import SpanMemo
from specs.block import MAX_BLOCK_READINGS
from specs.records import Reading

BLOCK_READINGS: Final = MAX_BLOCK_READINGS
"""Readings per sealed block: large blocks keep the per-block cost (hash, signature, fsync)
small against the per-reading cost; about 600 KB of JSON each, the largest an agent seals."""

MAX_LINE: Final = 1 << 20
"""Characters of one line the reader holds, its line end not counted: a longer one (a binary
file's worth of bytes with no line end) is rejected and skipped a piece at a time. A data row
is far shorter; the CSV reader refuses a field of more than 131072 characters anyway."""
_LINE_ENDS: Final = ("\n", "\r")
_PIECE: Final = MAX_LINE + len("\r\n")
"""What one read takes: a line of MAX_LINE characters with its CR LF, whole. A read cut at
MAX_LINE split such a CR LF: its LF came back as a line of its own, and every later row was
reported a line too far."""

# The surrogateescape decoder turns each byte that is not UTF-8 into one of these.
_UNDECODABLE: Final = re.compile("[\udc80-\udcff]")


class CsvFileError(Exception):
    """The file as a whole cannot be imported: unreadable, empty, or a bad header row."""


class OutboxWriteError(Exception):
    """The outbox refused a look-up or a seal (disk full, I/O error, not an outbox file)."""

    def __init__(self, message: str, imported: int) -> None:
        super().__init__(message)
        self.imported = imported


@dataclass(frozen=True, slots=True)
class ImportCounts:
    """What one import did: `--json` prints these.

    `interrupted_after` is the last line handled when the import was asked to stop before the
    end of the file (every row up to it was imported, counted duplicate, conflict or
    rejected); None when it read the whole file. `conflict`: rows not imported because the
    outbox or an earlier row holds their (point, t) with another value or quality.
    `let_go`: readings the outbox let go for good (thinned away or dropped, oldest first) to
    make room for this import's seals, as its room-making counts them (`RoomMaker.let_go`):
    imported ones among them are forgotten, so that the same file imported again, once there
    is room, brings them back.
    """

    imported: int
    duplicate: int
    rejected: int
    seconds: float
    interrupted_after: int | None = None
    conflict: int = 0
    let_go: int = 0


class Progress(Protocol):
    """Where the import reports rejected rows and how far into the file it is."""

    def rejected(self, line: int, reason: str) -> None:
        """Row starting at `line` (1-based) was skipped for `reason`."""

    def conflicted(self, line: int, other: str) -> None:
        """Row at `line` was not imported: `other` holds its (point, t) with another value."""

    def advanced(self, position: int) -> None:
        """`position` bytes of the file have been read and their rows handled."""


class _LineTooLongError(Exception):
    """The line being read is longer than MAX_LINE; the reader has skipped to its end."""


class _QuoteLeftOpenError(Exception):
    """The CSV reader asked for a second line for one row: a quote was left open."""


class _BoundedLines:
    """The lines of a text stream for the CSV reader, one per row, none longer than MAX_LINE.

    No cell of the import (point, time, value, quality, unit) can hold a line break, so a row
    is one line: when the reader asks for another line before its row is done (a quote left
    open), `_QuoteLeftOpenError` ends that row and the line stays for the next one. Else the
    reader would take the following lines into the open cell, up to its field limit of
    131,072 characters: thousands of good rows gone as one rejected row.

    An iterator, not a generator: after an error it goes on with the next line.
    """

    def __init__(self, text: io.TextIOWrapper) -> None:
        self._text = text
        self.count = 0
        """Lines taken from the stream so far, the skipped ones included."""
        self._row_has_its_line = False
        self._cut_after_cr = False  # the last piece ended at a CR where a read was cut

    def __iter__(self) -> Self:
        return self

    def next_row(self) -> None:
        """The reader starts a row: it may take one line."""
        self._row_has_its_line = False

    def __next__(self) -> str:
        if self._row_has_its_line:
            raise _QuoteLeftOpenError
        self._row_has_its_line = True
        line = self._piece()
        if not line:
            raise StopIteration
        self.count += 1
        if len(line.rstrip("\r\n")) > MAX_LINE:  # a line holds no CR or LF but its end
            if not line.endswith(_LINE_ENDS):
                self._skip_rest_of_line()
            raise _LineTooLongError
        return line

    def _piece(self) -> str:
        """Up to _PIECE characters of the stream, to the end of a line at most."""
        piece = self._text.readline(_PIECE)
        if self._cut_after_cr and piece == "\n":
            # The LF of a CR LF the last read was cut between: the end of that line.
            piece = self._text.readline(_PIECE)
        self._cut_after_cr = len(piece) == _PIECE and piece.endswith("\r")
        return piece

    def _skip_rest_of_line(self) -> None:
        while piece := self._piece():
            if piece.endswith(_LINE_ENDS):
                return


def _open_csv(path: Path) -> int:
    """A blocking descriptor of `path`; CsvFileError for a device or FIFO (but stdin's)."""
    try:
        descriptor = os.open(path, os.O_RDONLY | os.O_CLOEXEC | os.O_NONBLOCK)
    except OSError as exc:
        raise CsvFileError(f"{path}: {exc.strerror or exc}") from None
    status = os.fstat(descriptor)
    if stat.S_ISDIR(status.st_mode):
        os.close(descriptor)
        raise CsvFileError(f"{path}: {os.strerror(errno.EISDIR)}")
    instead = not_a_regular_file(status.st_mode)
    if instead is not None and not (stat.S_ISFIFO(status.st_mode) and _is_stdin(status)):
        os.close(descriptor)
        hint = " (or pipe it in as --csv /dev/stdin)" if stat.S_ISFIFO(status.st_mode) else ""
        raise CsvFileError(f"{path}: not a file but {instead}; give a CSV file{hint}")
    os.set_blocking(descriptor, True)
    return descriptor


def _is_stdin(status: os.stat_result) -> bool:
    try:
        return os.path.samestat(status, os.fstat(0))
    except OSError:  # no stdin
        return False


class CsvSource:
    """A CSV file read as a stream: its header, then (line, cells) per data row.

    UTF-8 with or without a BOM. Bytes that are not UTF-8 reach the parser as lone
    surrogates, so such a row is rejected (with its line) instead of stopping the file.
    """

    def __init__(self, path: Path) -> None:
        self.path = path
        # /dev/zero and the like never end a line nor the file, a FIFO with no writer never
        # opens: refused, not read.
        self._binary = os.fdopen(_open_csv(path), "rb")
        self._text = io.TextIOWrapper(
            self._binary, encoding="utf-8-sig", errors="surrogateescape", newline=""
        )
        self._lines = _BoundedLines(self._text)
        self._reader = csv.reader(self._lines)
        self.size = path.stat().st_size
        self.header_line, header = self._header()
        try:
            self.columns: Columns = parse_header(header)
        except HeaderError as exc:
            self.close()
            raise CsvFileError(f"{path}:{self.header_line}: {exc}") from None

    def _header(self) -> tuple[int, list[str]]:
        for line, cells in self._records():
            if isinstance(cells, Rejection):
                self.close()
                raise CsvFileError(f"{self.path}:{line}: header: {cells.reason}")
            if _UNDECODABLE.search("".join(cells)):
                self.close()
                raise CsvFileError(f"{self.path}:{line}: header: not UTF-8 text")
            return line, cells
        self.close()
        raise CsvFileError(f"{self.path}: no header row (the file is empty)")

    def _records(self) -> Iterator[tuple[int, list[str] | Rejection]]:
        reader = self._reader
        while True:
            start = self._lines.count + 1
            self._lines.next_row()
            try:
                cells = next(reader)
            except StopIteration:
                return
            except _LineTooLongError:
                yield start, Rejection(f"a line longer than {MAX_LINE} characters")
                continue
            except _QuoteLeftOpenError:
                yield start, Rejection("a quote opened on this line is not closed on it")
                continue
            except csv.Error as exc:
                # The reader starts afresh with the next record after an error.
                yield start, Rejection(f"not CSV: {exc}")
                continue
            except OSError as exc:
                raise CsvFileError(f"{self.path}:{start}: {exc.strerror or exc}") from None
            if cells:  # blank lines carry nothing
                yield start, cells

    def rows(self) -> Iterator[tuple[int, list[str] | Rejection]]:
        """Each data row after the header: its first line and its cells (or why not CSV)."""
        return self._records()

    @property
    def position(self) -> int:
        """Bytes read from the file so far."""
        return self._binary.tell()

    def close(self) -> None:
        """Close the file."""
        self._text.close()


def rejection_reason(cells: list[str] | Rejection, rejection: Rejection) -> str:
    """The reason to print: undecodable bytes explain any rejection of the row they are in."""
    if not isinstance(cells, Rejection) and _UNDECODABLE.search("".join(cells)):
        return "not UTF-8 text"
    return rejection.reason


async def import_rows(
    source: CsvSource,
    parser: RowParser,
    outbox: Outbox,
    *,
    progress: Progress,
    clock_synced: Callable[[], bool],
    block_readings: int = BLOCK_READINGS,
    stopped: Callable[[], bool] = lambda: False,
) -> ImportCounts:
    """Import every row of `source`, or those before `stopped()` says so; return the counts.

    A stop is looked for before each row; the readings of the rows read before it are sealed,
    so that importing the file again takes up at the next row.

    Raises:
        OutboxWriteError: the outbox failed; what was sealed before stays (and counts as
            duplicate when the file is imported again).
    """
    started = time.monotonic()
    let_go_before = outbox.room.let_go
    imported = duplicate = rejected = conflict = 0
    interrupted_after: int | None = None
    handled = source.header_line
    pending: dict[Key, tuple[int, Reading]] = {}
    memo = SpanMemo()
    for line, cells in source.rows():
        if stopped():
            interrupted_after = handled
            break
        handled = line
        result = cells if isinstance(cells, Rejection) else parser.parse(cells)
        if isinstance(result, Rejection):
            rejected += 1
            progress.rejected(line, rejection_reason(cells, result))
            continue
        key = (result.point, result.t)
        earlier = pending.get(key)
        if earlier is not None:  # the first row of a (point, t) is the one taken
            if same_reading(result, earlier[1]):
                duplicate += 1
            else:
                conflict += 1
                progress.conflicted(line, f"line {earlier[0]} ({described(earlier[1])})")
            continue
        pending[key] = (line, result)
        if len(pending) >= block_readings:
            counts = await _seal(outbox, pending, memo, clock_synced, imported, progress)
            imported, duplicate, conflict = _added((imported, duplicate, conflict), counts)
            pending = {}
            progress.advanced(source.position)
    if pending:
        counts = await _seal(outbox, pending, memo, clock_synced, imported, progress)
        imported, duplicate, conflict = _added((imported, duplicate, conflict), counts)
    progress.advanced(source.size if interrupted_after is None else source.position)
    return ImportCounts(
        imported,
        duplicate,
        rejected,
        time.monotonic() - started,
        interrupted_after,
        conflict,
        let_go=outbox.room.let_go - let_go_before,
    )


def _added(counts: tuple[int, int, int], more: tuple[int, int, int]) -> tuple[int, int, int]:
    return counts[0] + more[0], counts[1] + more[1], counts[2] + more[2]


async def _seal(  # noqa: PLR0917 - one batch's look-up and seal, and where it reports
    outbox: Outbox,
    pending: dict[Key, tuple[int, Reading]],
    memo: SpanMemo,
    clock_synced: Callable[[], bool],
    before: int,
    progress: Progress,
) -> tuple[int, int, int]:
    """Seal the readings of `pending` the outbox does not hold: (sealed, duplicate, conflict).

    Those it holds with another value or quality are reported as conflicts, by line.
    """
    readings = {key: reading for key, (_, reading) in pending.items()}
    try:
        compared = compare(readings, await outbox.held_readings(list(readings), memo))
        if compared.fresh:
            await outbox.seal(
                tuple(readings[key] for key in compared.fresh),
                now=time.time(),
                clock_synced=clock_synced(),
                backfill_keys=compared.fresh,
            )
    except sqlite3.Error as exc:
        raise OutboxWriteError(f"outbox: {exc}", before) from None
    for key, kept in compared.conflicts:
        held = f"a reading already in the outbox ({described(kept)}), which is kept"
        progress.conflicted(pending[key][0], held)
    return len(compared.fresh), compared.duplicate, len(compared.conflicts)


@contextmanager
def exclusive_import(outbox_path: Path, on_wait: Callable[[], None]) -> Iterator[None]:
    """Hold the outbox's import lock (`<outbox>.backfill-lock`), waiting for another import.

    Raises:
        OutboxWriteError: the lock file cannot be created.
    """
    lock_path = outbox_path.with_name(outbox_path.name + ".backfill-lock")
    try:
        lock_path.parent.mkdir(parents=True, exist_ok=True)
        handle = lock_path.open("a")
    except OSError as exc:
        raise OutboxWriteError(f"{lock_path}: {exc.strerror or exc}", 0) from None
    with handle:
        try:
            fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            on_wait()
            fcntl.flock(handle, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)
