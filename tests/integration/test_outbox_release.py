"""An ACK's release is one transaction without an fsync of its own; seals keep theirs.

The release runs with synchronous=NORMAL (a release lost to a power cut only sends blocks
again); the connection must be back to FULL for every seal after it, also when the release
fails. The same transaction records whether the ACK took the keys the released blocks
announced (its `keys`), which is what lets the agent switch keys.
"""

from __future__ import annotations

import sqlite3
from pathlib import Path

import pytest

from edge_agent.core.missing_blocks import AckMark
from edge_agent.shell.outbox_open import open_outbox
from specs.records import KeyRecord, iso_time
from specs.signing import signing_key_from_seed
from tests.support.outbox_site import KEY, SITE, numbered_reading

FULL = 2


async def test_a_release_marks_blocks_and_seals_stay_fully_synchronous(tmp_path: Path) -> None:
    path = tmp_path / "outbox.db"
    async with open_outbox(path, SITE, KEY) as outbox:
        for i in range(3):
            await outbox.seal((numbered_reading(i),), now=1.7e9, clock_synced=True)
        released = await outbox.delivery.mark_delivered(
            epoch=outbox.epoch, through=2, also=None, now=5.0
        )
        assert released == 2
        assert list(await outbox._file.db.execute_fetchall("PRAGMA synchronous")) == [(FULL,)]
        assert (await outbox.stats()).undelivered == 1
    with sqlite3.connect(path) as db:
        rows = db.execute("SELECT seq, delivered_at FROM blocks ORDER BY seq").fetchall()
    assert rows == [(1, 5.0), (2, 5.0), (3, None)]


async def test_a_failed_release_changes_nothing_and_leaves_seals_fully_synchronous(
    tmp_path: Path,
) -> None:
    path = tmp_path / "outbox.db"
    async with open_outbox(path, SITE, KEY) as outbox:
        await outbox.seal((numbered_reading(1),), now=1.7e9, clock_synced=True)
        await outbox._file.db.execute(
            "CREATE TRIGGER refuse AFTER UPDATE ON key_announcements"
            " BEGIN SELECT RAISE(ABORT, 'refused'); END"
        )
        await outbox._file.db.execute(
            "INSERT INTO key_announcements (kid, epoch, seq) VALUES ('k', ?, 1)", (outbox.epoch,)
        )
        with pytest.raises(sqlite3.IntegrityError, match="refused"):
            await outbox.delivery.mark_delivered(epoch=outbox.epoch, through=1, also=None, now=5.0)
        assert list(await outbox._file.db.execute_fetchall("PRAGMA synchronous")) == [(FULL,)]
        assert (await outbox.stats()).undelivered == 1


def _announcement(kid: str) -> KeyRecord:
    key = signing_key_from_seed(kid.encode().ljust(32, b"-"))
    public = key.public().public_pem().decode()
    return KeyRecord(iso_time(1.7e9), key.kid, key.alg, public, KEY.kid)


async def test_an_announced_key_is_taken_only_when_the_ack_that_releases_it_names_it(
    tmp_path: Path,
) -> None:
    path = tmp_path / "outbox.db"
    old, named, refused = (_announcement(name) for name in ("old", "named", "refused"))
    async with open_outbox(path, SITE, KEY) as outbox:
        for record in (old, named, refused):
            await outbox.seal((record,), now=1.7e9, clock_synced=True)
        assert await outbox.announcement_state(named.kid) == "announced"
        # A collector before `keys`: its ACK takes the key, as it always did.
        await outbox.delivery.mark_delivered(epoch=outbox.epoch, through=1, also=None, now=5.0)
        await outbox.delivery.mark_delivered(
            epoch=outbox.epoch, through=3, also=None, now=6.0, keys=(named.kid, KEY.kid)
        )
        states = [await outbox.announcement_state(r.kid) for r in (old, named, refused)]
        assert states == ["taken", "taken", "refused"]
        assert await outbox.announcement_state(KEY.kid) is None  # never announced
        # Announced again (`keys rotate` with the same staged key): pending until answered.
        await outbox.seal((refused,), now=1.7e9, clock_synced=True)
        assert await outbox.announcement_state(refused.kid) == "announced"
        await outbox.delivery.mark_delivered(
            epoch=outbox.epoch, through=4, also=None, now=7.0, keys=()
        )
        assert await outbox.announcement_state(refused.kid) == "refused"


