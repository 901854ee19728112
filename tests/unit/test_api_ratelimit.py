"""Token buckets (pure, stepped clock) and how a request presents its token."""

from __future__ import annotations

import base64

import pytest
from hypothesis import given
from hypothesis import strategies as st

from collector.api.credentials import Presented, Scheme, presented_token
from collector.api.ratelimit import Bucket, BucketRule, RateLimiter, client_key, take

RULE = BucketRule(per_second=2.0, burst=5)


def test_a_fresh_bucket_allows_the_burst_at_once_then_says_when() -> None:
    bucket = None
    for _ in range(RULE.burst):
        verdict = take(RULE, bucket, 100.0)
        assert verdict.allowed
        bucket = verdict.bucket
    refused = take(RULE, bucket, 100.0)
    assert not refused.allowed
    assert refused.retry_after == pytest.approx(0.5)  # one request per 1/per_second
    assert refused.retry_after_header == "1"
    assert not take(RULE, refused.bucket, 100.49).allowed
    assert take(RULE, refused.bucket, 100.5).allowed


def test_retry_after_is_whole_seconds_rounded_up() -> None:
    slow = BucketRule(per_second=0.4, burst=1)
    refused = take(slow, take(slow, None, 0.0).bucket, 0.0)
    assert (refused.retry_after, refused.retry_after_header) == (2.5, "3")


def test_a_clock_stepping_back_refills_nothing() -> None:
    empty = Bucket(level=0.0, at=50.0)
    assert not take(RULE, empty, 10.0).allowed
    assert take(RULE, empty, 10.0).bucket.level == 0.0


@pytest.mark.parametrize(("per_second", "burst"), [(0, 1), (-1, 1), (1, 0), (float("inf"), 1)])
def test_impossible_rules_are_refused(per_second: float, burst: int) -> None:
    with pytest.raises(ValueError, match="per_second"):
        BucketRule(per_second, burst)


@given(
    per_second=st.floats(0.01, 1000),
    burst=st.integers(1, 50),
    steps=st.lists(st.floats(0, 10), min_size=1, max_size=200),
)
def test_no_more_than_the_burst_plus_the_rate_over_any_stretch(
    per_second: float, burst: int, steps: list[float]
) -> None:
    """The token bucket's promise, over every run of requests."""
    rule = BucketRule(per_second, burst)
    bucket, now = None, 0.0
    allowed_at: list[float] = []
    for step in steps:
        now += step
        verdict = take(rule, bucket, now)
        bucket = verdict.bucket
        if verdict.allowed:
            allowed_at.append(now)
        else:
            # Waiting as told is enough: the next request then goes through.
            assert take(rule, bucket, now + verdict.retry_after + 1e-9).allowed
    for i, start in enumerate(allowed_at):
        for j in range(i, len(allowed_at)):
            span = allowed_at[j] - start
            assert j - i + 1 <= burst + span * per_second + 1e-6


def test_an_idle_bucket_is_full_again() -> None:
    bucket = take(RULE, None, 0.0).bucket
    later = take(RULE, bucket, 1000.0)
    assert later.bucket.level == RULE.burst - 1


@pytest.mark.parametrize(
    ("host", "key"),
    [
        ("192.0.2.7", "192.0.2.7"),
        ("2001:db8:1:2:aaaa::1", "2001:db8:1:2::/64"),
        ("2001:db8:1:2:bbbb::9", "2001:db8:1:2::/64"),  # one host's /64: one bucket
        ("::ffff:192.0.2.7", "192.0.2.7"),
        ("testclient", "testclient"),
    ],
)
def test_client_keys(host: str, key: str) -> None:
    assert client_key(host) == key


def test_the_limiter_keeps_at_most_max_keys_dropping_the_least_recent() -> None:
    now = [0.0]
    limiter = RateLimiter(max_keys=2, clock=lambda: now[0])
    one = BucketRule(per_second=1, burst=1)
    assert limiter.take("a", one).allowed
    assert limiter.take("b", one).allowed
    assert not limiter.take("a", one).allowed  # "a" is now the most recent
    assert limiter.take("c", one).allowed  # drops "b"
    assert len(limiter) == 2
    assert limiter.take("b", one).allowed  # back full: it was forgotten
    assert not limiter.take("c", one).allowed
    now[0] = 1.0
    assert limiter.take("c", one).allowed


def _basic(pair: str) -> str:
    return "Basic " + base64.b64encode(pair.encode()).decode()


@pytest.mark.parametrize(
    ("header", "presented"),
    [
        ("Bearer abc", Presented(Scheme.BEARER, "abc")),
        ("bearer   abc  ", Presented(Scheme.BEARER, "abc")),
        (_basic("user:abc"), Presented(Scheme.BASIC, "abc")),
        (_basic(":abc"), Presented(Scheme.BASIC, "abc")),
        (_basic("user:a:b"), Presented(Scheme.BASIC, "a:b")),
        (_basic("user:"), None),
        (_basic("no-colon"), None),
        ("Basic !!!", None),
        ("Basic " + base64.b64encode(b"u:\xff").decode(), None),
        ("Bearer", None),
        ("Bearer ", None),
        ("Token abc", None),
        ("", None),
        (None, None),
    ],
)
def test_presented_tokens(header: str | None, presented: Presented | None) -> None:
    assert presented_token(header) == presented
