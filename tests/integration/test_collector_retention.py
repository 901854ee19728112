"""Per-minute rollups and retention, on SQLite and PostgreSQL.

Readings of three months arrive through a real Mosquitto, and every ingest folds them into
per-minute rollups, which must hold exactly the hand-computed min/max/sum/count/last per
minute. Retention then runs with a clock that puts the first month (and only it) past
`raw_days`: its readings must be gone (on PostgreSQL its partition is dropped whole, never
deleted row by row), its rollups and the younger months untouched.
"""

from __future__ import annotations

import asyncio
import calendar
import dataclasses
import time
from collections.abc import Mapping, Sequence
from pathlib import Path

from click.testing import CliRunner
from structlog.testing import capture_logs

from collector.audit.chain import Action, ActionEntry
from collector.cli import main
from collector.config import CollectorConfig, load_collector_config
from collector.runtime import run_collector
from collector.storage import open_storage, prune_storage
from collector.storage.capabilities import AuditTrail
from collector.storage.months import month_of, month_start, next_month
from collector.storage.postgres.partitions import partition_name
from collector.storage.retention import DAY, PruneReport, RetentionPolicy
from hostkit.keyfiles import create_key_pair
from specs.records import Quality, Reading, Record, iso_time
from tests.support.broker import Broker, free_port
from tests.support.collector_client import gap_record
from tests.support.collector_env import (
    CollectorEnv,
    heard_at,
    intact_audit_rows,
    wait_until,
    write_collector_config,
)
from tests.support.postgres import sql_execute, sql_rows

JAN = float(calendar.timegm((2026, 1, 10, 8, 0, 0)))
FEB = float(calendar.timegm((2026, 2, 10, 8, 0, 0)))
MAR = float(calendar.timegm((2026, 3, 10, 8, 0, 0)))
MAR_END = float(calendar.timegm((2026, 4, 1, 0, 0, 0)))
FEBRUARY_1 = float(calendar.timegm((2026, 2, 1, 0, 0, 0)))


def _level(
    t: float, value: float | None, quality: Quality = Quality.GOOD, flags: tuple[str, ...] = ()
) -> Reading:
    return Reading("T001-LT-01", "WHP-LT", iso_time(t), value, "m", quality, flags)


async def _store(env: CollectorEnv) -> None:
    blocks = [
        # January, minute 08:00: 3 values, a bad one that must not count, a null
        [
            _level(JAN, 2.0),
            _level(JAN + 10, 5.0),
            _level(JAN + 20, 99.0, Quality.BAD),
            _level(JAN + 30, None, Quality.BAD),
            _level(JAN + 40, 3.0, Quality.UNCERTAIN),
        ],
        # January, minute 08:01 and a reading of another day
        [_level(JAN + 60, 7.0), _level(JAN + 86_400, 1.5)],
        [_level(FEB, 4.0), _level(FEB + 1, 4.5)],
        [_level(MAR, 6.0)],
    ]
    for seq, records in enumerate(blocks, start=1):
        await env.link.send(seq, records=records)
        await env.link.next_ack()


async def _months_of_partitions(env: CollectorEnv, table: str) -> list[str]:
    rows = await env.rows(
        "SELECT c.relname FROM pg_inherits i JOIN pg_class c ON c.oid = i.inhrelid"
        f" WHERE i.inhparent = '{table}'::regclass ORDER BY c.relname"
    )
    return [str(row[0]) for row in rows]


ROLLUPS = [
    (JAN, "WHP-LT", "m", 3, 2.0, 5.0, 10.0, JAN + 40, JAN + 40, 3.0),
    (JAN + 60, "WHP-LT", "m", 1, 7.0, 7.0, 7.0, JAN + 60, JAN + 60, 7.0),
    (JAN + 86_400, "WHP-LT", "m", 1, 1.5, 1.5, 1.5, JAN + 86_400, JAN + 86_400, 1.5),
    (FEB, "WHP-LT", "m", 2, 4.0, 4.5, 8.5, FEB + 1, FEB + 1, 4.5),
    (MAR, "WHP-LT", "m", 1, 6.0, 6.0, 6.0, MAR, MAR, 6.0),
]


