"""Site-level alarms of the site map: derived alarms over two points or a duration, and groups.

A point's own limits live on the point (`thresholds`, `deadband`, `rate`); the `alarms:` list
holds what a single point cannot say:

- `over_staff` / `over_quantity` (超员 / 超量): the point's value exceeds another point's value
  (`limit_point`, such as the rated staffing) or a fixed `limit`;
- `overtime` (超时): a duration point exceeds `limit`, or, with `when`, a condition on the point
  has held for longer than `limit`;
- `escalation`: the tailings rule over one monitoring item (a group of points with colour
  thresholds): 4 points at blue make the item yellow, 3 at yellow orange, 2 at orange red.

Which points exist is checked by the site map (`SiteConfig`), which sees every device.
"""

# No `from __future__ import annotations`: pydantic reads these annotations at runtime.

from typing import Annotated, Literal, Self, TypeAlias, get_args

from pydantic import Field, model_validator

from configkit.fields import ConfigModel, Duration, at_least_items, duration_bounds
from configkit.issues import KeyPath
from configkit.validation import raise_at
from edge_agent.config.fields import Name, Number, PointCode


class CompareAlarm(ConfigModel):
    """超员 / 超量: raise while the point's value is above a limit point's value or a fixed limit.

    `limit` is in the point's unit. The alarm clears at `value <= limit - deadband` (the point's
    deadband).
    """

    kind: Literal["over_staff", "over_quantity"]
    """`over_staff` (超员) or `over_quantity` (超量)."""
    point: PointCode
    """The point whose value is compared (headcount, stored quantity)."""
    limit_point: PointCode | None = None
    """A point holding the limit (e.g. the approved headcount); or give `limit`."""
    limit: Number | None = None
    """A fixed limit in the point's unit; or give `limit_point`."""

    @model_validator(mode="after")
    def _one_limit(self) -> Self:
        if (self.limit_point is None) == (self.limit is None):
            raise_at([(("limit_point",), "give exactly one of limit_point and limit")])
        if self.limit_point == self.point:
            raise_at([(("limit_point",), "limit_point must be another point than point")])
        return self


class Condition(ConfigModel):
    """A condition on a value, in the point's unit: above `above` and/or below `below`."""

    above: Number | None = None
    """Holds while the value is above this."""
    below: Number | None = None
    """Holds while the value is below this."""

    @model_validator(mode="after")
    def _some_bound(self) -> Self:
        problems: list[tuple[KeyPath, str]] = []
        if self.above is None and self.below is None:
            problems.append((("above",), "a condition needs above, below or both"))
        elif self.above is not None and self.below is not None and self.above >= self.below:
            problems.append(
                (("below",), f"below ({self.below:g}) must be more than above ({self.above:g})")
            )
        if problems:
            raise_at(problems)
        return self


class OvertimeAlarm(ConfigModel):
    """超时: a duration point over `limit`, or (with `when`) a condition held beyond `limit`."""

    kind: Literal["overtime"]
    """`overtime` (超时)."""
    point: PointCode
    """A duration point, or with `when` the point whose condition is timed."""
    limit: Annotated[Duration, duration_bounds(above=0)]
    """The longest allowed duration: held or lasting exactly `limit` raises nothing."""
    when: Condition | None = None
    """The condition whose holding is timed; absent: the point's value is itself a duration."""


class EscalationAlarm(ConfigModel):
    """One tailings monitoring item: its points' colours escalate the item's colour."""

    kind: Literal["escalation"]
    """`escalation`: a tailings item's colour from its points'."""
    item: Name
    """The monitoring item's name (e.g. a dam section)."""
    # Escalation counts points: one point is no group.
    points: Annotated[
        tuple[PointCode, ...],
        at_least_items(2, "a monitoring item needs at least 2 points to escalate"),
    ]
    """The item's points; their colours escalate the item's colour."""

    @model_validator(mode="after")
    def _distinct_points(self) -> Self:
        first: dict[str, int] = {}
        problems: list[tuple[KeyPath, str]] = []
        for index, point in enumerate(self.points):
            if point in first:
                problems.append(
                    (
                        ("points", index),
                        f"point {point!r} is already listed at points[{first[point]}]",
                    )
                )
            first.setdefault(point, index)
        if problems:
            raise_at(problems)
        return self


SiteAlarm: TypeAlias = Annotated[
    CompareAlarm | OvertimeAlarm | EscalationAlarm, Field(discriminator="kind")
]
"""One entry of the site map's `alarms:` list, told apart by `kind`."""

SITE_ALARM_KINDS: tuple[str, ...] = tuple(
    kind
    for model in get_args(get_args(SiteAlarm)[0])
    for kind in get_args(model.model_fields["kind"].annotation)
)
"""The `kind`s the `alarms:` list accepts, read from the models of `SiteAlarm`."""
