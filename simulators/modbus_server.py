"""What every Modbus TCP simulator shares: the pymodbus server, the fault switch, start/stop."""

from __future__ import annotations

import asyncio
import random
from typing import TYPE_CHECKING

from pymodbus.server import ModbusBaseServer, ModbusTcpServer

from simulators.faults import Fault, FaultInjector
from simulators.lifecycle import Simulator, cancel_task

if TYPE_CHECKING:
    from pymodbus.pdu import ModbusPDU
    from pymodbus.simulator import SimDevice


class ModbusTcpSimulator(Simulator):
    """A pymodbus TCP server whose registers a subclass's `_update_forever` keeps moving."""

    starts_on_enter = False  # the serve_* factory started it already

    def __init__(
        self,
        host: str,
        port: int,
        *,
        unit_id: int,
        device: SimDevice,
        fault: Fault | None,
        task_name: str,
    ) -> None:
        self.host = host
        self.port = port
        self.unit_id = unit_id
        self.request_count = 0
        self._task_name = task_name
        self._task: asyncio.Task[None] | None = None
        # Garbage draws from its own generator: a fault must not shift the seeded model.
        self._faults = FaultInjector(random.Random(0), fault)
        self._server = ModbusTcpServer(
            device,
            address=(host, port),
            trace_pdu=self._trace_pdu,
            trace_packet=self._faults.trace_packet,
        )

    @property
    def fault(self) -> Fault:
        """The current fault mode (`Fault.normal()` when behaving)."""
        return self._faults.fault

    def set_fault(self, fault: Fault) -> None:
        """Misbehave this way from the next reply on (see simulators.faults)."""
        self._faults.fault = fault

    def clear_fault(self) -> None:
        """Behave normally again; frozen values resume at the next update."""
        self._faults.fault = Fault.normal()

    def _trace_pdu(self, sending: bool, pdu: ModbusPDU) -> ModbusPDU:
        """Count each request the server receives and fault its replies (pymodbus hook)."""
        if not sending:
            self.request_count += 1
        return self._faults.trace_pdu(sending, pdu)

    async def _update_forever(self) -> None:
        """Move the model and publish its registers; each simulator says how."""
        raise NotImplementedError

    async def start(self) -> None:
        """Listen and start the update task.

        Raises:
            OSError: the address cannot be bound.
        """
        try:
            await self._server.serve_forever(background=True)
        except RuntimeError as exc:  # pymodbus's "Could not start listen"
            await self.stop()
            raise OSError(f"cannot listen on {self.host}:{self.port}") from exc
        sockets = getattr(self._server.transport, "sockets", None) or ()
        if sockets:  # port 0 asked the kernel for a free port; report the one it gave
            self.port = int(sockets[0].getsockname()[1])
        self._task = asyncio.create_task(self._update_forever(), name=self._task_name)

    async def stop(self) -> None:
        """Stop updating, close every client connection and the listener; safe to call twice."""
        task, self._task = self._task, None
        await cancel_task(task)
        self._server.close()
        # pymodbus keeps the last server in a class attribute; do not pin a stopped one.
        if ModbusBaseServer.active_server is self._server:
            ModbusBaseServer.active_server = None