async def _rollups(env: CollectorEnv) -> list[tuple[object, ...]]:
    rows = await env.rows(
        "SELECT minute, quota, unit, n, lo, hi, total, newest_t, last_t, last_value"
        " FROM readings_1m ORDER BY minute"
    )
    return [tuple(row) for row in rows]


async def test_ingest_keeps_minute_rollups_and_an_expired_month_goes_whole(
    env: CollectorEnv,
) -> None:
    await heard_at(env.url, env.gateway.gateway, MAR_END)
    await _store(env)
    assert await _rollups(env) == ROLLUPS
    # Now = 1 April with raw_days 45: only January ended more than 45 days ago.
    now = MAR_END
    policy = RetentionPolicy(raw_days=45, rollup_days=400)
    report = await prune_storage(env.url, policy, now)
    assert report.raw_months_dropped == ("readings_y2026m01",)
    assert report.readings_dropped == 7
    assert report.rollup_months_dropped == ()
    remaining = await env.rows("SELECT t FROM readings ORDER BY t")
    assert [row[0] for row in remaining] == [FEB, FEB + 1, MAR]
    assert await _rollups(env) == ROLLUPS
    if env.url.startswith("postgresql"):
        partitions = await _months_of_partitions(env, "readings")
        assert "readings_y2026m01" not in partitions
        assert {"readings_y2026m02", "readings_y2026m03"} <= set(partitions)
        rollup_partitions = await _months_of_partitions(env, "readings_1m")
        assert "readings_1m_y2026m01" in rollup_partitions
    # Idempotent: nothing more has expired.
    again = await prune_storage(env.url, policy, now)
    assert again.raw_months_dropped == ()
    assert again.readings_dropped == 0


async def _audited(env: CollectorEnv, reason: str) -> int:
    (found,) = await env.rows(
        f"SELECT COALESCE(SUM(count), 0) FROM audit WHERE reason = '{reason}'"
    )
    return int(found[0])


async def test_a_backfill_rerun_past_raw_days_is_not_counted_twice(env: CollectorEnv) -> None:
    """The defect: an operator imports an instrument's January log again (edge-agent backfill)
    once the collector has pruned January's raw readings. The agent's outbox has let go of its
    keys with the blocks, so the readings come back in new backfilled blocks; their (point, t)
    rows and blocks are gone at the collector, so they were taken as new and folded into the
    minute rollups a second time (counts doubled, hourly means shifted). The collector refuses
    readings of a pruned period, audited, and ACKs their blocks so the agent moves on."""
    await heard_at(env.url, env.gateway.gateway, MAR_END)
    await _store(env)
    policy = RetentionPolicy(raw_days=45, rollup_days=400)
    await prune_storage(env.url, policy, MAR_END)
    backfill = ("backfill",)
    again = [
        [
            _level(JAN, 2.0, flags=backfill),
            _level(JAN + 10, 5.0, flags=backfill),
            _level(JAN + 20, 99.0, Quality.BAD, backfill),
            _level(JAN + 30, None, Quality.BAD, backfill),
            _level(JAN + 40, 3.0, Quality.UNCERTAIN, backfill),
        ],
        [_level(JAN + 60, 7.0, flags=backfill), _level(JAN + 86_400, 1.5, flags=backfill)],
    ]
    for seq, records in enumerate(again, start=5):
        await env.link.send(seq, records=records)
        ack = await env.link.next_ack()
        assert ack.ack.acked_through == seq  # nothing for the agent to send again
    assert await _rollups(env) == ROLLUPS
    assert await env.rows(f"SELECT count(*) FROM readings WHERE t < {FEB!r}") == [(0,)]
    assert await _audited(env, "past_retention") == 2  # one row per block, aggregated
    if env.url.startswith("postgresql"):
        # Nothing to store: January's partition is not made again.
        assert "readings_y2026m01" not in await _months_of_partitions(env, "readings")
    report = await prune_storage(env.url, policy, MAR_END)
    assert (report.raw_months_dropped, report.readings_dropped) == ((), 0)


