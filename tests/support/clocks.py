"""A clock a test sets: the collector's (or an agent's) `clock` argument, moved by hand."""

from __future__ import annotations


class ManualClock:
    """Answers `now` until a test moves it (`clock.now = ...`)."""

    def __init__(self, now: float) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now
