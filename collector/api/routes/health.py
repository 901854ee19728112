"""`GET /healthz` (HEAD, OPTIONS): liveness, the one route without a token.

(No `from __future__ import annotations` here: FastAPI reads the signatures at runtime.)
"""

import structlog
from fastapi import APIRouter, HTTPException, Request, Response, status

from collector.api.models import Health
from collector.api.problems import UNAVAILABLE_RETRY_AFTER
from collector.storage.base import Storage, StorageError

log = structlog.get_logger("collector.api")

METHODS = ("GET", "HEAD", "OPTIONS")
"""What `/healthz` answers to; a successful OPTIONS names them in `Allow` (RFC 9110 9.3.7)."""


def create_router(storage: Storage) -> APIRouter:
    """The health route over `storage` (it answers once the storage does)."""
    router = APIRouter()

    unavailable: dict[int | str, dict[str, object]] = {
        503: {"description": "the database does not answer (RFC 9457 problem)"}
    }

    @router.get("/healthz", responses=unavailable)
    async def healthz(request: Request, response: Response) -> Health:
        """Whether this collector and its database answer; needs no token (for load balancers)."""
        if request.method == "OPTIONS":
            response.headers["Allow"] = ", ".join(METHODS)
        try:
            await storage.ping()
        except StorageError as exc:
            # What a load balancer takes this collector out of rotation for: not a 500. The
            # error goes to the log only: this route answers anyone, and the error names the
            # database's user, address and name (or file).
            log.warning("healthz_storage_unavailable", error=str(exc))
            raise HTTPException(
                status.HTTP_503_SERVICE_UNAVAILABLE,
                "the database does not answer",
                {"Retry-After": str(UNAVAILABLE_RETRY_AFTER)},
            ) from None
        return Health(status="ok")

    # HEAD and OPTIONS answer as GET does: load balancers check with them (HAProxy's `option
    # httpchk` sends OPTIONS unless told otherwise), and a 405 takes every collector out of
    # rotation. Each is its own operation, so the OpenAPI document names them apart.
    for method in METHODS[1:]:
        router.add_api_route(
            "/healthz",
            healthz,
            methods=[method],
            responses=unavailable,
            operation_id=f"healthz_{method.lower()}",
        )
    return router
