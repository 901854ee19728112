"""The devices of the site map: one model per registered driver kind, told apart by `driver`.

`DeviceConfig` is a union discriminated by `driver`, assembled from the registry of driver
kinds (`edge_agent.kinds.KINDS`): each kind's folder holds its device model, so a new driver
adds nothing here. Every device has `id`, `poll` and points (its own and a template's); the
rest are the driver's settings. Rules that span devices (one line setting per RS-485 port,
one unit id per slave, a serial ASCII port to itself) are checked by `SiteConfig`, which sees
them all.

For the type checker a device is a `DeviceBase` (id, driver, poll, points): the set of models
is open, so code that needs a driver's own settings narrows with `isinstance`, as a kind's
`bind` does.
"""

# No `from __future__ import annotations`: pydantic reads these annotations at runtime.

from typing import TYPE_CHECKING, Annotated, TypeAlias, Union

from pydantic import BeforeValidator, Field

from configkit.validation import raise_at
from edge_agent.config.device_base import DeviceBase
from edge_agent.kinds import KINDS

__all__ = ["SUPPORTED_DRIVERS", "DeviceConfig"]

SUPPORTED_DRIVERS: tuple[str, ...] = tuple(kind.name for kind in KINDS)
"""Drivers this version can run: the `driver` value of each registered kind, in order."""


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


if TYPE_CHECKING:
    DeviceConfig: TypeAlias = DeviceBase
else:
    DeviceConfig = Annotated[
        Union[tuple(kind.config for kind in KINDS)],  # noqa: UP007 - a union of a run-time tuple
        Field(discriminator="driver"),
        BeforeValidator(_known_driver),
    ]
    """Any device of the site map, told apart by its `driver` key."""
