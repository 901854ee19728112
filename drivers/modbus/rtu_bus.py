"""A Modbus RTU bus: several slaves on one RS-485 port, one transaction on the wire at a time.

An `RtuBus` owns one serial port. RS-485 is half-duplex and RTU has no transaction ids, so the
bus runs one request/response at a time under one asyncio lock, FIFO: a device waits for the
others' transactions, never for their whole poll cycles. Before each request the bus waits
until the line has been quiet for the silent interval t3.5 (3.5 characters, 1.75 ms above
19,200 baud).

A reply that comes after its deadline must not be taken for the answer to a later request.
Replies from other units are skipped by address; bytes between transactions are dropped; and
after a unit timed out, a new request to that same unit waits until one more timeout has
passed (assuming a slave that answers late answers within twice the timeout, or never), so
its late reply cannot pose as the new one's. Requests to other units are not delayed by this.

The master is our own rather than pymodbus's serial client, because on a shared bus timing
and resynchronisation are the whole job, and pymodbus 3.16's async serial client leaves them
out: it sends without the t3.5 gap, does not check that a reply's function code and size
match the request, and (RTU having no transaction id) takes a late reply from the same slave
for the answer to the next request. Here a reply must match the unit, the function, the byte
count and the CRC (`drivers.modbus.rtu_frame`); bytes that do not are skipped (hunting), and a
request ends at the first complete valid reply or at its own deadline. Each request has
exactly one deadline and no retries, so a silent slave costs the bus one timeout per request
it is sent. What has arrived when the deadline is judged counts, however late the loop got
round to it: on a busy machine the agent may not run for longer than a timeout, and a slave
that answered in time must not be reported as silent (or its reply as noise) for that.

The bus adds up the time it is busy (request sent to reply received, plus the silent
interval; a whole timeout when a slave is silent), so the agent can compare measured
utilization with the computed one (`timing.bus_utilization`).
"""

from __future__ import annotations

import asyncio
from dataclasses import dataclass
from typing import TYPE_CHECKING

from drivers.base import DecodeError, DriverConnectionError, DriverProtocolError, DriverTimeoutError
from drivers.modbus.rtu_frame import (
    GarbledReplyError,
    ModbusExceptionError,
    RtuReply,
    build_read_frame,
    find_reply,
    reply_values,
)
from drivers.modbus.timing import DEFAULT_TURNAROUND, bus_utilization, silent_interval

if TYPE_CHECKING:
    from collections.abc import Sequence

    from drivers.modbus.plan import ReadRequest
    from drivers.serial.port import SerialPort
    from drivers.serial.settings import SerialSettings

__all__ = ["BusStats", "RtuBus"]

_MAX_RX_BUFFER = 512  # two of the longest frames: enough to hunt a reply behind some noise


@dataclass(frozen=True, slots=True)
class BusStats:
    """Counters of one bus since it was created, taken at loop time `t_mono`."""

    t_mono: float
    transactions: int
    timeouts: int
    errors: int
    busy_seconds: float
    stray_bytes: int

    def utilization_since(self, earlier: BusStats) -> float:
        """Return the measured fraction of time the bus was busy between two snapshots."""
        elapsed = self.t_mono - earlier.t_mono
        if elapsed <= 0:
            return 0.0
        return (self.busy_seconds - earlier.busy_seconds) / elapsed


@dataclass(slots=True)
class _Pending:
    """The one transaction waiting for its reply."""

    unit: int
    request: ReadRequest
    reply: asyncio.Future[RtuReply]
    t_reply: float = 0.0


