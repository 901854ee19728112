"""G7: what a parsed site map holds per point stays small; an agent keeps its map while it runs."""

from __future__ import annotations

from tests.support.config_files import SITE, site_head

MAP = (
    site_head()
    + """\
devices:
  - {id: plc, driver: modbus_tcp, host: 10.0.0.9, poll: 1s, points: [
     {point: T1, quota: WHP-LT, address: {table: holding, start: 0, type: float32}},
     {point: T2, quota: WHP-LT, address: {table: holding, start: 2, type: float32}},
     {point: T3, quota: WHP-LT, address: {table: holding, start: 4, type: float32},
      thresholds: {high: 30}}]}
"""
)


def test_points_without_thresholds_share_one_frozen_instance() -> None:
    first, second, third = SITE.parse(MAP).devices[0].points
    assert first.thresholds is second.thresholds
    assert first.thresholds.as_dict() == {}
    assert third.thresholds.as_dict() == {"high": 30.0}
    assert "thresholds" not in first.model_fields_set, "still a default, not a setting"
