from __future__ import annotations

from hypothesis import given
from hypothesis import strategies as st

from edge_agent.core.clockwatch import ClockWatch


def test_a_step_is_flagged_once_and_cadence_time_is_untouched() -> None:
    watch = ClockWatch()
    jumped, watch = watch.observe(1000.0, 10.0)
    assert not jumped
    jumped, watch = watch.observe(1001.0, 11.0)
    assert not jumped
    jumped, watch = watch.observe(1001.0 - 3600, 12.0)  # NTP stepped back one hour
    assert jumped
    jumped, watch = watch.observe(1002.0 - 3600, 13.0)  # steady again after the step
    assert not jumped


@given(st.lists(st.floats(0.001, 3600), min_size=1, max_size=50), st.floats(0, 2e9))
def test_a_slewing_clock_never_counts_as_a_jump(steps: list[float], start: float) -> None:
    watch = ClockWatch()
    wall, mono = start, 0.0
    for step in steps:
        wall += step * (1 + 0.0005)  # the most NTP slews
        mono += step
        jumped, watch = watch.observe(wall, mono)
        assert not jumped or step * 0.0005 > 1.0
