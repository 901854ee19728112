"""A bounded outbox on a real SQLite file: it stays within max_bytes and names every loss.

Nothing is ever acknowledged here, so every block sealed stays undelivered and the budget is
reached again and again: the oldest blocks are thinned, then dropped, and each step seals a
gap record. The books must balance: every reading sealed is still in the file or counted as
lost by a gap record, every alarm event survives, and every seq is either in the file or
declared by a gap record.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Callable
from pathlib import Path

import pytest
from structlog.testing import capture_logs

from edge_agent.core.chain import Identity
from edge_agent.shell.outbox_open import open_outbox
from specs.block import MAX_BLOCK_READINGS, decode_block
from specs.records import AlarmEvent, AlarmRecord, GapReason, GapRecord, Reading, Record
from specs.signing import signing_key_from_seed
from tests.support.damage import erase_inside_column, zero_inside_payload
from tests.support.records import alarm_record, reading_at

pytestmark = pytest.mark.timeout(120)

KEY = signing_key_from_seed(bytes(32))
SITE = Identity("91360100MA35GW001H-GW01", "91360100MA35GW001H", "360100", "WHP")
MIB = 1024 * 1024
T0 = 1_700_000_000.0
POINTS = ("T001-LT-01", "T001-TT-01", "T001-PT-01", "T002-LT-01", "T002-TT-01")


def _block_records(index: int, per_block: int) -> tuple[Record, ...]:
    base = T0 + index * per_block
    records: list[Record] = [
        reading_at(base + i, float((index * per_block + i) % 97), point=POINTS[i % len(POINTS)])
        for i in range(per_block)
    ]
    if index % 25 == 0:
        records.append(
            alarm_record(
                f"a-{index}", AlarmEvent.RAISE, base, point=POINTS[0], value=9, threshold=8
            )
        )
    return tuple(records)


def _file_bytes(path: Path) -> tuple[int, int]:
    wal = path.with_name(path.name + "-wal")
    return path.stat().st_size, wal.stat().st_size if wal.exists() else 0


def _contents(path: Path) -> tuple[list[tuple[str, int]], list[Record]]:
    with sqlite3.connect(path) as db:
        rows = db.execute("SELECT epoch, seq, payload FROM blocks ORDER BY seq").fetchall()
    positions = [(str(e), int(s)) for e, s, _ in rows]
    records = [r for _, _, p in rows for r in decode_block(bytes(p)).records]
    return positions, records


async def test_a_full_outbox_stays_within_max_bytes_and_every_loss_is_declared(
    tmp_path: Path,
) -> None:
    path = tmp_path / "outbox.db"
    max_bytes = 1 * MIB
    sealed_readings: list[Reading] = []
    alarms: list[AlarmRecord] = []
    largest_block = 0
    largest_file = 0
    async with open_outbox(path, SITE, KEY, max_bytes=max_bytes) as outbox:
        for index in range(400):
            records = _block_records(index, per_block=60)
            sealed_readings.extend(r for r in records if isinstance(r, Reading))
            alarms.extend(r for r in records if isinstance(r, AlarmRecord))
            block = await outbox.seal(records, now=T0 + index, clock_synced=True)
            largest_block = max(largest_block, len(block.payload))
            db_bytes, wal_bytes = _file_bytes(path)
            assert db_bytes <= max_bytes
            largest_file = max(largest_file, db_bytes + wal_bytes)
            assert db_bytes + wal_bytes <= max_bytes + largest_block
        epoch = outbox.epoch
        last_seq = (await outbox.stats()).last_seq
    positions, in_file = _contents(path)
    kept = [r for r in in_file if isinstance(r, Reading)]
    gaps = [r for r in in_file if isinstance(r, GapRecord)]
    reasons = {g.reason for g in gaps}
    # Both steps ran: thinning, and (once only thinned blocks were left) dropping.
    assert reasons == {GapReason.THINNED, GapReason.OUTBOX_FULL}
    # The books balance: kept + declared lost == sealed, and what is kept is what was sealed.
    assert len(kept) + sum(g.lost or 0 for g in gaps) == len(sealed_readings)
    assert len(set(kept)) == len(kept)
    assert set(kept) <= set(sealed_readings)
    # Alarm events never give way.
    assert sorted(a.alarm_id for a in in_file if isinstance(a, AlarmRecord)) == sorted(
        a.alarm_id for a in alarms
    )
    # Every seq of the epoch is in the file or declared by a gap record.
    declared = {
        seq
        for g in gaps
        if g.epoch == epoch and g.from_seq is not None and g.to_seq is not None
        for seq in range(g.from_seq, g.to_seq + 1)
    }
    present = {seq for e, seq in positions if e == epoch}
    assert present | declared >= set(range(1, last_seq + 1))
    assert not present & declared
    print(
        f"max_bytes={max_bytes} largest db+wal={largest_file} largest block={largest_block}"
        f" readings sealed={len(sealed_readings)} kept={len(kept)} gaps={len(gaps)}"
    )


def _a_minute_of_every_point(index: int) -> tuple[Record, ...]:
    """MAX_BLOCK_READINGS readings, each point's one of its minute but P0000's four."""
    minute = T0 + 60 * index
    points = MAX_BLOCK_READINGS - 3
    readings = [reading_at(minute, 1.0, point=f"P{n:04d}") for n in range(points)]
    readings += [reading_at(minute + n, value, point="P0000") for n, value in enumerate((2, 9))]
    readings.append(reading_at(minute + 2, 3.0, point="P0000"))
    return tuple(readings)


async def test_a_replacement_is_sealed_in_blocks_no_larger_than_the_agent_seals(
    tmp_path: Path,
) -> None:
    """Found checking what the agent may send against the collector's ingest.max_message_bytes:
    thinning kept all but two readings of each minute here, and sealed all it kept of the
    blocks that gave way (up to 8 MiB of them) as one block: 7,999 records, 1.1 MB, where no
    block had more than 4,000 (640 KB). Now a replacement is sealed in blocks of
    MAX_BLOCK_READINGS records at most, in order, in the same transaction."""
    path = tmp_path / "outbox.db"
    async with open_outbox(path, SITE, KEY, max_bytes=16 * MIB) as outbox:
        for index in range(40):
            records = _a_minute_of_every_point(index)
            await outbox.seal(records, now=T0 + index, clock_synced=True)
    with sqlite3.connect(path) as db:
        rows = db.execute("SELECT payload FROM blocks ORDER BY seq").fetchall()
    blocks = [decode_block(bytes(payload)).records for (payload,) in rows]
    gaps = [r for records in blocks for r in records if isinstance(r, GapRecord)]
    assert GapReason.THINNED in {gap.reason for gap in gaps}
    assert max(len(records) for records in blocks) <= MAX_BLOCK_READINGS
    assert max(len(payload) for (payload,) in rows) < 800 * 1024


async def test_delivered_blocks_give_way_before_any_undelivered_reading(tmp_path: Path) -> None:
    path = tmp_path / "outbox.db"
    async with open_outbox(path, SITE, KEY, max_bytes=MIB) as outbox:
        index = 0
        # Fill the file with delivered blocks, then keep sealing undelivered ones.
        while _file_bytes(path)[0] < MIB * 3 // 4:
            block = await outbox.seal(_block_records(index, 60), now=T0 + index, clock_synced=True)
            await outbox.delivery.mark_delivered(
                epoch=block.epoch, through=block.seq, also=None, now=T0
            )
            index += 1
        undelivered_from = index
        for _ in range(40):
            await outbox.seal(_block_records(index, 60), now=T0 + index, clock_synced=True)
            index += 1
        stats = await outbox.stats()
    _, records = _contents(path)
    assert not [r for r in records if isinstance(r, GapRecord)]
    assert stats.undelivered == index - undelivered_from
    assert stats.delivered < undelivered_from


async def test_the_budget_holds_after_reopening_a_file_sealed_without_one(tmp_path: Path) -> None:
    path = tmp_path / "outbox.db"
    async with open_outbox(path, SITE, KEY) as outbox:
        for index in range(30):
            await outbox.seal(_block_records(index, 60), now=T0 + index, clock_synced=True)
    before = _file_bytes(path)[0]
    async with open_outbox(path, SITE, KEY, max_bytes=MIB) as outbox:
        for index in range(30, 300):
            await outbox.seal(_block_records(index, 60), now=T0 + index, clock_synced=True)
    assert _file_bytes(path)[0] <= max(before, MIB)


async def test_a_full_budget_on_a_roomy_disk_is_not_taken_for_a_full_disk(
    tmp_path: Path,
) -> None:
    """A block too large for what is left of max_bytes fails with SQLITE_FULL while the file
    is still below its page cap; the outbox took that for a full disk: it logged
    outbox_capped_by_full_disk, gave its reserve file back, capped the file and then
    'outbox_cap_lifted: the disk has room again' (sending an operator to look for a disk
    that was never full)."""
    path = tmp_path / "outbox.db"
    with capture_logs() as logs:
        async with open_outbox(path, SITE, KEY, max_bytes=MIB) as outbox:
            for index in range(12):
                await outbox.seal(_block_records(index, 1500), now=T0 + index, clock_synced=True)
    events = [entry["event"] for entry in logs]
    assert "outbox_thinned" in events, "the budget was reached"
    assert "outbox_capped_by_full_disk" not in events
    assert "outbox_cap_lifted" not in events


def _erase_digest(path: Path, seq: int) -> None:
    erase_inside_column(path, seq, "digest")


@pytest.mark.parametrize(
    ("damage", "gives_way"),
    [(zero_inside_payload, True), (_erase_digest, False)],
    ids=["payload_changed_is_declared", "digest_changed_is_thinned_as_any"],
)
async def test_a_block_changed_on_disk_gives_way_declared_when_the_outbox_is_full(
    tmp_path: Path, damage: Callable[[Path, int], None], gives_way: bool
) -> None:
    """Weeks offline with a full outbox, and one block's bytes changed on disk (a bad flash
    sector): when making room reaches it, it cannot be decoded to be thinned. It gives way
    whole, declared by an `outbox_corrupt` gap record for its seq, and sealing goes on. A
    block whose digest alone changed is as sealed (its signature vouches for it): it is
    thinned as any other, nothing declared."""
    path = tmp_path / "outbox.db"
    async with open_outbox(path, SITE, KEY, max_bytes=MIB) as outbox:
        for index in range(40):
            await outbox.seal(_block_records(index, 60), now=T0 + index, clock_synced=True)
        epoch = outbox.epoch
    damage(path, 2)
    async with open_outbox(path, SITE, KEY, max_bytes=MIB) as outbox:
        for index in range(40, 400):
            await outbox.seal(_block_records(index, 60), now=T0 + index, clock_synced=True)
    positions, in_file = _contents(path)
    declared = [
        g for g in in_file if isinstance(g, GapRecord) and g.reason is GapReason.OUTBOX_CORRUPT
    ]
    expected = [(epoch, 2, 2, 60)] if gives_way else []
    assert [(g.epoch, g.from_seq, g.to_seq, g.lost) for g in declared] == expected
    assert (epoch, 2) not in positions


async def test_a_reserve_the_os_refuses_is_logged_with_the_os_error(tmp_path: Path) -> None:
    """Before: `outbox_reserve_not_claimed` said "the disk has no room" whatever the OS said
    (here a folder where the reserve file goes: EISDIR, on a disk with room to spare)."""
    path = tmp_path / "outbox.db"
    (tmp_path / "outbox.db.reserve").mkdir()
    with capture_logs() as logs:
        async with open_outbox(path, SITE, KEY, max_bytes=32 * MIB):
            pass
    refused = [e["reason"] for e in logs if e["event"] == "outbox_reserve_not_claimed"]
    assert refused == [f"cannot allocate {path}.reserve: Is a directory"], logs
