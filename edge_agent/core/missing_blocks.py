"""What the agent makes of the seqs a collector ACK lists `missing` that its outbox cannot send.

The ACK's `missing` (docs/contract.md §ACK) lists the seqs the collector has not stored. Most
are on their way, or wait in the outbox's backlog, and go out in their turn. A seq whose block
the outbox no longer holds would stay an open hole at the collector for ever, its readings
neither stored nor declared lost: a row damaged on disk together with its epoch column was
declared under the epoch the damage wrote, or its row moved to another seq. And a row that
reads as delivered (one bit of its record header turns `delivered_at` NULL into 0 or 1) is
never sent again though the collector says it has not got it.

So, for the lowest `EXAMINED` seqs an ACK lists missing, up to the local chain's last seq:

- a seq the outbox holds undelivered is left alone: it is sent (or declared, when its row no
  longer vouches for its payload) by the send path in its turn;
- a seq the outbox holds as delivered is sent again: the collector says it does not have it,
  and the row (mended, or declared if it does not vouch for its bytes) is in the outbox still;
- a seq the outbox does not hold, and that no gap record in the outbox declares already (a
  thinned or dropped block's replacement on its way, say), cannot be produced: it is declared
  lost, each run of such seqs by one `outbox_corrupt` gap record.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Final

# Seqs an ACK lists missing that are looked at per ACK: the lowest, as the collector lists
# its lowest holes first. A hole behind a longer backlog is reached once the backlog before
# it is stored (the collector then lists it among the lowest).
EXAMINED: Final = 64

Span = tuple[int, int]


def out_of_date(acked_through: int, highest_heard: int) -> bool:
    """Whether an ACK's `missing` is older than what an ACK heard before it said.

    A collector's `acked_through` for an epoch never goes down: an ACK below the highest
    heard was issued before it (by another collector of a shared subscription, say). Its
    `missing` may list blocks stored since and released, even deleted to make room: nothing
    is declared on its word.
    """
    return acked_through < highest_heard


def examined(missing: Sequence[Span], last_seq: int, limit: int = EXAMINED) -> tuple[Span, ...]:
    """The lowest `limit` seqs of `missing` at or below `last_seq`, as ranges (lowest first).

    Seqs above the local chain's last seq are not sealed yet: nothing can be said of them.
    """
    window: list[Span] = []
    left = limit
    for low, high in sorted(missing):
        top = min(high, last_seq, low + left - 1)
        if low > top:
            continue
        window.append((low, top))
        left -= top - low + 1
        if left == 0:
            break
    return tuple(window)


@dataclass(frozen=True, slots=True)
class MissingVerdict:
    """What to do about the seqs looked at: declare `lost` ranges, send `resend` again."""

    lost: tuple[Span, ...] = ()
    resend: tuple[int, ...] = ()

    def __bool__(self) -> bool:
        """Whether there is anything to do."""
        return bool(self.lost or self.resend)


def judge_missing(
    window: Sequence[Span],
    held: Mapping[int, bool],
    declared: Sequence[tuple[int, int | None]] = (),
) -> MissingVerdict:
    """Decide on the seqs of `window` (missing at the collector).

    `held`: the outbox's rows among them, seq -> whether the row says delivered; `declared`:
    the seq ranges (`to_seq` None: open-ended) gap records in the outbox declare already.
    """
    lost: list[Span] = []
    resend: list[int] = []
    for low, high in window:
        for seq in range(low, high + 1):
            if seq in held:
                if held[seq]:
                    resend.append(seq)
                continue
            if any(lo <= seq and (hi is None or seq <= hi) for lo, hi in declared):
                continue
            if lost and lost[-1][1] == seq - 1:
                lost[-1] = (lost[-1][0], seq)
            else:
                lost.append((seq, seq))
    return MissingVerdict(tuple(lost), tuple(resend))