async def test_a_late_reading_of_a_pruned_month_is_refused_whatever_its_flags(
    env: CollectorEnv,
) -> None:
    """A reading of a month whose raw readings retention deleted may have been stored and
    pruned: its rollups are final. A live one (an agent's backlog) is refused like a
    backfilled one; a reading of a kept month is stored as usual, in the same block."""
    await heard_at(env.url, env.gateway.gateway, MAR_END)
    await _store(env)
    await prune_storage(env.url, RetentionPolicy(raw_days=45, rollup_days=400), MAR_END)
    await env.link.send(5, records=[_level(JAN + 50, 1.0), _level(FEB + 2, 4.2)])
    assert (await env.link.next_ack()).ack.acked_through == 5
    february = (FEB, "WHP-LT", "m", 3, 4.0, 4.5, 12.7, FEB + 2, FEB + 2, 4.2)
    assert await _rollups(env) == [*ROLLUPS[:3], february, ROLLUPS[4]]
    assert await env.rows(f"SELECT t FROM readings WHERE t < {MAR!r} ORDER BY t") == [
        (FEB,),
        (FEB + 1,),
        (FEB + 2,),
    ]
    assert await _audited(env, "past_retention") == 1


async def test_a_larger_raw_days_later_does_not_reopen_a_pruned_month(env: CollectorEnv) -> None:
    """Each pass marks the first month it keeps before deleting; the mark never moves back."""
    await heard_at(env.url, env.gateway.gateway, MAR_END)
    await _store(env)
    await prune_storage(env.url, RetentionPolicy(raw_days=45), MAR_END)
    assert await env.rows("SELECT raw_kept_from FROM retention_state") == [(FEBRUARY_1,)]
    await prune_storage(env.url, RetentionPolicy(raw_days=400), MAR_END)
    assert await env.rows("SELECT raw_kept_from FROM retention_state") == [(FEBRUARY_1,)]
    await env.link.send(5, records=[_level(JAN + 10, 5.0, flags=("backfill",))])
    assert (await env.link.next_ack()).ack.acked_through == 5
    assert await _rollups(env) == ROLLUPS


async def test_expired_rollup_months_go_whole(env: CollectorEnv) -> None:
    # The province heard up to each pass's clock (a t past it is no measure of it).
    await heard_at(env.url, env.gateway.gateway, MAR_END)
    await _store(env)
    policy = RetentionPolicy(raw_days=45, rollup_days=100)
    await prune_storage(env.url, policy, MAR_END)  # January rolled up
    await heard_at(env.url, env.gateway.gateway, MAR_END + 45 * DAY)
    # 1 April + 45 days: February and March expire; January's rollups end > 100 days ago.
    report = await prune_storage(env.url, policy, MAR_END + 45 * DAY)
    assert report.raw_months_dropped == ("readings_y2026m02", "readings_y2026m03")
    assert report.rollup_months_dropped == ("readings_1m_y2026m01",)
    assert await _rollups(env) == ROLLUPS[3:]
    assert await env.rows("SELECT count(*) FROM readings") == [(0,)]


