"""PostgreSQL's own row decoders and statement parameters.

The decoders both backends share are in `collector.storage.records`.
"""

from __future__ import annotations

import functools
import itertools
import re
from collections.abc import Sequence

from collector.storage.postgres.connection import Db
from collector.storage.queries import Fetch
from collector.storage.records import Row

Span = tuple[int, int | None]


class Params:
    """Positional parameters of one statement: `add` returns the `$n` that names a value."""

    def __init__(self) -> None:
        self.values: list[object] = []

    def add(self, value: object) -> str:
        """Append `value`; its placeholder."""
        self.values.append(value)
        return f"${len(self.values)}"


@functools.lru_cache(maxsize=1024)
def numbered(statement: str) -> str:
    """`statement` with its `?` placeholders as PostgreSQL's `$1, $2, ...`."""
    count = itertools.count(1)
    return re.sub(r"\?", lambda _: f"${next(count)}", statement)


def fetcher(db: Db) -> Fetch:
    """Run the backend-neutral queries (`collector.storage.queries`) on `db`."""

    async def fetch(sql: str, params: Sequence[object], /) -> Sequence[Row]:
        return await db.fetch(numbered(sql), *params)

    return fetch
