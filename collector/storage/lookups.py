"""The ingest batch's lookups by key, once for both backends: the key table is the dialect's.

`collector.storage.batch.BatchSteps` looks up the stored links, readings, alarms, streams,
statuses and presence intervals a batch touches. The statements are the same but for how the
keys become a table `k`: SQLite joins a `VALUES` list chunk by chunk (`CROSS JOIN`, so that
`k` stays the outer loop), PostgreSQL `unnest`s one array per column. A backend's
`KeyLookups._lookup` renders `{keys}`, the keys as `k` and the join to the table after it.
The steps built on a lookup (presence) and the audit append (`collector.storage.audit`, on
the backend's `_chain`) are here too.
"""

from __future__ import annotations

import abc
from collections.abc import Collection, Sequence
from typing import Any, Final

from collector.audit.chain import ActionEntry
from collector.model import AuditEntry, IngestBatch, LiveKey, StreamState
from collector.quality.core import Presence, advance_presence, signs
from collector.readmodel import AlarmState
from collector.storage import audit
from collector.storage.ahead import MetaKey
from collector.storage.alarms import AlarmKey
from collector.storage.audit import ChainDb
from collector.storage.block_retention import raw_kept_from
from collector.storage.core import BlockKey, Link, Stream
from collector.storage.gap_records import GAP_IDENTITY, GapIdentity, GapKey
from collector.storage.ingest_rows import Params, Series
from collector.storage.readings import ReadingKey, ReadingValue
from collector.storage.records import (
    ACKED_BLOCK,
    ALARM_COLUMNS,
    STREAM_COLUMNS,
    Row,
    alarm_state,
    stream_state,
)

KeyColumns = tuple[tuple[str, str], ...]
"""The key's columns, each with its PostgreSQL type (what `unnest` casts the array to)."""

BLOCK_KEY: Final[KeyColumns] = (("gateway", "text"), ("epoch", "text"), ("seq", "bigint"))
SERIES_KEY: Final[KeyColumns] = (("gateway", "text"), ("point", "text"))
READING_KEY: Final[KeyColumns] = (*SERIES_KEY, ("t", "float8"))
ALARM_KEY: Final[KeyColumns] = (("gateway", "text"), ("alarm_id", "text"))
STREAM_KEY: Final[KeyColumns] = (("gateway", "text"), ("epoch", "text"))
GATEWAY_KEY: Final[KeyColumns] = (("gateway", "text"),)
GAP_KEY: Final[KeyColumns] = (("gateway", "text"), ("t", "float8"))
META_KEY: Final[KeyColumns] = (("gateway", "text"), ("hash", "text"))

STORED_GAPS: Final = (
    "SELECT "
    + ", ".join(f"g.{name.strip()}" for name in GAP_IDENTITY.split(","))
    + " FROM {keys} gaps g ON g.gateway = k.gateway AND g.t = k.t AND g.kind = 'record'"
)
"""The identities of the stored gap records of each `GAP_KEY`: a seek of gaps_by_record_time
each (by gateway alone, a batch's lookup read every gap record of the gateway per key)."""


