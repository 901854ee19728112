"""What each point of a subscription hands out, and when: one reading per value, none twice.

A point's newest value goes out once, by `pushed()` or by the next `read()`, never by both; a
point hands out at most one new value per sampling interval (less a tenth, for jitter), so a
server that samples faster than asked does not multiply the readings; a value that comes back
as the DataValue the point's previous sample came from is ``held`` (`to_sample`). The driver
(`driver.py`) owns the connection; this keeps the per-point bookkeeping across reads, pushes
and reconnects.
"""

from __future__ import annotations

import time
from typing import TYPE_CHECKING

from drivers.base import Quality, RawSample
from drivers.opcua.model import UaPoint, UaValue
from drivers.opcua.samples import FLAG_HELD, to_sample

if TYPE_CHECKING:
    from collections.abc import Callable, Sequence

    from drivers.opcua.link import Link


class Handout:
    """The points' last DataValues, what `pushed` handed out, and when each may hand out next."""

    def __init__(
        self, spacing: float, *, wall: Callable[[], float], mono: Callable[[], float]
    ) -> None:
        """`spacing`: seconds between a point's two new values; `wall`, `mono`: the clocks."""
        self._spacing = spacing
        self._wall = wall
        self._mono = mono
        # The DataValue each point's last sample came from: a repeat of it is `held`.
        self._returned: dict[str, UaValue] = {}
        # Points `pushed` handed out since the previous `read`: that read leaves them out.
        self._pushed: set[str] = set()
        # When (monotonic) each point may next hand out a new value: one per sampling interval.
        self._due: dict[str, float] = {}

    def reconnected(self) -> None:
        """A new link: nothing pushed on it yet, and every point's first value may go at once."""
        self._pushed.clear()
        self._due.clear()

    def to_read(self, points: Sequence[UaPoint]) -> Sequence[UaPoint]:
        """Those of `points` a read gives: not the ones `pushed` handed out since the last."""
        skip, self._pushed = self._pushed, set()
        return [p for p in points if p.key not in skip] if skip else points

    def due(self, unsent: set[str], now: float) -> set[str]:
        """Those of `unsent` (points with a value not handed out) whose interval is up."""
        return {key for key in unsent if self._due.get(key, now) <= now}

    def next_due(self, unsent: set[str]) -> list[float]:
        """When (monotonic) each of `unsent`, none of them due, may hand out its value."""
        return [self._due[key] for key in unsent]

    def pushed(self, keys: set[str]) -> None:
        """`keys` were handed out by `pushed`: the next read leaves them out."""
        self._pushed |= keys

    def samples(
        self, link: Link, values: dict[str, UaValue], points: Sequence[UaPoint]
    ) -> list[RawSample]:
        """Map the DataValues of `points` to samples, remembering them for `held`."""
        wall, mono = self._wall(), self._mono()
        samples: list[RawSample] = []
        for point in points:
            unresolved = link.unresolved.get(point.key)
            if unresolved is not None:
                samples.append(
                    RawSample(point.key, None, Quality.BAD, wall, mono, error=unresolved)
                )
                continue
            value = values.get(point.key)
            if value is None:
                refused = link.refused.get(point.key)
                if refused is None:
                    samples.append(
                        RawSample(
                            point.key,
                            None,
                            Quality.BAD,
                            wall,
                            mono,
                            error="no_value: no notification received yet",
                        )
                    )
                    continue
                value = UaValue(None, refused)
            sample = to_sample(
                point.key, value, wall=wall, mono=mono, previous=self._returned.get(point.key)
            )
            samples.append(sample)
            self._returned[point.key] = value
            if FLAG_HELD not in sample.flags:  # a new value: the next one a sampling later
                self._due[point.key] = time.monotonic() + self._spacing
        return samples
