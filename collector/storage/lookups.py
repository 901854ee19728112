"""The ingest batch's lookups by key, once for both backends: the key table is the dialect's.

`collector.storage.batch.BatchSteps` looks up the stored links, readings, alarms and streams a
batch touches. The statements are the same but for how the keys become a table `k`: SQLite
joins a `VALUES` list chunk by chunk (`CROSS JOIN`, so that `k` stays the outer loop),
PostgreSQL `unnest`s one array per column. A backend's `KeyLookups._lookup` renders `{keys}`,
the keys as `k` and the join to the table after it.
"""

from __future__ import annotations

import abc
from collections.abc import Collection, Sequence
from typing import Any, Final

from collector.model import StreamState
from collector.readmodel import AlarmState
from collector.storage.alarms import AlarmKey
from collector.storage.core import BlockKey, Link, Stream
from collector.storage.ingest_rows import Series
from collector.storage.readings import ReadingKey, ReadingValue
from collector.storage.records import ALARM_COLUMNS, Row, alarm_state, stream_state

KeyColumns = tuple[tuple[str, str], ...]
"""The key's columns, each with its PostgreSQL type (what `unnest` casts the array to)."""

BLOCK_KEY: Final[KeyColumns] = (("gateway", "text"), ("epoch", "text"), ("seq", "bigint"))
SERIES_KEY: Final[KeyColumns] = (("gateway", "text"), ("point", "text"))
READING_KEY: Final[KeyColumns] = (*SERIES_KEY, ("t", "float8"))
ALARM_KEY: Final[KeyColumns] = (("gateway", "text"), ("alarm_id", "text"))
STREAM_KEY: Final[KeyColumns] = (("gateway", "text"), ("epoch", "text"))


class KeyLookups(abc.ABC):
    """The lookups of `BatchSteps` that are one statement on both backends."""

    _newest_times: str
    """The backend's query of each series' newest t: (gateway, point, t or NULL) rows."""

    @abc.abstractmethod
    async def _lookup(
        self, columns: KeyColumns, keys: Collection[tuple[Any, ...]], query: str
    ) -> Sequence[Row]:
        """`query` with `{keys}` rendered: `k (columns)` holding each key once, and a join."""

    async def stored_links(self, keys: Collection[BlockKey]) -> dict[BlockKey, Link]:
        """(hash, prev) of the stored blocks among `keys`."""
        found = await self._lookup(
            BLOCK_KEY,
            keys,
            "SELECT b.gateway, b.epoch, b.seq, b.hash, b.prev FROM {keys} blocks b"
            " ON b.gateway = k.gateway AND b.epoch = k.epoch AND b.seq = k.seq",
        )
        return {(row[0], row[1], row[2]): (row[3], row[4]) for row in found}

    async def newest_times(self, series: Collection[Series]) -> dict[Series, float]:
        """The newest stored t of each (gateway, point) that has readings."""
        found = await self._lookup(SERIES_KEY, series, self._newest_times)
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
            "SELECT s.gateway, s.epoch, s.acked_through, s.max_seq, s.missing, s.declared,"
            " b.hash, s.conflict FROM {keys} ingest_state s"
            " ON s.gateway = k.gateway AND s.epoch = k.epoch"
            " LEFT JOIN blocks b ON b.gateway = s.gateway AND b.epoch = s.epoch"
            " AND b.seq = s.acked_through",
        )
        return {(row[0], row[1]): stream_state(row) for row in found}
