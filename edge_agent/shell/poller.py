"""One task per device: poll on a monotonic cadence, reconnect with backoff, never crash.

One measurement, one reading: a driver may report a value it reported before with the same
time stamp (a free-running serial instrument between two lines says ``held`` and keeps the
line's arrival time). Such a sample would be a second reading with the same (point, t), so the
poller drops every reading whose time equals the previous reading of that point; the
instrument's own cadence then shows in the readings. Drivers that re-stamp a repeat with the
time of the read (OPC UA's ``held``) are unaffected: their readings have new times.

A driver whose device pushes values (`PushingDriver`, an OPC UA subscription) is not left
waiting for the next tick: the poller spends the time between ticks taking what it pushes and
hands each batch on as it arrives; the read at the tick then gives the points nothing was
pushed for (``held`` repeats, so a quiet point still yields a reading every poll).

Reconnect delays grow until a read succeeds, not merely a connect: a Modbus RTU slave's
connect only joins its bus, so a silent slave is retried after ever longer pauses instead of
costing the shared bus a timeout every few cycles. Meanwhile every cycle still gives one BAD
reading per point (``link_down``), so a dead device shows as BAD, never as missing.
"""

from __future__ import annotations

import asyncio
import operator
import time
from collections.abc import Awaitable, Callable, Iterator, Sequence
from dataclasses import dataclass, replace

import structlog

from drivers.base import (
    ColumnarDriver,
    DecodeError,
    Driver,
    DriverConnectionError,
    DriverError,
    DriverProtocolError,
    DriverTimeoutError,
    PushingDriver,
    Quality,
    RawSample,
    ReadColumns,
)
from edge_agent.core.agent_status import DeviceFault
from edge_agent.core.clockwatch import FLAG as CLOCK_JUMP
from edge_agent.core.clockwatch import ClockWatch
from edge_agent.core.normalize import PointNormalizer, normalize_columns, normalize_read
from edge_agent.core.points import ResolvedPoint
from specs.catalogue import Indicator
from specs.records import Quality as ReadingQuality
from specs.records import Reading, Record, iso_time

log = structlog.get_logger("edge_agent.poller")

_POINT = operator.attrgetter("point")


@dataclass(frozen=True, slots=True)
class PolledPoint:
    """A point as the poller needs it: its resolved config and its indicator."""

    point: ResolvedPoint
    indicator: Indicator


Sink = Callable[[Sequence[Reading]], Awaitable[None]]
"""Where a poller hands the readings of one cycle, in order (it waits while the sink is full)."""


def queue_sink(
    queue: asyncio.Queue[Record] | asyncio.Queue[Reading], good: asyncio.Event | None = None
) -> Sink:
    """A sink that puts each reading into `queue`, waiting only while the queue is full.

    `good`, when given, is set once a GOOD reading has been queued (the end of a pushed
    map's probation, `CommandDesk`): checked per batch, and no more once set.
    """

    async def put_all(readings: Sequence[Reading]) -> None:
        for reading in readings:
            try:
                queue.put_nowait(reading)
            except asyncio.QueueFull:
                await queue.put(reading)
        if (
            good is not None
            and not good.is_set()
            and any(reading.quality is ReadingQuality.GOOD for reading in readings)
        ):
            good.set()

    return put_all


# A device polled faster than it answers overruns every cycle: say so at once, then at most
# this often (with the slots missed meanwhile), not one log line per cycle.
OVERRUN_LOG_EVERY = 60.0

POINT_ERROR = "point"
"""The error kind of a point read BAD (with an error) in a read that otherwise succeeded."""


def error_kind(error: DriverError) -> str:
    """The kind of a failed connect or read, for `gz_agent_device_errors_total{kind}`."""
    match error:
        case DriverTimeoutError():
            return "timeout"
        case DriverConnectionError():
            return "connection"
        case DriverProtocolError():
            return "protocol"
        case DecodeError():
            return "decode"
        case _:
            return "other"


def _ignore_error(_kind: str) -> None:
    """Count nothing (a poller without metrics)."""


def _reraise_cancellation(error: DriverError) -> None:
    """Raise CancelledError if this task is being cancelled.

    A library may turn the CancelledError it received into its own I/O error (pymodbus
    does, mid-transaction); taken for a link fault, that would keep a cancelled poller
    polling forever and hang the agent's shutdown.
    """
    task = asyncio.current_task()
    if task is not None and task.cancelling():
        raise asyncio.CancelledError from error


