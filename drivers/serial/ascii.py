"""Serial ASCII instruments: request/response or free-running lines, parsed by pattern.

Two modes, chosen by whether a `request` is configured:

* **request/response** — `read()` drops what came before (a late answer, a partial frame),
  sends the request and takes the first complete frame that arrives within `timeout`. Every
  point is parsed from that one frame. A frame that is the request itself (a two-wire RS-485
  adapter echoes what it sends) is not the answer. A line that still sends after as much as
  one drop takes (an instrument that talks without pause) is "never quiet": nothing is sent.
* **free-running** — the instrument sends lines on its own. Every frame is parsed as it
  arrives and the latest valid value of each point is kept with its arrival time; `read()`
  reports it while it is younger than `max_age` (flagged ``held`` once it was reported
  before, so a consumer can tell a repeat from a new measurement).

Whatever the line carries (noise, partial lines, a wrong checksum, a pattern miss, silence,
no pause) becomes a BAD sample with an error text; `read()` raises only DriverConnectionError,
when the port itself is gone.
"""

from __future__ import annotations

import asyncio
import time
from dataclasses import dataclass
from typing import TYPE_CHECKING

from drivers.base import (
    DecodeError,
    DriverConnectionError,
    DriverTimeoutError,
    Quality,
    RawSample,
)
from drivers.serial.framing import Delimited, Discarded, Frame, Framing
from drivers.serial.parse import LinePoint, parse_line
from drivers.serial.port import TAKE_LIMIT, SerialPort

if TYPE_CHECKING:
    from collections.abc import Callable, Sequence

    from drivers.serial.checksum import ChecksumSpec
    from drivers.serial.settings import SerialSettings

__all__ = ["HELD", "SerialAsciiDriver"]

HELD = "held"  # flag: the same measurement as an earlier read (free-running mode)


@dataclass(frozen=True, slots=True)
class _Held:
    """The latest valid value of one point in free-running mode."""

    value: float
    t_wall: float
    t_mono: float
    raw: tuple[int, ...]
    reported: bool = False


@dataclass(frozen=True, slots=True)
class _Received:
    """A frame and when it arrived."""

    data: bytes
    t_wall: float
    t_mono: float


def _settle(future: asyncio.Future[_Received]) -> None:
    """Leave no future behind with an exception nobody retrieved (asyncio logs those)."""
    if not future.done():
        future.cancel()
    elif not future.cancelled():
        future.exception()


def _echo_of(request: bytes | None, framing: Framing) -> bytes | None:
    """The frame our own request makes when the line echoes it (delimited lines only)."""
    if request is None or not isinstance(framing, Delimited):
        return None
    body = request.removesuffix(framing.delimiter)
    return body if body and body != request else None


