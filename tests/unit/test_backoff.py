"""Retry delays (hostkit/backoff.py): reconnects capped, exponential, fully jittered, repeatable;
resends of an unanswered block never sooner than the ACK timeout, doubling, capped, jittered."""

from __future__ import annotations

import itertools
import random

import pytest
from hypothesis import given
from hypothesis import strategies as st

from hostkit.backoff import ResendBackoff, backoff_delays


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


# The ACK timeout's resend schedule (uplink.ack_timeout, edge_agent.shell.publisher_lanes).

_FIRSTS = st.floats(min_value=0.01, max_value=3600, allow_nan=False)
_SPREADS = st.floats(min_value=0.0, max_value=1.0, exclude_max=True)


@given(first=_FIRSTS, spread=_SPREADS)
def test_the_first_resend_waits_the_ack_timeout_exactly(first: float, spread: float) -> None:
    assert ResendBackoff(first).wait(1, spread) == first


@given(first=_FIRSTS, sends=st.integers(min_value=1, max_value=10**6), spread=_SPREADS)
def test_each_further_resend_waits_twice_as_long_up_to_8x_plus_a_quarter_at_most(
    first: float, sends: int, spread: float
) -> None:
    pace = ResendBackoff(first)
    base = min(first * 2.0 ** min(sends - 1, 64), 8 * first)
    wait = pace.wait(sends, spread)
    assert base <= wait <= base * 1.25
    assert first <= wait <= 10 * first  # never sooner than the timeout, never unbounded
    assert pace.wait(sends + 1, 0.0) >= pace.wait(sends, 0.0)


def _most_sends(pace: ResendBackoff, window: float) -> int:
    """The most sends of one never-answered block in `window` s: all waits at their shortest."""
    sends, at = 1, 0.0
    while (at := at + pace.wait(sends, 0.0)) <= window:
        sends += 1
    return sends


def test_a_block_never_answered_goes_6_times_a_minute_at_a_2s_timeout_not_31() -> None:
    assert _most_sends(ResendBackoff(2.0), 60.0) == 6  # at 0, 2, 6, 14, 30 and 46 s
    assert _most_sends(ResendBackoff(15.0), 3600.0) == 33  # then one every 2-2.5 min, was 241


@pytest.mark.parametrize(
    ("first", "cap_factor", "jitter", "sends", "spread"),
    [
        (0.0, 8.0, 0.25, 1, 0.0),
        (1.0, 0.5, 0.25, 1, 0.0),
        (1.0, 8.0, -0.1, 1, 0.0),
        (1.0, 8.0, 0.25, 0, 0.0),
        (1.0, 8.0, 0.25, 2, 1.0),
    ],
)
def test_a_resend_schedule_refuses_nonsense(
    first: float, cap_factor: float, jitter: float, sends: int, spread: float
) -> None:
    with pytest.raises(ValueError, match=r"need"):
        ResendBackoff(first, cap_factor, jitter).wait(sends, spread)
