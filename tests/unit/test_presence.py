"""Presence intervals (collector.quality.core.advance_presence): what each sign writes."""

from __future__ import annotations

import pytest

from collector.quality.core import Presence, Sign, advance_presence

WINDOW = 60.0
HELD_0_60 = Presence("gw", 0.0, 60.0, 7)
HELD_305_365 = Presence("gw", 305.0, 365.0, 7)  # the heartbeat of 305 s, from a 2nd collector


# (the newest interval held, one sign, what advance_presence writes)
@pytest.mark.parametrize(
    ("held", "sign", "written"),
    [
        (HELD_0_60, Sign("gw", 30.0), [Presence("gw", 0.0, 90.0, 7)]),
        (HELD_0_60, Sign("gw", 100.0), [Presence("gw", 100.0, 160.0, 0)]),
        (HELD_305_365, Sign("gw", 300.0), [Presence("gw", 300.0, 365.0, 7)]),
        (HELD_305_365, Sign("gw", 200.0), []),
        (HELD_0_60, Sign("gw", 20.0, online=False), [Presence("gw", 0.0, 20.0, 7)]),
    ],
    ids=[
        "a_heartbeat_inside_the_newest_interval_extends_it",
        "a_heartbeat_after_the_newest_interval_opens_one",
        "a_late_heartbeat_whose_window_reaches_the_newest_interval_moves_its_start",
        "a_late_heartbeat_that_cannot_reach_the_newest_interval_changes_nothing",
        "an_offline_status_closes_the_interval",
    ],
)
def test_a_sign_advances_the_newest_interval(
    held: Presence, sign: Sign, written: list[Presence]
) -> None:
    assert advance_presence({"gw": held}, [sign], WINDOW) == written
