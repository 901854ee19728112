"""The first ACK since a start that lists seqs the outbox lost, on a full outbox: sealing goes on.

An ACK listing a seq the outbox does not hold is answered from the seq ranges the epoch's gap
records declare (`outbox_missing.Declarations`): after a start, the first such ACK reads every
thinned or dropped block's replacement of the epoch. On a full outbox of the default 2 GiB
budget thinning has run through, that is hundreds of MiB to decode, and it was read while the
answer held the outbox's lock: sealing stopped for as long (bench/declarations.py: 2 s for
8 MiB of them). Real SQLite files; the sealer here is a task sealing block after block, as
the agent's does, and its seals make room in the full outbox (thinning, dropping) while the
answer reads.

An answer on a full outbox (at its budget, no page free) makes room for its gap record as
every seal does (`outbox_room.RoomMaker.sealing`): it met SQLITE_FULL before, the publisher
logged `ack_not_recorded` and the next ACK asked again, for as long as the outbox stayed full.
"""

from __future__ import annotations

import asyncio
import sqlite3
from contextlib import closing
from pathlib import Path

import pytest

from edge_agent.shell.outbox import Outbox
from edge_agent.shell.outbox_open import open_outbox
from edge_agent.shell.outbox_space import SpaceBudget
from specs.records import GapReason
from tests.support.outbox_budget import MIB, minute_block, room_made, take_free_pages
from tests.support.outbox_file import gap_ranges
from tests.support.outbox_site import KEY, SITE, T0

pytestmark = pytest.mark.timeout(120)


async def _sealing_while(outbox: Outbox, answer: asyncio.Task[tuple[int, ...]]) -> int:
    """Seal block after block until `answer` is done; how many were sealed before it was."""
    during = 0
    index = 10_000
    while not answer.done():
        await outbox.seal(minute_block(index), now=T0 + index, clock_synced=True)
        index += 1
        during += 0 if answer.done() else 1
    return during


async def test_seals_go_on_while_the_first_answer_reads_what_gap_records_declare(
    tmp_path: Path,
) -> None:
    path = tmp_path / "outbox.db"
    async with open_outbox(path, SITE, KEY, max_bytes=MIB) as outbox:
        for index in range(400):  # thinned and dropped again and again: nothing is ACKed
            await outbox.seal(minute_block(index), now=T0 + index, clock_synced=True)
        last_seq = (await outbox.stats()).last_seq
    lost = last_seq - 5  # a row gone from the file, that no gap record declares
    with closing(sqlite3.connect(path)) as db, db:
        db.execute("DELETE FROM blocks WHERE seq = ?", (lost,))
        lowest, gap_blocks = db.execute(
            "SELECT MIN(seq), SUM(thinned = 1 OR readings = 0) FROM blocks"
        ).fetchone()
    assert lowest > 63  # seqs 1-63 were thinned away, and are declared
    assert gap_blocks > 10
    assert gap_ranges(path, GapReason.OUTBOX_CORRUPT) == []

    async with open_outbox(path, SITE, KEY, max_bytes=MIB) as outbox:  # a start: none read
        answer = asyncio.create_task(
            outbox.delivery.answer_missing(outbox.epoch, [(1, 63)], now=T0, clock_synced=True)
        )
        sealed = await _sealing_while(outbox, answer)
        resend = await answer
        again = await outbox.delivery.answer_missing(
            outbox.epoch, [(1, 63)], now=T0, clock_synced=True
        )
    # Before, the answer held the lock while it read: the first seal waited for all of it.
    assert sealed >= 3, f"{sealed} seals while the answer read {gap_blocks} gap blocks"
    # Seqs 1-63 were found declared, though blocks gave way while the answer read.
    assert resend == again == ()
    assert gap_ranges(path, GapReason.OUTBOX_CORRUPT) == []

    # A start with room for the answer's own block (in a full outbox it makes room first:
    # the test below): what no gap record declares is declared, and only that.
    async with open_outbox(path, SITE, KEY, max_bytes=2 * MIB) as outbox:
        await outbox.delivery.answer_missing(
            outbox.epoch, [(1, 63), (lost, lost)], now=T0, clock_synced=True
        )
    assert gap_ranges(path, GapReason.OUTBOX_CORRUPT) == [(lost, lost)]


async def test_the_first_answer_of_an_old_epoch_reads_the_seqs_held_not_every_seq(
    tmp_path: Path,
) -> None:
    # An epoch lasts as long as the sequence state: at the default flush_interval (0.2 s) a
    # site seals up to 5 blocks a second, 13 million in a month, nearly all of them delivered
    # and pruned long ago. The file below stands for that: its chain says 300,000 blocks were
    # sealed and it holds none of them, then the blocks sealed since the start.
    path = tmp_path / "outbox.db"
    async with open_outbox(path, SITE, KEY) as outbox:
        await outbox.seal(minute_block(0), now=T0, clock_synced=True)
    pruned = 300_000
    with closing(sqlite3.connect(path)) as db, db:
        db.execute("UPDATE meta SET value = ? WHERE key = 'last_seq'", (str(pruned),))
        db.execute("DELETE FROM blocks")
    async with open_outbox(path, SITE, KEY) as outbox:
        for index in range(1, 6):
            await outbox.seal(minute_block(index), now=T0 + index, clock_synced=True)
        statements: list[str] = []
        await outbox._file.db.set_trace_callback(statements.append)
        resend = await outbox.delivery.answer_missing(
            outbox.epoch, [(pruned - 10, pruned - 10)], now=T0, clock_synced=True
        )
        answered = len(statements)  # not the closing's
    # The ACK handler awaits the answer: no ACK nor command was taken while it read. Before,
    # it read the epoch 32 seqs at a time, held or not: 9,375 windows, 18,767 statements and
    # 10 s here (13 million seqs, a month's epoch, would take minutes), for five blocks; 18 now.
    assert answered < 100, f"{answered} statements for 5 blocks held"
    assert resend == ()
    assert gap_ranges(path, GapReason.OUTBOX_CORRUPT) == [(pruned - 10, pruned - 10)]


