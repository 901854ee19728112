"""An import's look-up of what the outbox holds sees one state of the file, whatever the agent
makes room for meanwhile; an outbox from before the span columns gets its spans stored once.

The look-up lists the blocks whose span overlaps a batch's, then reads their payloads. Room
made by the running agent (another process) between the two deletes listed blocks and seals
their readings kept at the head under new seqs: read in a later state, the keys it moved were
missed, and the import sealed them a second time (or missed a conflict). The listing and the
reads now share a read transaction (a short one, listed again when it runs long), and read
every block of the last state listed. Real 1 MiB outbox files; the room is made by a real
second process, held at the moment SQLite starts the look-up's first payload read.

A block sealed before the span columns has none: the first import decodes it and stores its
span aside (`outbox_spans_stored`, `block_spans`), so the next import decodes none of them.
"""

from __future__ import annotations

import math
import sqlite3
from collections.abc import Iterator
from contextlib import closing
from pathlib import Path

import pytest
from structlog.testing import capture_logs

from edge_agent.core.held_readings import Key
from edge_agent.shell.outbox_open import open_outbox
from edge_agent.shell.outbox_spans import SpanMemo
from specs.block import decode_block
from specs.records import Reading
from tests.support.held_process import held_process
from tests.support.outbox_budget import (
    MIB,
    as_before_the_span,
    full_outbox,
    minute_block,
    take_free_pages,
)
from tests.support.outbox_site import KEY, SITE, T0

pytestmark = pytest.mark.timeout(180)

# Opens the full outbox as the running agent has it, then seals one block when told: the seal
# makes room, deleting the oldest blocks and sealing what they keep under new seqs.
_MAKES_ROOM = """
import asyncio, sys
from pathlib import Path
from edge_agent.shell.outbox_open import open_outbox
from tests.support.outbox_budget import MIB, minute_block
from tests.support.outbox_site import KEY, SITE, T0

async def main() -> None:
    async with open_outbox(Path(sys.argv[1]), SITE, KEY, max_bytes=MIB) as outbox:
        print("held", flush=True)
        sys.stdin.readline()
        await outbox.seal(minute_block(500), now=T0 + 500, clock_synced=True)
        print("room made", flush=True)

asyncio.run(main())
"""


def _held_keys(path: Path) -> set[Key]:
    """Every (point, t) of a reading the file holds now."""
    with closing(sqlite3.connect(path)) as db:
        payloads = [bytes(r[0]) for r in db.execute("SELECT payload FROM blocks")]
    return {
        (r.point, r.t)
        for payload in payloads
        for r in decode_block(payload).records
        if isinstance(r, Reading)
    }


def _spans(path: Path) -> Iterator[tuple[float | None, float | None]]:
    """The span stored aside for each block (`block_spans`; its own row left as it was)."""
    with closing(sqlite3.connect(path)) as db:
        yield from db.execute(
            "SELECT s.first_t, s.last_t FROM blocks b JOIN block_spans s"
            " ON s.epoch = b.epoch AND s.seq = b.seq WHERE b.last_t IS NULL"
        )


async def test_room_made_between_the_listing_and_the_reads_misses_no_key(tmp_path: Path) -> None:
    path = tmp_path / "outbox.db"
    await full_outbox(path)
    take_free_pages(path)  # the next seal must make room
    before = _held_keys(path)
    with held_process(_MAKES_ROOM, str(path)) as agent:
        async with open_outbox(path, SITE, KEY, max_bytes=MIB) as outbox:
            made: list[str] = []

            def between(statement: str) -> None:  # on the connection's thread
                if "payload" in statement.lower() and not made:
                    made.extend(agent.release("go"))

            await outbox._file.db.set_trace_callback(between)
            held = await outbox.held_readings(sorted(before), SpanMemo())
    assert made[-1:] == ["room made"]
    after = _held_keys(path)
    assert after - before  # room was made: readings kept were sealed again under new seqs
    missed = (after & before) - set(held)
    assert not missed, f"{len(missed)} of {len(after & before)} keys held missed"


async def _old_outbox(path: Path, blocks: int) -> set[Key]:
    """An outbox as the parent of 6658714 left it: `blocks` blocks, no span columns."""
    keys: set[Key] = set()
    async with open_outbox(path, SITE, KEY) as outbox:
        for index in range(blocks):
            records = minute_block(index)
            keys |= {(r.point, r.t) for r in records if isinstance(r, Reading)}
            await outbox.seal(records, now=T0 + index, clock_synced=True)
    as_before_the_span(path)
    return keys


async def test_spans_of_blocks_from_before_them_are_stored_by_the_first_import(
    tmp_path: Path,
) -> None:
    path = tmp_path / "outbox.db"
    old = await _old_outbox(path, 40)
    one_old = sorted(old)[:3]
    later = [("T001-LT-01", "2026-12-01T00:00:00Z")]
    decoded = []
    for _ in range(2):
        with capture_logs() as logs:
            async with open_outbox(path, SITE, KEY) as outbox:
                held = await outbox.held_readings(later, SpanMemo())
                assert held == {}
                held = await outbox.held_readings(one_old, SpanMemo())
                assert sorted(held) == one_old
        stored = [e for e in logs if e["event"] == "outbox_spans_stored"]
        decoded.append(sum(e["decoded"] for e in stored))
        assert sum(e["stored"] for e in stored) == decoded[-1]
    assert decoded == [40, 0]
    spans = list(_spans(path))
    assert len(spans) == 40
    assert all(low is not None and high is not None and low <= high for low, high in spans)
    assert not any(math.isinf(low or 0) for low, _ in spans)
