"""Token buckets: how many requests a token, or a client address without one, may make.

The arithmetic (`take`) is pure; `RateLimiter` keeps one bucket per key in a bounded table and
reads an injected clock, so tests step time instead of sleeping.

Why not the `limits` library (or `slowapi`, which wraps it per route): it offers fixed and
moving windows but no token bucket (a burst, then a steady rate, is what API clients such as
dashboards do), reads `time.time()` itself (no injected clock: tests would sleep or patch),
and its in-memory storage runs a timer thread to expire keys. A token bucket with a bounded
table is the few lines below. One collector process keeps its own buckets; several
collectors behind one address each allow the configured rate.
"""

from __future__ import annotations

import ipaddress
import math
import time
from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass
from typing import Final

IPV6_CLIENT_PREFIX: Final = 64
"""An IPv6 client is its /64: one host is routinely given a whole /64 to pick addresses from."""


@dataclass(frozen=True, slots=True)
class BucketRule:
    """A burst of `burst` requests, refilled at `per_second`."""

    per_second: float
    burst: int

    def __post_init__(self) -> None:
        if not (self.per_second > 0 and math.isfinite(self.per_second)) or self.burst < 1:
            raise ValueError(f"a bucket needs per_second > 0 and burst >= 1, not {self}")


@dataclass(frozen=True, slots=True)
class Bucket:
    """`level` requests left at time `at` (seconds of the limiter's clock)."""

    level: float
    at: float


@dataclass(frozen=True, slots=True)
class Verdict:
    """Whether a request may go on, the bucket after it, and how long until one more may."""

    allowed: bool
    bucket: Bucket
    retry_after: float

    @property
    def retry_after_header(self) -> str:
        """`Retry-After` in whole seconds (HTTP wants an integer), at least 1."""
        return str(max(1, math.ceil(self.retry_after)))


def take(rule: BucketRule, bucket: Bucket | None, now: float) -> Verdict:
    """Take one request from `bucket` (None: a full one) at `now` under `rule`."""
    if bucket is None:
        level = float(rule.burst)
    else:
        # A clock that steps back refills nothing (and never drains either).
        elapsed = max(0.0, now - bucket.at)
        level = min(float(rule.burst), bucket.level + elapsed * rule.per_second)
    if level >= 1.0:
        return Verdict(allowed=True, bucket=Bucket(level - 1.0, now), retry_after=0.0)
    return Verdict(
        allowed=False,
        bucket=Bucket(level, now),
        retry_after=(1.0 - level) / rule.per_second,
    )


def client_key(host: str) -> str:
    """The rate-limit key of a client address: IPv4 as is, IPv6 by its /64."""
    try:
        address = ipaddress.ip_address(host)
    except ValueError:
        return host  # not an IP (a Unix socket peer, a test client): as it is
    if isinstance(address, ipaddress.IPv6Address):
        if address.ipv4_mapped is not None:
            return str(address.ipv4_mapped)
        return str(ipaddress.IPv6Network((address, IPV6_CLIENT_PREFIX), strict=False))
    return str(address)


class RateLimiter:
    """Buckets by key, at most `max_keys` of them (the least recently used go first).

    A bucket that is dropped comes back full. Keys for tokens are few (one per configured
    token); keys for client addresses are not, which is why the table is bounded.
    """

    def __init__(self, max_keys: int, clock: Callable[[], float] = time.monotonic) -> None:
        if max_keys < 1:
            raise ValueError("a rate limiter needs room for at least one key")
        self._max_keys = max_keys
        self._clock = clock
        self._buckets: OrderedDict[str, Bucket] = OrderedDict()

    def __len__(self) -> int:
        return len(self._buckets)

    def take(self, key: str, rule: BucketRule) -> Verdict:
        """Take one request from `key`'s bucket under `rule`."""
        verdict = take(rule, self._buckets.get(key), self._clock())
        self._buckets[key] = verdict.bucket
        self._buckets.move_to_end(key)
        while len(self._buckets) > self._max_keys:
            self._buckets.popitem(last=False)
        return verdict
