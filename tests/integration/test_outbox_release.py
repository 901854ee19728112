"""An ACK's release is one transaction without an fsync of its own; seals keep theirs.

The release runs with synchronous=NORMAL (a release lost to a power cut only sends blocks
again); the connection must be back to FULL for every seal after it, also when the release
fails.
"""

from __future__ import annotations

import sqlite3
from pathlib import Path

import pytest

from edge_agent.shell.outbox_open import open_outbox
from tests.integration.test_outbox import KEY, SITE, _reading

FULL = 2


async def test_a_release_marks_blocks_and_seals_stay_fully_synchronous(tmp_path: Path) -> None:
    path = tmp_path / "outbox.db"
    async with open_outbox(path, SITE, KEY) as outbox:
        for i in range(3):
            await outbox.seal((_reading(i),), now=1.7e9, clock_synced=True)
        released = await outbox.mark_delivered(epoch=outbox.epoch, through=2, also=None, now=5.0)
        assert released == 2
        assert list(await outbox._db.execute_fetchall("PRAGMA synchronous")) == [(FULL,)]
        assert (await outbox.stats()).undelivered == 1
    with sqlite3.connect(path) as db:
        rows = db.execute("SELECT seq, delivered_at FROM blocks ORDER BY seq").fetchall()
    assert rows == [(1, 5.0), (2, 5.0), (3, None)]


async def test_a_failed_release_changes_nothing_and_leaves_seals_fully_synchronous(
    tmp_path: Path,
) -> None:
    path = tmp_path / "outbox.db"
    async with open_outbox(path, SITE, KEY) as outbox:
        await outbox.seal((_reading(1),), now=1.7e9, clock_synced=True)
        await outbox._db.execute(
            "CREATE TRIGGER refuse AFTER UPDATE ON key_announcements"
            " BEGIN SELECT RAISE(ABORT, 'refused'); END"
        )
        await outbox._db.execute(
            "INSERT INTO key_announcements (kid, epoch, seq) VALUES ('k', ?, 1)", (outbox.epoch,)
        )
        with pytest.raises(sqlite3.IntegrityError, match="refused"):
            await outbox.mark_delivered(epoch=outbox.epoch, through=1, also=None, now=5.0)
        assert list(await outbox._db.execute_fetchall("PRAGMA synchronous")) == [(FULL,)]
        assert (await outbox.stats()).undelivered == 1
