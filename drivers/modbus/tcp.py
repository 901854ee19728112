"""Modbus TCP driver: reads a device's planned requests over one pymodbus connection.

This is the only driver module that imports the pymodbus client, so pymodbus exceptions are
translated into the DriverError tree here, once. Timeouts and retries are pymodbus's own: an
outer ``asyncio.wait_for`` would abandon a request whose late reply then confuses the next one.
pymodbus's automatic reconnect is off: the caller owns reconnect policy (the agent's poller, with
the delays of `hostkit.backoff`).

Cancellation: pymodbus waits for a reply (and for a connect) with ``asyncio.wait_for``, which
on Python 3.11 returns the result and drops the CancelledError when the reply arrived in the
same loop iteration as the cancellation (the inner future is done by the time the waiter's
CancelledError is handled). On a busy loop that is common: a cancelled poll task would go on
polling and its owner would wait for it for ever. So after every pymodbus await the driver
asks whether its task is being cancelled and, if so, raises the CancelledError itself.
"""

from __future__ import annotations

import asyncio
import operator
import time
from typing import TYPE_CHECKING, Any, TypeVar

from pymodbus.client import AsyncModbusTcpClient
from pymodbus.exceptions import ConnectionException, ModbusException, ModbusIOException
from pymodbus.pdu.register_message import (
    ReadHoldingRegistersResponse,
    ReadInputRegistersResponse,
)

from drivers.base import DriverConnectionError, DriverTimeoutError, RawSample, ReadColumns
from drivers.modbus.codec import EXCEPTION_NAMES, Table, is_bit_table
from drivers.modbus.plan import DEFAULT_MAX_GAP, ReadRequest, RegisterPoint, plan_reads
from drivers.modbus.reply import ReplyDecoder
from drivers.modbus.rtu_frame import EXCEPTION_FLAG, FUNCTION_CODES, data_bytes

if TYPE_CHECKING:
    from collections.abc import Callable, Sequence

    from pymodbus.pdu import ModbusPDU

__all__ = ["ModbusTcpDriver"]

_T = TypeVar("_T")


