"""`api.rate_limit` and `api.limits` in the collector config: read, checked, and applied by
`collector serve` (run_collector on a real broker), mistakes named by file, line and key."""

from __future__ import annotations

import asyncio
from pathlib import Path

import httpx
import pytest
from click.testing import CliRunner

from collector.api.limits import RateLimits, RequestLimits
from collector.api.ratelimit import BucketRule
from collector.cli import main
from collector.config import load_collector_config, parse_collector_config
from collector.runtime import run_collector
from tests.support.broker import Broker, free_port
from tests.support.collector_env import write_collector_config
from tests.support.config_files import COLLECTOR, COLLECTOR_HEAD, Mistake, mistake_id

FILE = "collector.yaml"
BASE = COLLECTOR_HEAD
LIMITS = """\
  rate_limit:
    token: {per_second: 10, burst: 50}
    address: {per_second: 0.5, burst: 5}
    max_addresses: 1000
  limits:
    url_bytes: 4096
    body_bytes: 0
    header_bytes: 8192
    header_count: 50
    connections: 64
"""


def test_defaults_limit_rates_and_sizes() -> None:
    api = parse_collector_config(BASE, FILE, Path("/srv")).api
    assert api.rate_limit.settings == RateLimits(
        token=BucketRule(50, 200), address=BucketRule(5, 20), max_addresses=100_000
    )
    assert api.limits.settings == RequestLimits()


def test_the_keys_are_read() -> None:
    api = parse_collector_config(BASE + LIMITS, FILE, Path("/srv")).api
    assert api.rate_limit.settings == RateLimits(BucketRule(10, 50), BucketRule(0.5, 5), 1000)
    assert api.limits.settings == RequestLimits(4096, 0, 8192, 50, 64)


def test_rate_limits_can_be_turned_off() -> None:
    text = BASE + "  rate_limit: {enabled: false}\n"
    assert parse_collector_config(text, FILE, Path("/srv")).api.rate_limit.settings is None


# (old, new, key, a part of the message)
LIMIT_MISTAKES = [
    Mistake(*row, match="part")
    for row in [
        ("per_second: 10,", "per_second: 0,", "api.rate_limit.token.per_second", "greater than 0"),
        ("per_second: 10,", "per_second: .inf,", "api.rate_limit.token.per_second", "finite"),
        ("burst: 5}", "burst: 0}", "api.rate_limit.address.burst", "greater than or equal to 1"),
        ("burst: 5}", "burst: 2.5}", "api.rate_limit.address.burst", "integer"),
        ("burst: 5}", "burst: 5, rate: 1}", "api.rate_limit.address.rate", "unknown key"),
        ("max_addresses: 1000", "max_addresses: 0", "api.rate_limit.max_addresses", "1"),
        ("url_bytes: 4096", "url_bytes: 9000", "api.limits.url_bytes", "header_bytes"),
        ("header_bytes: 8192", "header_bytes: 100", "api.limits.header_bytes", "1024"),
        ("connections: 64", "connections: 0", "api.limits.connections", "1"),
        ("body_bytes: 0", "body_bytes: -1", "api.limits.body_bytes", "0"),
    ]
]


@pytest.mark.parametrize("mistake", LIMIT_MISTAKES, ids=mistake_id)
def test_mistakes_name_line_and_key(mistake: Mistake) -> None:
    COLLECTOR.check_mistake(BASE + LIMITS, mistake)


async def test_collector_serve_applies_them(broker: Broker, tmp_path: Path) -> None:
    path = write_collector_config(tmp_path, broker_port=broker.port, api_port=free_port())
    text = path.read_text(encoding="utf-8").replace(
        "  tokens:\n",
        "  rate_limit: {token: {per_second: 0.01, burst: 3}, address: {per_second: 0.01,"
        " burst: 2}}\n  limits: {url_bytes: 300, body_bytes: 10}\n  tokens:\n",
    )
    path.write_text(text, encoding="utf-8")
    await asyncio.to_thread(CliRunner().invoke, main, ["keys", "init", "-c", str(path)])
    async with (
        run_collector(load_collector_config(path)) as collector,
        httpx.AsyncClient(base_url=collector.api_url) as http,
    ):
        assert (await http.get("/v1/gateways?x=" + "x" * 300)).status_code == 414
        assert (await http.request("GET", "/healthz", content=b"x" * 11)).status_code == 413
        bearer = {"Authorization": "Bearer s3cret"}
        statuses = [(await http.get("/v1/gateways", headers=bearer)).status_code for _ in "1234"]
        assert statuses == [200, 200, 200, 429]
        # The 414 and 413 answered before any bucket was touched; /healthz has the address's.
        statuses = [(await http.get("/healthz")).status_code for _ in "123"]
        assert statuses == [200, 200, 429]
