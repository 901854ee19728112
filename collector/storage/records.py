"""Rows of the tables both backends share, as model records, and the columns that give them.

One decoder per table for SQLite and PostgreSQL alike: the same JSON text columns in the same
column order, so both backends answer with equal records. A row is anything indexable
(`sqlite3.Row`, `asyncpg.Record`).
"""

from __future__ import annotations

import json
import math
from collections.abc import Sequence
from typing import Any, Final, Protocol

from collector.audit.chain import AuditKind, AuditRow
from collector.model import Gateway, GatewayKey, KeyGrant, StreamState
from collector.readmodel import AlarmState, ReadingRow
from collector.tokens import StoredToken

Span = tuple[int, int | None]


class Row(Protocol):
    """A row as either driver returns it: its columns by position."""

    def __getitem__(self, index: int, /) -> Any:  # noqa: ANN401 - a column has its table's type
        """The column at `index`."""


ALARM_COLUMNS: Final = (
    "a.gateway, a.alarm_id, a.point, a.quota, a.level, a.raised_at, a.cleared_at, a.value,"
    " a.threshold, a.unit, a.trigger_t, a.related, a.detail, a.raise_epoch, a.raise_seq,"
    " a.raise_idx, a.clear_epoch, a.clear_seq, a.clear_idx, a.raise_ahead, a.clear_ahead"
)
GATEWAY_COLUMNS: Final = "gateway, enterprise, district, registered_at"
KEY_COLUMNS: Final = (
    "kid, gateway, alg, public_pem, added_at, revoked_at, retired_at, announced_by,"
    " announced_epoch, announced_seq"
)
# An announced key: never revoked or retired yet when it is added.
INSERT_ANNOUNCED_KEY: Final = (
    f"INSERT INTO gateway_keys ({KEY_COLUMNS}) VALUES (?, ?, ?, ?, ?, NULL, NULL, ?, ?, ?)"
)
READING_COLUMNS: Final = "r.gateway, r.point, r.quota, r.t, r.value, r.unit, r.quality, r.flags"
TOKEN_COLUMNS: Final = "name, districts, created_at, revoked_at"  # noqa: S105 - columns, not a secret
# Keys with their owning gateways: KEY_COLUMNS of `k`, then GATEWAY_COLUMNS of `g` (`grant`).
GRANT_SELECT: Final = (
    "SELECT k.kid, k.gateway, k.alg, k.public_pem, k.added_at, k.revoked_at,"
    " k.retired_at, k.announced_by, k.announced_epoch, k.announced_seq,"
    " g.gateway, g.enterprise, g.district, g.registered_at"
    " FROM gateway_keys k JOIN gateways g ON g.gateway = k.gateway"
)


def gateway(row: Row) -> Gateway:
    """A `gateways` row (GATEWAY_COLUMNS)."""
    return Gateway(row[0], row[1], row[2], row[3])


def announced_key_values(key: GatewayKey) -> tuple[object, ...]:
    """The parameters of INSERT_ANNOUNCED_KEY for `key`."""
    return (
        key.kid,
        key.gateway,
        key.alg,
        key.public_pem,
        key.added_at,
        key.announced_by,
        key.announced_epoch,
        key.announced_seq,
    )


def stored_bytes(value: bytes | memoryview | str | float) -> bytes:
    """A bytes column's value; text or a number kept there (SQLite) as its text's UTF-8.

    SQLite keeps text or a number in a bytes column when someone typed it in by hand
    (`UPDATE blocks SET payload = '...'`, `... = 2.5`): its text is what they meant, and
    whatever checks those bytes (a signature) then names the row instead of a TypeError
    stopping the check (or `bytes(n)` reading an integer as n zero bytes).
    """
    if isinstance(value, bytes | memoryview):
        return bytes(value)
    return str(value).encode("utf-8")


def gateway_key(row: Row) -> GatewayKey:
    """A `gateway_keys` row (KEY_COLUMNS)."""
    return GatewayKey(
        row[0], row[1], row[2], stored_bytes(row[3]), row[4], row[5], row[6], row[7], row[8], row[9]
    )


def grant(row: Row) -> KeyGrant:
    """A key and its owning gateway (GRANT_SELECT)."""
    return KeyGrant(gateway_key(row), Gateway(row[10], row[11], row[12], row[13]))


