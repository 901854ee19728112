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
    """A point a gateway has reported or described in its signed meta message."""

    gateway: str
    point: str
    quota: str
    unit: str = Field(description="the unit its readings are stored in (the canonical unit)")
    name: str | None = Field(description="from the gateway's meta message; null without one")
    device: str | None = Field(description="the device the point is read from (meta)")
    thresholds: dict[str, float] = Field(description="alarm limits in `unit` (meta)")


class AlarmOut(BaseModel):
    """An alarm raised (and maybe cleared) at the edge, naming the reading that triggered it."""

    gateway: str
    alarm_id: str
    point: str
    quota: str
    level: str
    raised_at: str | None = Field(description="ISO 8601; null while only the clear is stored")
    cleared_at: str | None = Field(description="ISO 8601; null while the alarm is active")
    value: float | None
    threshold: float | None
    unit: str
    trigger_t: str = Field(description="time of the triggering reading of `point`")


class ListPage(BaseModel, Generic[ItemT]):
    """A page of a list; pass `next` back as `cursor` for the following page."""

    items: list[ItemT]
    next: str | None


class Health(BaseModel):
    """Liveness."""

    status: Literal["ok"]
