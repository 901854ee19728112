"""Property tests run with no time limit per example.

Hypothesis fails an example that takes longer than its deadline (200 ms by default). On CI's
busy two-core machine a config parse can take a second, so that limit made property tests
fail by load alone (test_config_site's mutated examples took 1,129 ms once). A time limit is
a timing goal, and timing goals live in bench/ as ratios, never in unit tests.
"""

from __future__ import annotations

from hypothesis import HealthCheck, settings


def test_no_example_has_a_deadline() -> None:
    assert settings().deadline is None


def test_slow_generation_is_not_a_failure() -> None:
    assert HealthCheck.too_slow in settings().suppress_health_check
