"""A fresh outbox has no block from before the span columns: an import stores no span aside.

Every seal writes its block's span in the block's own columns; a block without readings (a
new epoch's gap record alone) gets the empty span (`first_t` +inf, `last_t` -inf), which
overlaps no batch. Before, such a block was sealed with both columns NULL, the mark of a block
from before the columns (6658714): each import of a fresh outbox decoded it, made the
`block_spans` table and logged `outbox_spans_stored`. Real outbox files.
"""

from __future__ import annotations

import math
import sqlite3
from contextlib import closing
from pathlib import Path

import pytest
from structlog.testing import capture_logs

from edge_agent.shell.outbox_open import open_outbox
from edge_agent.shell.outbox_recovery import declared_gap
from edge_agent.shell.outbox_spans import SpanMemo
from specs.records import GapReason, Reading
from tests.support.outbox_budget import minute_block
from tests.support.outbox_site import KEY, SITE, T0

pytestmark = pytest.mark.timeout(60)


async def test_a_readingless_block_is_sealed_with_the_empty_span_and_stores_nothing_aside(
    tmp_path: Path,
) -> None:
    path = tmp_path / "outbox.db"
    records = minute_block(0)
    keys = sorted((r.point, r.t) for r in records if isinstance(r, Reading))[:3]
    async with open_outbox(path, SITE, KEY) as outbox:
        await outbox.seal(records, now=T0, clock_synced=True)
        gap = declared_gap(GapReason.OUTBOX_RESTORED, outbox.epoch, 1, T0 + 60)
        await outbox.start_new_epoch((gap,), now=T0 + 60, clock_synced=True)
    with closing(sqlite3.connect(path)) as db:
        spans = db.execute("SELECT readings, first_t, last_t FROM blocks").fetchall()
    readingless = [(low, high) for readings, low, high in spans if not readings]
    assert readingless, spans
    assert all(low == math.inf and high == -math.inf for low, high in readingless), spans
    assert all(low is not None and high is not None for _, low, high in spans), spans
    for _ in range(2):
        with capture_logs() as logs:
            async with open_outbox(path, SITE, KEY) as outbox:
                assert (
                    await outbox.held_readings([("T001-LT-01", "2020-01-01T00:00:00Z")], SpanMemo())
                    == {}
                )
                assert sorted(await outbox.held_readings(keys, SpanMemo())) == keys
        assert "outbox_spans_stored" not in [e["event"] for e in logs]
    with closing(sqlite3.connect(path)) as db:
        tables = {
            str(r[0]) for r in db.execute("SELECT name FROM sqlite_master WHERE type = 'table'")
        }
    assert "block_spans" not in tables
