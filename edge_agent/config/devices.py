"""Device models of the site map: one per driver, told apart by the `driver` key.

`DeviceConfig` is a union discriminated by `driver`: `modbus_tcp`, `modbus_rtu`, `opcua` or
`serial` (the models are in `modbus_devices`, `opcua_device` and `serial_device`). Every
device has `id`, `poll` and points (its own and a template's); the rest are the driver's
settings. Rules that span devices (one line setting per RS-485 port, one unit id per slave, a
serial ASCII port to itself) are checked by `SiteConfig`, which sees them all.
"""

# No `from __future__ import annotations`: pydantic reads these annotations at runtime.

from typing import Annotated, TypeAlias, get_args

from pydantic import BeforeValidator, Field

from configkit.validation import raise_at
from edge_agent.config.modbus_devices import ModbusRtuDevice, ModbusTcpDevice
from edge_agent.config.opcua_device import OpcUaDevice
from edge_agent.config.serial_device import SerialDevice

__all__ = ["SUPPORTED_DRIVERS", "DeviceConfig", "DeviceModel", "SerialLineDevice"]


def _known_driver(data: object) -> object:
    # Checked before the union picks a model, so that a wrong driver is one clear error at
    # the `driver` key rather than pydantic's "does not match any of the expected tags".
    if not isinstance(data, dict):
        return data
    if "driver" not in data:
        raise_at([(("driver",), f"missing required key; one of {', '.join(SUPPORTED_DRIVERS)}")])
    driver = data["driver"]
    if driver not in SUPPORTED_DRIVERS:
        raise_at(
            [
                (
                    ("driver",),
                    (
                        f"driver {driver!r} is not supported by this version; "
                        f"supported: {', '.join(SUPPORTED_DRIVERS)}"
                    ),
                )
            ]
        )
    return data


DeviceModel: TypeAlias = ModbusTcpDevice | ModbusRtuDevice | OpcUaDevice | SerialDevice
"""The device models, one per driver: a new driver's model is added here."""

SUPPORTED_DRIVERS: tuple[str, ...] = tuple(
    str(value)
    for model in get_args(DeviceModel)
    for value in get_args(model.model_fields["driver"].annotation)
)
"""Drivers this version can run: the `driver` value of each device model."""

DeviceConfig: TypeAlias = Annotated[
    DeviceModel,
    Field(discriminator="driver"),
    BeforeValidator(_known_driver),
]
"""Any device of the site map, told apart by its `driver` key."""

SerialLineDevice: TypeAlias = ModbusRtuDevice | SerialDevice
"""Devices on a serial port."""
