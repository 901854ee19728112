"""Opening the outbox file: what a restart finds there, the space budget, then the `Outbox`.

Before the first seal the file is checked against the epoch journal and the seq mark beside
it (`edge_agent.shell.outbox_recovery`): a corrupt file is moved aside, a lost or rolled-back
one is named, and the gap records that say so are sealed into the first block of the file
opened. Undelivered blocks of older epochs are sealed again under the current one. A file
that cannot be checked or opened for another cause (a lock, a full disk) is left as it is:
`OutboxUnavailableError`.
"""

from __future__ import annotations

import asyncio
import os
import sqlite3
import tempfile
import time
from collections.abc import AsyncIterator, Iterator
from contextlib import AsyncExitStack, asynccontextmanager, contextmanager
from pathlib import Path

import aiosqlite
import structlog

from configkit.issues import not_a_regular_file
from edge_agent.core.chain import Identity
from edge_agent.core.losses import LostReadings
from edge_agent.core.plan import (
    OUTBOX_BUSY_TIMEOUT,
    OUTBOX_EPOCH_LOCK_TIMEOUT,
    OUTBOX_SEQ_MARK_TIMEOUT,
)
from edge_agent.core.seq_mark_record import Mark
from edge_agent.shell.outbox import Outbox
from edge_agent.shell.outbox_epoch_lock import EpochLock, OpeningStoppedError
from edge_agent.shell.outbox_recovery import (
    NotAnOutboxError,
    OutboxUnavailableError,
    foreign_database,
    outbox_unavailable,
    recovery_gaps,
)
from edge_agent.shell.outbox_seq_mark import SeqMark, SeqMarkHeldError
from edge_agent.shell.outbox_sidecars import EpochJournal
from edge_agent.shell.outbox_space import Reserve, SpaceBudget, claim_reserve
from edge_agent.shell.stop_signals import STOP_SIGNALS
from hostkit.ownership import root_among_others_files
from hostkit.signal_mask import signals_blocked
from specs.signing import SigningKey

log = structlog.get_logger("edge_agent.outbox")


def outbox_path_problem(path: Path, *, try_writing: bool) -> str | None:
    """Why the outbox cannot be at `path` (None when it can), without creating anything.

    The file may be missing (it is created) but not be a folder, a device, a link to
    nothing or another program's database, and the nearest folder above it that exists must
    be a folder (not a link to nothing). `try_writing`: also create and remove a temporary
    file there, the one sure test (root may write where modes forbid, and not in /proc); the
    program that will open the outbox does it, a mere check of the map does not. A folder on
    the way that this user may not look into is named too (`check` run as another user than
    the agent's, say).
    """
    try:
        return (
            _file_problem(path)
            or _folder_problem(path, try_writing=try_writing)
            or foreign_database(path)
        )
    except PermissionError as exc:  # stat refused on the way, before any question was answered
        return _closed_folder_problem(path, exc)


def outbox_folder_problem(path: Path) -> str | None:
    """Why the outbox's folder cannot be there: a file, or a link to nothing, in its place.

    For the commands that only read an outbox (`status`, `outbox ...`): without it, such a
    state folder read as an outbox not made yet. A folder this user may not look into is left
    to the reading (None), which names it.
    """
    try:
        return _folder_problem(path, try_writing=False)
    except PermissionError:
        return None


# Files kept beside the outbox: SQLite's, the agent's lock (agent_lock), the epoch lock
# (outbox_epoch_lock), its disk reserve (outbox_space), the seq mark (outbox_seq_mark), the
# epoch journal (outbox_sidecars) and the command desk's state (commands). A folder in the
# place of one would make the outbox look corrupt (moved aside with its backlog) or end the
# start in a traceback; a FIFO would hold the start for ever in the open() of it.
_BESIDE = (
    "-wal",
    "-shm",
    ".agent-lock",
    ".epoch-lock",
    ".reserve",
    ".seq",
    ".epochs",
    ".commands.json",
)


def _file_problem(path: Path) -> str | None:
    if path.exists():
        if path.is_dir():
            return f"{path} is a folder, not a file"
        if not path.is_file():
            return f"{path} is not a regular file"
    elif path.is_symlink():
        return _link_to_nowhere(path)
    for beside in (path.with_name(path.name + suffix) for suffix in _BESIDE):
        if beside.is_dir():
            return f"{beside} is a folder, not a file"
        instead = _not_a_file(beside)
        if instead is not None:
            return f"{beside}: not a file but {instead}; remove it (the agent keeps a file there)"
    return None


def _not_a_file(path: Path) -> str | None:
    """What is at `path` instead of a file (a FIFO, a device), or None (a file, or nothing)."""
    try:
        return not_a_regular_file(path.stat().st_mode)
    except (FileNotFoundError, NotADirectoryError):  # a file as its folder: named after this
        return None


