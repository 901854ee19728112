"""The exports' reads (`collector export`), once for both backends (see `queries`).

A gateway's profile and point descriptions, and its readings with the block each came from.
"""

from __future__ import annotations

from collections.abc import Mapping

from collector.readmodel import (
    GatewayProfile,
    Page,
    PointMetaRow,
    ReadingAfter,
    ReadingFilter,
    SourcedReading,
)
from collector.storage.queries import Fetch, reading_clauses, where_all
from collector.storage.records import READING_COLUMNS, reading, thresholds


async def gateway_profile(fetch: Fetch, gateway: str) -> GatewayProfile | None:
    """Domain and mine code from the gateway's newest stored block; None without blocks."""
    # The newest block is the top stored seq of the most recently active sequence (its
    # max_seq may be a declared seq that has no block): key lookups.
    rows = await fetch(
        "SELECT b.domain, b.mine_code FROM ingest_state i JOIN blocks b"
        " ON b.gateway = i.gateway AND b.epoch = i.epoch AND b.seq = (SELECT max(x.seq)"
        " FROM blocks x WHERE x.gateway = i.gateway AND x.epoch = i.epoch)"
        " WHERE i.gateway = ? ORDER BY i.last_seen DESC, i.first_seen DESC LIMIT 1",
        (gateway,),
    )
    for row in rows:
        return GatewayProfile(gateway, row[0], row[1])
    return None


async def point_metas(fetch: Fetch, gateway: str) -> Mapping[str, PointMetaRow]:
    """The newest meta description of each point of a gateway, by point."""
    rows = await fetch(
        "SELECT gateway, point, quota, unit, name, device, thresholds, issued_at"
        " FROM point_meta WHERE gateway = ? ORDER BY point",
        (gateway,),
    )
    return {
        row[1]: PointMetaRow(
            gateway=row[0],
            point=row[1],
            quota=row[2],
            unit=row[3],
            name=row[4],
            device=row[5],
            thresholds=thresholds(row[6]),
            issued_at=row[7],
        )
        for row in rows
    }


async def sourced_readings(
    fetch: Fetch, where: ReadingFilter, *, after: ReadingAfter | None, limit: int
) -> Page[SourcedReading]:
    """Readings with their source block, ordered like `readings`."""
    clauses, params = reading_clauses(where, after)
    rows = await fetch(
        f"SELECT {READING_COLUMNS}, r.id, r.epoch, r.seq, r.idx, b.domain, b.mine_code"
        " FROM readings r JOIN blocks b"
        " ON b.gateway = r.gateway AND b.epoch = r.epoch AND b.seq = r.seq"
        f" WHERE {where_all(clauses)}"
        " ORDER BY r.gateway, r.point, r.t, r.id LIMIT ?",
        (*params, limit + 1),
    )
    return Page.of(
        [
            SourcedReading(reading(row, row[8]), row[9], row[10], row[11], row[12], row[13])
            for row in rows
        ],
        limit,
    )
