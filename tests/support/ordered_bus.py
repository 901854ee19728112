"""The real Modbus RTU bus, noting the order of its transactions on the wire.

Tests of a shared bus check whom a request waited for by counting, not by timing it: the
wall-clock time of a read on a starved loop holds the scheduling delays of a loaded machine
(a healthy read took 0.536 s, over two silent timeouts, at load 13 on 2 cores).
"""

from __future__ import annotations

from collections import Counter, defaultdict
from typing import TYPE_CHECKING

from drivers.modbus.rtu_bus import RtuBus

if TYPE_CHECKING:
    from drivers.modbus.plan import ReadRequest
    from drivers.serial.settings import SerialSettings


class OrderedBus(RtuBus):
    """The real bus, noting the unit of each read as it ends: the order of the wire.

    A read ends in the step its transaction ends in, under the bus's lock and before the next
    holder can run, so the reads end in the order their transactions were on the wire.
    `waits[unit]` has, for each request of `unit`, the units whose transactions ended while
    it waited (from the bus's `read` call to its own end): the one on the wire when it asked,
    and any the bus let go first. A driver asks for its first request in the step its own
    `read` is called in, and for each next one in the step the previous one ended in.
    """

    def __init__(self, line: SerialSettings) -> None:
        super().__init__(line)
        self.ended: list[int] = []
        self.waits: defaultdict[int, list[Counter[int]]] = defaultdict(list)

    async def read(
        self, unit: int, request: ReadRequest, *, reply_timeout: float
    ) -> tuple[int, ...]:
        asked = len(self.ended)
        try:
            return await super().read(unit, request, reply_timeout=reply_timeout)
        finally:
            self.waits[unit].append(Counter(self.ended[asked:]))
            self.ended.append(unit)


class OneOrderedBus:
    """A `drivers.base.Buses` for slaves on one port: they all share one `OrderedBus`."""

    def __init__(self) -> None:
        self.bus: OrderedBus | None = None

    def bus_for(self, device_id: str, line: SerialSettings) -> RtuBus:
        """Return the one bus, created for the first slave.

        Raises:
            ValueError: `line` is not the first slave's.
        """
        if self.bus is None:
            self.bus = OrderedBus(line)
        elif line != self.bus.settings:
            raise ValueError(f"{device_id}: {line} is not the bus's {self.bus.settings}")
        return self.bus
