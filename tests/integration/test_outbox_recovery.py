"""Lost state, tried as a hostile tester would: corrupt, truncated, emptied, missing, replaced.

Each case opens the damaged outbox the way the agent does at start. The open must succeed
(no crash loop under Restart=on-failure), a corrupt file must be moved aside, a new epoch must
start, and the first block of the file opened must carry a gap record that names what was
lost: `outbox_corrupt` or `outbox_restored`, with the epoch whose blocks will never come.
"""

from __future__ import annotations

import asyncio
import os
import shutil
import sqlite3
from collections.abc import Callable
from contextlib import closing
from pathlib import Path

import pytest
import structlog

from edge_agent.core.chain import Identity
from edge_agent.shell.outbox_open import open_outbox
from edge_agent.shell.outbox_recovery import NotAnOutboxError
from edge_agent.shell.outbox_rewrite import RESIGN_BLOCKS
from edge_agent.shell.outbox_sidecars import EpochJournal
from specs.block import block_hash, decode_block
from specs.records import GapReason, GapRecord, Quality, Reading, Record, iso_time
from specs.signing import Signature, signing_key_from_seed
from tests.support.damage import (
    Column,
    change_inside_epoch,
    erase_inside_column,
    zero_inside_payload,
)
from tests.support.sqlite_files import LOG_SUFFIXES, remove_log

pytestmark = pytest.mark.timeout(60)

KEY = signing_key_from_seed(bytes(32))
SITE = Identity("91360100MA35GW001H-GW01", "91360100MA35GW001H", "360100", "WHP")
T0 = 1_700_000_000.0


def _readings(start: int, count: int) -> tuple[Record, ...]:
    return tuple(
        Reading("T001-LT-01", "WHP-LT", iso_time(T0 + i), float(i), "m", Quality.GOOD)
        for i in range(start, start + count)
    )


async def _filled(path: Path, blocks: int = 40) -> str:
    """An outbox with `blocks` undelivered blocks; returns its epoch."""
    async with open_outbox(path, SITE, KEY) as outbox:
        for index in range(blocks):
            await outbox.seal(_readings(index * 50, 50), now=T0 + index, clock_synced=True)
        return outbox.epoch


def _blocks(path: Path) -> list[tuple[str, int, tuple[Record, ...]]]:
    with sqlite3.connect(path) as db:
        rows = db.execute("SELECT epoch, seq, CAST(payload AS BLOB) FROM blocks ORDER BY seq")
        return [(str(e), int(s), decode_block(bytes(p)).records) for e, s, p in rows]


def _gaps(path: Path) -> list[GapRecord]:
    return [r for _, _, records in _blocks(path) for r in records if isinstance(r, GapRecord)]


async def _reopen(path: Path) -> str:
    async with open_outbox(path, SITE, KEY) as outbox:
        await outbox.seal(_readings(10_000, 3), now=T0 + 99, clock_synced=True)
        return outbox.epoch


async def _reopened_in_a_new_epoch(path: Path, old_epoch: str) -> GapRecord:
    """Open the outbox again: it must start a new epoch; return its only gap record."""
    assert await _reopen(path) != old_epoch
    [gap] = _gaps(path)
    return gap


def _corrupt_pages(path: Path) -> None:
    size = path.stat().st_size
    with path.open("r+b") as handle:
        for offset in range(4096 * 2, size, 4096 * 3):
            handle.seek(offset)
            handle.write(os.urandom(512))


async def test_garbage_pages_move_the_file_aside_and_start_a_new_epoch(tmp_path: Path) -> None:
    path = tmp_path / "outbox.db"
    old_epoch = await _filled(path)
    _corrupt_pages(path)
    new_epoch = await _reopen(path)
    assert new_epoch != old_epoch
    aside = list(tmp_path.glob("outbox.db.corrupt-*"))
    assert [p.name for p in aside if not p.name.endswith(LOG_SUFFIXES)], aside
    [gap] = _gaps(path)
    assert (gap.reason, gap.epoch, gap.from_seq, gap.to_seq) == (
        GapReason.OUTBOX_CORRUPT,
        old_epoch,
        1,
        None,
    )
    # And the next start is an ordinary one: no second gap, same epoch.
    assert await _reopen(path) == new_epoch
    assert len(_gaps(path)) == 1


