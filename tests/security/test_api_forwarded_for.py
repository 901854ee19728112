"""The per-address rate limit counts the connection's address, not what a header claims.

Found by a hostile tester: uvicorn takes `X-Forwarded-For` as the client's address by default
whenever the connection comes from 127.0.0.1 (its `proxy_headers`, `forwarded_allow_ips`),
so a client on the collector's host sending a new made-up address with each request got a new
full bucket each time: wrong tokens could be tried without the address limit. No proxy in
front of the API is part of the deployment, so no header names the client.
"""

from __future__ import annotations

from pathlib import Path

import httpx

from collector.api.limits import RateLimits
from collector.api.ratelimit import BucketRule
from tests.support.served_api import served_api

BURST = 3
LIMITS = RateLimits(
    token=BucketRule(per_second=1.0, burst=2),
    address=BucketRule(per_second=0.001, burst=BURST),  # no refill within the test
    max_addresses=1000,
)


def test_made_up_forwarded_addresses_share_the_connections_bucket(tmp_path: Path) -> None:
    # The address is the server's business, whatever the storage: SQLite only.
    url = f"sqlite:///{tmp_path}/c.db"
    with served_api(url, rate_limits=LIMITS) as api, httpx.Client() as client:
        codes = [
            client.get(
                f"{api.url}/v1/gateways",
                headers={"Authorization": "Bearer wrong", "X-Forwarded-For": f"10.9.9.{n}"},
            ).status_code
            for n in range(BURST + 2)
        ]
    assert codes == [401] * BURST + [429, 429]
