"""Reconnect delays (hostkit/backoff.py): capped, exponential, fully jittered, repeatable."""

from __future__ import annotations

import itertools
import random

import pytest

from hostkit.backoff import backoff_delays


def test_backoff_is_capped_exponential_with_full_jitter() -> None:
    delays = list(itertools.islice(backoff_delays(0.5, 30.0, random.Random(1)), 40))
    ceilings = [min(30.0, 0.5 * 2**n) for n in range(40)]
    assert all(0.0 <= d <= c for d, c in zip(delays, ceilings, strict=True))
    assert max(delays[10:]) > 15.0  # reaches well into the cap, not stuck low
    again = list(itertools.islice(backoff_delays(0.5, 30.0, random.Random(1)), 40))
    assert delays == again
    unseeded = backoff_delays()
    assert 0.0 <= next(unseeded) <= 0.5
    with pytest.raises(ValueError, match="initial"):
        next(backoff_delays(0.0))
