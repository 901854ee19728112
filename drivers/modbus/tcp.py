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
import time
from typing import TYPE_CHECKING

from pymodbus.client import AsyncModbusTcpClient
from pymodbus.exceptions import ConnectionException, ModbusException, ModbusIOException

from drivers.base import DriverConnectionError, DriverTimeoutError, RawSample
from drivers.modbus.codec import EXCEPTION_NAMES, Table, is_bit_table
from drivers.modbus.plan import DEFAULT_MAX_GAP, ReadRequest, RegisterPoint, plan_reads
from drivers.modbus.reply import ReplyDecoder

if TYPE_CHECKING:
    from collections.abc import Callable, Sequence

    from pymodbus.pdu import ModbusPDU

__all__ = ["ModbusTcpDriver"]


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
            for sample in await self._read_request(decoder):
                by_key[sample.key] = sample
        return [by_key[point.key] for point in self._points]

    async def _read_request(self, decoder: ReplyDecoder) -> list[RawSample]:
        """Send one planned request and turn its reply into one sample per point."""
        request = decoder.request
        client = self._client
        if client is None or not client.connected:
            raise DriverConnectionError(f"{self._device_id}: not connected")
        try:
            response = await self._send(client, request)
        except ModbusException as exc:
            _resume_cancellation(exc)
            if isinstance(exc, ConnectionException):
                raise DriverConnectionError(f"{self._device_id}: {exc}") from exc
            if isinstance(exc, ModbusIOException):
                # pymodbus reports a silent device and a dropped link the same way.
                if client.connected:
                    raise DriverTimeoutError(f"{self._device_id}: {exc}") from exc
                raise DriverConnectionError(f"{self._device_id}: {exc}") from exc
            return decoder.bad(f"request failed: {exc}", self._wall(), self._mono())
        _resume_cancellation()
        if response.isError():
            code = response.exception_code
            name = EXCEPTION_NAMES.get(code, "UNKNOWN")
            error = f"modbus exception {code} ({name})"
            return decoder.bad(error, self._wall(), self._mono())
        values = response.bits if is_bit_table(request.table) else response.registers
        return decoder.decode(values, self._wall(), self._mono())

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


def _resume_cancellation(cause: BaseException | None = None) -> None:
    """Raise CancelledError if this task is being cancelled (see the module docstring).

    A cancellation that pymodbus's ``wait_for`` swallowed leaves the task's cancel request
    counted (`Task.cancelling`) but raises nothing; an error pymodbus raised instead of the
    cancellation is no link fault either.
    """
    task = asyncio.current_task()
    if task is not None and task.cancelling():
        raise asyncio.CancelledError from cause
