"""The seq mark kept beside the outbox (`<path>.seq`).

The highest seq sealed, and the tally of readings a stop on a full disk let go unsealed
(`edge_agent.shell.outbox_sidecars` says what it is for, beside the epoch journal).
"""

from __future__ import annotations

import asyncio
import fcntl
import os
import threading
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from pathlib import Path

import structlog

from edge_agent.core.losses import NONE_LOST, LostReadings
from edge_agent.core.seq_mark_record import (
    MARK_BYTES,
    Damaged,
    Mark,
    mark_record,
    read_record,
    unchecked_rollback,
    unvouched,
)
from edge_agent.shell.flock_wait import taken_now, taken_within
from edge_agent.shell.outbox_sidecars import EpochJournal

log = structlog.get_logger("edge_agent.outbox")


def _started_after(epochs: Sequence[str], epoch: str, other: str) -> bool:
    """Whether the journal (`epochs`, oldest first) names both, `epoch` started after `other`."""
    return epoch in epochs and other in epochs and epochs.index(epoch) > epochs.index(other)


@dataclass(frozen=True, slots=True)
class TallyChange:
    """Readings a stop on a full disk let go (added to the tally), or declared (taken off it)."""

    readings: LostReadings
    declared: bool

    def applied(self, noted: LostReadings) -> LostReadings:
        """The tally `noted` with this change made."""
        return noted.less(self.readings) if self.declared else noted.merge(self.readings)


class SeqMarkHeldError(Exception):
    """Another process held the seq mark's lock past the wait (`SeqMark.read_at_opening`)."""


