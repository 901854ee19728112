"""The driver kinds the agent runs: one typed descriptor per kind, registered here.

`KINDS` is the one registration point. Each kind is a folder, `edge_agent/kinds/<kind>/`:
`config.py` holds its device model of the site map (built on `edge_agent.config`'s base pieces
and pure `drivers/` modules; never on `SiteConfig` or this registry, which need it loaded first,
nor on shell code: docs/contributing.md gives the rule), and `kind.py` its `DriverKind`: how that
config maps to the driver's settings (pure), how the driver is built, how `check` and `probe`
show its points, how it backs off (`descriptor.DriverKind`). Everything that lists drivers is
read from here: the union of device models `SiteConfig` validates (`edge_agent.config.devices`),
the supported `driver` values in its errors, the key each driver's points are read by
(`point_source`), the rules of a shared serial port (`serial_port`), the site map's reference
(`make docs`). So adding a driver is its protocol under `drivers/`, its folder here and one
entry in `KINDS` below (with its import); `tests/unit/test_one_folder_per_kind.py` proves it
with a throwaway kind, and docs/contributing.md says what each part holds. A driver that reads
a new sort of source (not an address, a node or a pattern) also adds it to
`edge_agent.config.point_source`, `PointConfig` and `edge_agent.core.points`.

The lookup goes by the device's class, not by a string: `bind(device, points)` finds the
kind whose `config` the device is, and that kind checks its own type once.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping, Sequence
from typing import TYPE_CHECKING, Any

from drivers.base import Buses
from edge_agent.kinds.descriptor import BoundDevice, DriverKind, PointView
from edge_agent.kinds.modbus import MODBUS_RTU, MODBUS_TCP
from edge_agent.kinds.opcua import OPCUA
from edge_agent.kinds.serial import SERIAL

if TYPE_CHECKING:
    from drivers.base import Driver
    from edge_agent.config.device_base import DeviceBase
    from edge_agent.config.point_source import SourceKey
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
        self._source_keys: dict[str, SourceKey] = {}
        for kind in kinds:
            if kind.config in self._by_config or kind.name in self._source_keys:
                raise ValueError(f"{kind.config.__name__} ({kind.name}) is registered twice")
            self._by_config[kind.config] = kind
            self._source_keys[kind.name] = kind.source

    def __iter__(self) -> Iterator[DriverKind[Any, Any]]:
        return iter(self._by_config.values())

    def source_keys(self) -> Mapping[str, SourceKey]:
        """The key each kind's points are read by (`address`...), by the kind's name."""
        return self._source_keys

    def kind_of(self, device: DeviceBase) -> DriverKind[Any, Any]:
        """The kind of `device`.

        Raises:
            LookupError: no kind reads the device's model (a test keeps this from shipping).
        """
        kind = self._by_config.get(type(device))
        if kind is None:
            raise LookupError(f"no driver kind registered for {type(device).__name__}")
        return kind

    def bind(self, device: DeviceBase, points: Sequence[ResolvedPoint]) -> BoundDevice:
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
    device: DeviceBase, points: Sequence[ResolvedPoint], *, buses: Buses | None = None
) -> Driver:
    """A driver for `device` reading `points` (its resolved points, in configuration order).

    `buses` is where a device on a shared serial line (Modbus RTU) finds the bus of its port;
    without it the device gets a bus of its own (fine when it is the only user of the port at
    a time).
    """
    return KINDS.bind(device, points).build(buses)
