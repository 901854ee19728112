"""Which key says where a point's value lives, by driver: `address`, `node` or `pattern`.

Where a value lives depends on the device's driver, and the point says it with one key:
`address` for Modbus (TCP and RTU), `node` for OPC UA, `pattern` for serial ASCII. A point
alone cannot know its driver (template points serve any device), so the device checks that
each of its points has the right key and no other (`POINT_SOURCE_KEYS`).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Literal

from configkit.issues import KeyPath
from edge_agent.config.points import PointConfig

SourceKey = Literal["address", "node", "pattern"]
_SOURCE_KEYS: tuple[SourceKey, ...] = ("address", "node", "pattern")

POINT_SOURCE_KEYS: Mapping[str, SourceKey] = {
    "modbus_tcp": "address",
    "modbus_rtu": "address",
    "opcua": "node",
    "serial": "pattern",
}
"""The one key that says where a point's value lives, by driver."""

_SOURCE_HINTS: Mapping[SourceKey, str] = {
    "address": "their Modbus address, such as {table: holding, start: 0, type: float32}",
    "node": "their OPC UA node id, such as 'ns=2;s=Slope.G1.X'",
    "pattern": "a regular expression with a (?P<value>...) group, such as 'H2S=(?P<value>[0-9.]+)'",
}


def point_source_problems(driver: str, point: object) -> list[tuple[KeyPath, str]]:
    """Say what is wrong with where a point of a `driver` device reads its value.

    Works on the raw mapping from YAML (so that it can run alongside field validation and
    every problem shows at once) as well as on a `PointConfig`. Paths are relative to the
    point; anything that is not a mapping is left to field validation.
    """
    wanted = POINT_SOURCE_KEYS.get(driver)
    if wanted is None:
        return []
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
        users = " and ".join(d for d, k in POINT_SOURCE_KEYS.items() if k == key)
        problems.append(
            (
                (key,),
                f"{key} applies only to {users} points; {driver} points are read by `{wanted}`",
            )
        )
    return problems