class SeqMark:
    """One fixed-size record, overwritten in place after each seal (one pwrite, no rename).

    Its `flock` is taken without stopping the event loop (`flock_wait`): held by another
    process, it is waited for at most `timeout` s (logged `seq_mark_busy`), then given up on
    (`seq_mark_given_up`), and until that process lets go it is not waited for again. A seal
    not noted meanwhile is noted by the next write (the file's newest seq), a change to the tally is
    kept and made first by the next write that gets the lock, or by `close`. Once the agent is
    stopping (`stopping_by`) no write waits past the stop's deadline, and no read, nor the
    opening's own writes (until `opened`), past the stop itself (`stop`: the agent's, SIGTERM).
    """

    def __init__(
        self, path: Path, timeout: float, journal: EpochJournal, stop: asyncio.Event | None = None
    ) -> None:
        self._path = path
        self._timeout = timeout
        # Which of two epochs is the newer (`write`).
        self._journal = journal
        # Ends a read's wait at once: an opening's is refused (OpeningStoppedError), a later
        # one reads as no mark (MarkKeeper then says the tally this process knows). A read
        # changes nothing: the stop need not wait for it. So for the opening's writes (before
        # `opened`): nothing polled yet, a seal's seq is noted by the next write and a tally
        # change by the close. The running agent's writes end at `_stop_due`.
        self._stop = stop
        self._opening = True
        # This process's changes one at a time, in order: the tally's do not commute.
        self._turn = asyncio.Lock()
        # Changes to the tally not made while the lock was given up on, in order, and the
        # epoch and seq to note with them where there is no mark yet.
        self._deferred: tuple[TallyChange, ...] = ()
        self._deferred_at: tuple[str, int] = ("", 0)
        # Set at the loop time a stop must be done by (`stopping_by`): a write's wait ends
        # then (`flock_wait`'s `cut_short`), whether it began before the stop or after it (its
        # bound stays `timeout`; the close's has none).
        self._stop_due = asyncio.Event()
        self._stop_timer: asyncio.TimerHandle | None = None
        # Set once the process whose lock a wait gave up on has let it go.
        self._let_go: threading.Event | None = None
        self._warned = False
        # A mark with no checksum found damaged (`vouched`): none while the record says it.
        self._distrusted: Mark | None = None

    @classmethod
    def beside(cls, outbox: Path, timeout: float, stop: asyncio.Event | None = None) -> SeqMark:
        """The seq mark of an outbox file (its epochs ordered by the file's journal)."""
        mark = outbox.with_name(outbox.name + ".seq")
        return cls(mark, timeout, EpochJournal.beside(outbox), stop)

    @property
    def path(self) -> Path:
        """The mark's file, beside the outbox."""
        return self._path

    async def read(self) -> Mark | None:
        """The mark, or None when there is none or it cannot be read now (held, given up on).

        A wait for it ends at the stop (`stop`): None too.
        """
        try:
            return await self._read(self._timeout)
        except (SeqMarkHeldError, OSError):
            return None

    async def read_at_opening(self, bound: float) -> Mark | None:
        """The mark, its lock waited for at most `bound` s; None: none, or none to trust.

        A damaged or garbage mark (checksum wrong, fields unreadable: `seq_mark_unreadable`)
        and one this user may not open (root's, after `sudo edge-agent backfill`) are read as
        no mark, as by every reader (`_read`).

        An opening has no loop to keep turning, and a mark not read there is a rollback not
        seen: held past `bound`, SeqMarkHeldError, never None (`outbox_open`). One that cannot
        be read (EIO, EMFILE, no thread to wait on) raises its OSError. The stop ends the wait
        as `bound` does: SeqMarkHeldError (`outbox_open` tells the two apart).
        """
        return await self._read(bound)

    async def _read(self, bound: float) -> Mark | None:
        try:
            descriptor = os.open(self._path, os.O_RDONLY | os.O_CLOEXEC)
        except FileNotFoundError:
            return None
        except PermissionError:
            # Root's 0600 mark, left by `sudo edge-agent backfill`: the agent cannot read or
            # write it until it is given back (`chown`), and refusing every start until then
            # would stop the polling too. Read as no mark, as it always was.
            return None
        # Shared: never a record half written by another process (`_rewrite`).
        ended_by = self._stop_due if self._stop is None else self._stop  # the stop comes first
        if not await self._locked(descriptor, fcntl.LOCK_SH, bound, ended_by):
            raise SeqMarkHeldError(str(self._path))
        try:
            found = read_record(os.pread(descriptor, MARK_BYTES, 0))
        finally:
            os.close(descriptor)  # the lock goes with it
        if isinstance(found, Damaged):
            # No proof of a rollback: distrusted as if absent (docs/reliability.md).
            log.error("seq_mark_unreadable", path=str(self._path), why=found.why)
            return None
        return self.trusted(found)

    def vouched(self, noted: Mark, file_at: tuple[str, int] | None) -> Mark | None:
        """`noted`, with no checksum (the file at `file_at`: epoch, last seq); None: damaged.

        Its tally none (`unvouched`): logged as a damaged mark is (`_read`) with the tally, to
        declare by hand, and no mark while the record says it (the first write replaces it).
        """
        why = unvouched(noted)
        if why is not None:
            thrown = asdict(noted.unsealed)  # count, t_from, t_to
            log.error("seq_mark_unreadable", path=str(self._path), why=why, **thrown)
            self._distrusted = noted
            return None
        said = unchecked_rollback(noted, file_at)
        if said is not None:
            log.warning("seq_mark_unchecked_rollback", path=str(self._path), why=said)
        return noted

    def trusted(self, found: Mark | Damaged | None) -> Mark | None:
        """The mark a record holds, or a mark read (None: none, damaged, distrusted: `vouched`)."""
        if not isinstance(found, Mark) or found == self._distrusted:
            return None
        return found

    async def write(self, epoch: str, seq: int) -> None:
        """Note `seq` as the highest sealed in `epoch`; the tally noted stays as it is."""
        await self._rewrite(epoch, seq, (), seals=True, bound=self._timeout)

    async def let_go(
        self, epoch: str, seq: int, lost: LostReadings, instead_of: LostReadings = NONE_LOST
    ) -> None:
        """Add `lost` to the tally, `instead_of` (added before for them, held) taken off at once.

        `epoch` and `seq` (the writer's last seal) are noted only when the mark has none.
        """
        changes = (TallyChange(instead_of, declared=True), TallyChange(lost, declared=False))
        await self._rewrite(epoch, seq, changes, seals=False, bound=self._timeout)

    async def declared(self, epoch: str, seq: int, named: LostReadings) -> None:
        """Take `named` (read from this mark, now named by a gap record) off the tally."""
        change = TallyChange(named, declared=True)
        await self._rewrite(epoch, seq, (change,), seals=False, bound=self._timeout)

    def _newest(self, noted: Mark, epoch: str, seq: int) -> tuple[str, int]:
        """What a seal (`seq` of `epoch`, read from the file) leaves noted of the two.

        A higher seq of the same epoch stays (another process sealed it, and its write came
        first). So does another epoch the journal names as started after `epoch`: a process
        read its last seq just before another one started that epoch on the file (an agent
        that has not sealed since a backfill's start did), and that epoch's seqs are what a
        start must vouch for. Where the journal does not name both (missing, cut to its last
        16, not written on a full disk) the writer's epoch, just read from the file, wins.
        """
        if noted.epoch == epoch:
            return epoch, max(seq, noted.seq)
        if _started_after(self._journal.epochs(), noted.epoch, epoch):
            return noted.epoch, noted.seq
        return epoch, seq

    async def _rewrite(
        self,
        epoch: str,
        seq: int,
        made: tuple[TallyChange, ...],
        *,
        seals: bool,
        bound: float | None,
    ) -> None:
        """The record read, changed and written under an exclusive `flock`.

        Overwritten in place: once the file exists, a full disk does not stop this. A seal
        (`seals`) notes its seq as `_newest` says, so the mark never goes back, whichever
        writer is slower. The tally is the one noted, changed by `change`: each process adds
        what it let go and takes off what it declared, never writing back a copy of its own
        (one read before another process added to it or declared it). A change to the tally
        alone keeps the epoch and seq noted: the writer's are those of its last seal, maybe
        of an epoch another process has left since (a stop on a full disk seals nothing).
        `bound`: how long the lock may be waited for (None: until the stop's deadline).
        """
        ended_by = self._stop if self._opening and self._stop is not None else self._stop_due
        async with self._turn:
            before = self._deferred
            # Held back until written: a wait given up on or cancelled leaves them for the next
            # write or `close` (a seal's seq is noted by the next write, the file's newest).
            changes = self._deferred = (*before, *(c for c in made if c.readings.count))
            if made:
                self._deferred_at = epoch, seq
            try:
                descriptor = os.open(self._path, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o600)
                if not await self._locked(descriptor, fcntl.LOCK_EX, bound, ended_by):
                    return
                try:
                    self._changed(descriptor, epoch, seq, changes, seals=seals)
                    self._deferred = ()
                finally:
                    os.close(descriptor)  # the lock goes with it
            except OSError as exc:
                self._deferred = before  # as before the lock: this change is not retried
                if not self._warned:
                    self._warned = True
                    log.warning("seq_mark_not_written", path=str(self._path), error=str(exc))

    def _changed(
        self,
        descriptor: int,
        epoch: str,
        seq: int,
        changes: Sequence[TallyChange],
        *,
        seals: bool,
    ) -> None:
        """The record on `descriptor` (locked) read, changed (`_rewrite`) and written."""
        noted = self.trusted(read_record(os.pread(descriptor, MARK_BYTES, 0)))
        unsealed = LostReadings() if noted is None else noted.unsealed
        for change in changes:
            unsealed = change.applied(unsealed)
        if noted is None:
            at = epoch, seq
        else:
            at = self._newest(noted, epoch, seq) if seals else (noted.epoch, noted.seq)
        os.pwrite(descriptor, mark_record(*at, unsealed), 0)

    async def _locked(
        self, descriptor: int, operation: int, bound: float | None, ended_by: asyncio.Event
    ) -> bool:
        """The flock on `descriptor` taken: False, closed, when another process holds it.

        Taken at once when free. Held, it is waited for (on a thread: the loop goes on) at
        most `bound` s (None: no bound) or until `ended_by` is set, and not at all while the
        process a wait gave up on still holds it.
        """
        if taken_now(descriptor, operation):
            return True
        if self._let_go is not None and not self._let_go.is_set():
            os.close(descriptor)
            return False
        log.warning("seq_mark_busy", path=str(self._path), timeout=self._bound(bound, ended_by))
        let_go = threading.Event()
        if await taken_within(descriptor, bound, operation, dropped=let_go, cut_short=ended_by):
            return True
        self._let_go = let_go
        log.warning("seq_mark_given_up", path=str(self._path), timeout=bound)
        return False

    def _bound(self, bound: float | None, ended_by: asyncio.Event) -> float | None:
        """How long a wait may last (logged): `bound`, or less if the stop deadline is sooner."""
        if ended_by is not self._stop_due or self._stop_timer is None:
            return bound
        left = max(0.0, round(self._stop_timer.when() - asyncio.get_running_loop().time(), 3))
        return left if bound is None else min(bound, left)

    def opened(self) -> None:
        """The outbox is open: a write's wait ends at the stop's deadline, no longer at `stop`."""
        self._opening = False

    def stopping_by(self, until: float) -> None:
        """The agent is stopping: no wait for the lock goes past the loop time `until`.

        `_stop_due`, set at `until` (`call_at`), ends every wait then as at its bound, one
        already running when the stop came included (its bound, up to `timeout`, was taken
        when it began).
        """
        if self._stop_timer is not None:
            self._stop_timer.cancel()
        self._stop_timer = asyncio.get_running_loop().call_at(until, self._stop_due.set)

    async def close(self) -> None:
        """The changes to the tally still held back made now, or logged (error) as lost.

        The lock is waited for even while the process a wait gave up on holds it: until the
        stop's deadline (`stopping_by`), or `timeout` (no stop under way). Readings let go
        and not noted are declared by no start (lost silently at the collector); readings
        declared and not taken off are declared again by the next start (the loss twice).
        """
        if not self._deferred:
            return
        self._let_go = None
        began = asyncio.get_running_loop().time()
        # Stopping: until the deadline (`_stop_due`), however short `timeout` is.
        bound = self._timeout if self._stop_timer is None else None
        await self._rewrite(*self._deferred_at, (), seals=False, bound=bound)
        if self._deferred:
            log.error(
                "seq_mark_not_written",
                path=str(self._path),
                error="held at close",
                waited=round(asyncio.get_running_loop().time() - began, 3),
                let_go_not_noted=sum(c.readings.count for c in self._deferred if not c.declared),
                declared_not_taken_off=sum(c.readings.count for c in self._deferred if c.declared),
            )


