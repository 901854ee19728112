"""Which lane a block travels in: the `lane` user property of gz/1 (issue 11.3, G5).

An agent that returns from an outage sends its backlog beside its live blocks. The agent keeps
them in two lanes (edge_agent.shell.publisher) and says which one each block comes from in the
MQTT 5 user property `lane`: `live` for a block sealed while the uplink is up, `backlog` for a
block sealed during an outage or sent again. A collector ingests a block marked `backlog` only
when no other message waits (collector.ingest.lanes), so a live block overtakes a queued
backlog at the collector too, not only in the agent's send order.

The property is a hint for scheduling, nothing more: it is not signed, and a block is verified,
deduplicated and chain-checked alike in either lane. Anything but `backlog` - `live`, no
property (agents before `lane`), an unknown value - is scheduled as live, so marking a block
can only ever let it wait, never jump ahead of what it would have been behind anyway.
"""

from __future__ import annotations

import enum
from collections.abc import Iterable
from typing import Final

LANE_PROPERTY: Final = "lane"


class Lane(enum.StrEnum):
    """The values of the `lane` user property."""

    LIVE = "live"
    BACKLOG = "backlog"


def lane_properties(lane: Lane) -> list[tuple[str, str]]:
    """The user property that names `lane`, to add to a block's signature properties."""
    return [(LANE_PROPERTY, lane.value)]


def lane_of(properties: Iterable[tuple[str, str]]) -> Lane:
    """The lane a message asks for: BACKLOG only when it says so, LIVE otherwise."""
    for name, value in properties:
        if name == LANE_PROPERTY and value == Lane.BACKLOG:
            return Lane.BACKLOG
    return Lane.LIVE
