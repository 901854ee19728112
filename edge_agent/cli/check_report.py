"""`edge-agent check --json`: the resolved points and planned RTU buses as JSON-ready data."""

from __future__ import annotations

from collections.abc import Callable, Sequence

from edge_agent.config import SiteConfig
from edge_agent.core.points import ResolvedPoint
from edge_agent.core.rtu_plan import BusPlan
from edge_agent.kinds import KINDS


def check_json(
    config: SiteConfig, points: Sequence[ResolvedPoint], buses: Sequence[BusPlan]
) -> dict[str, object]:
    """`{"gateway", "devices", "points": [...], "rtu_buses": [...]}` for a checked site map."""
    sources = {device.id: KINDS.kind_of(device).view.as_json for device in config.devices}
    return {
        "gateway": config.site.gateway,
        "devices": [device.id for device in config.devices],
        "points": [_point_json(point, sources[point.device_id]) for point in points],
        "rtu_buses": [_bus_json(plan) for plan in buses],
    }


def _point_json(
    point: ResolvedPoint, source: Callable[[ResolvedPoint], dict[str, object]]
) -> dict[str, object]:
    return {
        "device": point.device_id,
        "point": point.point,
        "quota": point.quota,
        "name": point.indicator_name,
        # Where the point is read: a Modbus register, an OPC UA node or a line pattern.
        "source": source(point),
        "scale": point.scale,
        "offset": point.offset,
        "unit": point.unit,
        "canonical_unit": point.canonical_unit,
    }


def _bus_json(plan: BusPlan) -> dict[str, object]:
    return {
        "port": plan.port,
        "line": plan.line,
        "devices": list(plan.devices),
        "requests_per_cycle": plan.requests_per_cycle,
        "utilization": plan.utilization,
        "one_silent": plan.one_silent,
    }
