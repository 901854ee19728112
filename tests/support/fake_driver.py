"""One fake `drivers.base.Driver` for tests that need a driver without a device.

Each read answers every point with the next value of a script, stamped with a fixed (or
given) wall clock; with `swallow_cancel` a read instead waits until it is cancelled and turns
the cancellation into the driver's own I/O error, as pymodbus does. Tests that need a real
device use the simulators and the real drivers instead.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from typing import Final

from drivers.base import DriverTimeoutError, Quality, RawSample
from edge_agent.core.points import ResolvedPoint

FIXED_WALL_TIME: Final = 1_763_900_000.0  # the same timestamp on every read unless told


@dataclass
class FakeDriver:
    """The Driver protocol answered from a script; counts its reads."""

    points: Sequence[ResolvedPoint] = ()
    values: Iterator[float] = field(default_factory=lambda: iter(()))
    device_id: str = "fake"
    clock: Callable[[], float] = lambda: FIXED_WALL_TIME
    swallow_cancel: bool = False
    reads: int = 0

    async def connect(self) -> None:
        return None

    async def read(self) -> list[RawSample]:
        self.reads += 1
        if self.swallow_cancel:
            try:
                await asyncio.sleep(30)
            except asyncio.CancelledError:
                raise DriverTimeoutError("request cancelled") from None
            return []
        value = next(self.values)
        return [
            RawSample(p.point, value, Quality.GOOD, self.clock(), time.monotonic())
            for p in self.points
        ]

    async def close(self) -> None:
        return None
