"""A fixed status snapshot of a whole agent, for the tests of its JSON, its text and the socket
that serves it."""

from __future__ import annotations

import dataclasses
from typing import Any

from edge_agent.core.agent_status import (
    AgentSnapshot,
    AlarmStatus,
    BusStatus,
    DeviceFault,
    DeviceStatus,
    OutboxStatus,
    UplinkStatus,
)

T = 1_780_000_000.0  # whole milliseconds: the JSON carries times to the millisecond


def snapshot(**changes: Any) -> AgentSnapshot:
    """A whole agent's snapshot at T: three devices (one faulty), a bus, an alarm; `changes`
    replace its fields."""
    base = AgentSnapshot(
        gateway="91360100MA0000001X-GW01",
        version="0.9.0",
        config="0123456789abcdef",
        pid=4242,
        started=T - 3600,
        t=T,
        clock_synchronized=True,
        uplink=UplinkStatus(
            "mqtts://broker.example:8883", connected=True, last_ack=T - 1.5, published=120
        ),
        outbox=OutboxStatus("e1", 120, 2, 7, T - 4.25),
        devices=(
            DeviceStatus("plc-1", "modbus_tcp", T - 0.5, None),
            DeviceStatus(
                "gas-2", "serial", T - 90, DeviceFault("timeout", "气体探测器 无应答", T - 2)
            ),
            DeviceStatus("opc-3", "opcua", None, None),
        ),
        buses=(BusStatus("/dev/ttyUSB0", 0.4321, 3600, 1000, 3, 0, 0.38),),
        alarms=(AlarmStatus("F001-PC-01/over_staff", "F001-PC-01/over_staff/e1.1", "超员", "t"),),
    )
    return dataclasses.replace(base, **changes)