async def test_an_answer_on_a_full_outbox_makes_room_and_declares_what_it_lost(
    tmp_path: Path,
) -> None:
    path = tmp_path / "outbox.db"
    async with open_outbox(path, SITE, KEY, max_bytes=MIB) as outbox:
        for index in range(120):  # full: thinned and dropped, nothing is ACKed
            await outbox.seal(minute_block(index), now=T0 + index, clock_synced=True)
    with closing(sqlite3.connect(path)) as db, db:
        held = db.execute(
            "SELECT seq FROM blocks WHERE thinned = 0 AND readings > 0 ORDER BY seq DESC LIMIT 64"
        ).fetchall()
        # Rows gone from the file that no gap record declares: one gap record each, 32 in
        # one block, larger than a page: its seal needs a free page.
        lost = sorted(int(row[0]) for row in held[::2])
        db.executemany("DELETE FROM blocks WHERE seq = ?", [(seq,) for seq in lost])
    assert len(lost) == 32
    assert take_free_pages(path) == (SpaceBudget(MIB).max_pages, 0)  # at the budget, no page free
    before = room_made(path)
    assert gap_ranges(path, GapReason.OUTBOX_CORRUPT) == []

    async with open_outbox(path, SITE, KEY, max_bytes=MIB) as outbox:
        # Before: sqlite3.OperationalError 'database or disk is full', nothing declared.
        resend = await outbox.delivery.answer_missing(
            outbox.epoch, [(seq, seq) for seq in lost], now=T0, clock_synced=True
        )
        declared = gap_ranges(path, GapReason.OUTBOX_CORRUPT)
        after = room_made(path)
        # Sealing goes on after the answer, as before.
        await outbox.seal(minute_block(500), now=T0 + 500, clock_synced=True)
    assert resend == ()
    assert declared == [(seq, seq) for seq in lost]
    # Room was made as for any seal: blocks thinned or dropped, each loss declared.
    assert after > before
    with closing(sqlite3.connect(path)) as db:
        assert db.execute("PRAGMA integrity_check").fetchone() == ("ok",)


@pytest.mark.parametrize("delivered", [21, 1])
async def test_an_answer_on_a_full_outbox_sends_again_the_delivered_blocks_it_was_asked_for(
    tmp_path: Path, delivered: int
) -> None:
    # A collector restored from a backup after a long outage lists missing a block it had
    # ACKed (its row still in the outbox, marked delivered) and one the outbox lost, while the
    # outbox filled up meanwhile. Room is made by deleting delivered blocks first: not the one
    # the collector has just asked for. With 21 delivered, the 20 others make the room; with
    # that one alone, the oldest undelivered give way (thinned, and declared so).
    path = tmp_path / "outbox.db"
    async with open_outbox(path, SITE, KEY, max_bytes=MIB) as outbox:
        for index in range(120):  # full: thinned and dropped
            await outbox.seal(minute_block(index), now=T0 + index, clock_synced=True)
        held = [block.seq for block in await outbox.delivery.undelivered(after=0, limit=1000)]
        wanted, lost = held[delivered // 2], held[40]
        await outbox.delivery.mark_delivered(
            epoch=outbox.epoch, through=held[delivered - 1], also=None, now=T0 + 1000
        )
        epoch = outbox.epoch
    with closing(sqlite3.connect(path)) as db, db:
        db.execute("DELETE FROM blocks WHERE seq = ?", (lost,))  # gone, declared by nothing
    assert take_free_pages(path) == (SpaceBudget(MIB).max_pages, 0)  # at the budget, no page free
    before = room_made(path)

    async with open_outbox(path, SITE, KEY, max_bytes=MIB) as outbox:
        # Before: resend (), `wanted` deleted to make room and declared released.
        resend = await outbox.delivery.answer_missing(
            epoch, [(wanted, wanted), (lost, lost)], now=T0 + 2000, clock_synced=True
        )
        sent = {block.seq for block in await outbox.delivery.undelivered(after=0, limit=1000)}
        await outbox.seal(minute_block(500), now=T0 + 500, clock_synced=True)  # sealing goes on
    assert resend == (wanted,)
    assert wanted in sent  # undelivered again, in the file, and sent
    assert gap_ranges(path, GapReason.RELEASED) == []
    assert gap_ranges(path, GapReason.OUTBOX_CORRUPT) == [(lost, lost)]
    with closing(sqlite3.connect(path)) as db:
        delivered_left = db.execute("SELECT count(*) FROM blocks WHERE delivered_at IS NOT NULL")
        assert delivered_left.fetchone() == (0,)  # the others made room first, as before
        assert db.execute("PRAGMA integrity_check").fetchone() == ("ok",)
    if delivered == 1:  # room made of the oldest undelivered, each loss declared
        assert room_made(path) > before
