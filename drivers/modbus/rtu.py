"""Modbus RTU: several slaves on one RS-485 port, one transaction on the wire at a time.

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
count and the CRC; bytes that do not are skipped (hunting), and a request ends at the first
complete valid reply or at its own deadline. Each request has exactly one deadline and no
retries, so a silent slave costs the bus one timeout per request it is sent;
`ModbusRtuDriver` stops its cycle at the first timeout, so that is at most one timeout per
poll cycle.

The bus adds up the time it is busy (request sent to reply received, plus the silent
interval; a whole timeout when a slave is silent), so the agent can compare measured
utilization with the computed one (`timing.bus_utilization`).
"""

from __future__ import annotations

import asyncio
import time
from dataclasses import dataclass
from typing import TYPE_CHECKING

from drivers.base import (
    DecodeError,
    DriverConnectionError,
    DriverProtocolError,
    DriverTimeoutError,
    RawSample,
)
from drivers.modbus.codec import Table, is_bit_table
from drivers.modbus.plan import (
    DEFAULT_MAX_GAP,
    ReadRequest,
    RegisterPoint,
    plan_reads,
)
from drivers.modbus.reply import ReplyDecoder
from drivers.modbus.timing import (
    DEFAULT_TURNAROUND,
    EXCEPTION_RESPONSE_BYTES,
    RESPONSE_OVERHEAD_BYTES,
    bus_utilization,
    silent_interval,
)
from drivers.serial.checksum import crc16_modbus

if TYPE_CHECKING:
    from collections.abc import Callable, Sequence

    from drivers.serial.port import SerialPort
    from drivers.serial.settings import SerialSettings

__all__ = [
    "EXCEPTION_NAMES",
    "FUNCTION_CODES",
    "BusStats",
    "GarbledReplyError",
    "ModbusExceptionError",
    "ModbusRtuDriver",
    "RtuBus",
    "RtuReply",
    "build_read_frame",
    "find_reply",
    "reply_values",
    "rtu_frame",
]

FUNCTION_CODES: dict[Table, int] = {
    Table.COIL: 1,
    Table.DISCRETE: 2,
    Table.HOLDING: 3,
    Table.INPUT: 4,
}
EXCEPTION_NAMES = {
    1: "ILLEGAL FUNCTION",
    2: "ILLEGAL DATA ADDRESS",
    3: "ILLEGAL DATA VALUE",
    4: "SERVER DEVICE FAILURE",
    5: "ACKNOWLEDGE",
    6: "SERVER DEVICE BUSY",
    8: "MEMORY PARITY ERROR",
    10: "GATEWAY PATH UNAVAILABLE",
    11: "GATEWAY TARGET DEVICE FAILED TO RESPOND",
}
EXCEPTION_FLAG = 0x80
MAX_UNIT_ID = 247  # 0 is broadcast (no reply), 248..255 are reserved
_MAX_RX_BUFFER = 512  # two of the longest frames: enough to hunt a reply behind some noise


# --------------------------------------------------------------------------------------------
# Pure RTU frame codec


def rtu_frame(unit: int, pdu: bytes) -> bytes:
    """Return an RTU frame: the unit address, the PDU and its CRC-16, low byte first."""
    body = bytes([unit]) + pdu
    return body + crc16_modbus(body).to_bytes(2, "little")


def build_read_frame(unit: int, request: ReadRequest) -> bytes:
    """Return the 8-byte RTU frame of a planned read (function 1, 2, 3 or 4).

    Raises:
        ValueError: a unit address outside 1..247.
    """
    if not 1 <= unit <= MAX_UNIT_ID:
        raise ValueError(f"unit id {unit} is outside 1..{MAX_UNIT_ID}")
    function = FUNCTION_CODES[request.table]
    pdu = bytes([function]) + request.start.to_bytes(2, "big") + request.count.to_bytes(2, "big")
    return rtu_frame(unit, pdu)


def _data_bytes(request: ReadRequest) -> int:
    """Return how many data bytes a normal reply to `request` carries."""
    return (request.count + 7) // 8 if is_bit_table(request.table) else 2 * request.count


@dataclass(frozen=True, slots=True)
class RtuReply:
    """A reply frame with a valid CRC: data bytes, or a Modbus exception code."""

    unit: int
    function: int
    data: bytes = b""
    exception_code: int | None = None