async def test_only_months_that_held_readings_are_named_dropped(env: CollectorEnv) -> None:
    """Found in a session's review: SQLite named every month from a series' oldest reading on
    as dropped, February too, which held none, and so every month from the oldest rollup on
    (PostgreSQL names the partitions it drops)."""
    await heard_at(env.url, env.gateway.gateway, MAR_END + 45 * DAY)
    await env.link.send(1, records=[_level(JAN, 2.0), _level(MAR, 6.0)])
    await env.link.next_ack()
    policy = RetentionPolicy(raw_days=45, rollup_days=45)
    report = await prune_storage(env.url, policy, MAR_END + 45 * DAY)
    assert report.raw_months_dropped == ("readings_y2026m01", "readings_y2026m03")
    assert report.readings_dropped == 2
    assert report.rollup_months_dropped == ("readings_1m_y2026m01", "readings_1m_y2026m03")


def _serving_config(
    env: CollectorEnv, broker: Broker, tmp_path: Path, retention: str
) -> CollectorConfig:
    """A `serve` configuration on the test's database and broker, with `retention` (keys)."""
    path = write_collector_config(
        tmp_path, broker_port=broker.port, api_port=free_port(), storage_url=env.url
    )
    text = path.read_text(encoding="utf-8")
    path.write_text(text.replace("}\nsigning:", f", {retention}}}\nsigning:"), "utf-8")
    create_key_pair(tmp_path / "keys" / "collector.key")
    return load_collector_config(path)


async def test_a_serving_collector_applies_retention_itself(
    env: CollectorEnv, broker: Broker, tmp_path: Path
) -> None:
    await heard_at(env.url, env.gateway.gateway, MAR_END)
    await _store(env)
    config = _serving_config(env, broker, tmp_path, "raw_days: 45")

    async def january_gone() -> bool:
        return await env.rows(f"SELECT count(*) FROM readings WHERE t < {FEB!r}") == [(0,)]

    async with run_collector(config, clock=lambda: MAR_END):
        assert await wait_until(january_gone, bool)
    assert await _rollups(env) == ROLLUPS


async def test_a_serving_collector_with_audit_days_alone_prunes_the_audit_rows_only(
    env: CollectorEnv, broker: Broker, tmp_path: Path
) -> None:
    """The defect (left open by the last session): `serve` started its retention pass only
    when storage.raw_days was set, so with audit_days alone the audit chain grew for ever
    (and `db prune` refused to run). audit_days starts the pass too, which then prunes what it
    governs, the audit rows, and leaves readings, rollups and blocks, which raw_days governs."""
    await heard_at(env.url, env.gateway.gateway, MAR_END)
    await _store(env)
    assert isinstance(env.storage, AuditTrail)
    for age in (400, 181, 179):
        at = MAR_END - age * DAY
        await env.storage.record_actions([ActionEntry(at, Action.MAP_PUSH, "cli:t", f"{age} d")])
    readings = await env.rows("SELECT count(*) FROM readings")
    config = _serving_config(env, broker, tmp_path, "audit_days: 180")
    assert config.storage.retention.raw_days is None

    async def pushes() -> list[str]:
        assert isinstance(env.storage, AuditTrail)
        rows = await intact_audit_rows(env.storage)
        return [row.detail for row in rows if row.reason == Action.MAP_PUSH]

    async def applied() -> list[dict[str, object]]:
        return _events(logs, "retention_applied")  # logged once the pass is over

    with capture_logs() as logs:
        async with run_collector(config, clock=lambda: MAR_END):
            assert await wait_until(pushes, lambda kept: len(kept) == 1) == ["179 d"]
            # Found by today's review of d45dbff: a pass that dropped audit rows alone logged
            # nothing; it says so as a pass dropping months does, `db prune --json`'s fields.
            (line,) = await wait_until(applied, bool)
    assert line == dataclasses.asdict(PruneReport(audit_rows_dropped=2))
    assert await env.rows("SELECT count(*) FROM readings") == readings == [(10,)]
    assert await env.rows("SELECT count(*) FROM blocks") == [(4,)]
    assert await _rollups(env) == ROLLUPS
    assert await env.rows("SELECT count(*) FROM retention_state") == [(0,)]