def _folder_problem(path: Path, *, try_writing: bool) -> str | None:
    folder = next(above for above in path.parents if above.exists() or above.is_symlink())
    if not folder.exists():  # a link to a folder not there: a data partition not mounted
        return _link_to_nowhere(folder)
    if not folder.is_dir():
        return f"{folder} is not a folder"
    if try_writing:
        return root_among_others_files(path, folder) or _uncreatable(folder) or _unwritable(path)
    return None


def _unwritable(path: Path) -> str | None:
    """The outbox file or its -wal or -shm that is there and this user may not write.

    SQLite opens such a file read-only without a word: every seal would then fail.
    """
    for name in (path.name, f"{path.name}-wal", f"{path.name}-shm"):
        try:
            os.close(os.open(path.with_name(name), os.O_WRONLY | os.O_NONBLOCK))
        except FileNotFoundError:
            continue
        except OSError as exc:
            return f"cannot write {path.with_name(name)}: {exc.strerror or exc}"
    return None


def _uncreatable(folder: Path) -> str | None:
    try:
        descriptor, probe = tempfile.mkstemp(prefix=".outbox-probe-", dir=folder)
        os.close(descriptor)
        Path(probe).unlink()
    except OSError as exc:
        return f"cannot create files in {folder}: {exc.strerror or exc}"
    return None


def _closed_folder_problem(path: Path, error: PermissionError) -> str:
    """Which folder above `path` this user may not look into (search permission), if one."""
    for folder in reversed(path.parents):  # from / down: the first one closed is the cause
        if not os.access(folder, os.X_OK):
            return f"cannot look into {folder}: {error.strerror}"
    return f"cannot look at {path}: {error.strerror}"


def _link_to_nowhere(link: Path) -> str:
    return f"{link} links to {link.readlink()}, which is not there"


def _budget_and_reserve(
    path: Path, max_bytes: int | None
) -> tuple[SpaceBudget | None, Reserve | None]:
    """The space budget and the disk reserve beside `path` (`claim_reserve`); none without one."""
    if max_bytes is None:
        return None, None
    wanted = SpaceBudget(max_bytes)
    budget, reserve, claimed = claim_reserve(path, wanted)
    if not claimed:
        log.warning(
            "outbox_reserve_not_claimed",
            reason=reserve.refused or "the disk has no room",
            wal_bytes=budget.wal_bytes,
        )
    elif budget != wanted:
        log.warning(
            "outbox_reserve_reduced",
            reason="the disk has no room for the whole reserve",
            reserve_bytes=reserve.size,
            wanted_bytes=wanted.reserve_bytes,
            wal_bytes=budget.wal_bytes,
        )
    return budget, reserve


@contextmanager
def _opening(path: Path) -> Iterator[None]:
    """SQLite's errors while the checked file is opened: OutboxUnavailableError.

    A lock held past the busy timeout or a full disk says nothing of the file: it stays.
    """
    try:
        yield
    except sqlite3.Error as exc:
        raise outbox_unavailable(path, exc, "open") from exc


async def _mark_at_opening(mark: SeqMark, stop: asyncio.Event | None) -> Mark | None:
    """The seq mark, waited for as long as the epoch lock is (no loop runs yet to keep turning).

    Held past that (`edge-agent backfill` stopped with Ctrl-Z), the start is refused, nothing
    changed: read as no mark, a file rolled back below it would go unseen and its lost seqs
    be sealed again over what the collector may hold, silently. Refused, systemd starts the
    agent again every 5 s, and the first start after the holder lets go checks the file.
    A wait `stop` ended (the mark's, given it) is no refusal: OpeningStoppedError.
    """
    try:
        return await mark.read_at_opening(OUTBOX_EPOCH_LOCK_TIMEOUT)
    except SeqMarkHeldError as exc:
        if stop is not None and stop.is_set():
            raise OpeningStoppedError(f"stopped while waiting for {mark.path}") from None
        raise OutboxUnavailableError(
            f"{exc}: another process (`edge-agent backfill`, maybe stopped with Ctrl-Z) has"
            f" held the outbox's seq mark for {OUTBOX_EPOCH_LOCK_TIMEOUT:g} s; without it a"
            " rolled-back file cannot be told: nothing was changed, resume (`fg`) or end it"
        ) from exc
    except OSError as exc:  # there but unreadable (EIO, EMFILE): no more "no mark" than held
        raise OutboxUnavailableError(
            f"{mark.path}: cannot read the outbox's seq mark ({exc.strerror or exc}); without"
            " it a rolled-back file cannot be told: nothing was changed"
        ) from exc


