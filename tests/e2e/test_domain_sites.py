"""End to end for every domain's site map: its simulator profile -> agent -> broker -> collector.

The oracle is the harness's: the multiset of readings the agent committed equals the multiset
the collector serves, and every point of the site map shows up with its indicator and unit.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Iterator
from pathlib import Path

import pytest

from demo.broker import Broker
from edge_agent.config import load_site_config
from tests.e2e.harness import Site, wait_until

pytestmark = pytest.mark.timeout(120)

SITES = ("tailings", "fireworks", "slope", "coalmine")


@pytest.fixture(params=SITES)
def site(request: pytest.FixtureRequest, tmp_path: Path, broker: Broker) -> Iterator[Site]:
    work = tmp_path / "site"
    work.mkdir()
    instance = Site(work=work, broker=broker, site_name=request.param)
    instance.setup()
    instance.start_sim()
    instance.start_collector()
    yield instance
    instance.stop_all()


def _sealed_blocks(site: Site) -> int:
    """Blocks sealed so far, 0 also while the agent has created its outbox file but no tables."""
    try:
        return site.sealed_blocks()
    except sqlite3.OperationalError:
        return 0


def test_site_readings_arrive_exactly_as_committed(site: Site) -> None:
    config = load_site_config(site.work / "site.yaml")
    points = {code: point for device in config.devices for code, point in config.points_of(device)}
    site.start_agent()
    wait_until(lambda: _sealed_blocks(site) > 3, 30, "more than 3 sealed blocks")
    site.drain_and_stop_agent()

    committed = site.outbox_readings()
    served = site.collector_readings()
    assert sum(committed.values()) >= len(points)
    missing, extra = committed - served, served - committed
    assert not missing, f"{sum(missing.values())} committed readings never arrived"
    assert not extra, f"{sum(extra.values())} readings served more often than committed"
    assert {key[0] for key in committed} == set(points), "every point of the site map was read"
    assert all(key[3] == "good" for key in committed), "the simulator answers every point"

    latest = site.api("/v1/latest", gateway=site.gateway)["items"]
    assert isinstance(latest, list)
    assert {item["point"] for item in latest} == set(points)
    for item in latest:
        point = points[item["point"]]
        assert item["quota"] == point.quota
        assert item["unit"] == point.indicator.unit
