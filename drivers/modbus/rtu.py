"""Modbus RTU: the driver of one slave on a shared bus (`drivers.modbus.rtu_bus`).

Each configured slave has its own driver and poll cycle; the bus runs one transaction at a
time. `ModbusRtuDriver` stops its cycle at the first timeout, so a silent slave costs the bus
at most one timeout per poll cycle.
"""

from __future__ import annotations

import time
from typing import TYPE_CHECKING

from drivers.base import DriverConnectionError, DriverProtocolError, DriverTimeoutError, RawSample
from drivers.modbus.codec import MAX_UNIT_ID
from drivers.modbus.plan import DEFAULT_MAX_GAP, ReadRequest, RegisterPoint, plan_reads
from drivers.modbus.reply import ReplyDecoder
from drivers.modbus.rtu_frame import ModbusExceptionError

if TYPE_CHECKING:
    from collections.abc import Callable, Sequence

    from drivers.modbus.rtu_bus import RtuBus

__all__ = ["ModbusRtuDriver"]


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