@asynccontextmanager
async def open_outbox(
    path: Path,
    identity: Identity,
    key: SigningKey,
    *,
    max_bytes: int | None = None,
    clock_synced: bool = False,
    busy_timeout: float = OUTBOX_BUSY_TIMEOUT,
    stop: asyncio.Event | None = None,
) -> AsyncIterator[Outbox]:
    """Open (or create) the outbox at `path`, after checking what happened to it.

    A corrupt file is moved aside and a lost one is named: either way a gap record is sealed
    into the first block of the file opened. `max_bytes` enforces a space budget. A file that
    cannot be checked or opened for another cause raises OutboxUnavailableError, and stays
    (another process's lock, once it has held for `busy_timeout` seconds);
    another program's database raises NotAnOutboxError, and stays as it was. `stop` set while
    the opening waits for the epoch lock or the seq mark (each up to 120 s, held by another
    process) gives the wait up, and set by the time they are done (a lock taken as the stop
    came) it ends the opening there: OpeningStoppedError, nothing changed. Set later, it is
    the caller's to honour (the opening goes on to its end); the outbox's reads of the mark
    are given up on once it is set (`SeqMark`).
    """
    path.parent.mkdir(parents=True, exist_ok=True)
    foreign = foreign_database(path)
    if foreign is not None:  # refused before the epoch lock is made beside it
        raise NotAnOutboxError(foreign)
    journal = EpochJournal.beside(path)
    mark = SeqMark.beside(path, OUTBOX_SEQ_MARK_TIMEOUT, stop)
    epoch_lock = EpochLock.beside(path, OUTBOX_EPOCH_LOCK_TIMEOUT)
    now = time.time()
    async with AsyncExitStack() as resources:
        # Last out: the changes to the tally a held mark kept back made (or logged as lost).
        resources.push_async_callback(mark.close)
        # Held until the epoch opened is journaled and committed: another process's epoch
        # start (the running agent's, beside `edge-agent backfill`) journals its epoch before
        # its first block commits, and the check below would take that file for another copy.
        checking = AsyncExitStack()
        resources.push_async_exit(checking)
        # `stop` ends either wait as its bound does (`flock_wait.taken_within`'s `cut_short`,
        # as the stop's deadline ends the running agent's): its thread lets a lock it takes
        # later go. Nothing is cancelled, so a stop never lands part-way through what follows.
        await checking.enter_async_context(epoch_lock.held(stop=stop))
        # Read before the file is checked: a seal the running agent commits meanwhile (this
        # may be `edge-agent backfill`) then moves the file, never the mark, past what was
        # compared.
        noted = await _mark_at_opening(mark, stop)
        if stop is not None and stop.is_set():  # came as a lock was taken: nothing written yet
            raise OpeningStoppedError(f"stopped while opening {path}")
        gaps, abandon = recovery_gaps(
            path, journal, noted, now, busy_timeout=busy_timeout, vouch=mark.vouched
        )
        noted = mark.trusted(noted)  # as `vouched` left it
        # isolation_level=None: we issue BEGIN IMMEDIATE ourselves, so a write never upgrades
        # a read lock (SQLite answers that with SQLITE_BUSY at once, ignoring the busy
        # timeout). Its worker thread is born blocking the stop signals
        # (edge_agent.shell.stop_signals): one that came meanwhile waits the few milliseconds
        # of the connect.
        with _opening(path), signals_blocked(STOP_SIGNALS):
            db = await aiosqlite.connect(path, isolation_level=None, timeout=busy_timeout)
        resources.push_async_callback(db.close)
        with _opening(path):
            budget, reserve = _budget_and_reserve(path, max_bytes)
            outbox = Outbox(
                db,
                identity,
                key,
                budget=budget,
                path=path,
                journal=journal,
                reserve=reserve,
                mark=mark,
                unsealed=None if noted is None else noted.unsealed,
                epoch_lock=epoch_lock,
            )
            # A new file's first block carries the gaps (abandon: the file has its epoch).
            first_block = () if abandon else gaps
            await outbox._init(first_block)  # noqa: SLF001 - the factory finishes construction
            if abandon:
                await outbox.start_new_epoch(gaps, now=now, clock_synced=clock_synced)
            elif gaps:
                await outbox.seal(tuple(gaps), now=now, clock_synced=clock_synced)
            # Only an epoch the journal does not name (a first start, a new file, a journal
            # lost): one it names may be older than one another process started since, and
            # recorded again it would move to the end and wipe what that start's first block
            # owes.
            if outbox.epoch not in journal.epochs():
                journal.record(outbox.epoch)
            await checking.aclose()
            await outbox.reseal_older_epochs(now=now, clock_synced=clock_synced)
            # Written now, while the disk may have room: later it is only overwritten in place
            # (nothing added: the tally noted there stays).
            await outbox.note_unsealed(LostReadings())
        mark.opened()
        yield outbox
