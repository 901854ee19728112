"""Rate limits: a token's bucket, and an address's for requests without a valid token.

A stepped clock (no sleeping): a bucket gives its burst, then 429 with Retry-After, then one
request per 1/per_second of the clock. Wrong tokens take from their address's bucket, so
guessing tokens goes no faster than the address's rate, whatever token each guess sends.
"""

from __future__ import annotations

import sqlite3
from collections.abc import AsyncIterator
from pathlib import Path

import httpx
import pytest
from structlog.testing import capture_logs

from collector.api.app import create_app
from collector.api.limits import RateLimits
from collector.api.ratelimit import BucketRule
from collector.storage import open_storage
from tests.support.clocks import ManualClock
from tests.support.collector_api import NOW, TOKENS, assert_problem, auth

LIMITS = RateLimits(
    token=BucketRule(per_second=2, burst=4),
    address=BucketRule(per_second=0.5, burst=3),
    max_addresses=100,
)


class Api:
    def __init__(self, app: object, clock: ManualClock) -> None:
        self.app = app
        self.clock = clock

    def client(self, address: str = "192.0.2.1") -> httpx.AsyncClient:
        transport = httpx.ASGITransport(app=self.app, client=(address, 40000))  # type: ignore[arg-type]
        return httpx.AsyncClient(transport=transport, base_url="http://collector")


@pytest.fixture
async def api(tmp_path: Path) -> AsyncIterator[Api]:
    clock = ManualClock(1000.0)
    async with open_storage(f"sqlite:///{tmp_path}/c.db") as storage:
        app = create_app(storage, TOKENS, clock=lambda: NOW, rate_limits=LIMITS, rate_clock=clock)
        yield Api(app, clock)


async def test_a_token_gets_its_burst_then_429_with_retry_after(api: Api) -> None:
    async with api.client() as http:
        for _ in range(LIMITS.token.burst):
            assert (await http.get("/v1/gateways", headers=auth("nc-token"))).status_code == 200
        refused = await http.get("/v1/gateways", headers=auth("nc-token"))
        body = assert_problem(refused, 429)
        assert refused.headers["retry-after"] == "1"  # 0.5 s, in whole seconds
        assert "per second" in body["detail"]
        # Another token is not held back by this one's bucket ...
        assert (await http.get("/v1/gateways", headers=auth("all-token"))).status_code == 200
        # ... and this one gets one request per 1/per_second of the clock.
        api.clock.now += 0.5
        assert (await http.get("/v1/gateways", headers=auth("nc-token"))).status_code == 200
        assert_problem(await http.get("/v1/gateways", headers=auth("nc-token")), 429)


async def test_a_token_is_limited_from_any_address(api: Api) -> None:
    for n in range(LIMITS.token.burst):
        async with api.client(f"192.0.2.{10 + n}") as http:
            assert (await http.get("/v1/gateways", headers=auth("nc-token"))).status_code == 200
    async with api.client("198.51.100.1") as http:
        assert_problem(await http.get("/v1/gateways", headers=auth("nc-token")), 429)


async def test_guessing_tokens_is_throttled_per_address(api: Api) -> None:
    async with api.client("192.0.2.66") as guesser:
        for guess in range(LIMITS.address.burst):
            assert_problem(await guesser.get("/v1/gateways", headers=auth(f"g{guess}")), 401)
        refused = await guesser.get("/v1/gateways", headers=auth("another-guess"))
        assert_problem(refused, 429)
        assert refused.headers["retry-after"] == "2"  # 1 / 0.5 per second
        assert_problem(await guesser.get("/healthz"), 429)  # no token: the address's bucket
        # A valid token from the same address takes from the token's bucket instead, so an
        # operator behind the same NAT as a guesser is not locked out.
        ok = await guesser.get("/v1/gateways", headers=auth("nc-token"))
        assert ok.status_code == 200
    async with api.client("192.0.2.67") as neighbour:
        assert_problem(await neighbour.get("/v1/gateways", headers=auth("guess")), 401)


async def test_docs_logins_count_like_any_other_attempt(api: Api) -> None:
    async with api.client("192.0.2.70") as browser:
        for _ in range(LIMITS.address.burst):
            assert_problem(await browser.get("/docs"), 401)
        assert_problem(await browser.get("/docs"), 429)


async def test_without_rate_limits_nothing_is_counted(tmp_path: Path) -> None:
    async with open_storage(f"sqlite:///{tmp_path}/c.db") as storage:
        app = create_app(storage, TOKENS, clock=lambda: NOW)
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://collector") as http:
            for _ in range(50):
                assert (await http.get("/healthz")).status_code == 200


async def test_guesses_while_the_token_table_is_unreadable_are_throttled_and_logged_once(
    api: Api, tmp_path: Path
) -> None:
    """The defect (11d6250 left it): a token the database could not be asked about answered
    503 before the address's bucket was charged, one `api_storage_failed` line each: with the
    database down, wrong guesses went unthrottled (a right config token, checked before the
    database, answered 200, so its 200 among 503s told a guesser when it was right) and each
    wrote a warning. Now a failed lookup costs what a wrong token costs, and the warning is
    written once a minute per path (hostkit.log_limit) with the count of those left out."""
    other = sqlite3.connect(tmp_path / "c.db", isolation_level=None)
    other.execute("ALTER TABLE api_tokens RENAME TO api_tokens_away")
    try:
        async with api.client("192.0.2.80") as guesser:
            with capture_logs() as logs:
                codes = [
                    (await guesser.get("/v1/gateways", headers=auth(f"g{n}"))).status_code
                    for n in range(50)
                ]
                refused = await guesser.get("/v1/gateways", headers=auth("another"))
                # A config token from the same address takes from its own bucket, as ever.
                ok = await guesser.get("/v1/gateways", headers=auth("nc-token"))
    finally:
        other.execute("ALTER TABLE api_tokens_away RENAME TO api_tokens")
        other.close()
    assert codes == [503] * LIMITS.address.burst + [429] * (50 - LIMITS.address.burst)
    assert_problem(refused, 429)
    assert refused.headers["retry-after"] == "2"
    assert ok.status_code == 200
    failed = [e for e in logs if e["event"] == "api_storage_failed"]
    assert len(failed) == 1
    assert "no such table: api_tokens" in failed[0]["error"]
