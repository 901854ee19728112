"""The gateway's point catalogue as the collector receives it (`up/meta`)."""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping, Sequence

from edge_agent.core.chain import Identity
from edge_agent.core.points import ResolvedPoint
from specs.meta import GatewayMeta, PointMeta
from specs.records import iso_time


def gateway_meta(
    identity: Identity,
    points: Sequence[ResolvedPoint],
    *,
    issued_at: float,
    polls: Mapping[str, float] | None = None,
) -> GatewayMeta:
    """Describe every configured point: quota, canonical unit, name, device, thresholds.

    `polls` gives each device's poll period (seconds) by device id: every point of a device
    is read once per period, so the collector knows how many readings to expect.
    """
    periods = polls or {}
    return GatewayMeta(
        gateway=identity.gateway,
        enterprise=identity.enterprise,
        district=identity.district,
        domain=identity.domain,
        mine_code=identity.mine_code,
        issued_at=iso_time(issued_at),
        points=tuple(
            PointMeta(
                point=p.point,
                quota=p.quota,
                unit=p.canonical_unit,
                name=p.indicator_name,
                device=p.device_id,
                thresholds={
                    name: float(value)
                    for name, value in dataclasses.asdict(p.thresholds).items()
                    if isinstance(value, int | float)
                },
                poll=periods.get(p.device_id),
            )
            for p in points
        ),
    )
