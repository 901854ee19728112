"""`GET /v1/quality`: online rate, completeness and timeliness per gateway, enterprise or district.

(No `from __future__ import annotations` here: FastAPI reads the signatures at runtime.)
"""

from collections.abc import Callable
from typing import Annotated

from fastapi import APIRouter, HTTPException, Query, status
from pydantic import BaseModel, Field

from collector.api.deps import (
    DEFAULT_LIMIT,
    Auth,
    Cursor,
    From,
    Limit,
    To,
    bad_request,
    cursor_position,
    next_cursor,
    parse_time,
)
from collector.api.models import ListPage
from collector.quality.core import (
    LATE_AFTER,
    QualityFigures,
    QualityFilter,
    QualityGroup,
    WindowError,
    figures,
    quality_window,
)
from collector.storage.base import Storage
from collector.storage.capabilities import QualityStats


class QualityOut(BaseModel):
    """The figures of one group over [from, to) (up to now)."""

    gateways: int = Field(description="registered gateways in the group")
    online_rate: float | None = Field(
        description="share of the window (up to now) the gateways were live; null for an"
        " empty window"
    )
    completeness: float | None = Field(
        description="received / expected; null when nothing is expected (no poll periods)"
    )
    timeliness: float | None = Field(
        description=f"share of received readings whose block arrived within {LATE_AFTER:g} s"
        " of their time; null when none were received"
    )
    expected: int = Field(description="readings the meta's poll periods promise in the window")
    received: int = Field(
        description="stored readings in the window of points with a poll; none flagged"
        " `ahead_of_collector` (stamped past the collector's clock), in any window"
    )
    late: int = Field(description=f"received readings that arrived over {LATE_AFTER:g} s late")


class GatewayQualityOut(QualityOut):
    """Quality of one gateway (`group=gateway`)."""

    gateway: str


class EnterpriseQualityOut(QualityOut):
    """Quality of one enterprise's gateways (`group=enterprise`)."""

    enterprise: str


class DistrictQualityOut(QualityOut):
    """Quality of one district's gateways (`group=district`)."""

    district: str


QualityPage = (
    ListPage[GatewayQualityOut] | ListPage[EnterpriseQualityOut] | ListPage[DistrictQualityOut]
)


def _page(group: QualityGroup, items: list[QualityFigures], after: str | None) -> QualityPage:
    def common(f: QualityFigures) -> dict[str, object]:
        return {
            "gateways": f.gateways,
            "online_rate": f.online_rate,
            "completeness": f.completeness,
            "timeliness": f.timeliness,
            "expected": f.expected,
            "received": f.received,
            "late": f.late,
        }

    if group is QualityGroup.ENTERPRISE:
        return ListPage[EnterpriseQualityOut](
            items=[
                EnterpriseQualityOut.model_validate({"enterprise": f.key, **common(f)})
                for f in items
            ],
            next=after,
        )
    if group is QualityGroup.DISTRICT:
        return ListPage[DistrictQualityOut](
            items=[
                DistrictQualityOut.model_validate({"district": f.key, **common(f)}) for f in items
            ],
            next=after,
        )
    return ListPage[GatewayQualityOut](
        items=[GatewayQualityOut.model_validate({"gateway": f.key, **common(f)}) for f in items],
        next=after,
    )


def create_router(storage: Storage, *, clock: Callable[[], float]) -> APIRouter:
    """The quality route over `storage`; `now` (the default `to`) comes from `clock`."""
    router = APIRouter()

    @router.get(
        "/v1/quality",
        responses={501: {"description": "this storage backend cannot compute quality yet"}},
    )
    async def quality(
        *,
        scope: Auth,
        gateway: str | None = None,
        enterprise: str | None = None,
        district: str | None = None,
        group: Annotated[
            QualityGroup, Query(description="one item per gateway, enterprise or district")
        ] = QualityGroup.GATEWAY,
        from_: From = None,
        to: To = None,
        limit: Limit = DEFAULT_LIMIT,
        cursor: Cursor = None,
    ) -> QualityPage:
        """Online rate, completeness and timeliness over [from, to) (default: the last 24 h).

        Online rate: the share of the window up to now that the gateways were live (a sign of
        life within `offline_after`, as in /v1/gateways). Completeness: received / expected
        readings, expected from the poll periods of the gateways' signed meta. Timeliness:
        the share of received readings whose block arrived within 60 s of their time.
        """
        kind = f"quality-{group.value}"  # a cursor of one grouping is refused by another
        position = cursor_position(kind, cursor, (str,))
        after = None if position is None else str(position[0])
        try:
            window = quality_window(parse_time("from", from_), parse_time("to", to), clock())
        except WindowError as exc:
            raise bad_request(str(exc)) from None
        if not isinstance(storage, QualityStats):
            raise HTTPException(
                status.HTTP_501_NOT_IMPLEMENTED, "this storage backend cannot compute quality yet"
            )
        page = await storage.quality_counts(
            scope,
            QualityFilter(gateway=gateway, enterprise=enterprise, district=district),
            group=group,
            start=window.start,
            end=window.observed_end,
            after=after,
            limit=limit,
        )
        return _page(
            group,
            [figures(counts, window) for counts in page.items],
            next_cursor(kind, page, lambda counts: (counts.key,)),
        )

    return router