class KeyLookups(abc.ABC):
    """The lookups of `BatchSteps` that are one statement on both backends."""

    _newest_times: str
    """The backend's query of each series' newest t up to a cutoff, its one parameter after the
    keys: (gateway, point, t or NULL) rows."""
    _newest_presence: str
    """The backend's query of each gateway's latest presence interval: (id, gateway, since,
    until) rows, ties on `until` to the newest row."""

    @abc.abstractmethod
    async def _lookup(
        self, columns: KeyColumns, keys: Collection[tuple[Any, ...]], query: str, *extra: object
    ) -> Sequence[Row]:
        """`query` with `{keys}` rendered: `k (columns)` holding each key once, and a join.

        `extra` are the query's own parameters, after the keys'.
        """

    @abc.abstractmethod
    async def run(self, statement: str, rows: Sequence[Params]) -> None:
        """Execute a statement with `?` placeholders for each of `rows` (not called empty)."""

    @abc.abstractmethod
    def _chain(self) -> ChainDb:
        """The audit chain's steps on this batch's connection."""

    async def stored_links(self, keys: Collection[BlockKey]) -> dict[BlockKey, Link]:
        """(hash, prev) of the stored blocks among `keys`."""
        found = await self._lookup(
            BLOCK_KEY,
            keys,
            "SELECT b.gateway, b.epoch, b.seq, b.hash, b.prev FROM {keys} blocks b"
            " ON b.gateway = k.gateway AND b.epoch = k.epoch AND b.seq = k.seq",
        )
        return {(row[0], row[1], row[2]): (row[3], row[4]) for row in found}

    async def newest_times(self, series: Collection[Series], cutoff: float) -> dict[Series, float]:
        """The newest stored t not later than `cutoff` of each (gateway, point) that has one."""
        found = await self._lookup(SERIES_KEY, series, self._newest_times, cutoff)
        return {(row[0], row[1]): row[2] for row in found if row[2] is not None}

    async def stored_readings(self, keys: Sequence[ReadingKey]) -> dict[ReadingKey, ReadingValue]:
        """(value, unit, quality) of the stored readings among `keys`."""
        found = await self._lookup(
            READING_KEY,
            keys,
            "SELECT r.gateway, r.point, r.t, r.value, r.unit, r.quality FROM {keys} readings r"
            " ON r.gateway = k.gateway AND r.point = k.point AND r.t = k.t",
        )
        return {(row[0], row[1], row[2]): (row[3], row[4], row[5]) for row in found}

    async def raw_kept_from(self) -> float | None:
        """Where retention's deletion of raw readings ended (None: it deleted none)."""
        return await raw_kept_from(self._chain())

    async def stored_gaps(self, keys: Collection[GapKey]) -> set[GapIdentity]:
        """The identities of the stored gap records of each (gateway, t) among `keys`."""
        found = await self._lookup(GAP_KEY, keys, STORED_GAPS)
        return {
            (row[0], row[1], row[2], row[3], row[4], row[5], row[6], row[7], row[8], row[9])
            for row in found
        }

    async def stored_metas(self, keys: Collection[MetaKey]) -> set[MetaKey]:
        """The (gateway, hash) of the stored metas among `keys`."""
        found = await self._lookup(
            META_KEY,
            keys,
            "SELECT m.gateway, m.hash FROM {keys} metas m"
            " ON m.gateway = k.gateway AND m.hash = k.hash",
        )
        return {(row[0], row[1]) for row in found}

    async def stored_alarms(self, keys: Sequence[AlarmKey]) -> dict[AlarmKey, AlarmState]:
        """The stored alarms among `keys`."""
        found = await self._lookup(
            ALARM_KEY,
            keys,
            f"SELECT {ALARM_COLUMNS} FROM {{keys}} alarms a"
            " ON a.gateway = k.gateway AND a.alarm_id = k.alarm_id",
        )
        return {(row[0], row[1]): alarm_state(row) for row in found}

    async def stream_states(self, streams: Collection[Stream]) -> dict[Stream, StreamState]:
        """The stored progress of `streams` (those with a row), with the hash at acked_through."""
        found = await self._lookup(
            STREAM_KEY,
            streams,
            f"SELECT {STREAM_COLUMNS} FROM {{keys}} ingest_state s"
            f" ON s.gateway = k.gateway AND s.epoch = k.epoch {ACKED_BLOCK}",
        )
        return {(row[0], row[1]): stream_state(row) for row in found}

    async def held_statuses(self, gateways: Collection[str]) -> dict[str, tuple[bool, float]]:
        """The stored (online, last_seen) of each of `gateways` that has a status."""
        found = await self._lookup(
            GATEWAY_KEY,
            [(gateway,) for gateway in gateways],
            "SELECT s.gateway, s.online, s.last_seen FROM {keys} gateway_status s"
            " ON s.gateway = k.gateway",
        )
        return {row[0]: (bool(row[1]), float(row[2])) for row in found}

    async def live_keys(self, gateways: Collection[str]) -> dict[str, tuple[LiveKey, ...]]:
        """The keys of each of `gateways` that are not revoked (for the ACKs' `keys`)."""
        found = await self._lookup(
            GATEWAY_KEY,
            [(gateway,) for gateway in gateways],
            "SELECT g.gateway, g.kid, g.added_at, g.retired_at FROM {keys} gateway_keys g"
            " ON g.gateway = k.gateway WHERE g.revoked_at IS NULL",
        )
        keys: dict[str, tuple[LiveKey, ...]] = {}
        for row in found:
            keys[row[0]] = (*keys.get(row[0], ()), LiveKey(row[1], row[2], row[3]))
        return keys

    async def record_presence(self, batch: IngestBatch) -> None:
        """Extend or open each gateway's presence interval by the batch's signs and statuses.

        The batch's transaction holds its gateways (SQLite's write lock, PostgreSQL's
        advisory locks), so the newest interval read here is still the newest at COMMIT.
        """
        found = signs(batch)
        if not found:
            return
        gateways = {(sign.gateway,) for sign in found}
        rows = await self._lookup(GATEWAY_KEY, gateways, self._newest_presence)
        newest = {row[1]: Presence(row[1], row[2], row[3], row[0]) for row in rows}
        written = advance_presence(newest, found, batch.presence_window)
        changed = [(p.since, p.until, p.id) for p in written if p.id]
        if changed:
            await self.run("UPDATE presence SET since = ?, until = ? WHERE id = ?", changed)
        opened = [(p.gateway, p.since, p.until) for p in written if not p.id]
        if opened:
            await self.run("INSERT INTO presence (gateway, since, until) VALUES (?, ?, ?)", opened)

    async def append_audits(
        self, audits: Sequence[AuditEntry], actions: Sequence[ActionEntry], now: float
    ) -> None:
        """Aggregate rejections and actions into the audit chain, sealing what `now` closes."""
        await audit.append(self._chain(), audits, actions, now=now)
