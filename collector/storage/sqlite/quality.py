"""The aggregates of GET /v1/quality on SQLite: one statement per page of groups.

The statement is `collector.storage.quality`'s; SQLite's words: its two-argument min/max, a
CAST to INTEGER (truncating the positive quotient) and a sum of booleans for the late count.
"""

from __future__ import annotations

from typing import Final

from collector.storage.quality import aggregates

AGGREGATES: Final = aggregates(
    smaller="min",
    larger="max",
    whole_polls="CAST((:end - :start) / m.poll AS INTEGER)",
    late_count="sum(b.received_at - r.t > :late_after)",
)
