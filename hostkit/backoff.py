"""Retry delays: capped exponential backoff with jitter.

`backoff_delays` paces reconnects (full jitter: the first try may come at once);
`ResendBackoff` paces the resends of a message that waits for an answer, never sooner than
its timeout.
"""

from __future__ import annotations

import random
from dataclasses import dataclass
from typing import TYPE_CHECKING, Final

if TYPE_CHECKING:
    from collections.abc import Iterator

__all__ = ["ResendBackoff", "backoff_delays"]

# 2**62 times any wait is past any cap: no larger power is ever computed.
_MOST_DOUBLINGS: Final = 62


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


@dataclass(frozen=True, slots=True)
class ResendBackoff:
    """How long a message sent and not answered waits before it is sent again.

    After its first send `first` (the answer's timeout) exactly; after each further send
    twice the wait before, up to `cap_factor` x `first`, plus up to `jitter` of it at random,
    so that senders whose messages went out together (a server back from an outage) spread
    their resends. A server slower than the timeout gets each message a few times, not once
    per timeout for as long as it lags. Pure: the caller draws `spread` and keeps the clock.
    """

    first: float
    cap_factor: float = 8.0
    jitter: float = 0.25

    def wait(self, sends: int, spread: float) -> float:
        """Seconds from the `sends`-th send (1: the first) until the message goes again.

        `spread` in [0, 1) picks the jitter (0: none).

        Raises:
            ValueError: `first` not positive, `cap_factor` < 1, `jitter` < 0, `sends` < 1 or
                `spread` outside [0, 1).
        """
        if self.first <= 0 or self.cap_factor < 1 or self.jitter < 0:
            raise ValueError(
                f"need first > 0, cap_factor >= 1 and jitter >= 0, got "
                f"{self.first}, {self.cap_factor}, {self.jitter}"
            )
        if sends < 1 or not 0.0 <= spread < 1.0:
            raise ValueError(f"need sends >= 1 and 0 <= spread < 1, got {sends}, {spread}")
        if sends == 1:
            return self.first
        doubled = self.first * 2.0 ** min(sends - 1, _MOST_DOUBLINGS)
        return min(doubled, self.first * self.cap_factor) * (1.0 + self.jitter * spread)
