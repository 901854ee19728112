"""SQL pieces the registry, ingest and query modules share (decoders: storage.records)."""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from itertools import islice
from typing import Final, TypeVar

import aiosqlite

from collector.storage.queries import Fetch
from collector.storage.records import Row

# Keys per lookup statement: far below SQLite's 32766 host parameters.
CHUNK: Final = 300

T = TypeVar("T")


def chunks(items: Sequence[T], size: int = CHUNK) -> Iterable[Sequence[T]]:
    """`items` in slices of at most `size`, one per lookup statement."""
    iterator = iter(items)
    while chunk := tuple(islice(iterator, size)):
        yield chunk


def values(width: int, rows: int) -> str:
    """The placeholders of a `VALUES` list: `rows` tuples of `width` parameters."""
    one = "(" + ", ".join("?" * width) + ")"
    return ", ".join([one] * rows)


def fetcher(db: aiosqlite.Connection) -> Fetch:
    """Run the backend-neutral queries (`collector.storage.queries`) on `db`."""

    async def fetch(sql: str, params: Sequence[object], /) -> Sequence[Row]:
        return list(await db.execute_fetchall(sql, params))

    return fetch
