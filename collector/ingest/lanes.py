"""Live messages first: the ingest loop's two-lane queue (issue 11.3, G5).

The MQTT client hands the collector its messages in arrival order, and a gateway back from an
outage keeps up to `uplink.max_inflight` backlog blocks in flight beside its live ones: in one
FIFO a live block waited behind all of them (bench/replay.py measured live p99 21x normal while
a backlog drained: 50 to 70 backlog blocks ACKed between a live block's arrival at the broker and
its own ACK). So the loop moves what the client has queued into two lanes, by the `lane` user
property (specs.lanes): blocks marked `backlog`, and everything else (live blocks, status, meta,
command results). A batch is live messages only while there are any; backlog batches are
smaller (`backlog_max` messages) so that a live block arriving meanwhile waits for at most one
short batch. Each lane keeps arrival order; verification, deduplication and the chain check are
the same for both (the batch goes through `Ingest.process` either way).
"""

from __future__ import annotations

from collections import deque
from collections.abc import Callable
from typing import Generic, TypeVar

from specs.lanes import Lane

T = TypeVar("T")


class Lanes(Generic[T]):
    """Messages waiting to be ingested, live ones ahead of backlog ones.

    `bound` caps both lanes together: the loop takes no more from the client past it, so
    memory stays bounded as with the client's own queue.
    """

    def __init__(self, lane_of: Callable[[T], Lane], bound: int) -> None:
        self._lane_of = lane_of
        self._bound = bound
        self._live: deque[T] = deque()
        self._backlog: deque[T] = deque()

    def __len__(self) -> int:
        return len(self._live) + len(self._backlog)

    @property
    def full(self) -> bool:
        """Whether the loop should leave further messages with the client for now."""
        return len(self) >= self._bound

    def put(self, message: T) -> None:
        """Queue `message` at the end of its lane."""
        if self._lane_of(message) is Lane.BACKLOG:
            self._backlog.append(message)
        else:
            self._live.append(message)

    def take(self, batch_max: int, backlog_max: int) -> list[T]:
        """The next batch: up to `batch_max` live messages, or else up to `backlog_max` backlog."""
        lane, count = (self._live, batch_max) if self._live else (self._backlog, backlog_max)
        return [lane.popleft() for _ in range(min(count, len(lane)))]
