"""Presence intervals (collector.quality.core.advance_presence): what each sign writes."""

from __future__ import annotations

from collector.quality.core import Presence, Sign, advance_presence

WINDOW = 60.0


def test_a_heartbeat_inside_the_newest_interval_extends_it() -> None:
    held = Presence("gw", 0.0, 60.0, 7)
    assert advance_presence({"gw": held}, [Sign("gw", 30.0)], WINDOW) == [
        Presence("gw", 0.0, 90.0, 7)
    ]


def test_a_heartbeat_after_the_newest_interval_opens_one() -> None:
    held = Presence("gw", 0.0, 60.0, 7)
    assert advance_presence({"gw": held}, [Sign("gw", 100.0)], WINDOW) == [
        Presence("gw", 100.0, 160.0, 0)
    ]


def test_a_late_heartbeat_whose_window_reaches_the_newest_interval_moves_its_start() -> None:
    """Two collectors: the heartbeat of 300 s commits after the one of 305 s."""
    held = Presence("gw", 305.0, 365.0, 7)
    assert advance_presence({"gw": held}, [Sign("gw", 300.0)], WINDOW) == [
        Presence("gw", 300.0, 365.0, 7)
    ]


def test_a_late_heartbeat_that_cannot_reach_the_newest_interval_changes_nothing() -> None:
    held = Presence("gw", 305.0, 365.0, 7)
    assert advance_presence({"gw": held}, [Sign("gw", 200.0)], WINDOW) == []


def test_an_offline_status_closes_the_interval() -> None:
    held = Presence("gw", 0.0, 60.0, 7)
    assert advance_presence({"gw": held}, [Sign("gw", 20.0, online=False)], WINDOW) == [
        Presence("gw", 0.0, 20.0, 7)
    ]
