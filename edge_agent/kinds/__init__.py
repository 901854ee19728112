"""The driver kinds the agent runs: one typed descriptor per kind, registered here.

`KINDS` is the one registration point: each kind's module (`edge_agent/kinds/<kind>.py`)
says which device model of the site map it reads, how that config maps to the driver's
settings (pure), how the driver is built, how `check` and `probe` show its points and how
it backs off (`descriptor.DriverKind`). Adding a driver is its folder under `drivers/`, its
device model (a module in `edge_agent/config/`, named in `devices.DeviceModel`; the list of
supported drivers follows from it), its kind module and one line below;
`tests/unit/test_driver_kinds.py` fails while a model of the union has no kind. A driver
that reads a new sort of source (not an address, a node or a pattern) also adds it to
`edge_agent.config.point_source` and `edge_agent.core.points`.

The lookup goes by the device's class, not by a string: `bind(device, points)` finds the
kind whose `config` the device is, and that kind checks its own type once.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from typing import TYPE_CHECKING, Any

from edge_agent.kinds.descriptor import BoundDevice, Buses, DriverKind, PointView
from edge_agent.kinds.modbus import MODBUS_RTU, MODBUS_TCP
from edge_agent.kinds.opcua import OPCUA
from edge_agent.kinds.serial import SERIAL

if TYPE_CHECKING:
    from drivers.base import Driver
    from edge_agent.config import DeviceConfig
    from edge_agent.core.points import ResolvedPoint

__all__ = ["KINDS", "BoundDevice", "Buses", "DriverKind", "Kinds", "PointView", "build_driver"]


class Kinds:
    """The registered kinds, looked up by the class of a device's config."""

    def __init__(self, *kinds: DriverKind[Any, Any]) -> None:
        """Register `kinds`, in the order `check` shows their tables.

        Raises:
            ValueError: two kinds read the same device model.
        """
        self._by_config: dict[type, DriverKind[Any, Any]] = {}
        for kind in kinds:
            if kind.config in self._by_config:
                raise ValueError(f"{kind.config.__name__} is registered twice")
            self._by_config[kind.config] = kind

    def __iter__(self) -> Iterator[DriverKind[Any, Any]]:
        return iter(self._by_config.values())

    def kind_of(self, device: DeviceConfig) -> DriverKind[Any, Any]:
        """The kind of `device`.

        Raises:
            LookupError: no kind reads the device's model (a test keeps this from shipping).
        """
        kind = self._by_config.get(type(device))
        if kind is None:
            raise LookupError(f"no driver kind registered for {type(device).__name__}")
        return kind

    def bind(self, device: DeviceConfig, points: Sequence[ResolvedPoint]) -> BoundDevice:
        """`device` reading `points`, with everything its kind says about it."""
        return self.kind_of(device).bind(device, points)

    def views(self) -> tuple[PointView, ...]:
        """The point views of the kinds, each once, in registration order."""
        return tuple(dict.fromkeys(kind.view for kind in self))


KINDS = Kinds(
    MODBUS_TCP,
    MODBUS_RTU,
    OPCUA,
    SERIAL,
)
"""Every driver kind this version runs; a new kind is one line here."""


def build_driver(
    device: DeviceConfig, points: Sequence[ResolvedPoint], *, buses: Buses | None = None
) -> Driver:
    """A driver for `device` reading `points` (its resolved points, in configuration order).

    `buses` is where a device on a shared serial line (Modbus RTU) finds the bus of its port;
    without it the device gets a bus of its own (fine when it is the only user of the port at
    a time).
    """
    return KINDS.bind(device, points).build(buses)