class RtuBus:
    """One RS-485 port shared by the slaves on it; drivers `attach` and `detach`.

    The port opens on the first `attach` (or the first after a failure) and closes when the
    last driver detaches, so a driver reconnecting after a silent slave never closes the port
    under the others.
    """

    def __init__(self, settings: SerialSettings, *, silence: float | None = None) -> None:
        """Configure the bus; nothing is opened until a driver attaches.

        Args:
            settings: the port and its line settings.
            silence: inter-frame silence; default t3.5 of the baud rate. Some slaves want more.

        Raises:
            ValueError: a negative silence.
        """
        if silence is not None and silence < 0:
            raise ValueError(f"silence must be >= 0, not {silence}")
        self.settings = settings
        self.silence = silent_interval(settings.baudrate) if silence is None else silence
        self._lock = asyncio.Lock()
        self._port: SerialPort | None = None
        self._lost: DriverConnectionError | None = None
        self._users = 0
        self._rx = bytearray()
        self._pending: _Pending | None = None
        self._last_activity = float("-inf")
        self._late_until: dict[int, float] = {}  # unit -> until when a late reply may come
        self._transactions = 0
        self._timeouts = 0
        self._errors = 0
        self._busy = 0.0
        self._stray = 0

    @property
    def is_open(self) -> bool:
        """Whether the port is open."""
        return self._port is not None and self._port.is_open

    async def attach(self) -> None:
        """Register a driver; open the port if it is not open.

        Raises:
            DriverConnectionError: the port cannot be opened.
        """
        self._users += 1
        if self.is_open:
            return
        try:
            self._open()
        except DriverConnectionError:
            self._users -= 1
            raise

    async def detach(self) -> None:
        """Unregister a driver; close the port when none is left."""
        self._users = max(0, self._users - 1)
        if self._users == 0:
            self._close(DriverConnectionError(f"{self.settings.port}: closed"))

    def stats(self) -> BusStats:
        """Return a snapshot of the bus counters."""
        return BusStats(
            t_mono=asyncio.get_running_loop().time(),
            transactions=self._transactions,
            timeouts=self._timeouts,
            errors=self._errors,
            busy_seconds=self._busy,
            stray_bytes=self._stray,
        )

    def computed_utilization(
        self,
        plans: Sequence[Sequence[ReadRequest]],
        poll_intervals: Sequence[float],
        *,
        turnaround: float = DEFAULT_TURNAROUND,
    ) -> float:
        """Return the utilization the timing model predicts for these plans on this bus."""
        return bus_utilization(plans, poll_intervals, self.settings, turnaround=turnaround)

    async def read(
        self, unit: int, request: ReadRequest, *, reply_timeout: float
    ) -> tuple[int, ...]:
        """Run one read transaction and return its registers (or bits).

        `reply_timeout` bounds the whole transaction after the line went quiet: sending, the
        slave's turnaround and the reply. It is the one deadline: no retries, no outer timeout.

        Raises:
            DriverConnectionError: the port is closed or failed.
            DriverTimeoutError: the slave sent nothing before the deadline.
            GarbledReplyError: bytes came, but no valid reply before the deadline.
            ModbusExceptionError: the slave answered with an exception code.
            DriverProtocolError: the line never went quiet for the silent interval.
        """
        frame = build_read_frame(unit, request)
        if reply_timeout <= 0:
            raise ValueError(f"reply_timeout must be > 0, not {reply_timeout}")
        # Outside the lock: a unit's late reply delays only that unit, never the others.
        await self._wait_for_late_reply(unit)
        async with self._lock:
            port = self._live_port()
            await self._wait_for_quiet(port, reply_timeout)
            reply = await self._transact(port, unit, request, frame, reply_timeout)
        if reply.exception_code is not None:
            self._errors += 1
            raise ModbusExceptionError(unit, reply.exception_code)
        try:
            return reply_values(reply, request)
        except DecodeError as exc:  # find_reply checks the size; this is belt and braces
            self._errors += 1
            raise GarbledReplyError(f"unit {unit}: {exc}") from exc

    async def _transact(
        self,
        port: SerialPort,
        unit: int,
        request: ReadRequest,
        frame: bytes,
        reply_timeout: float,
    ) -> RtuReply:
        """Send one frame and wait for its reply; account the bus time either way."""
        loop = asyncio.get_running_loop()
        self._rx.clear()
        pending = _Pending(unit, request, loop.create_future())
        self._pending = pending
        t_sent = loop.time()
        self._transactions += 1
        try:
            await port.write(frame, stall_timeout=reply_timeout)
            # Wait without cancelling the reply's future at the deadline: when the loop ran
            # late (a busy machine), the reply and the deadline are handled in one pass,
            # the reply first, and a reply that had arrived must not be cancelled by it.
            await asyncio.wait((pending.reply,), timeout=t_sent + reply_timeout - loop.time())
            if not pending.reply.done():
                port.take_arrived()  # bytes already in the buffer when the deadline is judged
            reply = pending.reply.result() if pending.reply.done() else None
        finally:
            self._pending = None
            # A port failure during the write may have failed the future nobody awaits.
            if not pending.reply.done():
                pending.reply.cancel()
            elif not pending.reply.cancelled():
                pending.reply.exception()
        if reply is None:
            raise self._timed_out(unit, t_sent, len(frame), reply_timeout)
        self._account(t_sent, pending.t_reply, len(frame))
        return reply

    def _timed_out(
        self, unit: int, t_sent: float, sent_bytes: int, reply_timeout: float
    ) -> DriverTimeoutError | GarbledReplyError:
        """Account a transaction that ended at its deadline; the error that says how."""
        t_end = asyncio.get_running_loop().time()
        self._account(t_sent, t_end, sent_bytes)
        self._timeouts += 1
        self._late_until[unit] = t_end + reply_timeout
        if self._rx:
            self._errors += 1
            return GarbledReplyError(
                f"unit {unit}: no valid reply in {reply_timeout} s, {len(self._rx)} byte(s) of "
                f"noise starting {bytes(self._rx[:16]).hex(' ')}"
            )
        return DriverTimeoutError(f"unit {unit}: no reply in {reply_timeout} s")

    def _account(self, t_sent: float, t_end: float, sent_bytes: int) -> None:
        """Add one transaction's bus time and mark when the line was last busy."""
        # write() returns when the bytes are queued, not sent: the line is busy at least
        # until the request itself is on the wire.
        on_wire = t_sent + sent_bytes * self.settings.char_seconds
        end = max(t_end, on_wire)
        self._last_activity = max(self._last_activity, end)
        self._busy += end - t_sent + self.silence

    async def _wait_for_late_reply(self, unit: int) -> None:
        """Before asking a unit that timed out moments ago, let its late reply pass."""
        until = self._late_until.pop(unit, None)
        if until is not None:
            await asyncio.sleep(max(0.0, until - asyncio.get_running_loop().time()))

    async def _wait_for_quiet(self, port: SerialPort, limit: float) -> None:
        """Wait until the line has been quiet for the silent interval, at most `limit` s."""
        loop = asyncio.get_running_loop()
        give_up = loop.time() + limit
        # What came before the request is no answer to it: a late reply that the loop of a
        # busy machine has not read yet is taken in now, while no transaction waits (stray
        # bytes), else the same unit's reply of the same size would be taken for the answer.
        # Taking it in also marks the line busy, so the wait below starts from it.
        port.take_arrived()
        while (quiet_at := self._last_activity + self.silence) > (now := loop.time()):
            if now >= give_up:
                self._errors += 1
                raise DriverProtocolError(
                    f"{self.settings.port}: line never quiet for {self.silence * 1e3:.2f} ms"
                )
            await asyncio.sleep(min(quiet_at, give_up) - now)
            port.take_arrived()  # what came while this waited, unread by the loop yet

    def _live_port(self) -> SerialPort:
        """Return the open port, or raise why there is none."""
        if self._port is None or not self._port.is_open:
            raise self._lost or DriverConnectionError(f"{self.settings.port}: not open")
        return self._port

    def _open(self) -> None:
        """Open the port and reset the line state."""
        # pyserial is loaded by the first bus that opens, not by every agent that imports the
        # bus planner (G7: a Modbus TCP site never needs it).
        from drivers.serial.port import SerialPort  # noqa: PLC0415

        self._lost = None
        self._rx.clear()
        self._port = SerialPort.open(self.settings, self._on_data, self._on_lost)

    def _close(self, error: DriverConnectionError) -> None:
        """Close the port and fail a transaction in flight."""
        port, self._port = self._port, None
        if port is not None:
            port.close()
        self._fail_pending(error)

    def _on_data(self, chunk: bytes, t_loop: float) -> None:
        """Collect reply bytes; complete the transaction when its reply is whole."""
        self._last_activity = max(self._last_activity, t_loop)
        pending = self._pending
        if pending is None or pending.reply.done():
            self._stray += len(chunk)  # a late reply or noise between transactions
            return
        self._rx += chunk
        if len(self._rx) > _MAX_RX_BUFFER:
            self._stray += len(self._rx) - _MAX_RX_BUFFER
            del self._rx[:-_MAX_RX_BUFFER]
        reply = find_reply(bytes(self._rx), pending.unit, pending.request)
        if reply is not None:
            pending.t_reply = t_loop
            pending.reply.set_result(reply)

    def _on_lost(self, error: DriverConnectionError) -> None:
        """Remember the port failure and fail a transaction in flight."""
        self._lost = error
        self._port = None
        self._fail_pending(error)

    def _fail_pending(self, error: DriverConnectionError) -> None:
        """Fail the transaction in flight, if any."""
        pending = self._pending
        if pending is not None and not pending.reply.done():
            pending.reply.set_exception(error)