async def _kept_then_gone(
    env: CollectorEnv, table: str, records: Sequence[Record]
) -> tuple[int, PruneReport, PruneReport]:
    """Send `records`, which leave rows stamped this month in `table`; prune with raw_days 45
    at 44 days past the month's end (the rows stay), then at 46 (they go). Returns how many
    rows `table` held and the two passes' reports."""
    await env.link.send(1, records=records)
    await env.link.next_ack()
    count = f"SELECT count(*) FROM {table}"
    (held,) = await env.rows(count)
    assert held[0] >= 1
    policy = RetentionPolicy(raw_days=45)
    month_end = month_start(next_month(month_of(time.time())))
    await heard_at(env.url, env.gateway.gateway, month_end + 46 * DAY)
    kept = await prune_storage(env.url, policy, month_end + 44 * DAY)
    assert await env.rows(count) == [held]
    gone = await prune_storage(env.url, policy, month_end + 46 * DAY)
    assert await env.rows(count) == [(0,)]
    return held[0], kept, gone


async def test_the_feed_journal_goes_with_the_readings_month(env: CollectorEnv) -> None:
    """The journal's events (alarms, gaps, statuses) are streamed between the readings of
    GET /v1/stream: deleted at exactly raw_days, up to a month of kept readings was streamed
    from an old position without them. They go as the readings do: with their whole month."""
    held, kept, gone = await _kept_then_gone(env, "feed", [_level(MAR, 6.0), gap_record(1)])
    assert kept.feed_events_dropped == 0
    assert gone.feed_events_dropped == held


async def test_presence_intervals_go_with_the_readings_month(env: CollectorEnv) -> None:
    """Found by the long-run hostile test: a gateway's live intervals (GET /v1/quality, one
    row per time it came back after offline_after) were never pruned, so the table grew with
    every outage for as long as the collector ran, while the readings they qualify went.
    They go as the readings do: once their whole month is older than raw_days. The report
    (`db prune --json`, `retention_applied`) counts them: found in a review, it did not."""
    held, kept, gone = await _kept_then_gone(env, "presence", [_level(MAR, 6.0)])
    assert (kept.presence_dropped, gone.presence_dropped) == (0, held)


async def test_an_interval_across_the_cut_is_shortened_and_not_counted(env: CollectorEnv) -> None:
    """Found in a review: the docs say an interval across the cut is shortened to start there
    and not counted in presence_dropped, and no test held one (counting the shortening too
    passed every test). March goes, the cut is 1 April: an interval of March is deleted and
    counted, one across midnight of 1 April starts there and is not counted, nor deleted."""
    gateway = env.gateway.gateway
    for since, until in ((MAR, MAR + 600), (MAR_END - 600, MAR_END + 600)):
        await sql_execute(
            env.url,
            "INSERT INTO presence (gateway, since, until) VALUES (?, ?, ?)",
            gateway,
            since,
            until,
        )
    now = MAR_END + 46 * DAY  # raw_days 45: March ended 46 days before, April 1 is the cut
    await heard_at(env.url, gateway, now)
    report = await prune_storage(env.url, RetentionPolicy(raw_days=45), now)
    assert report.presence_dropped == 1
    old = f"SELECT since, until FROM presence WHERE since < {now!r} ORDER BY since"
    assert await env.rows(old) == [(MAR_END, MAR_END + 600)]
    again = await prune_storage(env.url, RetentionPolicy(raw_days=45), now)
    assert again.presence_dropped == 0
    assert await env.rows(old) == [(MAR_END, MAR_END + 600)]


