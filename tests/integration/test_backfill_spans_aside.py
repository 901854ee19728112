"""The spans an import stores for blocks from before the span columns never rewrite a payload,
and never take the room the running agent's seals need.

Setting a block's NULL `first_t`/`last_t` changes its row's size: SQLite writes the whole row
again, payload and all (a 4,000-reading block: some 570 KB of WAL each). On a nearly full disk
that write-back filled it, and the running agent (a real second process here) met a full disk
at its next seal: its reserve given back, readings thinned away. The spans now go to a small
table of their own, in writes checked against the room the agent keeps (its reserve, its WAL);
with less than that free nothing is written and the import keeps them in memory, as before.
Real files on a real tmpfs; the agent seals beside the import.
"""

from __future__ import annotations

import errno
import json
import os
import shutil
import sqlite3
from collections.abc import Iterator
from contextlib import closing
from pathlib import Path

import pytest
from structlog.testing import capture_logs

from edge_agent.shell import outbox_held
from edge_agent.shell.outbox_open import open_outbox
from edge_agent.shell.outbox_spans import SpanMemo
from specs.records import Reading
from tests.support.damage import change_inside_epoch
from tests.support.held_process import held_process
from tests.support.outbox_budget import MIB, POINTS, as_before_the_span, minute_block
from tests.support.outbox_site import KEY, SITE, T0
from tests.support.records import reading_at
from tests.support.tmpfs import tmpfs_at

pytestmark = pytest.mark.timeout(240)

_BUDGET = 32 * MIB  # the agent's reserve: 3 MiB; what lifts a full disk's cap: 5 MiB
_BLOCKS = 12
_READINGS = 4000

_SPANS_TABLE = (
    "CREATE TABLE block_spans (epoch TEXT NOT NULL, seq INTEGER NOT NULL, first_t REAL NOT NULL,"
    " last_t REAL NOT NULL, PRIMARY KEY (epoch, seq)) WITHOUT ROWID"
)
_ASIDE = "INSERT INTO block_spans VALUES (?, ?, ?, ?)"

# The running agent: opens the outbox at its budget, seals 20 blocks when told, and says what
# its log said of a full outbox or disk (none expected).
_AGENT = """
import asyncio, json, sys
from pathlib import Path
from structlog.testing import capture_logs
from edge_agent.shell import outbox_held
from edge_agent.shell.outbox_open import open_outbox
from tests.support.outbox_budget import minute_block
from tests.support.outbox_site import KEY, SITE, T0

async def main() -> None:
    with capture_logs() as logs:
        async with open_outbox(Path(sys.argv[1]), SITE, KEY, max_bytes=int(sys.argv[2])) as box:
            print("held", flush=True)
            sys.stdin.readline()
            for index in range(20):
                await box.seal(minute_block(5000 + index), now=T0 + index, clock_synced=True)
    print(json.dumps([e["event"] for e in logs if "full" in e["event"]
        or "reserve" in e["event"] or "thinned" in e["event"] or "dropped" in e["event"]]))

asyncio.run(main())
"""


@pytest.fixture
def small_disk(tmp_path: Path) -> Iterator[Path]:
    """A 16 MiB tmpfs, unmounted after the test."""
    with tmpfs_at(tmp_path / "disk", "size=16m,mode=0700") as disk:
        yield disk


async def _old_big_outbox(path: Path) -> list[tuple[str, str]]:
    """An outbox as the parent of 6658714 left it: 4,000-reading blocks, no span columns."""
    keys = []
    async with open_outbox(path, SITE, KEY) as outbox:
        for index in range(_BLOCKS):
            base = T0 + index * _READINGS
            records = tuple(
                reading_at(base + i, float(i % 97), point=POINTS[i % len(POINTS)])
                for i in range(_READINGS)
            )
            keys += [(r.point, r.t) for r in records[:2]]
            await outbox.seal(records, now=base, clock_synced=True)
    as_before_the_span(path)
    return keys


def _leave(disk: Path, free: int) -> None:
    """Take every byte of `disk` but about `free`."""
    with (disk / "filler").open("wb", buffering=0) as filler:
        try:
            filler.write(b"x" * (shutil.disk_usage(disk).free - free))
        except OSError as exc:
            if exc.errno != errno.ENOSPC:
                raise
        os.fsync(filler.fileno())


def _wal(path: Path) -> int:
    wal = path.with_name(path.name + "-wal")
    return wal.stat().st_size if wal.exists() else 0


def _unspanned_rows(path: Path) -> int:
    with closing(sqlite3.connect(path)) as db:
        return int(db.execute("SELECT count(*) FROM blocks WHERE last_t IS NULL").fetchone()[0])


