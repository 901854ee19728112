"""Which key says where a point's value lives: `address`, `node` or `pattern`.

Where a value lives depends on the device's driver, and the point says it with one key:
`address` for Modbus (TCP and RTU), `node` for OPC UA, `pattern` for serial ASCII. A point
alone cannot know its driver (template points serve any device), so the device checks that
each of its points has the right key and no other. Each device model names its key
(`DeviceBase.point_source`); the table of every driver's key is the registry's
(`edge_agent.kinds.KINDS`), so a new driver that reads one of these sorts of source adds
nothing here.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Literal

from configkit.issues import KeyPath
from edge_agent.config.points import PointConfig

SourceKey = Literal["address", "node", "pattern"]
_SOURCE_KEYS: tuple[SourceKey, ...] = ("address", "node", "pattern")

_SOURCE_HINTS: Mapping[SourceKey, str] = {
    "address": "their Modbus address, such as {table: holding, start: 0, type: float32}",
    "node": "their OPC UA node id, such as 'ns=2;s=Slope.G1.X'",
    "pattern": "a regular expression with a (?P<value>...) group, such as 'H2S=(?P<value>[0-9.]+)'",
}


def point_source_keys() -> Mapping[str, SourceKey]:
    """The source key of every registered driver, in registration order."""
    # Imported when a point is checked, not with this module: the registry imports the
    # device models, and they import this module.
    from edge_agent.kinds import KINDS  # noqa: PLC0415

    return KINDS.source_keys()


def point_source_problems(
    driver: str, wanted: SourceKey, point: object
) -> list[tuple[KeyPath, str]]:
    """Say what is wrong with where a point of a `driver` device, read by `wanted`, is read.

    Works on the raw mapping from YAML (so that it can run alongside field validation and
    every problem shows at once) as well as on a `PointConfig`. Paths are relative to the
    point; anything that is not a mapping is left to field validation.
    """
    if isinstance(point, PointConfig):
        given = {key for key in _SOURCE_KEYS if getattr(point, key) is not None}
    elif isinstance(point, dict):
        given = {key for key in _SOURCE_KEYS if point.get(key) is not None}
    else:
        return []
    problems: list[tuple[KeyPath, str]] = []
    if wanted not in given:
        problems.append(
            ((wanted,), f"missing required key: {driver} points need {_SOURCE_HINTS[wanted]}")
        )
    for key in sorted(given - {wanted}):
        users = " and ".join(d for d, k in point_source_keys().items() if k == key)
        problems.append(
            (
                (key,),
                f"{key} applies only to {users} points; {driver} points are read by `{wanted}`",
            )
        )
    return problems
