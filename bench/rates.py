"""How often one call runs per second: the benches' baselines (an Ed25519 verify and the like).

`clock` chooses what a second is: `time.process_time` for a per-CPU-second figure (on a shared
2-core machine a wall-clock rate measures the neighbours as much as the call),
`time.perf_counter` for wall time. The call runs `batch` times between two clock reads.
"""

from __future__ import annotations

import functools
import time
from collections.abc import Callable

from specs.signing import generate_signing_key


def rate(
    action: Callable[[], object],
    seconds: float,
    *,
    clock: Callable[[], float] = time.perf_counter,
    batch: int = 20,
) -> float:
    """Calls of `action` per `clock` second over about `seconds`."""
    count, started = 0, clock()
    while clock() - started < seconds:
        for _ in range(batch):
            action()
        count += batch
    return count / (clock() - started)


def ed25519_verify_rate(
    message: bytes, seconds: float, *, clock: Callable[[], float], batch: int
) -> float:
    """Single Ed25519 verifies of `message` (with a fresh key) per `clock` second."""
    key = generate_signing_key()
    verify = functools.partial(key.public().verify, key.sign(message), message)
    return rate(verify, seconds, clock=clock, batch=batch)