async def _march_journal_and_presence(url: str) -> None:
    """A journal event and a presence interval of March, an interval across 1 April, and the
    province heard 46 days after March's end (raw_days 45 then lets March go)."""
    async with open_storage(url):
        pass  # the schema
    await sql_execute(
        url,
        "INSERT INTO feed (kind, gateway, point, readings_through, payload, at)"
        " VALUES ('gap', 'gw', NULL, 0, '{}', ?)",
        MAR,
    )
    for since, until in ((MAR, MAR + 600), (MAR_END - 600, MAR_END + 600)):
        await sql_execute(
            url, "INSERT INTO presence (gateway, since, until) VALUES ('gw', ?, ?)", since, until
        )
    await heard_at(url, "gw", MAR_END + 46 * DAY)


def test_db_prune_says_how_many_journal_events_and_presence_intervals_went(
    tmp_path: Path, storage_url: str
) -> None:
    """Found in a review: the text lines of `db prune` for the journal and the presence
    intervals were untested. With audit_days alone the readings' month stays, and so do both
    (0 and 0); with raw_days, March's event and interval go (1 and 1), the interval across
    1 April is shortened, not counted."""
    asyncio.run(_march_journal_and_presence(storage_url))
    config = tmp_path / "collector.yaml"

    def prune(retention: str) -> list[str]:
        config.write_text(
            f'broker: "mqtt://127.0.0.1:1883"\nstorage: {{url: "{storage_url}", {retention}}}\n'
            'signing: {key_file: keys/c.key}\napi: {listen: "127.0.0.1:8080"}\n',
            encoding="utf-8",
        )
        done = CliRunner().invoke(main, ["db", "prune", "-c", str(config)])
        assert done.exit_code == 0, done.output
        return done.output.splitlines()

    line = "journal events dropped: {}, presence intervals dropped: {} (with their readings' month)"
    assert line.format(0, 0) in prune("audit_days: 180")
    assert line.format(1, 1) in prune("raw_days: 45")
    assert line.format(0, 0) in prune("raw_days: 45")
    kept = asyncio.run(sql_rows(storage_url, "SELECT since, until FROM presence"))
    assert [tuple(row) for row in kept] == [(MAR_END, MAR_END + 600)]


async def test_a_serving_collector_logs_a_pass_that_deleted_presence_alone(
    env: CollectorEnv, broker: Broker, tmp_path: Path
) -> None:
    """Found in a review: `retention_applied` did not count the presence intervals a pass
    deleted, and a pass that deleted nothing else logged no line, so the log and `db prune`
    said retention had deleted nothing while a gateway's live intervals went. Intervals are
    stamped by the collector's clock at arrival, readings by the gateway's: here March's
    reading goes in a first pass, this month's intervals in the serving collector's. On
    PostgreSQL that pass drops this month's (empty) partition too, made at open."""
    await env.link.send(1, records=[_level(MAR, 6.0)])
    await env.link.next_ack()
    (held,) = await env.rows("SELECT count(*) FROM presence")
    this_month = month_of(time.time())
    month_end = month_start(next_month(this_month))
    await heard_at(env.url, env.gateway.gateway, month_end)
    first = await prune_storage(env.url, RetentionPolicy(raw_days=45), month_end)
    assert first.readings_dropped == 1  # the intervals stay: they end after the cut
    await heard_at(env.url, env.gateway.gateway, month_end + 46 * DAY)
    config = _serving_config(env, broker, tmp_path, "raw_days: 45")

    async def applied() -> list[dict[str, object]]:
        return _events(logs, "retention_applied")

    with capture_logs() as logs:
        async with run_collector(config, clock=lambda: month_end + 46 * DAY):
            (line,) = await wait_until(applied, bool)
    emptied = () if env.url.startswith("sqlite") else (partition_name(this_month),)
    assert line == dataclasses.asdict(
        PruneReport(raw_months_dropped=emptied, presence_dropped=held[0])
    )
    assert await env.rows("SELECT count(*) FROM presence") == [(0,)]


