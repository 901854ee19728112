"""The aggregates of GET /v1/quality on PostgreSQL: SQLite's statement, one per page of groups.

The statement is `collector.storage.quality`'s. Where SQLite's dialect differs: least/greatest
for its two-argument min/max, trunc for its CAST to INTEGER (both truncate the positive
quotient, at most MAX_EXPECTED, so the bigint holds it; its sum is numeric), and a FILTER count
for its sum of booleans.
"""

from __future__ import annotations

from typing import Final

from collector.storage.quality import MAX_EXPECTED, aggregates

AGGREGATES: Final = aggregates(
    smaller="least",
    larger="greatest",
    whole_polls=(f"trunc(least((:end::float8 - :start::float8) / m.poll, {MAX_EXPECTED}))::bigint"),
    late_count="count(*) FILTER (WHERE b.received_at - r.t > :late_after)",
)
