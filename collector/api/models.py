"""Response shapes of the HTTP API (DESIGN section 8), as pydantic models for OpenAPI."""

from __future__ import annotations

from typing import Generic, Literal, TypeVar

from pydantic import BaseModel, ConfigDict, Field

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


class BucketOut(BaseModel):
    """The readings of one point, quota and unit in one time bucket (`every=`), aggregated.

    A bucket in which the point changed quota or unit has one item per (quota, unit).
    """

    gateway: str
    point: str
    quota: str = Field(description="the quota of every reading aggregated")
    unit: str = Field(description="the unit of every reading aggregated: of min, max, avg, last")
    t: str = Field(description="ISO 8601 start of the bucket")
    min: float | None = Field(description="over readings with a value, quality not bad")
    max: float | None
    avg: float | None = Field(
        description="a float sum over count: for finite sums, within (count + 1) x 2^-53 x the"
        " values' mean magnitude of the exact mean (rollup and raw answers may differ in the"
        " last digits); sums past the largest double may give null, on one path only or both"
    )
    last: float | None = Field(description="the newest such reading's value")
    count: int = Field(description="readings aggregated (a value, quality not bad)")


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
    flags: list[str] = Field(
        description="`ahead_of_collector`: its raise or clear was stamped more than"
        " `ingest.ahead_allowance` past the collector's clock (the gateway's clock is wrong);"
        " an alarm raised so is `active` only once the collector's clock is within the"
        " allowance of its raise"
    )
    active: bool = Field(
        description="raised and not cleared, by a raise stamped ahead of the collector's clock"
        " only once that clock is within `ingest.ahead_allowance` of it: in GET /v1/alarms as"
        " the collector answers; in /v1/stream as the collector wrote the event (an alarm"
        " raised ahead gets one more event, active, once the clock comes within reach of it)"
    )


class GapOut(BaseModel):
    """A gap: seqs still expected (`open`), or readings declared lost by a gap record (`closed`)."""

    model_config = ConfigDict(populate_by_name=True)

    gateway: str
    epoch: str | None = Field(
        description="the epoch whose seqs from_seq..to_seq the gap covers; null when a gap"
        " record declares no seq range (its readings never reached a block)"
    )
    from_seq: int | None
    to_seq: int | None = Field(
        description="inclusive; null with a from_seq: every seq from from_seq on (the epoch was"
        " abandoned)"
    )
    t_from: str | None = Field(
        alias="from", description="ISO 8601 time of the first lost reading, if known"
    )
    t_to: str | None = Field(alias="to", description="ISO 8601 time of the last lost reading")
    lost: int | None = Field(description="readings lost; null when unknown (always for open gaps)")
    reason: str = Field(
        description="`missing` for an open gap; the gap record's reason otherwise: outbox_full,"
        " disk_full, outbox_corrupt, outbox_restored, thinned, released or too_large"
    )
    state: Literal["open", "closed"] = Field(
        description="open: blocks missing, still expected (the ACK asks for them);"
        " closed: declared lost by a gap record, never asked for again"
    )


class Problem(BaseModel):
    """An error, as RFC 9457 `application/problem+json`."""

    type: str = Field(description="`about:blank`: the status says it all")
    title: str = Field(description="the HTTP status phrase")
    status: int
    detail: str = Field(description="what was wrong with this request")


class ListPage(BaseModel, Generic[ItemT]):
    """A page of a list; pass `next` back as `cursor` for the following page."""

    items: list[ItemT]
    next: str | None


class Health(BaseModel):
    """Liveness."""

    status: Literal["ok"]