def stored_token(row: Row) -> StoredToken:
    """An `api_tokens` row (TOKEN_COLUMNS); the casts are for what SQLite holds (REAL, TEXT)."""
    revoked = row[3]
    return StoredToken(
        name=str(row[0]),
        districts=tuple(json.loads(str(row[1]))),
        created_at=float(row[2]),
        revoked_at=None if revoked is None else float(revoked),
    )


def reading(row: Row, rowid: int = 0) -> ReadingRow:
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


def alarm_state(row: Row) -> AlarmState:
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
        raised_ahead=bool(row[19]),
        cleared_ahead=bool(row[20]),
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
    """Seq ranges as the JSON text `ingest_state` keeps."""
    return json.dumps([list(r) for r in ranges])


AUDIT_COLUMNS: Final = (
    "kind, at, coalesce(last_at, at), minute, source, gateway, topic, reason, detail,"
    " payload_hash, count, chain_seq, prev, hash"
)
"""The columns `audit_row` decodes; a row's `id`, when selected after them, is at AUDIT_ID."""
AUDIT_ID: Final = 14
AUDIT_SEQ: Final = 11
AUDIT_PREV: Final = 12
AUDIT_HASH: Final = 13
INSERT_AUDIT: Final = (
    "INSERT INTO audit (kind, at, last_at, minute, source, gateway, topic, reason, detail,"
    " payload_hash, count) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)"
)


def finite_number(value: object, column: str) -> float:
    """A number column's value; ValueError naming the column when it holds no finite number.

    Only a row changed by hand does: SQLite keeps text there, either database Infinity.
    """
    try:
        number = float(value)  # type: ignore[arg-type] # checked right here
    except (TypeError, ValueError):
        raise ValueError(f"{column} {value!r} is not a number") from None
    if not math.isfinite(number):
        raise ValueError(f"{column} {value!r} is not a finite number")
    return number


def _whole(value: object, column: str) -> int:
    """A count column's value; ValueError naming the column when it holds no whole number."""
    if isinstance(value, int) and not isinstance(value, bool):
        return value
    raise ValueError(f"{column} {value!r} is not a whole number")


def audit_row(row: Row) -> AuditRow:
    """An AuditRow from the AUDIT_COLUMNS of a row; ValueError naming a column it cannot hold."""
    minute, seq = row[3], row[AUDIT_SEQ]
    return AuditRow(
        kind=AuditKind(str(row[0])),
        at=finite_number(row[1], "at"),
        last_at=finite_number(row[2], "last_at"),
        minute=None if minute is None else finite_number(minute, "minute"),
        source=str(row[4]),
        gateway=None if row[5] is None else str(row[5]),
        topic=str(row[6]),
        reason=str(row[7]),
        detail=str(row[8]),
        payload_hash=str(row[9]),
        count=_whole(row[10], "count"),
        chain_seq=None if seq is None else int(seq),
        prev=None if row[12] is None else str(row[12]),
        hash=None if row[AUDIT_HASH] is None else str(row[AUDIT_HASH]),
    )


def audit_values(row: AuditRow) -> tuple[object, ...]:
    """The INSERT_AUDIT parameters of a row."""
    return (
        row.kind.value,
        row.at,
        row.last_at,
        row.minute,
        row.source,
        row.gateway,
        row.topic,
        row.reason,
        row.detail,
        row.payload_hash,
        row.count,
    )


STREAM_COLUMNS: Final = (
    "s.gateway, s.epoch, s.acked_through, s.max_seq, s.missing, s.declared, b.hash, s.conflict,"
    " s.pruned_through"
)
"""The columns `stream_state` decodes: `ingest_state s`, and `b` joined by ACKED_BLOCK."""
ACKED_BLOCK: Final = (
    "LEFT JOIN blocks b ON b.gateway = s.gateway AND b.epoch = s.epoch AND b.seq = s.acked_through"
)
"""The stored block at a stream's acked_through, whose hash STREAM_COLUMNS names."""


def stream_state(row: Row) -> StreamState:
    """A stream's progress from its `ingest_state` row and acked block (STREAM_COLUMNS)."""
    return StreamState(
        row[0], row[1], row[2], row[3], holes(row[4]), spans(row[5]), row[6], bool(row[7]), row[8]
    )
