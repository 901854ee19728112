"""`GET /healthz`: liveness, the one route without a token.

(No `from __future__ import annotations` here: FastAPI reads the signatures at runtime.)
"""

from fastapi import APIRouter

from collector.api.models import Health
from collector.storage.base import Storage


def create_router(storage: Storage) -> APIRouter:
    """The health route over `storage` (it answers once the storage does)."""
    router = APIRouter()

    @router.get("/healthz")
    async def healthz() -> Health:
        await storage.ping()
        return Health(status="ok")

    return router
