"""`edge-agent check --json`: the resolved points and planned RTU buses as JSON-ready data."""

from __future__ import annotations

from collections.abc import Sequence

from edge_agent.config import SiteConfig
from edge_agent.core.points import NodeSource, PatternSource, ResolvedPoint
from edge_agent.shell.buses import BusPlan


def check_json(
    config: SiteConfig, points: Sequence[ResolvedPoint], buses: Sequence[BusPlan]
) -> dict[str, object]:
    """`{"gateway", "devices", "points": [...], "rtu_buses": [...]}` for a checked site map."""
    return {
        "gateway": config.site.gateway,
        "devices": [device.id for device in config.devices],
        "points": [_point_json(point) for point in points],
        "rtu_buses": [_bus_json(plan) for plan in buses],
    }


def _point_json(point: ResolvedPoint) -> dict[str, object]:
    return {
        "device": point.device_id,
        "point": point.point,
        "quota": point.quota,
        "name": point.indicator_name,
        "source": _source_json(point),
        "scale": point.scale,
        "offset": point.offset,
        "unit": point.unit,
        "canonical_unit": point.canonical_unit,
    }


def _source_json(point: ResolvedPoint) -> dict[str, object]:
    """Where the point is read: a Modbus register, an OPC UA node or a line pattern."""
    source = point.source
    if isinstance(source, NodeSource):
        return {"node": source.node}
    if isinstance(source, PatternSource):
        return {"pattern": source.pattern}
    return {
        "table": source.table,
        "start": source.start,
        "bit": source.bit,
        "type": source.dtype,
        "byte_order": source.byte_order,
        "word_order": source.word_order,
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