class MarkKeeper:
    """What the seq mark says as the outbox moves.

    The file's newest block, written beside the file (when there is a mark) after each seal,
    read from the file once it is committed or rolled back, never before (`OutboxFile`). And
    the readings let go unsealed: added to the mark's tally, or taken off it once declared,
    under its lock, so that another process's additions and declarations stay.
    """

    def __init__(self, mark: SeqMark | None, unsealed: LostReadings | None) -> None:
        self._mark = mark
        # The tally as this process last knew it: the mark's, when it cannot be read.
        self._unsealed = unsealed if unsealed is not None else LostReadings()
        self._last: tuple[str, int] = ("", 0)

    async def unsealed(self) -> LostReadings:
        """Readings let go unsealed (by a stop on a full disk) and not yet named by a gap.

        As the mark notes them now: another process may have added some or declared them.
        """
        noted = None if self._mark is None else await self._mark.read()
        return self._unsealed if noted is None else noted.unsealed

    def found(self, epoch: str, seq: int) -> None:
        """The file's last block at opening: noted, not written (the mark may say more)."""
        self._last = (epoch, seq)

    async def sealed(self, epoch: str, seq: int) -> None:
        """The file's newest block, read after a seal: `seq` of `epoch`."""
        self._last = (epoch, seq)
        if self._mark is not None:
            await self._mark.write(*self._last)

    async def let_go(self, lost: LostReadings, instead_of: LostReadings = NONE_LOST) -> None:
        """Readings let go unsealed (or at risk) added to the tally, `instead_of` taken off.

        The last block this process sealed or found is noted only where no mark was yet.
        """
        self._unsealed = self._unsealed.less(instead_of).merge(lost)
        if self._mark is not None:
            await self._mark.let_go(*self._last, lost, instead_of)

    def stopping_by(self, until: float) -> None:
        """The agent is stopping: no wait for the mark goes past the loop time `until`."""
        if self._mark is not None:
            self._mark.stopping_by(until)

    async def declared(self, named: LostReadings) -> None:
        """Readings of the tally (as `unsealed` said it) now named by a gap: taken off it."""
        self._unsealed = self._unsealed.less(named)
        if self._mark is not None:
            await self._mark.declared(*self._last, named)