def _valid(frame: bytes) -> bool:
    """Tell whether a frame's last two bytes are the CRC of the rest."""
    return crc16_modbus(frame[:-2]).to_bytes(2, "little") == frame[-2:]


def find_reply(buffer: bytes, unit: int, request: ReadRequest) -> RtuReply | None:
    """Find the reply to `request` from `unit` in the bytes received since it was sent.

    Hunts from every offset, so noise before the reply and a stale frame from another slave
    are skipped. Only a frame with the right unit, function, byte count and CRC counts, or an
    exception frame (function | 0x80) with a valid CRC. Returns None until one is complete.
    """
    function = FUNCTION_CODES[request.table]
    count = _data_bytes(request)
    normal_size = RESPONSE_OVERHEAD_BYTES + count
    for offset in range(len(buffer) - EXCEPTION_RESPONSE_BYTES + 1):
        if buffer[offset] != unit:
            continue
        code = buffer[offset + 1]
        if code == function | EXCEPTION_FLAG:
            frame = buffer[offset : offset + EXCEPTION_RESPONSE_BYTES]
            if _valid(frame):
                return RtuReply(unit, function, exception_code=frame[2])
        elif code == function and buffer[offset + 2] == count:
            frame = buffer[offset : offset + normal_size]
            if len(frame) == normal_size and _valid(frame):
                return RtuReply(unit, function, data=frame[3:-2])
    return None


