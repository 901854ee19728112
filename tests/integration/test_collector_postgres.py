"""What only the PostgreSQL storage has: migrations, monthly partitions, many collectors.

Everything else the PostgreSQL storage does is tested with SQLite's tests, which run on both
backends (the `storage_url` fixture).
"""

from __future__ import annotations

import asyncio
import calendar
from collections.abc import Iterator, Sequence

import asyncpg
import pytest

from collector.ingest.core import Inbound, plan_batch
from collector.model import IngestBatch, KeyGrant, Outcome, Reason
from collector.readmodel import EVERYTHING, ReadingFilter
from collector.storage import open_storage
from collector.storage.base import Storage, StorageError
from collector.storage.postgres import SCHEMA_VERSION, PostgresStorage, store, upgrade
from collector.storage.postgres.locks import DATABASE_LOCKS, FEED_LOCK, gateway_lock_key
from collector.storage.postgres.partitions import Partitions, partition_name
from specs.block import GENESIS, block_hash
from specs.catalogue import default_catalogue
from specs.records import Quality, Reading, iso_time
from tests.support.collector_client import SimGateway, sim_gateway
from tests.support.collector_env import register
from tests.support.postgres import PostgresDatabases, hung_server, sql_execute, sql_rows

GATEWAY = sim_gateway(5)
MARCH_2024 = float(calendar.timegm((2024, 3, 1, 0, 0, 0)))
APRIL_2024 = float(calendar.timegm((2024, 4, 1, 0, 0, 0)))


@pytest.fixture
def empty_url(postgres_databases: PostgresDatabases) -> Iterator[str]:
    """A database with no tables at all (not a copy of the migrated template)."""
    url = postgres_databases.create(migrated=False)
    yield url
    postgres_databases.drop(url)


async def _partitions(url: str) -> list[str]:
    rows = await sql_rows(
        url,
        "SELECT c.relname FROM pg_inherits i JOIN pg_class c ON c.oid = i.inhrelid"
        " WHERE i.inhparent = 'readings'::regclass ORDER BY 1",
    )
    return [str(row[0]) for row in rows]


def _level(t: float, value: float) -> Reading:
    return Reading("T001-LT-01", "WHP-LT", iso_time(t), value, "m", Quality.GOOD)


def _chain(
    gateway: SimGateway, count: int, *, epoch: str = "epoch-1", start: float = MARCH_2024
) -> dict[int, bytes]:
    """Blocks 1..count of one epoch, chained, each with two readings a second apart."""
    blocks: dict[int, bytes] = {}
    prev = GENESIS
    for seq in range(1, count + 1):
        records = [_level(start + 2 * seq, seq), _level(start + 2 * seq + 1, seq + 0.5)]
        payload = gateway.block(seq, epoch=epoch, records=records, prev=prev)
        blocks[seq] = payload
        prev = block_hash(payload)
    return blocks


def _batch(gateway: SimGateway, payloads: Sequence[bytes], at: float = MARCH_2024) -> IngestBatch:
    messages = [
        Inbound(gateway.topics.block, payload, tuple(gateway.sign(payload)), at)
        for payload in payloads
    ]
    owner, key = gateway.registration()
    batch = plan_batch(messages, {key.kid: KeyGrant(key, owner)}, default_catalogue())
    assert not batch.audits
    return batch


# --- migrations ------------------------------------------------------------------------------


async def test_a_fresh_database_is_migrated_once_and_reopening_changes_nothing(
    empty_url: str,
) -> None:
    assert await upgrade(empty_url) == (0, SCHEMA_VERSION)
    assert await upgrade(empty_url) == (SCHEMA_VERSION, SCHEMA_VERSION)
    async with open_storage(empty_url) as storage:
        await storage.ping()
    versions = await sql_rows(empty_url, "SELECT version FROM schema_migrations ORDER BY 1")
    assert versions == [(version,) for version in range(1, SCHEMA_VERSION + 1)]


async def test_open_migrates_an_empty_database_itself(empty_url: str) -> None:
    async with open_storage(empty_url) as storage:
        await register(storage, GATEWAY)
        assert [g.gateway for g in await storage.gateways()] == [GATEWAY.gateway]
    assert await upgrade(empty_url) == (SCHEMA_VERSION, SCHEMA_VERSION)


async def test_collectors_starting_at_once_apply_each_migration_once(empty_url: str) -> None:
    results = await asyncio.gather(*(upgrade(empty_url) for _ in range(3)))
    assert sorted(results) == [
        (0, SCHEMA_VERSION),
        (SCHEMA_VERSION, SCHEMA_VERSION),
        (SCHEMA_VERSION, SCHEMA_VERSION),
    ]


