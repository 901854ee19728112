"""`GET /metrics`: the collector's Prometheus metrics, for a token of every district.

Behind a token like every path but /healthz (DESIGN section 8): Prometheus sends one with
`authorization: {credentials_file: ...}` in its scrape config. The figures are province-wide
(gateways online, open gaps), so a token scoped to some districts gets 403: it would learn
about districts it may not see. Not in the OpenAPI document: it is Prometheus text, not part
of the JSON API the schema describes.

(No `from __future__ import annotations` here: FastAPI reads the signatures at runtime.)
"""

from collections.abc import Callable

from fastapi import APIRouter, HTTPException, Response, status

from collector.api.deps import Auth
from collector.metrics import CONTENT_TYPE, CollectorMetrics
from collector.storage.base import Storage


def create_router(
    storage: Storage,
    metrics: CollectorMetrics,
    *,
    clock: Callable[[], float],
) -> APIRouter:
    """The metrics route: `metrics` with its database gauges read from `storage` when asked."""
    router = APIRouter()

    @router.get("/metrics", include_in_schema=False)
    async def scrape(scope: Auth) -> Response:
        if scope.districts is not None:
            raise HTTPException(
                status.HTTP_403_FORBIDDEN,
                "the metrics cover every district: they need a token with districts ['*']",
            )
        # A failed read raises StorageError: the app answers it as every failed read
        # (problems.storage_unavailable: 503, Retry-After, the error logged, not shown).
        # Prometheus records the failed scrape (`up` 0) and keeps the previous series.
        await metrics.refresh(storage, clock())
        return Response(metrics.exposition(), media_type=CONTENT_TYPE)

    return router