async def test_reading_ids_never_go_back_after_retention(env: CollectorEnv) -> None:
    """Stream positions are reading ids: deleting the highest ones must not hand them out again
    (SQLite reuses max(id) + 1 without AUTOINCREMENT)."""
    await _store(env)
    # A late reading of expired January becomes the row with the highest id.
    await env.link.send(5, records=[_level(JAN + 50, 1.0)])
    await env.link.next_ack()
    (highest,) = await env.rows("SELECT max(id) FROM readings")
    await prune_storage(env.url, RetentionPolicy(raw_days=45), MAR_END)
    await env.link.send(6, records=[_level(MAR + 5, 7.0)])
    await env.link.next_ack()
    (newest,) = await env.rows(f"SELECT id FROM readings WHERE t = {MAR + 5!r}")
    assert newest[0] > highest[0]


DEC_7 = float(calendar.timegm((2026, 12, 7, 8, 0, 0)))
NOV_20 = float(calendar.timegm((2026, 11, 20, 8, 0, 0)))
FEB_7_2027 = float(calendar.timegm((2027, 2, 7, 8, 0, 0)))
NOVEMBER_1 = float(calendar.timegm((2026, 11, 1, 0, 0, 0)))
YEAR_2099 = float(calendar.timegm((2099, 1, 1, 0, 0, 0)))


async def _a_clock_ahead_keeps_december(env: CollectorEnv, *more: Reading) -> RetentionPolicy:
    """Readings of 20 November and 7 December (and `more`) stored, a pass with the clock at
    7 February 2027 and raw_days 30: held back to 7 December, nothing deleted, November kept."""
    await env.link.send(1, records=[_level(NOV_20, 1.0), _level(DEC_7, 2.0), *more])
    await env.link.next_ack()
    policy = RetentionPolicy(raw_days=30, rollup_days=400)
    report = await prune_storage(env.url, policy, FEB_7_2027)
    assert (report.raw_months_dropped, report.readings_dropped) == ((), 0)
    assert report.held_back_to == DEC_7
    assert await env.rows("SELECT raw_kept_from FROM retention_state") == [(NOVEMBER_1,)]
    return policy


async def test_a_collector_clock_ahead_deletes_no_current_reading_nor_closes_its_month(
    env: CollectorEnv,
) -> None:
    """The defect (review of the raw_kept_from mark): real date 7 December, the collector's
    clock a month and more ahead (7 February), raw_days 30. Its start-up pass measured from
    the clock: it marked 2027-01-01 and deleted December's readings, and every reading before
    the mark, current ones too, was refused as past_retention even after the clock was put
    right. Ages are now measured from the newest reading stored (the gateways' clocks) when the
    clock is past it: the pass deletes what a right clock would, here nothing."""
    policy = await _a_clock_ahead_keeps_december(env)
    # The clock put right, the gateway goes on: its readings are stored, none refused.
    await env.link.send(2, records=[_level(DEC_7 + 60, 3.0), _level(NOV_20 + 60, 1.5)])
    assert (await env.link.next_ack()).ack.acked_through == 2
    assert await env.rows("SELECT count(*) FROM readings") == [(4,)]
    assert await _audited(env, "past_retention") == 0
    right = await prune_storage(env.url, policy, DEC_7 + 120)
    assert (right.raw_months_dropped, right.held_back_to) == ((), None)


async def test_a_reading_from_a_gateway_clock_ahead_does_not_undo_the_hold_back(
    env: CollectorEnv,
) -> None:
    """Found by the second review of 9a33a61: the hold-back measured from max(t) of `latest`,
    which moves forward only, so one reading stamped ahead of real time (a gateway whose clock
    jumped to 2099, or one forged by a gateway's own key) lifted it for the whole province for
    good, and the collector clock ahead deleted December's readings and closed their months
    again. A reading past the collector's clock is no measure of it: it is left out."""
    future = Reading("T001-LT-02", "WHP-LT", iso_time(YEAR_2099), 1.0, "m", Quality.GOOD, ())
    await _a_clock_ahead_keeps_december(env, future)