async def test_a_database_newer_than_the_code_is_refused(postgres_url: str) -> None:
    await sql_execute(
        postgres_url, "INSERT INTO schema_migrations (version) VALUES (?)", SCHEMA_VERSION + 1
    )
    with pytest.raises(StorageError, match=f"version {SCHEMA_VERSION + 1}, newer than"):
        async with open_storage(postgres_url):
            pass
    with pytest.raises(StorageError, match="newer than this collector's"):
        await upgrade(postgres_url)


async def test_a_server_that_does_not_answer_is_a_storage_error_without_the_password() -> None:
    url = "postgresql://postgres:hunter2@127.0.0.1:1/collector"  # nothing listens on port 1
    with pytest.raises(StorageError) as raised:
        async with open_storage(url):
            pass
    message = str(raised.value)
    assert "hunter2" not in message
    assert "postgresql://postgres:***@127.0.0.1:1/collector" in message
    assert message.startswith("connecting failed (")


async def test_a_server_that_accepts_and_never_answers_is_a_storage_error(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """A hung server (or a box that takes the connection and says nothing) times out.

    Found by a hostile tester: the connect timeout's own cancellation was taken for the
    caller's, so every command and `serve` ended with a bare CancelledError traceback.
    """
    monkeypatch.setattr(store, "CONNECT_TIMEOUT", 0.5)
    async with hung_server() as hung:
        with pytest.raises(StorageError) as raised:
            async with asyncio.timeout(30), open_storage(hung.url):
                pass
    assert str(raised.value).startswith(f"connecting failed ({hung.url})")


async def test_a_port_past_65535_is_a_malformed_url() -> None:
    """Found by a hostile tester: asyncpg's URL parser takes it and the socket raised
    OverflowError, a traceback from every command."""
    with pytest.raises(StorageError) as raised:
        async with open_storage("postgresql://u@127.0.0.1:99999/db"):
            pass
    assert str(raised.value).startswith(
        "storage url postgresql://u@127.0.0.1:99999/db is malformed:"
    )


# --- partitions ------------------------------------------------------------------------------


async def test_open_creates_this_and_next_months_partition(postgres_url: str) -> None:
    storage = await PostgresStorage.open(
        postgres_url, now=float(calendar.timegm((2030, 12, 31, 23, 0, 0)))
    )
    await storage.close()
    assert {"readings_y2030m12", "readings_y2031m01"} <= set(await _partitions(postgres_url))


async def test_readings_of_other_months_get_their_partitions_on_demand(postgres_url: str) -> None:
    last_second_of_march = APRIL_2024 - 0.001
    payload = GATEWAY.block(
        1,
        records=[
            _level(MARCH_2024, 1.0),
            _level(last_second_of_march, 2.0),
            _level(APRIL_2024, 3.0),
        ],
    )
    async with open_storage(postgres_url) as storage:
        before = set(await _partitions(postgres_url))
        assert partition_name((2024, 3)) not in before
        await register(storage, GATEWAY)
        (outcome,) = (await storage.ingest(_batch(GATEWAY, [payload]))).outcomes
        assert outcome is Outcome.STORED
    created = set(await _partitions(postgres_url)) - before
    assert created == {"readings_y2024m03", "readings_y2024m04"}
    placed = await sql_rows(
        postgres_url, "SELECT tableoid::regclass::text, value FROM readings ORDER BY t"
    )
    assert placed == [
        ("readings_y2024m03", 1.0),
        ("readings_y2024m03", 2.0),
        ("readings_y2024m04", 3.0),
    ]


async def test_a_partition_dropped_behind_the_collectors_back_is_made_again(
    postgres_url: str,
) -> None:
    """Retention in another process drops a month this process knows: the batch still goes in."""
    first, second = _chain(GATEWAY, 2).values()
    async with open_storage(postgres_url) as storage:
        await register(storage, GATEWAY)
        await storage.ingest(_batch(GATEWAY, [first]))
        await sql_execute(postgres_url, "DROP TABLE readings_y2024m03")
        (outcome,) = (await storage.ingest(_batch(GATEWAY, [second]))).outcomes
        assert outcome is Outcome.STORED
        page = await storage.readings(EVERYTHING, ReadingFilter(), after=None, limit=10)
    assert [r.value for r in page.items] == [2.0, 2.5]  # block 1's readings went with the month


async def test_a_rollup_partition_missing_beside_its_month_is_made_again(
    postgres_url: str,
) -> None:
    """A month whose readings partition exists but whose rollup partition does not (an older
    collector made it, or retention dropped the rollups) must not fail every batch."""
    first, second = _chain(GATEWAY, 2).values()
    async with open_storage(postgres_url) as storage:
        await register(storage, GATEWAY)
        await storage.ingest(_batch(GATEWAY, [first]))
    await sql_execute(postgres_url, "DROP TABLE readings_1m_y2024m03")
    async with open_storage(postgres_url) as storage:  # a fresh collector: an empty cache
        (outcome,) = (await storage.ingest(_batch(GATEWAY, [second]))).outcomes
    assert outcome is Outcome.STORED
    rollups = await sql_rows(postgres_url, "SELECT n FROM readings_1m")
    assert [row[0] for row in rollups] == [2]  # block 2's two readings, one minute


async def test_making_a_partition_never_waits_for_the_feed_lock(postgres_url: str) -> None:
    """The feed lock once shared its key with the partition lock: an ingest holding it and a
    collector making a new month's partitions then waited for each other (a deadlock)."""
    holder = await asyncpg.connect(postgres_url)
    maker = await asyncpg.connect(postgres_url)
    try:
        async with holder.transaction():
            await holder.execute("SELECT pg_advisory_xact_lock($1)", FEED_LOCK)
            await asyncio.wait_for(Partitions().ensure(maker, {(2024, 4)}, (2024, 5)), timeout=3)
    finally:
        await holder.close()
        await maker.close()
    assert "readings_y2024m04" in await _partitions(postgres_url)


def test_the_database_wide_locks_have_keys_of_their_own() -> None:
    assert len(set(DATABASE_LOCKS)) == len(DATABASE_LOCKS)


async def test_an_older_collector_stops_writing_once_the_schema_is_newer(
    postgres_url: str,
) -> None:
    """A collector still running after a newer one migrated must not write what it does not
    understand (it would skip the newer schema's bookkeeping)."""
    first, second = _chain(GATEWAY, 2).values()
    async with open_storage(postgres_url) as storage:
        await register(storage, GATEWAY)
        await storage.ingest(_batch(GATEWAY, [first]))
        await sql_execute(
            postgres_url, "INSERT INTO schema_migrations (version) VALUES (?)", SCHEMA_VERSION + 1
        )
        with pytest.raises(StorageError, match="newer"):
            await storage.ingest(_batch(GATEWAY, [second]))
    stored = await sql_rows(postgres_url, "SELECT seq FROM blocks ORDER BY seq")
    assert [row[0] for row in stored] == [1]


# --- many collectors on one database ---------------------------------------------------------


async def _readings_once(storage: Storage) -> list[float]:
    page = await storage.readings(EVERYTHING, ReadingFilter(), after=None, limit=10_000)
    times = [r.t for r in page.items]
    assert len(times) == len(set(times))
    return times


async def test_two_collectors_ingesting_overlapping_batches_of_one_gateway_store_each_once(
    postgres_url: str,
) -> None:
    """Resends and a rebalanced shared subscription hand the same blocks to two collectors.

    Each round, collector A and collector B ingest overlapping windows of the chain at the
    same moment, and B also a resealed epoch-2 copy of A's readings; the blocks' readings
    fall in a month nobody has a partition for yet. Every block and reading ends up stored
    once, every other copy is a duplicate, and the stream is whole.
    """
    count, window, rounds = 60, 12, 6
    chain = _chain(GATEWAY, count)
    resealed = _chain(GATEWAY, count, epoch="epoch-2")
    async with open_storage(postgres_url) as a, open_storage(postgres_url) as b:
        await asyncio.gather(register(a, GATEWAY), register(b, GATEWAY))
        outcomes: dict[tuple[str, int], list[Outcome]] = {}
        step = count // rounds
        for round_ in range(rounds):
            low = round_ * step + 1
            mine = [chain[s] for s in range(low, min(low + window, count + 1))]
            theirs = [chain[s] for s in range(max(1, low - window // 2), low + step)]
            again = [resealed[s] for s in range(low, low + step)]
            results = await asyncio.gather(
                a.ingest(_batch(GATEWAY, mine)),
                b.ingest(_batch(GATEWAY, theirs)),
                b.ingest(_batch(GATEWAY, again)),
            )
            for batch, result in zip((mine, theirs, again), results, strict=True):
                for payload, outcome in zip(batch, result.outcomes, strict=True):
                    header = _batch(GATEWAY, [payload]).blocks[0].block.header
                    outcomes.setdefault((header.epoch, header.seq), []).append(outcome)
        state = await a.stream(GATEWAY.gateway, "epoch-1")
        times = await _readings_once(b)
        duplicates = await a.audit(reason=Reason.DUPLICATE, limit=10_000)
    assert all(o.count(Outcome.STORED) == 1 for o in outcomes.values())
    assert all(set(o) <= {Outcome.STORED, Outcome.DUPLICATE} for o in outcomes.values())
    assert len(outcomes) == 2 * count
    assert state is not None
    assert (state.acked_through, state.max_seq, state.missing, state.conflict) == (
        count,
        count,
        (),
        False,
    )
    assert state.acked_hash == block_hash(chain[count])
    assert len(times) == 2 * count  # two readings per (point, t) of the chain, each once
    copies = sum(len(o) - 1 for o in outcomes.values())
    # Audit rows are aggregated per (source, reason, minute) with a count: every block copy
    # not stored counts once, and so does each seq's second block (of either epoch) whose
    # readings were stored already with the first.
    assert sum(row.count for row in duplicates) == copies + count


async def test_ingesting_the_same_batch_again_changes_nothing(postgres_url: str) -> None:
    batch = _batch(GATEWAY, list(_chain(GATEWAY, 5).values()))
    async with open_storage(postgres_url) as storage:
        await register(storage, GATEWAY)
        first = await storage.ingest(batch)
        second = await storage.ingest(batch)
        times = await _readings_once(storage)
        gaps = await storage.gaps(EVERYTHING, gateway=None, state=None, after=None, limit=10)
    assert first.outcomes == (Outcome.STORED,) * 5
    assert second.outcomes == (Outcome.DUPLICATE,) * 5
    assert second.streams == first.streams
    assert len(times) == 10
    assert gaps.items == ()


async def test_closing_ends_a_connection_that_does_not_come_back(
    postgres_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A stopping collector whose ingest waits on another collector's gateway lock: asyncpg's
    pool close would wait for that ingest's connection for ever; the storage ends it."""
    monkeypatch.setattr(store, "CLOSE_TIMEOUT", 0.5)
    (block,) = _chain(GATEWAY, 1).values()
    holder = await asyncpg.connect(postgres_url)
    try:
        storage = await PostgresStorage.open(postgres_url)
        await register(storage, GATEWAY)
        async with holder.transaction():
            await holder.execute(
                "SELECT pg_advisory_xact_lock($1)", gateway_lock_key(GATEWAY.gateway)
            )
            ingesting = asyncio.create_task(storage.ingest(_batch(GATEWAY, [block])))
            await _until_waiting_on_a_lock(holder, application="ganzhi-collector")
            async with asyncio.timeout(10):
                await storage.close()
            with pytest.raises(StorageError, match="ingest failed"):
                await ingesting
    finally:
        await holder.close()
    assert await sql_rows(postgres_url, "SELECT count(*) FROM blocks") == [(0,)]


async def _until_waiting_on_a_lock(
    watcher: asyncpg.Connection[asyncpg.Record], application: str
) -> None:
    """Poll pg_stat_activity: PostgreSQL tells nobody when a backend starts to wait."""
    query = (
        "SELECT count(*) FROM pg_stat_activity WHERE application_name = $1"
        " AND wait_event_type = 'Lock' AND datname = current_database()"
    )
    async with asyncio.timeout(10):
        while not await watcher.fetchval(query, application):
            await asyncio.sleep(0.02)


async def test_connections_the_server_ends_are_storage_errors_and_ingest_goes_on(
    postgres_url: str,
) -> None:
    """pg_terminate_backend (a server restart, a failover, an admin) ends the collector's
    connections while they are idle in the pool. asyncpg reads the server's FATAL message
    before the end of the stream: a connection taken from the pool in between fails its next
    statement with InternalClientError ('another operation is in progress'), which is not
    one of asyncpg's InterfaceError or PostgresError. Every such failure must be the
    StorageError that `collector serve` logs and retries, never an error that ends it."""
    blocks = _chain(GATEWAY, 40)
    storage = await PostgresStorage.open(postgres_url)
    admin = await asyncpg.connect(postgres_url)
    failures = 0
    try:
        await register(storage, GATEWAY)
        for seq, payload in blocks.items():
            await admin.execute(
                "SELECT pg_terminate_backend(pid) FROM pg_stat_activity"
                " WHERE application_name = 'ganzhi-collector' AND datname = current_database()"
            )
            await asyncio.sleep((seq % 4) / 1000)  # between the FATAL message and the EOF
            while True:
                try:
                    result = await storage.ingest(_batch(GATEWAY, [payload]))
                except StorageError:
                    failures += 1  # what `collector serve` retries (the agent resends)
                    continue
                assert result.outcomes == (Outcome.STORED,)
                break
    finally:
        await admin.close()
        await storage.close()
    assert failures > 0, "no connection was ended under an ingest: nothing was tested"
    assert await sql_rows(postgres_url, "SELECT count(*) FROM blocks") == [(len(blocks),)]
