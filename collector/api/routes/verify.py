"""`GET /v1/audit/verify`: re-verify stored blocks (signatures over the stored bytes, chain).

(No `from __future__ import annotations` here: FastAPI reads the signatures at runtime.)
"""

from typing import Annotated, Literal

from fastapi import APIRouter, HTTPException, Query, status
from pydantic import BaseModel, Field

from collector.api.deps import Auth, From, To, time_range
from collector.storage.base import Storage
from collector.storage.capabilities import BlockArchive
from collector.verify.core import VerifyReport, report_json
from collector.verify.service import verify_stored


class BrokenOut(BaseModel):
    """One reason one stored block fails re-verification."""

    gateway: str
    epoch: str
    seq: int
    reason: Literal["hash_mismatch", "unknown_key", "bad_signature", "misplaced", "chain_break"]
    detail: str = Field(description="what exactly did not hold")


class HoleOut(BaseModel):
    """Seqs missing under a stored block: not checkable, not a break."""

    gateway: str
    epoch: str
    from_seq: int
    to_seq: int


class VerifyOut(BaseModel):
    """What re-verification found."""

    blocks: int = Field(description="stored blocks checked")
    verified: int = Field(description="blocks whose hash, signature and chain link all hold")
    broken: list[BrokenOut] = Field(description="one item per reason per failing block")
    holes: list[HoleOut] = Field(description="missing seqs under stored blocks")
    truncated: bool = Field(description="true when `broken` or `holes` list only the first 1000")


def verify_out(report: VerifyReport) -> VerifyOut:
    """The API shape of a report: the JSON `collector verify --json` prints (one mapping)."""
    return VerifyOut.model_validate(report_json(report))


def create_router(storage: Storage) -> APIRouter:
    """The verify route over `storage` (501 when the backend cannot list stored blocks)."""
    router = APIRouter()

    @router.get(
        "/v1/audit/verify",
        responses={
            404: {"description": "the gateway is not registered, or not in the token's scope"},
            501: {"description": "this storage backend cannot re-verify blocks yet"},
        },
    )
    async def audit_verify(
        *,
        scope: Auth,
        gateway: Annotated[
            str | None, Query(description="one gateway; without it, every gateway in scope")
        ] = None,
        from_: From = None,
        to: To = None,
    ) -> VerifyOut:
        """Re-verify the blocks received in [from, to): hash, signature, place and chain link.

        Each stored block's bytes are checked against its stored hash and signature (under
        the registered key of its kid; a revoked key still verifies what it signed), and its
        signed `prev` against the stored hash of seq - 1 of its epoch (GENESIS for seq 1).
        A missing seq is listed as a hole, not as a break.
        """
        t_from, t_to = time_range(from_, to)
        if not isinstance(storage, BlockArchive):
            raise HTTPException(
                status.HTTP_501_NOT_IMPLEMENTED, "this storage backend cannot re-verify blocks"
            )
        if gateway is not None:
            found = (await storage.find_gateways([gateway])).get(gateway)
            if found is None or not scope.allows(found.district):
                # One answer for both: a token learns nothing about gateways it cannot see.
                raise HTTPException(status.HTTP_404_NOT_FOUND, f"no gateway {gateway} in scope")
        report = await verify_stored(storage, scope, gateway=gateway, t_from=t_from, t_to=t_to)
        return verify_out(report)

    return router