def reply_values(reply: RtuReply, request: ReadRequest) -> tuple[int, ...]:
    """Return the registers (or 0/1 bits) a normal reply carries for `request`.

    Raises:
        DecodeError: the reply has the wrong number of data bytes.
    """
    if len(reply.data) != _data_bytes(request):
        raise DecodeError(f"expected {_data_bytes(request)} data bytes, got {len(reply.data)}")
    if is_bit_table(request.table):
        return tuple((reply.data[i // 8] >> (i % 8)) & 1 for i in range(request.count))
    return tuple(int.from_bytes(reply.data[i : i + 2], "big") for i in range(0, len(reply.data), 2))


# --------------------------------------------------------------------------------------------
# Errors a bus transaction raises besides timeouts and a lost port


class ModbusExceptionError(DriverProtocolError):
    """The slave answered with a Modbus exception code."""

    def __init__(self, unit: int, code: int) -> None:
        self.code = code
        name = EXCEPTION_NAMES.get(code, "UNKNOWN")
        super().__init__(f"unit {unit}: modbus exception {code} ({name})")


class GarbledReplyError(DriverProtocolError):
    """Bytes came back, but no valid reply before the deadline (noise, bad CRC, wrong size)."""


# --------------------------------------------------------------------------------------------
# The bus: one port, one lock, the silent interval, per-request deadlines, busy time


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
        s = self.settings
        return bus_utilization(
            plans,
            poll_intervals,
            s.baudrate,
            str(s.parity),
            s.stopbits,
            bytesize=s.bytesize,
            turnaround=turnaround,
        )

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
            await self._wait_for_quiet(reply_timeout)
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
            async with asyncio.timeout_at(t_sent + reply_timeout):
                reply = await pending.reply
        except TimeoutError:
            t_end = loop.time()
            self._account(t_sent, t_end, len(frame))
            self._timeouts += 1
            self._late_until[unit] = t_end + reply_timeout
            if self._rx:
                self._errors += 1
                raise GarbledReplyError(
                    f"unit {unit}: no valid reply in {reply_timeout} s, {len(self._rx)} byte(s) of "
                    f"noise starting {bytes(self._rx[:16]).hex(' ')}"
                ) from None
            raise DriverTimeoutError(f"unit {unit}: no reply in {reply_timeout} s") from None
        finally:
            self._pending = None
            # A port failure during the write may have failed the future nobody awaits.
            if not pending.reply.done():
                pending.reply.cancel()
            elif not pending.reply.cancelled():
                pending.reply.exception()
        self._account(t_sent, pending.t_reply, len(frame))
        return reply

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

    async def _wait_for_quiet(self, limit: float) -> None:
        """Wait until the line has been quiet for the silent interval, at most `limit` s."""
        loop = asyncio.get_running_loop()
        give_up = loop.time() + limit
        while (quiet_at := self._last_activity + self.silence) > (now := loop.time()):
            if now >= give_up:
                self._errors += 1
                raise DriverProtocolError(
                    f"{self.settings.port}: line never quiet for {self.silence * 1e3:.2f} ms"
                )
            await asyncio.sleep(min(quiet_at, give_up) - now)

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


# --------------------------------------------------------------------------------------------
# The driver: one slave on a bus


class ModbusRtuDriver:
    """Read every configured point of one RTU slave, one planned request at a time."""

    def __init__(
        self,
        device_id: str,
        bus: RtuBus,
        unit_id: int,
        points: Sequence[RegisterPoint] = (),
        *,
        timeout: float = 1.0,
        max_gap: int = DEFAULT_MAX_GAP,
        wall_clock: Callable[[], float] = time.time,
        mono_clock: Callable[[], float] = time.monotonic,
    ) -> None:
        """Configure the driver; nothing is opened until `connect`.

        Args:
            device_id: the device's id from the site map.
            bus: the shared bus of the slave's serial port.
            unit_id: the slave address, 1..247.
            points: what to read.
            timeout: per request: how long the slave has to answer.
            max_gap: unused addresses the planner may read through (see `plan_reads`).
            wall_clock: wall-clock source for sample times.
            mono_clock: monotonic source matching `wall_clock`.

        Raises:
            ValueError: a unit id outside 1..247, a timeout not above 0, or a bad plan.
        """
        if not 1 <= unit_id <= MAX_UNIT_ID:
            raise ValueError(f"{device_id}: unit id {unit_id} is outside 1..{MAX_UNIT_ID}")
        if timeout <= 0:
            raise ValueError(f"{device_id}: timeout must be > 0")
        self._device_id = device_id
        self._bus = bus
        self._unit = unit_id
        self._points = tuple(points)
        self._timeout = timeout
        self._plan = plan_reads(self._points, max_gap=max_gap)
        self._decoders = tuple(ReplyDecoder.for_request(request) for request in self._plan)
        self._wall = wall_clock
        self._mono = mono_clock
        self._attached = False

    @property
    def device_id(self) -> str:
        """The device's id from the site map."""
        return self._device_id

    @property
    def bus(self) -> RtuBus:
        """The bus the slave is on."""
        return self._bus

    @property
    def unit_id(self) -> int:
        """The slave address."""
        return self._unit

    @property
    def plan(self) -> tuple[ReadRequest, ...]:
        """The read requests one `read()` sends, in order."""
        return self._plan

    async def connect(self) -> None:
        """Attach to the bus (opening its port if needed).

        RTU has no connection: whether the slave is there shows at the first read.

        Raises:
            DriverConnectionError: the port cannot be opened.
        """
        if not self._attached:
            await self._bus.attach()
            self._attached = True
        elif not self._bus.is_open:  # the port failed under us: reopen it
            await self._bus.detach()
            self._attached = False
            await self._bus.attach()
            self._attached = True

    async def close(self) -> None:
        """Detach from the bus; safe to call twice."""
        if self._attached:
            self._attached = False
            await self._bus.detach()

    async def read(self) -> list[RawSample]:
        """Read every configured point once, in configuration order.

        An exception reply makes that request's points BAD. A garbled reply costs its full
        timeout, so it makes the remaining points of this cycle BAD without sending them.

        Raises:
            DriverConnectionError: not connected, or the port failed.
            DriverTimeoutError: the slave did not answer; the rest of the cycle is not sent,
                so a silent slave costs the bus one timeout per cycle.
        """
        if not self._attached:
            raise DriverConnectionError(f"{self._device_id}: not connected")
        by_key: dict[str, RawSample] = {}

        def keep(samples: list[RawSample]) -> None:
            for sample in samples:
                by_key[sample.key] = sample

        for index, decoder in enumerate(self._decoders):
            request = decoder.request
            try:
                values = await self._bus.read(self._unit, request, reply_timeout=self._timeout)
            except ModbusExceptionError as exc:
                keep(decoder.bad(str(exc), self._wall(), self._mono()))
                continue
            except DriverProtocolError as exc:
                for skipped in self._decoders[index:]:
                    keep(skipped.bad(f"{self._device_id}: {exc}", self._wall(), self._mono()))
                break
            except DriverTimeoutError as exc:
                raise DriverTimeoutError(f"{self._device_id}: {exc}") from exc
            keep(decoder.decode(values, self._wall(), self._mono()))
        return [by_key[point.key] for point in self._points]
