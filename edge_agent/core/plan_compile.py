"""A checked site map compiled into the plan the agent runs from (`edge_agent.core.plan`; pure).

The only place a run plan is made from the config models: the agent's process never imports
them (G7), and everything it reads of the map goes through here.
"""

from __future__ import annotations

import hashlib
from pathlib import Path
from typing import TYPE_CHECKING

from edge_agent.core.alarms.build import compile_rules
from edge_agent.core.chain import Identity
from edge_agent.core.plan import AgentPlan, DevicePlan, MetricsPlan, OutboxPlan, UplinkPlan
from edge_agent.core.points import ResolvedPoint, resolve_points
from edge_agent.core.rtu_plan import BusPlan, plan_buses
from edge_agent.kinds import KINDS

if TYPE_CHECKING:
    from collections.abc import Callable, Sequence

    from edge_agent.config import SiteConfig
    from specs.catalogue import Catalogue


def config_fingerprint(config: SiteConfig) -> str:
    """Which device map the agent runs: SHA-256 of its effective configuration, 16 hex digits.

    The effective (parsed) configuration, not the file's bytes: a comment or a reordered key
    changes nothing that runs, and so does not change the fingerprint.
    """
    # warnings off: BrokerUrl has no serializer and dumps as its parts, which is still exact.
    canonical = config.model_dump_json(warnings=False).encode()
    return hashlib.sha256(canonical).hexdigest()[:16]


def identity_of(config: SiteConfig) -> Identity:
    """The identifiers every block of this site carries."""
    return Identity(
        gateway=config.site.gateway,
        enterprise=config.site.enterprise,
        district=config.site.district,
        domain=config.site.domain,
        mine_code=config.site.mine_code,
    )


def _uplink(config: SiteConfig) -> UplinkPlan:
    uplink, tls = config.uplink, config.uplink.tls
    return UplinkPlan(
        host=uplink.host,
        port=uplink.port,
        tls=uplink.broker.tls,
        ca=None if tls is None else tls.ca,
        cert=None if tls is None else tls.cert,
        key=None if tls is None else tls.key,
        keepalive=uplink.keepalive,
        session_expiry=uplink.session_expiry,
        ack_timeout=uplink.ack_timeout,
        max_inflight=uplink.max_inflight,
        publish_rate=uplink.publish_rate,
        encoding=uplink.wire_encoding,
        collector_key_files=uplink.collector_key_files,
    )


def device_plans(config: SiteConfig, points: Sequence[ResolvedPoint]) -> tuple[DevicePlan, ...]:
    """Each device of `config` as its kind plans it, reading its share of `points`."""
    by_device: dict[str, list[ResolvedPoint]] = {}
    for point in points:
        by_device.setdefault(point.device_id, []).append(point)
    return tuple(
        KINDS.kind_of(device).plan(device, by_device.get(device.id, []))
        for device in config.devices
    )


def bus_plans(
    config: SiteConfig, points: Sequence[ResolvedPoint], *, wire_of: Callable[[str], str] = str
) -> tuple[BusPlan, ...]:
    """The planned load of each RTU bus of `config` (`plan_buses` of its device plans)."""
    return plan_buses(device_plans(config, points), wire_of=wire_of)


def compile_plan(
    config: SiteConfig,
    catalogue: Catalogue,
    *,
    site_file: Path | None = None,
    site_text: str | None = None,
    wire_of: Callable[[str], str] = str,
) -> AgentPlan:
    """The plan of `config` (checked against `catalogue`), read from `site_file` if given.

    `site_text` is the text `config` was parsed from: a pushed map is checked against it.
    `wire_of` tells which serial ports are one (`plan_buses`).

    Raises:
        LookupError: a point's quota is not in the catalogue (the loader refused it already).
    """
    points = resolve_points(config)
    devices = device_plans(config, points)
    indicators = {}
    for point in points:
        indicator = catalogue.get(point.quota)
        if indicator is None:
            raise LookupError(f"quota {point.quota} vanished from the catalogue")
        indicators[point.quota] = indicator
    outbox = config.outbox
    metrics = config.metrics
    return AgentPlan(
        identity=identity_of(config),
        key_file=config.signing.key_file,
        uplink=_uplink(config),
        outbox=OutboxPlan(
            path=outbox.path,
            max_bytes=outbox.max_bytes,
            retain_days=outbox.retain_days,
            flush_interval=outbox.flush_interval,
            flush_readings=outbox.flush_readings,
        ),
        metrics=None
        if metrics is None
        else MetricsPlan(host=metrics.listen.host, port=metrics.listen.port),
        rollback_after=config.commands.rollback_after,
        devices=devices,
        points=tuple(points),
        indicators=indicators,
        rules=compile_rules(points, config.alarms, catalogue),
        buses=plan_buses(devices, wire_of=wire_of),
        config_hash=config_fingerprint(config),
        site_file=site_file,
        site_text=site_text,
    )