def _truncate(path: Path) -> None:
    with path.open("r+b") as handle:
        handle.truncate(path.stat().st_size // 3)


def _not_a_database(path: Path) -> None:
    path.write_bytes(os.urandom(64 * 1024))


def _state_table_not_the_outboxs(path: Path) -> None:
    with closing(sqlite3.connect(path)) as db, db:
        db.execute("DROP TABLE meta")
        db.execute("CREATE TABLE meta (name TEXT, data BLOB)")


@pytest.mark.parametrize(
    ("damage", "reason"),
    [
        (_truncate, GapReason.OUTBOX_CORRUPT),  # moved aside too
        (_not_a_database, GapReason.OUTBOX_CORRUPT),  # moved aside
        (_state_table_not_the_outboxs, GapReason.OUTBOX_CORRUPT),  # moved aside
        (Path.unlink, GapReason.OUTBOX_RESTORED),
    ],
    ids=[
        "a_truncated_file_is_moved_aside_too",
        "a_file_that_is_not_a_database_is_moved_aside",
        "a_state_table_not_the_outboxs_is_moved_aside",
        "a_deleted_file_is_a_restored_gap",
    ],
)
async def test_a_damaged_or_missing_file_declares_the_old_epoch(
    tmp_path: Path, damage: Callable[[Path], None], reason: GapReason
) -> None:
    path = tmp_path / "outbox.db"
    old_epoch = await _filled(path)
    damage(path)
    await _reopen(path)
    [gap] = _gaps(path)
    assert (gap.reason, gap.epoch) == (reason, old_epoch)


async def test_an_emptied_file_is_a_restored_gap_not_silence(tmp_path: Path) -> None:
    path = tmp_path / "outbox.db"
    old_epoch = await _filled(path)
    path.write_bytes(b"")
    gap = await _reopened_in_a_new_epoch(path, old_epoch)
    assert (gap.reason, gap.epoch, gap.from_seq, gap.lost) == (
        GapReason.OUTBOX_RESTORED,
        old_epoch,
        1,
        None,
    )


async def test_another_programs_database_is_refused_and_left_as_it_was(tmp_path: Path) -> None:
    """A database with tables but no outbox state passed for a new outbox: the agent created
    its tables in it. Refused now, naming the file; nothing written there or beside it."""
    path = tmp_path / "historian.db"
    with closing(sqlite3.connect(path)) as db, db:
        db.execute("CREATE TABLE tags (name TEXT PRIMARY KEY, value REAL)")
    before = path.read_bytes()
    with pytest.raises(NotAnOutboxError, match=f"^{path} is not a Ganzhi outbox: .*tags"):
        await _reopen(path)
    assert path.read_bytes() == before
    assert [p.name for p in tmp_path.iterdir()] == ["historian.db"]


@pytest.mark.parametrize("made", ["0 bytes", "a database without tables"])
async def test_a_first_start_takes_an_empty_file(tmp_path: Path, made: str) -> None:
    path = tmp_path / "outbox.db"
    if made == "0 bytes":
        path.write_bytes(b"")
    else:
        with closing(sqlite3.connect(path)) as db:
            db.executescript("CREATE TABLE gone (x); DROP TABLE gone;")
        assert path.stat().st_size > 0
    epoch = await _reopen(path)
    assert _gaps(path) == []
    assert EpochJournal.beside(path).latest() == epoch


async def test_a_first_start_has_no_gap_and_journals_its_epoch(tmp_path: Path) -> None:
    path = tmp_path / "outbox.db"
    epoch = await _reopen(path)
    assert _gaps(path) == []
    assert EpochJournal.beside(path).latest() == epoch


async def test_a_copy_of_another_epoch_abandons_both_and_resends_its_blocks(
    tmp_path: Path,
) -> None:
    path = tmp_path / "outbox.db"
    copy = tmp_path / "snapshot.db"
    first_epoch = await _filled(path, blocks=5)
    shutil.copy(path, copy)
    # The file is lost and started over (new epoch), then the old copy is put back.
    path.unlink()
    second_epoch = await _reopen(path)
    shutil.copy(copy, path)
    remove_log(path)
    third_epoch = await _reopen(path)
    assert len({first_epoch, second_epoch, third_epoch}) == 3
    blocks = _blocks(path)
    # Every undelivered block of the copied epoch now travels in the new one.
    assert {epoch for epoch, _, _ in blocks} == {third_epoch}
    readings = [r for _, _, records in blocks for r in records if isinstance(r, Reading)]
    assert len(readings) == 5 * 50 + 3
    restored = {(g.epoch, g.from_seq) for g in _gaps(path) if g.reason is GapReason.OUTBOX_RESTORED}
    assert restored == {(second_epoch, 1), (first_epoch, 1)}
    seqs = [seq for _, seq, _ in blocks]
    assert seqs == list(range(1, len(seqs) + 1))


async def test_a_wal_cut_mid_frame_that_lost_seals_declares_them_and_starts_a_new_epoch(
    tmp_path: Path,
) -> None:
    live = tmp_path / "live"
    crashed = tmp_path / "crashed"
    crashed.mkdir()
    async with open_outbox(live / "outbox.db", SITE, KEY) as outbox:
        for index in range(20):
            await outbox.seal(_readings(index * 50, 50), now=T0 + index, clock_synced=True)
        old_epoch = outbox.epoch
        # The files as a crash leaves them: the WAL holds the seals, not yet checkpointed.
        for name in ("outbox.db", "outbox.db-wal", "outbox.db.seq", "outbox.db.epochs"):
            shutil.copy(live / name, crashed / name)
    path = crashed / "outbox.db"
    wal = crashed / "outbox.db-wal"
    frame = 24 + 4096
    with wal.open("r+b") as handle:
        handle.truncate(32 + (wal.stat().st_size - 32) // frame // 2 * frame + frame // 3)
    with sqlite3.connect(f"file:{path}?mode=ro", uri=True) as db:
        (left,) = db.execute("SELECT value FROM meta WHERE key = 'last_seq'").fetchone()
    assert 0 < int(left) < 20, "the cut must lose some seals, not all"
    assert await _reopen(path) != old_epoch
    # From 1, not from the first seal lost: the seals that survived are undelivered, so they
    # travel again under the new epoch, and never in the old one (test_outbox_rolled_back_holes):
    # declared with nothing lost, and the seals lost past them "lost, unknown".
    assert [(g.reason, g.epoch, g.from_seq, g.to_seq, g.lost) for g in _gaps(path)] == [
        (GapReason.OUTBOX_RESTORED, old_epoch, 1, int(left), 0),
        (GapReason.OUTBOX_RESTORED, old_epoch, int(left) + 1, None, None),
    ]
    readings = [r for _, _, records in _blocks(path) for r in records if isinstance(r, Reading)]
    assert len(readings) == int(left) * 50 + 3


async def test_a_block_whose_bytes_changed_on_disk_is_declared_lost_not_sent_for_ever(
    tmp_path: Path,
) -> None:
    """A run of zeros inside one block's payload (a flash sector gone bad, a torn write): the
    file passes quick_check, yet the collector rejects the block (its signature no longer
    verifies) every time it is sent, and its seq stays an open hole there. Read back for
    sending, the block is found changed (its bytes no longer hash to the digest sealed with
    it), left out, and declared lost by an `outbox_corrupt` gap record for that one seq."""
    path = tmp_path / "outbox.db"
    epoch = await _filled(path, blocks=6)
    zero_inside_payload(path, 3)
    async with open_outbox(path, SITE, KEY) as outbox:
        assert outbox.epoch == epoch
        sent = [block.seq for block in await outbox.delivery.undelivered(after=0, limit=100)]
        assert await outbox.delivery.get(3) is None
        head = [block.seq for block in await outbox.delivery.undelivered(after=6, limit=100)]
    assert sent == [1, 2, 4, 5, 6]
    assert head == [7]  # the gap record's block, sealed at the head
    [gap] = _gaps(path)
    assert gap.reason is GapReason.OUTBOX_CORRUPT
    assert (gap.epoch, gap.from_seq, gap.to_seq, gap.lost) == (epoch, 3, 3, 50)
    assert [seq for _, seq, _ in _blocks(path)] == [1, 2, 4, 5, 6, 7]


def _stored(path: Path, seq: int) -> tuple[bytes, bytes, Signature]:
    """Block `seq`'s payload, digest and signature as the file holds them now."""
    with closing(sqlite3.connect(path)) as db:
        payload, digest, alg, kid, sig = db.execute(
            "SELECT payload, CAST(digest AS BLOB), alg, kid, sig FROM blocks WHERE seq = ?",
            (seq,),
        ).fetchone()
    return bytes(payload), bytes(digest), Signature(alg, kid, bytes(sig))


@pytest.mark.parametrize("column", ["digest", "sig", "kid"])
async def test_a_block_whose_digest_or_signature_changed_on_disk_is_mended_and_sent(
    tmp_path: Path, column: Column
) -> None:
    """Erased bytes (0xFF) inside one block's digest, signature or key id. The digest and the
    signature are two witnesses of the payload: while one still vouches for it, the payload
    is as sealed. The block is not lost, nor sent for the collector to refuse for ever: the
    agent signs it again with its key (as after a key rotation) or computes its digest again
    from the payload its signature vouches for, writes that back, and sends it as sealed."""
    path = tmp_path / "outbox.db"
    await _filled(path, blocks=6)
    sealed = [(seq, payload) for seq in range(1, 7) for payload, _, _ in [_stored(path, seq)]]
    erase_inside_column(path, 3, column)
    async with open_outbox(path, SITE, KEY) as outbox:
        sent = await outbox.delivery.undelivered(after=0, limit=100)
    assert [(block.seq, block.payload) for block in sent] == sealed
    for block in sent:
        KEY.public().verify(block.signature, block.payload)
    assert _gaps(path) == []
    payload, digest, signature = _stored(path, 3)
    assert digest == block_hash(payload).encode()
    KEY.public().verify(signature, payload)


async def test_a_block_whose_digest_and_signature_both_changed_is_declared_lost(
    tmp_path: Path,
) -> None:
    """Neither witness vouches for the payload any more: it is never guessed at, the block
    is declared lost by an `outbox_corrupt` gap record for its seq, as a changed payload is."""
    path = tmp_path / "outbox.db"
    epoch = await _filled(path, blocks=6)
    erase_inside_column(path, 3, "digest")
    erase_inside_column(path, 3, "sig")
    async with open_outbox(path, SITE, KEY) as outbox:
        sent = [block.seq for block in await outbox.delivery.undelivered(after=0, limit=100)]
    assert sent == [1, 2, 4, 5, 6]
    [gap] = _gaps(path)
    assert (gap.reason, gap.epoch, gap.from_seq, gap.to_seq, gap.lost) == (
        GapReason.OUTBOX_CORRUPT,
        epoch,
        3,
        3,
        50,
    )


def _erase_digest(path: Path, seq: int) -> None:
    erase_inside_column(path, seq, "digest")


@pytest.mark.parametrize(
    ("damage", "declared"),
    [(zero_inside_payload, [(3, 3, 50)]), (_erase_digest, [])],
    ids=["payload_changed_is_declared", "digest_changed_is_carried_over"],
)
async def test_a_damaged_block_of_an_abandoned_epoch_is_declared_when_the_rest_is_sealed_again(
    tmp_path: Path,
    damage: Callable[[Path, int], None],
    declared: list[tuple[int, int, int]],
) -> None:
    """A new epoch seals the undelivered blocks of the old one again, decoding them; a block
    whose bytes changed on disk cannot be decoded. It is declared lost (its seq in the old
    epoch) and the others move on: the open must not fail, or every restart fails again. A
    block whose digest alone changed is as sealed (its signature vouches for it): carried."""
    path = tmp_path / "outbox.db"
    old_epoch = await _filled(path, blocks=5)
    damage(path, 3)
    EpochJournal.beside(path).record("0123456789abcdef")  # the file is not the one last used
    new_epoch = await _reopen(path)
    assert new_epoch != old_epoch
    readings = [r for _, _, records in _blocks(path) for r in records if isinstance(r, Reading)]
    assert len(readings) == (5 - len(declared)) * 50 + 3
    damaged = [g for g in _gaps(path) if g.reason is GapReason.OUTBOX_CORRUPT]
    assert [(g.from_seq, g.to_seq, g.lost) for g in damaged] == declared
    assert {g.epoch for g in damaged} <= {old_epoch}


NEW_KEY = signing_key_from_seed(bytes([1]) * 32)


async def test_a_key_rotation_never_signs_a_payload_changed_on_disk(tmp_path: Path) -> None:
    """Block 3's payload changed on disk, then the gateway's key changed (`use_key`). Signing
    the backlog again signed whatever bytes the file held: the new signature then vouched for
    the changed payload (`as_sealed`), the send path 'restored' its digest and sent block 3
    with altered readings, as if sealed so. A payload neither its digest nor its signature
    vouches for is never signed again: it is declared lost, as without a rotation."""
    path = tmp_path / "outbox.db"
    epoch = await _filled(path, blocks=6)
    sealed = {seq: payload for seq in range(1, 7) for payload, _, _ in [_stored(path, seq)]}
    zero_inside_payload(path, 3)
    async with open_outbox(path, SITE, KEY) as outbox:
        assert await outbox.use_key(NEW_KEY) == 5
        sent = await outbox.delivery.undelivered(after=0, limit=6)
    assert [(block.seq, block.payload) for block in sent] == [
        (seq, sealed[seq]) for seq in (1, 2, 4, 5, 6)
    ]
    for block in sent:
        NEW_KEY.public().verify(block.signature, block.payload)
    [gap] = _gaps(path)
    assert (gap.reason, gap.epoch, gap.from_seq, gap.to_seq) == (
        GapReason.OUTBOX_CORRUPT,
        epoch,
        3,
        3,
    )


async def test_a_key_rotation_signs_again_a_block_whose_digest_alone_changed(
    tmp_path: Path,
) -> None:
    """Block 3's digest changed on disk, then the key changed: its old signature still
    vouches for its payload, so it is signed again with the new key and sent as sealed."""
    path = tmp_path / "outbox.db"
    await _filled(path, blocks=6)
    sealed = [(seq, payload) for seq in range(1, 7) for payload, _, _ in [_stored(path, seq)]]
    erase_inside_column(path, 3, "digest")
    async with open_outbox(path, SITE, KEY) as outbox:
        assert await outbox.use_key(NEW_KEY) == 6
        sent = await outbox.delivery.undelivered(after=0, limit=100)
    assert [(block.seq, block.payload) for block in sent] == sealed
    for block in sent:
        NEW_KEY.public().verify(block.signature, block.payload)
    assert _gaps(path) == []


async def test_blocks_read_while_a_rotation_signs_the_backlog_are_sent_as_sealed(
    tmp_path: Path,
) -> None:
    """`use_key` signs the backlog again a chunk at a time, releasing the outbox between
    chunks; the send path reading a later chunk meanwhile meets blocks still signed by the key
    being replaced. That signature vouches for them as well as before the rotation: they are
    sent signed with the new key, and none is reported damaged (9 outbox_block_mended lines
    in a normal rotation before) nor, with its digest erased, declared lost (block 505 was)."""
    path = tmp_path / "outbox.db"
    blocks = RESIGN_BLOCKS + 10
    await _filled(path, blocks=blocks)
    sealed = {
        seq: payload for seq in range(1, blocks + 1) for payload, _, _ in [_stored(path, seq)]
    }
    erase_inside_column(path, RESIGN_BLOCKS + 5, "digest")
    async with open_outbox(path, SITE, KEY) as outbox:
        with structlog.testing.capture_logs() as logs:
            rotation = asyncio.create_task(outbox.use_key(NEW_KEY))
            await asyncio.sleep(0)  # the rotation holds the outbox for its first chunk
            sent = await outbox.delivery.undelivered(after=RESIGN_BLOCKS, limit=100)
            assert await rotation == blocks
    assert [(block.seq, block.payload) for block in sent] == [
        (seq, sealed[seq]) for seq in range(RESIGN_BLOCKS + 1, blocks + 1)
    ]
    for block in sent:
        NEW_KEY.public().verify(block.signature, block.payload)
    assert _gaps(path) == []
    mended = [line for line in logs if line["event"] == "outbox_block_mended"]
    assert [(line["seq"], line["digest_restored"]) for line in mended] == [
        (RESIGN_BLOCKS + 5, True)
    ]


@pytest.mark.parametrize("count", [-1, 2.5e300, "fifty"], ids=["int8_0xff", "real", "text"])
async def test_a_damaged_block_whose_count_changed_too_is_declared_with_no_count(
    tmp_path: Path, count: object
) -> None:
    """The row's `readings` column changed on disk too (one 0xFF byte makes the 50 stored as
    an int8 read -1; a changed type byte, a REAL or a text). The gap record must still be one
    the collector takes: `lost` a count or null, never the column's value as it stands (a
    gap record with lost -1 is refused at every resend, its seq an open hole for ever)."""
    path = tmp_path / "outbox.db"
    epoch = await _filled(path, blocks=6)
    zero_inside_payload(path, 3)
    with closing(sqlite3.connect(path)) as db, db:
        db.execute("UPDATE blocks SET readings = ? WHERE seq = 3", (count,))
    async with open_outbox(path, SITE, KEY) as outbox:
        sent = [block.seq for block in await outbox.delivery.undelivered(after=0, limit=100)]
        head = await outbox.delivery.undelivered(after=6, limit=100)
    assert sent == [1, 2, 4, 5, 6]
    assert [decode_block(block.payload).header.seq for block in head] == [7]
    [gap] = _gaps(path)
    assert (gap.reason, gap.epoch, gap.from_seq, gap.to_seq, gap.lost) == (
        GapReason.OUTBOX_CORRUPT,
        epoch,
        3,
        3,
        None,
    )


@pytest.mark.parametrize("byte", [b"\xff", b"g"], ids=["erased_no_utf8", "other_letter"])
async def test_a_block_whose_epoch_column_changed_on_disk_is_sent_in_its_own_epoch(
    tmp_path: Path, byte: bytes
) -> None:
    """A byte inside one row's epoch column changed: the row looks like a block of another
    epoch. Erased (0xFF, no UTF-8), it failed every open ('Could not decode to UTF-8 column
    epoch', exit 1 at every restart: a crash loop holding the whole backlog); another letter
    had its readings sealed again in a new block while its seq stayed an open hole at the
    collector, never declared. The payload its digest and signature vouch for names its epoch
    and seq: the row is given them back and the block sent as sealed, nothing declared."""
    path = tmp_path / "outbox.db"
    epoch = await _filled(path, blocks=6)
    sealed = [(seq, payload) for seq in range(1, 7) for payload, _, _ in [_stored(path, seq)]]
    change_inside_epoch(path, 3, byte)
    async with open_outbox(path, SITE, KEY) as outbox:
        assert outbox.epoch == epoch
        sent = await outbox.delivery.undelivered(after=0, limit=100)
    assert [(block.seq, block.payload) for block in sent] == sealed
    assert _gaps(path) == []
    assert [(e, seq) for e, seq, _ in _blocks(path)] == [(epoch, seq) for seq in range(1, 7)]


@pytest.mark.parametrize("column", ["sig", "payload"])
async def test_a_blob_column_read_as_text_after_one_bit_changed_is_sent_as_sealed(
    tmp_path: Path, column: str
) -> None:
    """One bit of the row's header changed turns a BLOB column's type into TEXT of the same
    bytes (serial types 2n+12 and 2n+13). The bytes are as sealed, yet reading them as text
    failed every read of the backlog: the signature (no UTF-8) with 'Could not decode to UTF-8
    column sig', the payload (JSON, so UTF-8) with a TypeError; the publisher died, and the
    agent at every restart. Read as bytes, the block is what was sealed, and it is sent."""
    path = tmp_path / "outbox.db"
    await _filled(path, blocks=6)
    sealed = [(seq, payload) for seq in range(1, 7) for payload, _, _ in [_stored(path, seq)]]
    with closing(sqlite3.connect(path)) as db, db:
        db.execute(f"UPDATE blocks SET {column} = CAST({column} AS TEXT) WHERE seq = 3")
    async with open_outbox(path, SITE, KEY) as outbox:
        sent = await outbox.delivery.undelivered(after=0, limit=100)
    assert [(block.seq, block.payload) for block in sent] == sealed
    assert _gaps(path) == []