@pytest.mark.parametrize(("free", "stored"), [(7 * MIB, _BLOCKS), (4 * MIB, 0)])
async def test_spans_stored_beside_the_agent_on_a_nearly_full_disk(
    small_disk: Path, free: int, stored: int
) -> None:
    path = small_disk / "outbox.db"
    keys = await _old_big_outbox(path)
    with held_process(_AGENT, str(path), str(_BUDGET)) as agent:
        _leave(small_disk, free)
        wal_before = _wal(path)
        with capture_logs() as logs:
            async with open_outbox(path, SITE, KEY, max_bytes=_BUDGET) as outbox:
                held = await outbox.held_readings(keys[:4], SpanMemo())
                wal_after = _wal(path)
        said = agent.release("go")
    assert sorted(held) == sorted(keys[:4])
    events = json.loads(said[-1])
    assert events == [], f"the agent met a full outbox or disk: {events}"
    assert wal_after - wal_before < MIB  # no payload written again
    assert _unspanned_rows(path) == _BLOCKS  # the rows themselves untouched
    store = [e for e in logs if e["event"] == "outbox_spans_stored"]
    assert [(e["decoded"], e["stored"]) for e in store] == [(_BLOCKS, stored)]
    # A second import decodes none of them when they were stored, each again when not.
    with capture_logs() as logs:
        async with open_outbox(path, SITE, KEY, max_bytes=_BUDGET) as outbox:
            assert sorted(await outbox.held_readings(keys[:4], SpanMemo())) == sorted(keys[:4])
    again = [e["decoded"] for e in logs if e["event"] == "outbox_spans_stored"]
    assert again == ([] if stored else [_BLOCKS])


async def test_a_row_given_its_epoch_and_seq_back_loses_the_spans_stored_for_it(
    tmp_path: Path,
) -> None:
    """`outbox_rewrite` gives a row whose epoch column changed on disk its (epoch, seq) back,
    by rowid: a span stored aside under the key it read, or under the key it gets, goes."""
    path = tmp_path / "outbox.db"
    async with open_outbox(path, SITE, KEY) as outbox:
        epoch = outbox.epoch
        for index in range(6):
            await outbox.seal(minute_block(index), now=T0 + index, clock_synced=True)
    with closing(sqlite3.connect(path, isolation_level=None)) as db:
        db.execute(_SPANS_TABLE)
        db.executemany(_ASIDE, [(epoch, seq, 1.0, 2.0) for seq in range(1, 7)])
        db.execute("PRAGMA wal_checkpoint(TRUNCATE)")
    change_inside_epoch(path, 3, b"g")
    with closing(sqlite3.connect(path, isolation_level=None)) as db:
        read = db.execute("SELECT epoch FROM blocks NOT INDEXED WHERE seq = 3").fetchone()
        damaged = str(read[0])
        db.execute(_ASIDE, (damaged, 3, 1.0, 2.0))
    async with open_outbox(path, SITE, KEY) as outbox:
        assert outbox.epoch == epoch
    with closing(sqlite3.connect(path)) as db:
        aside = sorted(db.execute("SELECT epoch, seq FROM block_spans"))
        rows = sorted(db.execute("SELECT epoch, seq FROM blocks NOT INDEXED"))
    assert damaged != epoch
    assert rows == [(epoch, seq) for seq in range(1, 7)]
    assert aside == [(epoch, seq) for seq in (1, 2, 4, 5, 6)]


async def test_a_look_up_goes_on_when_a_full_disk_refuses_its_checkpoint(
    small_disk: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Between two read transactions the look-up checkpoints the WAL; on a full disk the
    checkpoint, which must grow the file, meets SQLITE_FULL: logged, the look-up goes on."""
    path = small_disk / "outbox.db"
    keys = []
    async with open_outbox(path, SITE, KEY) as outbox:
        for index in range(40):
            records = minute_block(index)
            keys += [(r.point, r.t) for r in records[:1] if isinstance(r, Reading)]
            await outbox.seal(records, now=T0 + index, clock_synced=True)
    monkeypatch.setattr(outbox_held, "_SNAPSHOT_SECONDS", 0.0)  # one read transaction a block
    monkeypatch.setattr(outbox_held, "_READING_PER_LISTING", 0)
    with closing(sqlite3.connect(path, isolation_level=None)) as other:
        other.execute("PRAGMA wal_autocheckpoint=0")  # its pages stay in the WAL, past the file
        other.execute("CREATE TABLE elsewhere (x BLOB)")
        other.execute("INSERT INTO elsewhere VALUES (zeroblob(2000000))")
        _leave(small_disk, 0)
        with capture_logs() as logs:
            async with open_outbox(path, SITE, KEY) as outbox:
                held = await outbox.held_readings(keys, SpanMemo())
    assert sorted(held) == sorted(keys)
    assert "outbox_checkpoint_failed" in [e["event"] for e in logs]
