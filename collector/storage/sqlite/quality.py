"""The aggregates of GET /v1/quality on SQLite: one statement per page of groups.

The statement is `collector.storage.quality`'s; SQLite's words: its two-argument min/max, a
CAST to INTEGER (truncating the positive quotient, at most MAX_EXPECTED) and a sum of booleans
for the late count. The polls are summed as REAL: an INTEGER sum raises on overflow, and a
meta's poll periods are the gateway's to choose.
"""

from __future__ import annotations

from typing import Final

from collector.storage.quality import MAX_EXPECTED, aggregates

AGGREGATES: Final = aggregates(
    smaller="min",
    larger="max",
    whole_polls=f"CAST(min((:end - :start) / m.poll, {MAX_EXPECTED}) AS INTEGER) * 1.0",
    late_count="sum(b.received_at - r.t > :late_after)",
)
