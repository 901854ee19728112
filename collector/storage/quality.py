"""GET /v1/quality's statement once for both backends, but for the dialect's aggregates.

Each backend keeps its aggregates (`collector.storage.sqlite.quality`,
`collector.storage.postgres.quality`: the dialects differ), naming the window's values
`:start`, `:end`, `:late_after` and `:limit`; the members and the page are this module's.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Sequence

from collector.quality.core import LATE_AFTER, QualityCounts, QualityFilter, QualityGroup
from collector.readmodel import Page, Scope
from collector.storage.queries import Fetch
from collector.storage.records import Row

_MARKER = re.compile(r"(?<!:):(start|end|late_after|limit)\b")


def quality_members(
    scope: Scope,
    where: QualityFilter,
    group: QualityGroup,
    after: str | None,
    bind: Callable[[object], str],
) -> str:
    """`members`: each gateway in scope and filter with its group key `k`, past `after`."""
    # The group column is one of three fixed names (an enum), never request text.
    members = f"SELECT g.gateway, g.{group.value} AS k FROM gateways g WHERE true"
    for column, value in (
        ("gateway", where.gateway),
        ("enterprise", where.enterprise),
        ("district", where.district),
    ):
        if value is not None:
            members += f" AND g.{column} = {bind(value)}"
    if after is not None:
        members += f" AND g.{group.value} > {bind(after)}"
    if scope.districts is not None:
        marks = [bind(district) for district in sorted(scope.districts)]
        members += f" AND g.district IN ({', '.join(marks)})" if marks else " AND false"
    return members


def quality_page(rows: Sequence[Row], limit: int) -> Page[QualityCounts]:
    """The counts of the aggregate's rows (key, gateways, seconds, expected, received, late)."""
    return Page.of(
        [
            QualityCounts(
                key=row[0],
                gateways=row[1],
                online_seconds=float(row[2]),
                expected=int(row[3]),
                received=int(row[4]),
                late=int(row[5]),
            )
            for row in rows
        ],
        limit,
    )


async def quality_counts(
    fetch: Fetch,
    aggregates: str,
    scope: Scope,
    where: QualityFilter,
    *,
    group: QualityGroup,
    start: float,
    end: float,
    after: str | None,
    limit: int,
) -> Page[QualityCounts]:
    """Per group key (a gateway, enterprise or district id), ascending: counts in [start, end)."""
    params: list[object] = []

    def bind(value: object) -> str:
        params.append(value)
        return "?"

    members = quality_members(scope, where, group, after, bind)
    window = {"start": float(start), "end": float(end), "late_after": float(LATE_AFTER)}
    window["limit"] = limit + 1
    # Each marker becomes a `?` of its own, bound in the order the text names them.
    sql = _MARKER.sub(lambda found: bind(window[found[1]]), aggregates)
    return quality_page(await fetch(f"WITH members AS ({members}),{sql}", params), limit)
