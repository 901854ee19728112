"""Rows of the PostgreSQL tables as model records, and the column lists that produce them.

The decoders are SQLite's: the same JSON text columns, the same column order, so that both
backends answer with equal records.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from typing import Final

import asyncpg

from collector.model import AlarmState, Gateway, GatewayKey, ReadingRow, Scope

Span = tuple[int, int | None]

ALARM_COLUMNS: Final = (
    "a.gateway, a.alarm_id, a.point, a.quota, a.level, a.raised_at, a.cleared_at, a.value,"
    " a.threshold, a.unit, a.trigger_t, a.related, a.detail, a.raise_epoch, a.raise_seq,"
    " a.raise_idx, a.clear_epoch, a.clear_seq, a.clear_idx"
)
READING_COLUMNS: Final = "r.gateway, r.point, r.quota, r.t, r.value, r.unit, r.quality, r.flags"
GATEWAY_COLUMNS: Final = "gateway, enterprise, district, registered_at"
KEY_COLUMNS: Final = (
    "kid, gateway, alg, public_pem, added_at, revoked_at, retired_at, announced_by,"
    " announced_epoch, announced_seq"
)


def gateway(row: asyncpg.Record) -> Gateway:
    """A `gateways` row (GATEWAY_COLUMNS)."""
    return Gateway(row[0], row[1], row[2], row[3])


def gateway_key(row: asyncpg.Record) -> GatewayKey:
    """A `gateway_keys` row (KEY_COLUMNS)."""
    return GatewayKey(
        row[0], row[1], row[2], bytes(row[3]), row[4], row[5], row[6], row[7], row[8], row[9]
    )


def reading(row: asyncpg.Record, rowid: int = 0) -> ReadingRow:
    """A reading (READING_COLUMNS first)."""
    return ReadingRow(
        gateway=row[0],
        point=row[1],
        quota=row[2],
        t=row[3],
        value=row[4],
        unit=row[5],
        quality=row[6],
        flags=tuple(json.loads(row[7])),
        rowid=rowid,
    )


def alarm_state(row: asyncpg.Record) -> AlarmState:
    """An `alarms` row (ALARM_COLUMNS)."""
    raised_in = None if row[13] is None else (str(row[13]), int(row[14]), int(row[15]))
    cleared_in = None if row[16] is None else (str(row[16]), int(row[17]), int(row[18]))
    return AlarmState(
        gateway=row[0],
        alarm_id=row[1],
        point=row[2],
        quota=row[3],
        level=row[4],
        raised_at=row[5],
        cleared_at=row[6],
        value=row[7],
        threshold=row[8],
        unit=row[9],
        trigger_t=row[10],
        related=row[11],
        detail=row[12],
        raised_in=raised_in,
        cleared_in=cleared_in,
    )


def thresholds(text: str) -> dict[str, float]:
    """A point's thresholds from their JSON text."""
    return {str(name): float(limit) for name, limit in json.loads(text).items()}


def spans(text: str) -> tuple[Span, ...]:
    """Declared seq ranges from their JSON text ([from, to], to null: open-ended)."""
    return tuple((int(low), None if high is None else int(high)) for low, high in json.loads(text))


def holes(text: str) -> tuple[tuple[int, int], ...]:
    """Missing seq ranges from their JSON text."""
    return tuple((int(low), int(high)) for low, high in json.loads(text))


def json_ranges(ranges: Sequence[tuple[int, int | None]]) -> str:
    """Seq ranges as the JSON text `ingest_state` keeps (SQLite's exact text)."""
    return json.dumps([list(r) for r in ranges])


class Params:
    """Positional parameters of one statement: `add` returns the `$n` that names a value."""

    def __init__(self) -> None:
        self.values: list[object] = []

    def add(self, value: object) -> str:
        """Append `value`; its placeholder."""
        self.values.append(value)
        return f"${len(self.values)}"


def scope_clause(scope: Scope, column: str, params: Params) -> str:
    """`AND column = ANY(...)` for a district-limited scope (nothing for `*`)."""
    if scope.districts is None:
        return ""
    if not scope.districts:
        return " AND false"
    return f" AND {column} = ANY({params.add(sorted(scope.districts))}::text[])"
