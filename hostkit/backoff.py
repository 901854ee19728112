"""Reconnect delays: capped exponential backoff with full jitter."""

from __future__ import annotations

import random
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from collections.abc import Iterator

__all__ = ["backoff_delays"]


def backoff_delays(
    initial: float = 0.5,
    cap: float = 30.0,
    rng: random.Random | None = None,
    *,
    factor: float = 2.0,
) -> Iterator[float]:
    """Yield endless reconnect delays, each uniform in [0, min(cap, initial * factor**n)].

    Full jitter spreads the reconnects of many gateways after a shared outage, so a recovering
    server is not hit by all of them at once. Pass a seeded `rng` for repeatable delays.

    Raises:
        ValueError: (on first use) `initial` not positive, `cap` below `initial`, `factor` < 1.
    """
    if initial <= 0 or cap < initial or factor < 1:
        raise ValueError(f"need 0 < initial <= cap and factor >= 1, got {initial}, {cap}, {factor}")
    source = rng if rng is not None else random.SystemRandom()
    ceiling = initial
    while True:
        yield source.uniform(0.0, ceiling)
        ceiling = min(cap, ceiling * factor)
