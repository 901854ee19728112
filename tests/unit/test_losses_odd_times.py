"""A reading whose time the wire refuses is still counted at risk, and counting it never raises.

The sealer counts what it holds in the seq mark's tally (`at_risk`) after a failed seal and,
since 5e7e408, as soon as a seal waits past `SET_ASIDE_AFTER`. A held reading with a time
outside 1970..2999 (instrument garbage the alarm evaluator already refuses) made that count
raise RecordFormatError, which ended the sealer's run: the fresh-clone CI at 5e7e408 lost
tests/integration/test_outbox.py::test_a_reading_the_alarm_evaluator_cannot_handle_is_still_sealed
that way, under load, when the seal took over a second.
"""

from __future__ import annotations

import pytest

from edge_agent.core.losses import LostReadings, at_risk
from specs.records import Quality, Reading, iso_time

T = 1.7e9


def _reading(t: str) -> Reading:
    return Reading("S01-GX-01", "BP-GX", t, 1.0, "mm", Quality.GOOD)


@pytest.mark.parametrize(
    "odd", ["9999-12-31T23:59:59.000+00:00", "1969-12-31T23:59:59.000+00:00", "yesterday"]
)
def test_a_reading_with_a_time_the_wire_refuses_counts_without_widening_the_span(
    odd: str,
) -> None:
    fine = _reading(iso_time(T))
    tally = at_risk(LostReadings(), [_reading(odd), fine])  # before: RecordFormatError
    assert tally == LostReadings(2, T, T)
    assert LostReadings().add(_reading(odd)) == LostReadings(1, None, None)
