"""Response shapes of the HTTP API (DESIGN section 8), as pydantic models for OpenAPI."""

from __future__ import annotations

from typing import Generic, Literal, TypeVar

from pydantic import BaseModel, Field

ItemT = TypeVar("ItemT", bound=BaseModel)


class ReadingOut(BaseModel):
    """One reading."""

    gateway: str
    point: str
    quota: str
    t: str = Field(description="ISO 8601 time with offset")
    value: float | None
    unit: str
    quality: Literal["good", "uncertain", "bad"]
    flags: list[str]


class GatewayOut(BaseModel):
    """One gateway and how far its blocks are stored."""

    gateway: str
    enterprise: str
    district: str
    online: bool
    last_seen: str | None = Field(description="ISO 8601 time of the last status or block")
    epoch: str | None = Field(description="the gateway's newest sequence epoch")
    acked_through: int | None = Field(description="every seq up to this one is stored")
    gaps: int = Field(description="open holes (missing seq ranges) over all epochs")


class PointOut(BaseModel):
    """A point a gateway has reported."""

    gateway: str
    point: str
    quota: str
    unit: str


class ListPage(BaseModel, Generic[ItemT]):
    """A page of a list; pass `next` back as `cursor` for the following page."""

    items: list[ItemT]
    next: str | None


class Health(BaseModel):
    """Liveness."""

    status: Literal["ok"]
