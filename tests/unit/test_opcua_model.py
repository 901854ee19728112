"""DataValue -> sample rules that need no server."""

from __future__ import annotations

import pytest

from drivers.base import Quality
from drivers.opcua import FLAG_LOCAL_TIME, FLAG_SERVER_TIME, FLAG_TIME_REJECTED, UaValue, to_sample

WALL = 1_763_900_000.0
GOOD = 0
MAX_DATETIME = 253_402_300_799.0  # 9999-12-31T23:59:59Z, what some PLCs send
RTC_RESET = 946_684_800.0  # 2000-01-01, a dead RTC battery


@pytest.mark.parametrize("bogus", [MAX_DATETIME, RTC_RESET, -11_644_473_600.0])
def test_an_unbelievable_source_time_falls_back_to_the_server_time(bogus: float) -> None:
    sample = to_sample(
        "P", UaValue(1.5, GOOD, source_time=bogus, server_time=WALL - 1), wall=WALL, mono=1.0
    )
    assert sample.t_wall == WALL - 1
    assert FLAG_TIME_REJECTED in sample.flags
    assert FLAG_SERVER_TIME in sample.flags
    assert sample.quality is Quality.GOOD
    assert sample.value == 1.5


def test_with_no_believable_time_the_local_clock_stamps_the_sample() -> None:
    value = UaValue(2.0, GOOD, source_time=MAX_DATETIME, server_time=MAX_DATETIME)
    sample = to_sample("P", value, wall=WALL, mono=1.0)
    assert sample.t_wall == WALL
    assert {FLAG_TIME_REJECTED, FLAG_LOCAL_TIME} <= set(sample.flags)


def test_a_believable_source_time_is_kept_as_is() -> None:
    sample = to_sample("P", UaValue(3.0, GOOD, source_time=WALL - 5), wall=WALL, mono=1.0)
    assert sample.t_wall == WALL - 5
    assert sample.flags == ()


def test_a_source_time_hours_ahead_is_a_clock_on_local_time_not_a_reading_time() -> None:
    """A PLC whose clock is set to Beijing time (UTC+8) and sends it as UTC stamps its values
    8 h in the future: they were taken as the reading times (the skew allowed was a day either
    way), so every reading of the point was stored 8 h ahead of when it was read."""
    ahead = UaValue(1.5, GOOD, source_time=WALL + 8 * 3600, server_time=WALL - 1)
    sample = to_sample("P", ahead, wall=WALL, mono=1.0)
    assert sample.t_wall == WALL - 1
    assert {FLAG_TIME_REJECTED, FLAG_SERVER_TIME} <= set(sample.flags)
    both = UaValue(1.5, GOOD, source_time=WALL + 8 * 3600, server_time=WALL + 8 * 3600)
    assert to_sample("P", both, wall=WALL, mono=1.0).t_wall == WALL
    # A clock some minutes fast is a device's drift: its time stands.
    drifted = to_sample("P", UaValue(1.5, GOOD, source_time=WALL + 600), wall=WALL, mono=1.0)
    assert (drifted.t_wall, drifted.flags) == (WALL + 600, ())
    # Hours in the past is a value that has not changed since: its time stands.
    old = to_sample("P", UaValue(1.5, GOOD, source_time=WALL - 8 * 3600), wall=WALL, mono=1.0)
    assert (old.t_wall, old.flags) == (WALL - 8 * 3600, ())