class DevicePoller:
    """Poll one device every `interval` seconds of the monotonic clock."""

    def __init__(
        self,
        driver: Driver,
        points: dict[str, PolledPoint],
        *,
        interval: float,
        sink: Sink,
        clock_synced: Callable[[], bool],
        backoff: Callable[[], Iterator[float]],
        wall_clock: Callable[[], float] = time.time,
        on_error: Callable[[str], None] = _ignore_error,
    ) -> None:
        """Poll `driver` for `points`; `on_error` hears each device error's kind.

        The kinds: `error_kind` of every failed connect or read, and POINT_ERROR for every
        point a successful read gave BAD with an error.
        """
        self._driver = driver
        self._pushing = driver if isinstance(driver, PushingDriver) else None
        self._on_error = on_error
        self._wall_clock = wall_clock
        self._points = points
        self._normalizers = {
            key: PointNormalizer.of(polled.point, polled.indicator)
            for key, polled in points.items()
        }
        self._interval = interval
        self._sink = sink
        self._clock_synced = clock_synced
        self._new_backoff = backoff
        # point -> its last reading emitted
        self._last_seen: dict[str, Reading] = {}
        # No reading emitted so far has a later time text than this (None: none emitted).
        # A read whose times all come after it cannot repeat a reading: no check per point.
        self._latest_t: str | None = None
        # A columnar driver's reads skip a sample object per point (ReadColumns); its
        # normalizers are lined up with its keys at the first such read.
        self._read_columns = driver.read_columns if isinstance(driver, ColumnarDriver) else None
        self._lined_up: tuple[tuple[str, ...], tuple[PointNormalizer | None, ...], bool] = (
            (),
            (),
            True,
        )
        self.cycles = 0
        # Set once the first cycle is done, answered or not: the agent is ready (READY=1)
        # when every device has been tried once.
        self.first_cycle_done = asyncio.Event()
        self._clock_watch = ClockWatch()
        self.repeats_dropped = 0
        self._missed = 0  # poll slots skipped since the last poll_overrun line
        self._overrun_said_at: float | None = None
        # For `edge-agent status`: when a good reading last came (wall clock), and what last
        # went wrong.
        self.last_good: float | None = None
        self.last_error: DeviceFault | None = None

    async def run(self) -> None:
        """Poll forever; cancel to stop."""
        backoff = self._new_backoff()
        connected = False
        proven = False  # a read has succeeded since the last connect
        retry_at = 0.0
        next_tick = time.monotonic()
        try:
            while True:
                if not connected and time.monotonic() >= retry_at:
                    try:
                        await self._driver.connect()
                    except DriverError as exc:
                        _reraise_cancellation(exc)
                        self._failed(error_kind(exc), str(exc))
                        retry_at = time.monotonic() + next(backoff)
                        log.warning(
                            "device_unreachable", device=self._driver.device_id, error=str(exc)
                        )
                    else:
                        connected, proven = True, False
                        log.info("device_connected", device=self._driver.device_id)
                if connected:
                    try:
                        samples: list[RawSample] | ReadColumns = (
                            await self._driver.read()
                            if self._read_columns is None
                            else await self._read_columns()
                        )
                    except DriverError as exc:
                        connected = False
                        retry_at = time.monotonic() + next(backoff)
                        samples = await self._link_lost(exc)
                    else:
                        self._count_point_errors(samples)
                        if not proven:
                            # Only an answer restarts the delays. A connect alone proves
                            # little: an RTU slave's "connect" is joining the bus, and a
                            # silent slave would otherwise be retried at the shortest delay
                            # for ever, costing its bus a timeout every few cycles.
                            proven = True
                            backoff = self._new_backoff()
                else:
                    samples = self._bad_samples("link_down")
                await self._emit(samples)
                self.cycles += 1
                self.first_cycle_done.set()
                next_tick = self._next_tick(next_tick)
                lost_at = await self._until_tick(next_tick, take_pushed=connected)
                if lost_at is not None:
                    connected = False
                    retry_at = lost_at + next(backoff)
        finally:
            await self._driver.close()

    async def _until_tick(self, tick: float, *, take_pushed: bool) -> float | None:
        """Wait for the monotonic time `tick`, handing on what the device pushes meanwhile.

        A link lost while waiting is said at once (its BAD samples), then the wait goes on
        to the tick, as after a failed read. Returns when (monotonic) it was lost, or None.
        """
        driver = self._pushing
        lost_at = None
        while take_pushed and driver is not None and (remaining := tick - time.monotonic()) > 0:
            try:
                async with asyncio.timeout(remaining):
                    samples = await driver.pushed()
            except TimeoutError:
                return None
            except DriverError as exc:
                lost_at = time.monotonic()
                await self._emit(await self._link_lost(exc))
                break
            self._count_point_errors(samples)
            await self._emit(samples)
        await asyncio.sleep(max(0.0, tick - time.monotonic()))
        return lost_at

    async def _link_lost(self, exc: DriverError) -> list[RawSample]:
        """Count and log a lost link, close the driver; the BAD samples that say so."""
        _reraise_cancellation(exc)
        self._failed(error_kind(exc), str(exc))
        await self._driver.close()
        log.warning("device_link_lost", device=self._driver.device_id, error=str(exc))
        return self._bad_samples(f"link_lost: {exc}")

    def _failed(self, kind: str, message: str) -> None:
        self._on_error(kind)
        self.last_error = DeviceFault(kind, message, self._wall_clock())

    def _count_point_errors(self, samples: list[RawSample] | ReadColumns) -> None:
        if isinstance(samples, ReadColumns):
            samples = samples.other_samples()
        for sample in samples:
            if sample.error is not None:
                self._failed(POINT_ERROR, f"{sample.key}: {sample.error}")

    def _next_tick(self, previous: float) -> float:
        """The next slot of the cadence; slots already missed are skipped, not bunched."""
        target = previous + self._interval
        now = time.monotonic()
        if target < now:
            missed = int((now - target) // self._interval) + 1
            target += missed * self._interval
            self._missed += missed
            said = self._overrun_said_at
            if said is None or now - said >= OVERRUN_LOG_EVERY:
                log.warning(
                    "poll_overrun",
                    device=self._driver.device_id,
                    missed=self._missed,
                    seconds=None if said is None else round(now - said, 1),
                )
                self._missed, self._overrun_said_at = 0, now
        return target

    def _bad_samples(self, error: str) -> list[RawSample]:
        wall, mono = self._wall_clock(), time.monotonic()
        return [RawSample(key, None, Quality.BAD, wall, mono, error=error) for key in self._points]

    async def _emit(self, samples: list[RawSample] | ReadColumns) -> None:
        synced = self._clock_synced()
        # Our own clocks, not the samples' (an OPC UA source timestamp is the server's).
        jumped, self._clock_watch = self._clock_watch.observe(self._wall_clock(), time.monotonic())
        if jumped:
            log.warning("wall_clock_jumped", device=self._driver.device_id)
            if isinstance(samples, ReadColumns):
                samples = samples.samples()
            samples = [replace(s, flags=(*s.flags, CLOCK_JUMP)) for s in samples]
        if isinstance(samples, ReadColumns):
            lined_up, distinct = self._lined_up_with(samples)
            readings = normalize_columns(samples, lined_up, clock_synced=synced)
            # A point's reading carries its request's time (t_wall), and ISO texts sort as
            # their times: the read's earliest and latest reading times, without a pass.
            span = None
            if distinct and readings:
                span = (iso_time(min(samples.t_wall)), iso_time(max(samples.t_wall)))
            fresh = self._drop_repeats(readings, span)
        else:
            fresh = self._drop_repeats(
                normalize_read(samples, self._normalizers, clock_synced=synced), None
            )
        if any(reading.quality is ReadingQuality.GOOD for reading in fresh):
            self.last_good = self._wall_clock()
        if fresh:
            await self._sink(fresh)

    def _lined_up_with(
        self, columns: ReadColumns
    ) -> tuple[tuple[PointNormalizer | None, ...], bool]:
        """This poller's normalizers in the order of `columns.keys`, and whether those differ.

        None stands for a key this poller does not poll.
        """
        keys, lined_up, distinct = self._lined_up
        if columns.keys != keys:
            keys = columns.keys
            lined_up = tuple(self._normalizers.get(key) for key in keys)
            distinct = len(set(keys)) == len(keys)
            self._lined_up = (keys, lined_up, distinct)
        return lined_up, distinct

    def _drop_repeats(self, readings: list[Reading], span: tuple[str, str] | None) -> list[Reading]:
        """`readings` without the repeats of a point's last reading (see the module docstring).

        Only an exact repeat (same time, value and quality) is the same measurement read
        twice; a changed value under an unchanged device timestamp is kept. `span`, when
        given, bounds the readings' times (earliest, latest) and says their points are
        distinct: if they all come after every reading so far, none can be a repeat.
        """
        if not readings:
            return readings
        last_seen = self._last_seen
        latest = self._latest_t
        if span is None:
            span = (min(r.t for r in readings), max(r.t for r in readings))
        elif latest is None or span[0] > latest:
            last_seen.update(zip(map(_POINT, readings), readings, strict=True))
            self._latest_t = span[1]
            return readings
        fresh: list[Reading] = []
        for reading in readings:
            last = last_seen.get(reading.point)
            if (
                last is not None
                and last.t == reading.t
                and last.value == reading.value
                and last.quality is reading.quality
            ):
                self.repeats_dropped += 1
                continue
            last_seen[reading.point] = reading
            fresh.append(reading)
        if latest is None or span[1] > latest:
            self._latest_t = span[1]
        return fresh
