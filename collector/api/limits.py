"""The API's limits as the config states them: rate buckets and request sizes.

Plain values, apart from the middleware that enforces them (`collector.api.admission`,
`collector.api.sizes`), so that loading a collector config imports no web framework: the
commands that only read the config (`collector gateways list`, `keys`, `db`) stay light.
"""

from __future__ import annotations

from dataclasses import dataclass

from collector.api.ratelimit import BucketRule


@dataclass(frozen=True, slots=True)
class RateLimits:
    """Buckets per token and per client address (for requests without a valid token)."""

    token: BucketRule
    address: BucketRule
    max_addresses: int
    """At most this many address buckets are kept (the least recently used go first)."""


@dataclass(frozen=True, slots=True)
class RequestLimits:
    """The largest request the API takes (`api.limits` in the config)."""

    url_bytes: int = 8192
    """Path and query string together, as sent (percent-encoded)."""
    body_bytes: int = 4096
    header_bytes: int = 16_384
    """All header names and values (and, at the server, the request line) together."""
    header_count: int = 100
    connections: int = 512
    """Open connections and tasks at once; uvicorn answers 503 beyond (enforced by uvicorn)."""
    head_timeout: float = 10.0
    """Seconds for a request line and its headers to arrive whole, from the connection's start
    or the previous answer; past it the server closes the connection (collector.api.server)."""
    connections_per_address: int = 64
    """Connections one client address (IPv6: its /64) holds at once; more are closed at once."""
    send_timeout: float = 30.0
    """Seconds a client may take no byte of what it was sent while more waits for it; past it
    the server closes the connection (collector.api.server). Counted afresh when it takes some."""