async def test_an_outbox_from_before_refusals_keeps_what_its_acks_released(
    tmp_path: Path,
) -> None:
    path = tmp_path / "outbox.db"
    record = _announcement("before")
    async with open_outbox(path, SITE, KEY) as outbox:
        await outbox.seal((record,), now=1.7e9, clock_synced=True)
        await outbox.delivery.mark_delivered(epoch=outbox.epoch, through=1, also=None, now=5.0)
    with sqlite3.connect(path) as db:
        db.execute("ALTER TABLE key_announcements DROP COLUMN refused_at")
    async with open_outbox(path, SITE, KEY) as outbox:
        # Released by an agent before refusals: it switches as it would have.
        assert await outbox.announcement_state(record.kid) == "taken"


async def test_an_ack_mark_keeps_both_times_and_one_from_before_serves_as_both(
    tmp_path: Path,
) -> None:
    """The mark's ACK time by the collector's clock and bounded by the agent's (`heard`); a
    file from before `bound` has the one time it kept read back as both, and gets the column."""
    path = tmp_path / "outbox.db"
    async with open_outbox(path, SITE, KEY) as outbox:
        for i in range(3):
            await outbox.seal((numbered_reading(i),), now=1.7e9, clock_synced=True)
        epoch = outbox.epoch
        await outbox.delivery.mark_delivered(
            epoch=epoch, through=2, also=None, now=5.0, times=(4e9, 1.7e9 + 10)
        )
        assert await outbox.delivery.ack_mark() == AckMark(epoch, 2, 4e9, 1.7e9 + 10)
        # A lower mark writes nothing; the same mark again keeps the first times.
        await outbox.delivery.mark_delivered(
            epoch=epoch, through=2, also=None, now=6.0, times=(4e9 + 1, 1.7e9 + 11)
        )
        assert await outbox.delivery.ack_mark() == AckMark(epoch, 2, 4e9, 1.7e9 + 10)
    with sqlite3.connect(path) as db:
        db.execute("ALTER TABLE acked DROP COLUMN bound")
    async with open_outbox(path, SITE, KEY) as outbox:
        assert await outbox.delivery.ack_mark() == AckMark(epoch, 2, 4e9, 4e9)
        # Said again, the mark takes both times at last.
        await outbox.delivery.mark_delivered(
            epoch=epoch, through=2, also=None, now=7.0, times=(4e9 + 2, 1.7e9 + 12)
        )
        assert await outbox.delivery.ack_mark() == AckMark(epoch, 2, 4e9 + 2, 1.7e9 + 12)


async def test_an_announcement_sealed_again_under_a_new_epoch_is_answered_there(
    tmp_path: Path,
) -> None:
    record = _announcement("moved")
    async with open_outbox(tmp_path / "outbox.db", SITE, KEY) as outbox:
        await outbox.seal((record,), now=1.7e9, clock_synced=True)
        # Sequence state proved lost: the undelivered announcement is sealed again, and the
        # row of the block it left is answered by nobody.
        await outbox.start_new_epoch((), now=1.7e9, clock_synced=True)
        assert await outbox.announcement_state(record.kid) == "announced"
        last = (await outbox.stats()).last_seq
        await outbox.delivery.mark_delivered(
            epoch=outbox.epoch, through=last, also=None, now=5.0, keys=()
        )
        assert await outbox.announcement_state(record.kid) == "refused"