async def test_readings_all_ahead_of_the_clock_still_mark_the_cut(env: CollectorEnv) -> None:
    """Every reading stored past the clock: ages go from the clock, and the mark is made, so a
    month it deletes stays closed. (20 November, not a time past the ingest's clock, the real
    one: that reading would not be the point's latest, collector.storage.ahead.)"""
    await env.link.send(1, records=[_level(JAN, 1.0), _level(NOV_20, 2.0)])
    await env.link.next_ack()
    report = await prune_storage(env.url, RetentionPolicy(raw_days=30), MAR)
    assert report.raw_months_dropped != ()
    assert report.held_back_to is None
    assert await env.rows("SELECT raw_kept_from FROM retention_state") == [(FEBRUARY_1,)]


async def test_serve_with_its_clock_ahead_keeps_december_and_says_so(
    env: CollectorEnv, broker: Broker, tmp_path: Path
) -> None:
    """The start-up pass of `serve` as the review found it: clock 7 February, raw_days 30."""
    await env.link.send(1, records=[_level(NOV_20, 1.0), _level(DEC_7, 2.0)])
    await env.link.next_ack()
    config = _serving_config(env, broker, tmp_path, "raw_days: 30")

    async def marked() -> list[tuple[object, ...]]:
        return await env.rows("SELECT raw_kept_from FROM retention_state")

    async def held_back() -> list[dict[str, object]]:
        return _events(logs, "retention_held_back")  # logged once the pass is over

    with capture_logs() as logs:
        async with run_collector(config, clock=lambda: FEB_7_2027):
            assert await wait_until(marked, bool) == [(NOVEMBER_1,)]
            held = await wait_until(held_back, bool)
    assert held == [
        {
            "clock": "2027-02-07T08:00:00.000+00:00",
            "newest_reading": "2026-12-07T08:00:00.000+00:00",
            "kept_from": "2026-11-01T00:00:00.000+00:00",
            "clock_would_keep_from": "2027-01-01T00:00:00.000+00:00",
        }
    ]
    assert await env.rows("SELECT count(*) FROM readings") == [(2,)]


def _events(logs: Sequence[Mapping[str, object]], event: str) -> list[dict[str, object]]:
    return [
        {k: v for k, v in entry.items() if k not in ("event", "log_level")}
        for entry in logs
        if entry["event"] == event
    ]


async def test_a_collector_with_no_reading_marks_nothing_whatever_its_clock(
    env: CollectorEnv,
) -> None:
    """A new collector whose clock is ahead at its first start: nothing to delete, and no mark
    that would refuse the readings of the months the clock skipped."""
    report = await prune_storage(env.url, RetentionPolicy(raw_days=30), FEB_7_2027)
    assert (report.readings_dropped, report.held_back_to) == (0, None)
    assert await env.rows("SELECT count(*) FROM retention_state") == [(0,)]
    await env.link.send(1, records=[_level(DEC_7, 2.0)])
    assert (await env.link.next_ack()).ack.acked_through == 1
    assert await env.rows("SELECT count(*) FROM readings") == [(1,)]


async def test_a_quiet_province_keeps_the_days_before_its_newest_reading(
    env: CollectorEnv,
) -> None:
    """No reading since 10 March, the clock at 1 September: the months older than raw_days
    before that reading go (January), the ones within them stay (February, March)."""
    await _store(env)
    september = float(calendar.timegm((2026, 9, 1, 0, 0, 0)))
    report = await prune_storage(env.url, RetentionPolicy(raw_days=30), september)
    assert report.raw_months_dropped == ("readings_y2026m01",)
    assert report.held_back_to == MAR
    assert await env.rows("SELECT raw_kept_from FROM retention_state") == [(FEBRUARY_1,)]
    assert [row[0] for row in await env.rows("SELECT t FROM readings ORDER BY t")] == [
        FEB,
        FEB + 1,
        MAR,
    ]
