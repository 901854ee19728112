"""The journal's alarm rows stay readable by older collectors; rows of 6f577c0 stay readable.

Every collector before 6f577c0 reads an alarm row's payload as `AlarmState(**body)`: 6f577c0
put the writer's `active` in that payload, and an older collector serving (or resumed at) the
first such row failed with a TypeError there, every time. `active` is now a column of the journal
(SQLite schema 16, PostgreSQL migration 12): an older collector refuses the database as newer
than itself (a clear error at its start) instead of crashing on a row, and a rollback past the
upgrade (docs/operations.md, Upgrading) leaves payloads it reads. Both backends, real storage.
"""

from __future__ import annotations

import json
from typing import Final

from collector.feed.core import FeedFilter, FeedKind, FeedPosition, JournalRow
from collector.feed.due import ActivationWindow
from collector.readmodel import EVERYTHING, AlarmState
from collector.storage import open_storage, upgrade_storage
from collector.storage.capabilities import AlarmActivations, FeedJournal
from specs.records import AlarmEvent
from tests.support.collector_api import NANCHANG, NOW, store_blocks
from tests.support.collector_env import register
from tests.support.postgres import sql_execute, sql_rows
from tests.support.records import alarm_record

ALLOWANCE: Final = 900.0
RAISED: Final = NOW + 20 * 60  # received at NOW: 5 min past the allowance


def _read_as_before_6f577c0(payload: str) -> AlarmState:
    """What every collector before 6f577c0 did with an alarm row's payload."""
    body = json.loads(payload)
    for half in ("raised_in", "cleared_in"):
        span = body.get(half)
        body[half] = None if span is None else (str(span[0]), int(span[1]), int(span[2]))
    return AlarmState(**body)


async def _alarm_rows(storage: FeedJournal) -> list[JournalRow]:
    page = await storage.feed_page(
        EVERYTHING,
        FeedFilter(kinds=frozenset({FeedKind.ALARM})),
        after=FeedPosition(),
        upto=await storage.feed_head(),
        limit=100,
    )
    return list(page.journal)


async def _raise_and_announce(storage_url: str) -> list[tuple[str, bool | None]]:
    """A raise ahead and one not, the first announced by a sweep; each row's (alarm, active)."""
    async with open_storage(storage_url) as storage:
        assert isinstance(storage, AlarmActivations)
        assert isinstance(storage, FeedJournal)
        await register(storage, NANCHANG)
        await store_blocks(
            storage,
            NANCHANG,
            [
                [
                    alarm_record("fast/1", AlarmEvent.RAISE, RAISED),
                    alarm_record("now/1", AlarmEvent.RAISE, NOW),
                ]
            ],
            received=NOW,
        )
        due = RAISED - ALLOWANCE
        found = await storage.announce_activations(ActivationWindow().sweep(due, ALLOWANCE))
        assert len(found.alarms) == 1
        rows = await _alarm_rows(storage)
    return [(row.event.alarm_id, row.active) for row in rows if isinstance(row.event, AlarmState)]


async def test_alarm_rows_parse_as_every_older_collector_reads_them(storage_url: str) -> None:
    """The defect (6f577c0): each alarm payload carried "active"; the old reader raised
    TypeError (unexpected keyword argument 'active') on every one of them."""
    written = await _raise_and_announce(storage_url)
    assert sorted(written) == [("fast/1", False), ("fast/1", True), ("now/1", True)]
    payloads = await sql_rows(storage_url, "SELECT payload FROM feed WHERE kind = 'alarm'")
    assert len(payloads) == 3
    for (payload,) in payloads:
        assert isinstance(_read_as_before_6f577c0(payload), AlarmState)


async def test_rows_written_with_active_in_their_payload_are_read_and_moved(
    storage_url: str,
) -> None:
    """A row as 6f577c0..the fix wrote it ("active" in the payload, no column) is read with
    its `active` whether the upgrade moved it (stored before) or not (written by a collector of
    that version still running during a rolling upgrade); the upgrade leaves none in payloads."""
    written = await _raise_and_announce(storage_url)
    sqlite = storage_url.startswith("sqlite")
    # The journal as a collector of 6f577c0 wrote it: `active` in the payload, no column.
    rows = await sql_rows(storage_url, "SELECT id, payload, active FROM feed ORDER BY id")
    for id_, payload, active in rows:
        body = {**json.loads(payload), "active": bool(active)}
        await sql_execute(
            storage_url, "UPDATE feed SET payload = ? WHERE id = ?", json.dumps(body), id_
        )
    await sql_execute(storage_url, "ALTER TABLE feed DROP COLUMN active")
    await sql_execute(
        storage_url,
        "PRAGMA user_version = 15"
        if sqlite
        else "DELETE FROM schema_migrations WHERE version >= 12",
    )
    before, _ = await upgrade_storage(storage_url)
    assert before == (15 if sqlite else 11)
    for (payload,) in await sql_rows(storage_url, "SELECT payload FROM feed"):
        _read_as_before_6f577c0(payload)
    # And a row that a 6f577c0 collector still running writes after the upgrade.
    payload, at, point = (
        await sql_rows(storage_url, "SELECT payload, at, point FROM feed ORDER BY id")
    )[0]
    await sql_execute(
        storage_url,
        "INSERT INTO feed (kind, gateway, point, readings_through, payload, at)"
        " VALUES ('alarm', ?, ?, 0, ?, ?)",
        NANCHANG.gateway,
        point,
        json.dumps({**json.loads(payload), "active": False}),
        at,
    )
    async with open_storage(storage_url) as storage:
        assert isinstance(storage, FeedJournal)
        read = [
            (row.event.alarm_id, row.active)
            for row in await _alarm_rows(storage)
            if isinstance(row.event, AlarmState)
        ]
    assert read == [*written, ("fast/1", False)]
