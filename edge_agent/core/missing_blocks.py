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
  lost, each run of such seqs by one gap record: `released` when retention (or room-making)
  deleted it after the collector had ACKed it (at or below the highest seq of the epoch the
  outbox pruned: the collector lost it, its database restored from a backup, say), else
  `outbox_corrupt` (the outbox lost it).

Which ACKs are answered at all (`heard`): a collector's `acked_through` for an epoch goes down
only when its database went back (restored from a backup); an ACK below the highest heard is
otherwise one issued before it (by another collector of a shared subscription) and delivered
late, whose `missing` may list blocks stored since.
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


# How much later (by the collectors' clocks) an ACK with a lower `acked_through` must be
# issued than the latest ACK that said the highest, to be the collector's word rather than a
# stale ACK: more than the clocks of two collectors of one province differ (NTP keeps them
# within milliseconds). A restored collector is stopped and started again for longer.
CLOCK_ALLOWANCE: Final = 10.0


@dataclass(frozen=True, slots=True)
class AckMark:
    """The highest `acked_through` heard for `epoch`, and the latest time saying it, twice.

    `issued_at`: by the collector's clock, as said. `bound`: that time bounded by the agent's
    clock when synchronized (`mark_time`), at hearing. Either alone misjudges a collector
    clock far ahead: the first hides a restored collector whose clock is right, the second
    answers the far-ahead collector's own stale ACKs (`heard`).
    """

    epoch: str
    acked_through: int
    issued_at: float
    bound: float


def mark_time(issued_at: float, now: float | None) -> float:
    """An ACK time of `issued_at` (the collector's clock) as the agent's clock bounds it.

    `now`: the agent's clock when it is synchronized (None: it is not). An ACK the agent
    holds was issued before now, whatever its `issued_at` says: one more than CLOCK_ALLOWANCE
    ahead of a synchronized clock comes from a collector clock that is wrong (a month ahead,
    2099), and counts as now + CLOCK_ALLOWANCE, as late as a right clock could say. An agent
    clock not synchronized tells nothing (it may be the one wrong, an RTC back at 1970): the
    collector's time stands.
    """
    return issued_at if now is None else min(issued_at, now + CLOCK_ALLOWANCE)


def heard(
    mark: AckMark | None, epoch: str, acked_through: int, issued_at: float, now: float | None = None
) -> tuple[AckMark, bool]:
    """The mark after an ACK of `epoch`, and whether its `missing` is the collector's word.

    An ACK at or above the mark is. One below it was issued before the mark's (by another
    collector of a shared subscription, say, delivered late): its `missing` may list blocks
    stored since and released, even deleted to make room, so it is not answered, unless the
    collector went back (its database restored from a backup: it will not say the higher
    mark again, and its ACK is the new mark). That is so when the ACK was issued well after
    the latest ACK at the mark (more than CLOCK_ALLOWANCE) by either clock:
    (a) the collectors' own: `issued_at` after the mark's `issued_at` (a collector clock
    that ran ahead only delays this, and one far ahead, a month, for ever: hence b);
    (b) the agent's, when synchronized (`now`): `issued_at` no later than now allows and
    after the mark's `bound`, itself bounded by now when used (a mark read back from the
    outbox: kept before the bound, or while the clock was not synchronized). A stale ACK
    of the far-ahead collector itself is after the mark's bound but ahead of now, and
    before the mark by its own clock: not answered. One of another collector, its clock
    right, was issued before the mark's ACK reached the agent: not answered either.
    """
    bound = mark_time(issued_at, now)
    if mark is None or mark.epoch != epoch:
        return AckMark(epoch, acked_through, issued_at, bound), True
    kept = mark_time(mark.bound, now)
    if acked_through >= mark.acked_through:
        return AckMark(epoch, acked_through, max(mark.issued_at, issued_at), max(kept, bound)), True
    later_by_its_clock = issued_at > mark.issued_at + CLOCK_ALLOWANCE
    later_by_ours = (
        now is not None
        and issued_at <= now + CLOCK_ALLOWANCE
        and issued_at > kept + CLOCK_ALLOWANCE
    )
    if later_by_its_clock or later_by_ours:
        return AckMark(epoch, acked_through, issued_at, bound), True
    return AckMark(epoch, mark.acked_through, mark.issued_at, kept), False


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
    """What to do about the seqs looked at: declare `lost` and `released` ranges, send `resend`.

    `lost`: seqs the outbox lost (`outbox_corrupt`); `released`: seqs it deleted after the
    collector ACKed them, which the collector lost since (`released`).
    """

    lost: tuple[Span, ...] = ()
    resend: tuple[int, ...] = ()
    released: tuple[Span, ...] = ()

    def __bool__(self) -> bool:
        """Whether there is anything to do."""
        return bool(self.lost or self.resend or self.released)


def _add(runs: list[Span], seq: int) -> None:
    """`seq` into `runs` (ascending): the last run grows when `seq` follows it."""
    if runs and runs[-1][1] == seq - 1:
        runs[-1] = (runs[-1][0], seq)
    else:
        runs.append((seq, seq))


def judge_missing(
    window: Sequence[Span],
    held: Mapping[int, bool],
    declared: Sequence[tuple[int, int | None]] = (),
    pruned_through: int = 0,
    acked_through: int = 0,
) -> MissingVerdict:
    """Decide on the seqs of `window` (missing at the collector).

    `held`: the outbox's rows among them, seq -> whether the row says delivered; `declared`:
    the seq ranges (`to_seq` None: open-ended) gap records in the outbox declare already;
    `pruned_through`: the highest seq of the epoch the outbox deleted after delivery (0: none);
    `acked_through`: the highest `acked_through` an ACK of the epoch said (0: none).

    A deleted seq is declared `released` only when an `acked_through` once covered it: one
    released on its own ACK (`seq`, above a hole) may be at the collector still, listed by an
    ACK another collector issued before it stored it. It is left alone: a collector that holds
    it covers it in time, and one that lost it lists it once that is known (above).
    """
    lost: list[Span] = []
    released: list[Span] = []
    resend: list[int] = []
    for low, high in window:
        for seq in range(low, high + 1):
            if seq in held:
                if held[seq]:
                    resend.append(seq)
                continue
            if any(lo <= seq and (hi is None or seq <= hi) for lo, hi in declared):
                continue
            if seq > pruned_through:
                _add(lost, seq)
            elif seq <= acked_through:
                _add(released, seq)
    return MissingVerdict(tuple(lost), tuple(resend), tuple(released))
