"""Noticing wall-clock jumps: the offset between wall and monotonic clocks should not move.

NTP slews by at most ~0.5 ms/s; a step (an admin's `date -s`, a first NTP sync after boot,
a dead RTC battery) moves the offset at once. Readings taken across a step keep their wall
time but are flagged, so downstream never mistakes a jumped clock for real data timing.
Scheduling never looks at the wall clock at all (DESIGN invariant 4).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Final

# Bigger than any slew over a poll interval of hours, far smaller than any real step.
STEP_THRESHOLD: Final = 1.0
FLAG: Final = "clock_jump"


@dataclass(frozen=True, slots=True)
class ClockWatch:
    """The wall-minus-monotonic offset last seen, or None before the first sample."""

    offset: float | None = None

    def observe(self, t_wall: float, t_mono: float) -> tuple[bool, ClockWatch]:
        """Whether the wall clock stepped since the last observation, and the new state."""
        offset = t_wall - t_mono
        jumped = self.offset is not None and abs(offset - self.offset) > STEP_THRESHOLD
        return jumped, ClockWatch(offset)
