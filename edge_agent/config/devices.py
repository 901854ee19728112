"""Device models of the site map: one per driver this version can run."""

# No `from __future__ import annotations`: pydantic reads these annotations at runtime.

from typing import Annotated, Literal, Self, TypeAlias

from pydantic import Field, ModelWrapValidatorHandler, model_validator

from edge_agent.config.fields import Host, Name
from edge_agent.config.points import PointConfig
from specs.yamlconf import ConfigModel, Duration, KeyPath, duration_bounds, raise_at

SUPPORTED_DRIVERS = ("modbus_tcp",)
"""Drivers this version can run."""

PLANNED_DRIVERS = ("modbus_rtu", "opcua", "serial")
"""Drivers the site map names (DESIGN section 7) that a later version will run."""


class ModbusTcpDevice(ConfigModel):
    """An instrument or PLC reached over Modbus TCP, polled every `poll` seconds.

    Its points are the template's points, each coded `point_prefix + point`, followed by
    its own `points`; a device needs at least one of the two.
    """

    id: Name
    driver: Literal["modbus_tcp"]
    host: Host
    port: Annotated[int, Field(strict=True, ge=1, le=65535)] = 502
    unit_id: Annotated[int, Field(strict=True, ge=0, le=247)] = 1
    poll: Annotated[Duration, duration_bounds(above=0)]
    timeout: Annotated[Duration, duration_bounds(above=0)] = 1.0
    # Unused registers one read may span to merge neighbouring points (a read holds <= 125).
    max_gap: Annotated[int, Field(strict=True, ge=0, le=125)] = 8
    template: Name | None = None
    point_prefix: Name | None = None
    points: tuple[PointConfig, ...] = ()

    @model_validator(mode="wrap")
    @classmethod
    def _supported_driver(cls, data: object, handler: ModelWrapValidatorHandler[Self]) -> Self:
        # Checked before the fields so that an OPC UA device gets one clear error, not one
        # "unknown key" per OPC UA setting.
        driver = data.get("driver") if isinstance(data, dict) else None
        if isinstance(driver, str) and driver not in SUPPORTED_DRIVERS:
            later = "yet " if driver in PLANNED_DRIVERS else ""
            raise_at(
                [
                    (
                        ("driver",),
                        (
                            f"driver {driver!r} is not supported {later}by this version; "
                            f"supported: {', '.join(SUPPORTED_DRIVERS)}"
                        ),
                    )
                ]
            )
        return handler(data)

    @model_validator(mode="after")
    def _template_rules(self) -> Self:
        problems: list[tuple[KeyPath, str]] = []
        if self.template is not None and self.point_prefix is None:
            problems.append(
                (
                    ("template",),
                    (
                        "a device with a template also needs point_prefix, so that its point "
                        "codes differ from other devices of the same template"
                    ),
                )
            )
        if self.point_prefix is not None and self.template is None:
            problems.append((("point_prefix",), "point_prefix applies only with a template"))
        if self.template is None and not self.points:
            problems.append((("points",), "a device needs points, a template, or both"))
        if problems:
            raise_at(problems)
        return self


DeviceConfig: TypeAlias = ModbusTcpDevice
"""Any device of the site map; a union discriminated by `driver` once more drivers exist."""