class SerialAsciiDriver:
    """Read the points of one ASCII instrument on a serial port."""

    def __init__(
        self,
        device_id: str,
        settings: SerialSettings,
        points: Sequence[LinePoint],
        *,
        request: bytes | None = None,
        framing: Framing | None = None,
        checksum: ChecksumSpec | None = None,
        encoding: str = "ascii",
        timeout: float = 1.0,
        max_age: float = 10.0,
        partial_timeout: float = 0.5,
        wall_clock: Callable[[], float] = time.time,
        mono_clock: Callable[[], float] = time.monotonic,
    ) -> None:
        r"""Configure the driver; nothing is opened until `connect`.

        Args:
            device_id: the device's id from the site map.
            settings: port path and line settings.
            points: the values to find in each frame.
            request: bytes that ask for one frame (``b"RD\r\n"``); None means free-running.
            framing: how frames are cut from the stream; default CR LF lines of <= 256 bytes.
            checksum: the check value each frame ends with, if any.
            encoding: text encoding of a frame (``ascii`` rejects noise bytes above 0x7F).
            timeout: request/response: how long to wait for a complete frame.
            max_age: free-running: how long a value stays current without a new line.
            partial_timeout: a partial frame with no new byte for this long is dropped when
                the next byte comes, so a line cut short does not glue onto the next one.
            wall_clock: wall-clock source for sample times (tests inject their own).
            mono_clock: monotonic source matching `wall_clock`.

        Raises:
            ValueError: no points, duplicate keys, or a non-positive time.
        """
        keys = [p.key for p in points]
        if not keys or len(set(keys)) != len(keys):
            raise ValueError(f"{device_id}: need at least one point and unique keys")
        if min(timeout, max_age, partial_timeout) <= 0:
            raise ValueError(f"{device_id}: timeout, max_age and partial_timeout must be > 0")
        if request is not None and not request:
            raise ValueError(f"{device_id}: an empty request; omit it for free-running mode")
        self._device_id = device_id
        self._settings = settings
        self._points = tuple(points)
        self._request = request
        framing = framing or Delimited()
        self._framer = framing.framer()
        self._echo = _echo_of(request, framing)
        self._checksum = checksum
        self._encoding = encoding
        self._timeout = timeout
        self._max_age = max_age
        self._partial_timeout = partial_timeout
        self._wall = wall_clock
        self._mono = mono_clock
        self._port: SerialPort | None = None
        self._lost: DriverConnectionError | None = None
        self._lock = asyncio.Lock()
        self._last_byte = 0.0
        # request/response state: the waiting read, and line faults seen while it waits
        self._waiter: asyncio.Future[_Received] | None = None
        self._faults: list[str] = []
        # free-running state
        self._latest: dict[str, _Held] = {}
        self._last_error: str | None = None

    @property
    def device_id(self) -> str:
        """The device's id from the site map."""
        return self._device_id

    @property
    def free_running(self) -> bool:
        """Whether the instrument sends on its own (no request configured)."""
        return self._request is None

    async def connect(self) -> None:
        """Open the port; raise DriverConnectionError when it cannot be opened."""
        await self.close()
        self._lost = None
        self._framer.reset()
        self._latest.clear()
        self._last_error = None
        self._port = SerialPort.open(self._settings, self._on_data, self._on_lost)

    async def close(self) -> None:
        """Close the port; safe to call twice."""
        port, self._port = self._port, None
        if port is not None:
            port.close()
        self._wake(DriverConnectionError(f"{self._device_id}: closed"))

    async def read(self) -> list[RawSample]:
        """Read every configured point once, in configuration order.

        Raises:
            DriverConnectionError: the port is closed or failed (call `connect` again).
        """
        async with self._lock:
            port = self._live_port()
            if self._request is None:
                return self._report_latest()
            return await self._ask(port, self._request)

    def _live_port(self) -> SerialPort:
        """Return the open port, or raise why there is none."""
        if self._lost is not None:
            raise self._lost
        if self._port is None or not self._port.is_open:
            raise DriverConnectionError(f"{self._device_id}: not connected")
        return self._port

    async def _ask(self, port: SerialPort, request: bytes) -> list[RawSample]:
        """Send the request and parse the first frame that answers it."""
        loop = asyncio.get_running_loop()
        # What came before the request is no answer to it: a late answer to an earlier one
        # that the loop of a busy machine has not read yet is taken in now, while no read
        # waits (a whole line is dropped), and a stale partial frame must not prefix the answer.
        if not port.take_arrived():
            # Old bytes still wait (an instrument that talks without pause, a backlog larger
            # than one take): the next old line would be taken for the answer.
            return self._bad_all(
                f"line never quiet: {TAKE_LIMIT // 1024} KiB dropped before the request "
                "and more waiting"
            )
        self._framer.reset()
        self._faults = []
        waiter: asyncio.Future[_Received] = loop.create_future()
        self._waiter = waiter
        try:
            await port.write(request, stall_timeout=self._timeout)
            # Wait without cancelling the waiter at the deadline: when the loop ran late (a
            # busy machine), the answer and the deadline are handled in one pass, the answer
            # first, and an answer that had arrived must not be cancelled by it.
            await asyncio.wait((waiter,), timeout=self._timeout)
            if not waiter.done():
                port.take_arrived()  # bytes already in the buffer when the deadline is judged
            received = waiter.result() if waiter.done() else None
        except DriverTimeoutError as exc:  # the port took no bytes (flow control stuck)
            return self._bad_all(str(exc))
        finally:
            self._waiter = None
            _settle(waiter)
        if received is None:
            return self._bad_all(self._timeout_error())
        return self._parse(received)

    def _timeout_error(self) -> str:
        """Say what the line did while the read waited in vain."""
        partial = self._framer.reset()
        if partial is not None:
            self._faults.append(partial.describe())
        if self._faults:
            return f"no valid frame in {self._timeout} s: " + "; ".join(self._faults[-3:])
        return f"timeout: no reply in {self._timeout} s"

    def _parse(self, received: _Received) -> list[RawSample]:
        """Turn one answer frame into a sample per point."""
        raw = tuple(received.data)
        try:
            parsed = parse_line(
                received.data, self._points, checksum=self._checksum, encoding=self._encoding
            )
        except DecodeError as exc:
            return self._bad_all(str(exc), received.t_wall, received.t_mono, raw)
        samples: list[RawSample] = []
        for point in self._points:
            value = parsed.values.get(point.key)
            if value is None:
                error = parsed.errors.get(point.key, "no value")
                samples.append(
                    RawSample(
                        point.key,
                        None,
                        Quality.BAD,
                        received.t_wall,
                        received.t_mono,
                        raw,
                        error=error,
                    )
                )
            else:
                samples.append(
                    RawSample(point.key, value, Quality.GOOD, received.t_wall, received.t_mono, raw)
                )
        return samples

    def _report_latest(self) -> list[RawSample]:
        """Report each point's latest valid value, or why there is no current one."""
        t_wall, t_mono = self._wall(), self._mono()
        samples: list[RawSample] = []
        for point in self._points:
            held = self._latest.get(point.key)
            if held is None or t_mono - held.t_mono > self._max_age:
                why = self._last_error or "no line from the instrument"
                samples.append(
                    RawSample(
                        point.key,
                        None,
                        Quality.BAD,
                        t_wall,
                        t_mono,
                        error=f"no valid value in {self._max_age} s: {why}",
                    )
                )
                continue
            flags = (HELD,) if held.reported else ()
            samples.append(
                RawSample(
                    point.key,
                    held.value,
                    Quality.GOOD,
                    held.t_wall,
                    held.t_mono,
                    held.raw,
                    flags=flags,
                )
            )
            if not held.reported:
                self._latest[point.key] = _Held(
                    held.value, held.t_wall, held.t_mono, held.raw, reported=True
                )
        return samples

    def _bad_all(
        self,
        error: str,
        t_wall: float | None = None,
        t_mono: float | None = None,
        raw: tuple[int, ...] = (),
    ) -> list[RawSample]:
        """Make a BAD sample for every point."""
        wall = self._wall() if t_wall is None else t_wall
        mono = self._mono() if t_mono is None else t_mono
        return [
            RawSample(point.key, None, Quality.BAD, wall, mono, raw, error=error)
            for point in self._points
        ]

    def _on_data(self, chunk: bytes, t_loop: float) -> None:
        """Frame the bytes that arrived (the port's callback)."""
        if self._framer.buffered and t_loop - self._last_byte > self._partial_timeout:
            stale = self._framer.reset()
            if stale is not None:
                self._fault(stale.describe())
        self._last_byte = t_loop
        for event in self._framer.feed(chunk):
            if isinstance(event, Discarded):
                self._fault(event.describe())
            elif isinstance(event, Frame):
                self._on_frame(_Received(event.data, self._wall(), self._mono()))

    def _on_frame(self, received: _Received) -> None:
        """Hand a frame to the waiting read, or (free-running) keep its values."""
        if self._request is not None:
            if received.data == self._echo:
                return  # our own request, heard back: a two-wire RS-485 adapter's echo
            waiter = self._waiter
            if waiter is not None and not waiter.done():
                waiter.set_result(received)
            # A frame nobody asked for (a late answer) is dropped: it answers an old request.
            return
        try:
            parsed = parse_line(
                received.data, self._points, checksum=self._checksum, encoding=self._encoding
            )
        except DecodeError as exc:
            self._fault(str(exc))
            return
        if not parsed.values:
            self._fault("; ".join(dict.fromkeys(parsed.errors.values())))
            return
        raw = tuple(received.data)
        for key, value in parsed.values.items():
            self._latest[key] = _Held(value, received.t_wall, received.t_mono, raw)

    def _fault(self, error: str) -> None:
        """Remember a line fault for the error text of the next BAD sample."""
        if self._request is None:
            self._last_error = error
        else:
            self._faults.append(error)
            del self._faults[:-10]  # a noise storm must not grow the list

    def _on_lost(self, error: DriverConnectionError) -> None:
        """Remember that the port failed; the next `read()` raises it."""
        self._lost = error
        self._wake(error)

    def _wake(self, error: DriverConnectionError) -> None:
        """Fail a read that is waiting for a frame."""
        waiter = self._waiter
        if waiter is not None and not waiter.done():
            waiter.set_exception(error)