class _RegistersReply:
    """A register read's reply that keeps its data bytes (`payload`) instead of a list.

    pymodbus decodes a register reply one `struct.unpack` per register into `registers`, then
    builds the whole reply's text (every register) for a debug line even when debug logging
    is off: a third of the client's time per reply at 124 registers. Registered on each
    client (`register`, pymodbus's public hook for response classes) for function codes 3
    and 4, these keep the bytes, which `ReplyDecoder` unpacks in one call, and say
    themselves in one short line. `registers` stays empty: read `payload`.
    """

    payload: bytes = b""
    byte_count: int = 0  # as the reply says: an odd one is no whole number of registers

    def decode(self, data: bytes) -> None:
        """Keep the data bytes: pymodbus's checks, the registers it would read (n // 2)."""
        count = int(data[0])
        if count >= len(data):
            raise ModbusIOException(
                f"byte_count {count} > length of packet {len(data)}",
                function_code=getattr(self, "function_code", 0),
            )
        self.byte_count = count
        self.payload = bytes(data[1 : 1 + 2 * (count // 2)])

    def __str__(self) -> str:
        """The reply in one line, without its registers."""
        fields = ", ".join(
            f"{name}={getattr(self, name, None)}" for name in ("dev_id", "transaction_id")
        )
        return f"{type(self).__name__}({fields}, bytes={len(self.payload)})"


class _HoldingReply(_RegistersReply, ReadHoldingRegistersResponse):
    """Function code 3's reply, keeping its bytes."""


class _InputReply(_RegistersReply, ReadInputRegistersResponse):
    """Function code 4's reply, keeping its bytes."""


def _picker(indices: Sequence[int]) -> Callable[[Sequence[_T]], tuple[_T, ...]]:
    """A function taking the items at `indices` of a sequence, as a tuple (in C)."""
    if len(indices) == 1:
        (only,) = indices
        return lambda items: (items[only],)
    if not indices:
        return lambda _items: ()
    getter: Callable[[Sequence[Any]], tuple[Any, ...]] = operator.itemgetter(*indices)
    return getter


def _column_pickers(
    points: Sequence[RegisterPoint], decoders: Sequence[ReplyDecoder]
) -> tuple[
    Callable[[Sequence[float | None]], tuple[float | None, ...]],
    Callable[[Sequence[float]], tuple[float, ...]],
]:
    """How `read_columns` puts its per-request results in configuration order.

    The values: the fast points' values of every request one after the other, then one None
    (the slot of the points decoded one by one); the times: one per request.
    """
    slot: dict[str, int] = {}
    request_of: dict[str, int] = {}
    for index, decoder in enumerate(decoders):
        for key, _first, _end in decoder.fast:
            slot[key] = len(slot)
        for point in decoder.request.points:
            request_of[point.key] = index
    slow_slot = len(slot)
    return (
        _picker([slot.get(point.key, slow_slot) for point in points]),
        _picker([request_of[point.key] for point in points]),
    )


class ModbusTcpDriver:
    """Read every configured point of one Modbus TCP device, one planned request at a time."""

    def __init__(
        self,
        device_id: str,
        host: str,
        port: int = 502,
        unit_id: int = 1,
        points: Sequence[RegisterPoint] = (),
        *,
        timeout: float = 2.0,
        retries: int = 0,
        max_gap: int = DEFAULT_MAX_GAP,
        wall_clock: Callable[[], float] = time.time,
        mono_clock: Callable[[], float] = time.monotonic,
    ) -> None:
        if timeout <= 0 or retries < 0:
            raise ValueError("timeout must be > 0 and retries >= 0")
        self._device_id = device_id
        self._host = host
        self._port = port
        self._unit_id = unit_id
        self._points = tuple(points)
        self._timeout = timeout
        self._retries = retries
        self._plan = plan_reads(self._points, max_gap=max_gap)
        self._decoders = tuple(ReplyDecoder.for_request(request) for request in self._plan)
        self._keys = tuple(point.key for point in self._points)
        self._pick_values, self._pick_times = _column_pickers(self._points, self._decoders)
        self._wall = wall_clock
        self._mono = mono_clock
        self._client: AsyncModbusTcpClient | None = None

    @property
    def device_id(self) -> str:
        """The device's id from the site map."""
        return self._device_id

    @property
    def plan(self) -> tuple[ReadRequest, ...]:
        """The read requests one `read()` sends, in order."""
        return self._plan

    @property
    def connected(self) -> bool:
        """Whether the TCP connection is currently up."""
        return self._client is not None and self._client.connected

    async def connect(self) -> None:
        """Open the link; raise DriverConnectionError when the device cannot be reached."""
        await self.close()
        # A fresh client per connection: no request state survives from a dead link.
        client = AsyncModbusTcpClient(
            self._host,
            port=self._port,
            name=self._device_id,
            timeout=self._timeout,
            retries=self._retries,
            reconnect_delay=0,
        )
        client.register(_HoldingReply)
        client.register(_InputReply)
        try:
            connected = await client.connect()
            _resume_cancellation()
        except asyncio.CancelledError:
            client.close()
            raise
        if not connected:
            client.close()
            raise DriverConnectionError(
                f"{self._device_id}: cannot connect to {self._host}:{self._port}"
            )
        self._client = client

    async def close(self) -> None:
        """Close the link; safe to call twice."""
        client, self._client = self._client, None
        if client is not None:
            client.close()

    async def read(self) -> list[RawSample]:
        """Read every configured point once, in configuration order.

        A Modbus exception reply or an undecodable value makes BAD samples, not an exception.

        Raises:
            DriverConnectionError: the link is down (call `connect` again).
            DriverTimeoutError: the device did not answer in time.
        """
        by_key: dict[str, RawSample] = {}
        for decoder in self._decoders:
            reply = await self._exchange(decoder)
            for sample in self._samples(decoder, reply, self._wall(), self._mono()):
                by_key[sample.key] = sample
        return [by_key[point.key] for point in self._points]

    async def read_columns(self) -> ReadColumns:
        """`read`, columnar (`ReadColumns`): the same samples, the fast points' as columns.

        Raises what `read` raises.
        """
        flat: list[float | None] = []  # the fast points' values, request after request
        walls: list[float] = []
        monos: list[float] = []
        others: dict[str, RawSample] = {}
        for decoder in self._decoders:
            reply = await self._exchange(decoder)
            wall, mono = self._wall(), self._mono()
            walls.append(wall)
            monos.append(mono)
            values, payload = None, b""
            if isinstance(reply, _RegistersReply):
                payload = reply.payload
                values = decoder.fast_values(payload)
            if values is None:
                flat += [None] * len(decoder.fast)
                for sample in self._samples(decoder, reply, wall, mono):
                    others[sample.key] = sample
            else:
                flat += values
                for sample in decoder.slow_samples(payload, wall, mono):
                    others[sample.key] = sample
        flat.append(None)  # the slot of every point decoded one by one
        return ReadColumns(
            self._keys,
            self._pick_values(flat),
            self._pick_times(walls),
            self._pick_times(monos),
            others,
        )

    async def _exchange(self, decoder: ReplyDecoder) -> ModbusPDU | str:
        """Send one planned request: its reply, or the error its points are BAD with."""
        client = self._client
        if client is None or not client.connected:
            raise DriverConnectionError(f"{self._device_id}: not connected")
        try:
            response = await self._send(client, decoder.request)
        except ModbusException as exc:
            _resume_cancellation(exc)
            if isinstance(exc, ConnectionException):
                raise DriverConnectionError(f"{self._device_id}: {exc}") from exc
            if isinstance(exc, ModbusIOException):
                # pymodbus reports a silent device and a dropped link the same way.
                if client.connected:
                    raise DriverTimeoutError(f"{self._device_id}: {exc}") from exc
                raise DriverConnectionError(f"{self._device_id}: {exc}") from exc
            return f"request failed: {exc}"
        _resume_cancellation()
        return _misshapen(decoder.request, response) or response

    @staticmethod
    def _samples(
        decoder: ReplyDecoder, reply: ModbusPDU | str, t_wall: float, t_mono: float
    ) -> list[RawSample]:
        """One sample per point of `decoder`'s request from its reply (or its error)."""
        if isinstance(reply, str):
            return decoder.bad(reply, t_wall, t_mono)
        if reply.isError():
            code = reply.exception_code
            name = EXCEPTION_NAMES.get(code, "UNKNOWN")
            return decoder.bad(f"modbus exception {code} ({name})", t_wall, t_mono)
        if isinstance(reply, _RegistersReply):
            return decoder.decode(decoder.registers(reply.payload), t_wall, t_mono)
        values = reply.bits if is_bit_table(decoder.request.table) else reply.registers
        return decoder.decode(values, t_wall, t_mono)

    async def _send(self, client: AsyncModbusTcpClient, request: ReadRequest) -> ModbusPDU:
        """Issue the read function that matches the request's table."""
        address, count, unit = request.start, request.count, self._unit_id
        if request.table is Table.HOLDING:
            return await client.read_holding_registers(address, count=count, device_id=unit)
        if request.table is Table.INPUT:
            return await client.read_input_registers(address, count=count, device_id=unit)
        if request.table is Table.COIL:
            return await client.read_coils(address, count=count, device_id=unit)
        return await client.read_discrete_inputs(address, count=count, device_id=unit)


def _misshapen(request: ReadRequest, reply: ModbusPDU) -> str | None:
    """Why `reply` cannot answer `request`, or None: another function, another size.

    pymodbus pairs a reply with its request by transaction id alone, and takes any function's
    reply and any byte count the frame holds; the RTU master's checks (`find_reply`) are
    these.
    """
    function = FUNCTION_CODES[request.table]
    if reply.function_code & ~EXCEPTION_FLAG != function:
        return f"misshapen reply: function {reply.function_code} to a function {function} read"
    if reply.isError():
        return None
    expected = data_bytes(request)
    if isinstance(reply, _RegistersReply):
        got = reply.byte_count
    else:  # a bit reply: pymodbus keeps 8 bits per data byte
        got = len(getattr(reply, "bits", ())) // 8
    if got != expected:
        return (
            f"misshapen reply: {got} data bytes to a read of {request.count} at "
            f"{request.table} {request.start} ({expected} expected)"
        )
    return None


def _resume_cancellation(cause: BaseException | None = None) -> None:
    """Raise CancelledError if this task is being cancelled (see the module docstring).

    A cancellation that pymodbus's ``wait_for`` swallowed leaves the task's cancel request
    counted (`Task.cancelling`) but raises nothing; an error pymodbus raised instead of the
    cancellation is no link fault either.
    """
    task = asyncio.current_task()
    if task is not None and task.cancelling():
        raise asyncio.CancelledError from cause
