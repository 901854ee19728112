"""GET /v1/quality's statement, the parts both backends share: which gateways, and the page.

Each backend keeps its aggregates (`collector.storage.sqlite.quality`,
`collector.storage.postgres.quality`: the dialects differ) and binds values its own way (`bind`
returns the placeholder naming a value it keeps).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

from collector.quality.core import QualityCounts, QualityFilter, QualityGroup
from collector.readmodel import Page, Scope
from collector.storage.records import Row


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
