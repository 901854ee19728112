"""Live messages first: the ingest loop's two-lane queue (issue 11.3, G5).

The MQTT client hands the collector its messages in arrival order, and a gateway back from an
outage keeps up to `uplink.max_inflight` backlog blocks in flight beside its live ones: in one
FIFO a live block waited behind all of them (bench/replay.py measured live p99 21x normal while
a backlog drained: 50 to 70 backlog blocks ACKed between a live block's arrival at the broker and
its own ACK). So the loop moves what the client has queued into two lanes, by the `lane` user
property (specs.lanes): blocks marked `backlog`, and everything else (live blocks, status, meta,
command results). A batch is live messages only while there are any; backlog batches are
smaller so that a live block arriving meanwhile waits for at most one short batch. Each lane
keeps arrival order; verification, deduplication and the chain check are the same for both (the
batch goes through `Ingest.process` either way).

How short: bounded by the work it takes, not by a count alone (`BacklogBudget`). Sixteen
blocks of 200 readings took 40-150 ms on the 2-core bench machine while the backlog drained,
and a live block that came in meanwhile waited for all of it (live p99 7-8x normal, G5 wants
2x); the same sixteen blocks of a 14-reading site take a few milliseconds. So the loop times
each backlog batch and sizes the next to last about `backlog_batch_seconds`.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Callable
from typing import Final, Generic, TypeVar

from specs.lanes import Lane

T = TypeVar("T")

# Weight of the last backlog batch in the cost estimate: a few batches follow a change of
# load or block size, one slow batch (a checkpoint, another process on the core) does not
# halve the next ones.
_COST_WEIGHT: Final = 0.3


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


class BacklogBudget:
    """How many backlog messages the next batch may take to last about `seconds`.

    Each backlog batch reports how long it took (from taken to committed); the cost per
    message is a moving average of those, so the size settles where a batch lasts `seconds`:
    a batch's fixed cost (its transaction, the key lookup) makes small batches dear per
    message, and the size grows until the per-message share pays for it. At least one message
    (a batch's fixed cost above `seconds` means one block per transaction, the best live
    latency can get), at most `most`. The first backlog batch takes one message: nothing is
    known yet, and the estimate grows from there within a few batches.
    """

    def __init__(self, seconds: float, most: int) -> None:
        self._seconds = seconds
        self._most = most
        self._cost: float | None = None  # seconds per message

    def size(self) -> int:
        """Messages the next backlog batch may take."""
        if self._cost is None:
            return 1
        return max(1, min(self._most, int(self._seconds / self._cost)))

    def took(self, messages: int, seconds: float) -> None:
        """A backlog batch of `messages` was stored in `seconds`."""
        cost = seconds / messages
        self._cost = cost if self._cost is None else self._cost + _COST_WEIGHT * (cost - self._cost)
