"""A block just sealed is handed to the publisher from memory, exactly as the file holds it.

`Delivery.get` answers a block sealed by this process without reading it back, once; the
memory copy must never outlive what the file says: released, signed again with a new key,
another epoch, or changed by another process.
"""

from __future__ import annotations

import sqlite3
from pathlib import Path

from edge_agent.core.chain import Identity, SealedBlock
from edge_agent.shell.outbox_open import open_outbox
from edge_agent.shell.outbox_reads import HANDED_BYTES, StoredBlock
from specs.records import Quality, Reading, iso_time
from specs.signing import signing_key_from_seed

KEY = signing_key_from_seed(bytes(32))
NEW_KEY = signing_key_from_seed(bytes([1]) * 32)
SITE = Identity("91360100MA35GW001H-GW01", "91360100MA35GW001H", "360100", "WHP")


def _reading(i: int) -> Reading:
    return Reading("T001-LT-01", "WHP-LT", iso_time(1.7e9 + i), float(i), "m", Quality.GOOD)


def _stored(path: Path, seq: int) -> tuple[bytes, bytes]:
    with sqlite3.connect(path) as db:
        payload, sig = db.execute(
            "SELECT payload, sig FROM blocks WHERE seq = ?", (seq,)
        ).fetchone()
    return bytes(payload), bytes(sig)


async def test_a_sealed_block_is_handed_over_as_stored_and_read_back_after(tmp_path: Path) -> None:
    path = tmp_path / "outbox.db"
    async with open_outbox(path, SITE, KEY) as outbox:
        sealed = await outbox.seal((_reading(1),), now=1.7e9, clock_synced=True)
        handed = await outbox.delivery.get(sealed.seq)
        again = await outbox.delivery.get(sealed.seq)  # a resend reads the file
        assert (
            handed
            == again
            == StoredBlock(outbox.epoch, sealed.seq, sealed.payload, sealed.signature)
        )
        assert (sealed.payload, sealed.signature.sig) == _stored(path, sealed.seq)


async def test_a_released_block_is_not_handed_over(tmp_path: Path) -> None:
    async with open_outbox(tmp_path / "outbox.db", SITE, KEY) as outbox:
        first = await outbox.seal((_reading(1),), now=1.7e9, clock_synced=True)
        second = await outbox.seal((_reading(2),), now=1.7e9, clock_synced=True)
        await outbox.delivery.mark_delivered(
            epoch=outbox.epoch, through=first.seq, also=None, now=1.7e9
        )
        assert await outbox.delivery.get(first.seq) is None
        assert await outbox.delivery.get(second.seq) is not None


async def test_a_block_signed_again_is_handed_over_with_the_new_signature(tmp_path: Path) -> None:
    path = tmp_path / "outbox.db"
    async with open_outbox(path, SITE, KEY) as outbox:
        sealed = await outbox.seal((_reading(1),), now=1.7e9, clock_synced=True)
        assert await outbox.use_key(NEW_KEY) == 1
        block = await outbox.delivery.get(sealed.seq)
        assert block is not None
        assert block.signature.kid == NEW_KEY.kid
        assert block.signature.sig == _stored(path, sealed.seq)[1]


async def test_a_block_another_process_released_is_not_handed_over(tmp_path: Path) -> None:
    path = tmp_path / "outbox.db"
    async with open_outbox(path, SITE, KEY) as outbox:
        await outbox.changed_elsewhere()
        sealed = await outbox.seal((_reading(1),), now=1.7e9, clock_synced=True)
        with sqlite3.connect(path) as db:
            db.execute("UPDATE blocks SET delivered_at = 1 WHERE seq = ?", (sealed.seq,))
        assert await outbox.changed_elsewhere()
        assert await outbox.delivery.get(sealed.seq) is None


async def test_blocks_the_publisher_has_not_taken_are_bounded_and_read_back(
    tmp_path: Path,
) -> None:
    path = tmp_path / "outbox.db"
    async with open_outbox(path, SITE, KEY) as outbox:
        sealed: list[SealedBlock] = []
        while sum(len(block.payload) for block in sealed) < 2 * HANDED_BYTES:
            batch = tuple(_reading(len(sealed) * 1000 + i) for i in range(1000))
            sealed.append(await outbox.seal(batch, now=1.7e9, clock_synced=True))
        held = outbox._file.handed.held_bytes
        assert 0 < held <= HANDED_BYTES
        for block in sealed:
            stored = await outbox.delivery.get(block.seq)
            assert stored == StoredBlock(outbox.epoch, block.seq, block.payload, block.signature)
        assert outbox._file.handed.held_bytes == 0
