"""Gap records that declare seqs lost close them: real Mosquitto, SQLite and PostgreSQL."""

from __future__ import annotations

from collector.model import Reason
from collector.readmodel import EVERYTHING, GapState
from collector.storage import open_storage, upgrade_storage
from collector.storage.lookups import GAP_KEY, STORED_GAPS
from collector.storage.postgres.ingest import keyed as postgres_keyed
from collector.storage.sqlite.ingest import keyed as sqlite_keyed
from specs.records import GapReason
from tests.support.broker import Broker
from tests.support.collector_client import gap_record
from tests.support.collector_env import CollectorEnv, collector_env
from tests.support.postgres import sql_execute, sql_rows


async def _holes(env: CollectorEnv) -> list[tuple[object, ...]]:
    return await env.rows(
        "SELECT epoch, from_seq, to_seq FROM gaps WHERE kind = 'sequence' ORDER BY 1, 2"
    )


async def test_a_declared_range_closes_its_hole_and_is_never_asked_for_again(
    env: CollectorEnv,
) -> None:
    for seq in (1, 2, 5):
        await env.link.send(seq)
    acks = [await env.ack() for _ in range(3)]
    assert acks[-1].missing == ((3, 4),)
    full = gap_record(6, 40, GapReason.OUTBOX_FULL, epoch="epoch-1", from_seq=3, to_seq=4)
    await env.link.send(6, records=[env.gateway.reading(6), full])
    after = await env.ack()
    assert (after.seq, after.acked_through, after.missing) == (6, 6, ())
    assert await _holes(env) == []
    await env.link.send(9)  # a new hole above: only 7..8 is asked for
    assert (await env.ack()).missing == ((7, 8),)
    assert await _holes(env) == [("epoch-1", 7, 8)]
    state = await env.storage.stream(env.gateway.gateway, "epoch-1")
    assert state is not None
    assert state.declared == ((3, 4),)


async def test_an_abandoned_epoch_closes_everything_from_its_seq_even_what_comes_later(
    env: CollectorEnv,
) -> None:
    for seq in (1, 2, 4):
        await env.link.send(seq)
    assert [(await env.ack()).missing for _ in range(3)][-1] == ((3, 3),)
    corrupt = gap_record(1, None, GapReason.OUTBOX_CORRUPT, epoch="epoch-1", from_seq=3)
    await env.link.send(1, epoch="epoch-2", records=[env.gateway.reading(1), corrupt])
    assert (await env.ack()).epoch == "epoch-2"
    old = await env.storage.stream(env.gateway.gateway, "epoch-1")
    assert old is not None
    assert (old.acked_through, old.max_seq, old.missing, old.declared) == (4, 4, (), ((3, None),))
    # A block of the old epoch still in flight arrives late: it is stored, and opens no hole.
    await env.link.send(7)
    late = await env.ack()
    assert (late.epoch, late.seq, late.acked_through, late.missing) == ("epoch-1", 7, 7, ())
    assert await _holes(env) == []
    page = await env.storage.gateway_views(EVERYTHING, after=None, limit=10)
    assert (page.items[0].epoch, page.items[0].gaps) == ("epoch-2", 0)


async def test_a_declaration_about_an_epoch_never_seen_does_not_become_the_current_one(
    env: CollectorEnv,
) -> None:
    restored = gap_record(1, None, GapReason.OUTBOX_RESTORED, epoch="epoch-0", from_seq=3)
    await env.link.send(1, epoch="epoch-1", records=[env.gateway.reading(1), restored])
    await env.ack()
    unseen = await env.storage.stream(env.gateway.gateway, "epoch-0")
    assert unseen is not None
    # Seqs 1..2 of it were sealed and nobody holds or declared them: open, honestly.
    assert (unseen.acked_through, unseen.max_seq, unseen.missing) == (0, 2, ((1, 2),))
    states = await env.rows("SELECT epoch, first_seen, last_seen FROM ingest_state ORDER BY 1")
    assert states[0] == ("epoch-0", 0.0, 0.0)
    (view,) = (await env.storage.gateway_views(EVERYTHING, after=None, limit=10)).items
    assert (view.epoch, view.acked_through, view.gaps) == ("epoch-1", 1, 1)
    assert view.block_seen is not None
    assert view.block_seen > 0
    profile = await env.storage.gateway_profile(env.gateway.gateway)
    assert profile is not None
    assert profile.domain == "WHP"


async def test_acked_through_may_rest_on_a_declared_seq(env: CollectorEnv) -> None:
    await env.link.send(1)
    await env.ack()
    full = gap_record(2, 8, GapReason.OUTBOX_FULL, epoch="epoch-1", from_seq=4, to_seq=6)
    await env.link.send(3, records=[full])  # declares 4..6 before 2 arrives
    assert (await env.ack()).missing == ((2, 2),)
    await env.link.send(2)
    ack = await env.ack()
    assert (ack.acked_through, ack.missing) == (6, ())
    profile = await env.storage.gateway_profile(env.gateway.gateway)
    assert profile is not None  # the newest stored block, although max_seq 6 has none


async def test_holes_left_as_they_were_keep_their_place_in_the_gap_pages(
    env: CollectorEnv,
) -> None:
    """A batch that fills or shrinks one hole leaves the stream's other holes' rows alone, so
    a client paging `GET /v1/gaps` while holes change sees each unchanged hole once."""
    for seq in (1, 3, 5, 7):
        await env.link.send(seq)
    assert [(await env.ack()).missing for _ in range(4)][-1] == ((2, 2), (4, 4), (6, 6))
    gateway, state = env.gateway.gateway, GapState.OPEN
    first = await env.storage.gaps(EVERYTHING, gateway=gateway, state=state, after=None, limit=1)
    assert [(g.from_seq, g.to_seq) for g in first.items] == [(2, 2)]
    before = await env.rows("SELECT id, from_seq FROM gaps WHERE kind = 'sequence' ORDER BY 2")
    # Block 6 fills the last hole; the readings it says a full disk cost are a gap row too.
    lost = gap_record(6, 3, GapReason.DISK_FULL)
    await env.link.send(6, records=[env.gateway.reading(6), lost])
    assert (await env.ack()).missing == ((2, 2), (4, 4))
    after = (first.items[0].gateway, first.items[0].rowid)
    rest = await env.storage.gaps(EVERYTHING, gateway=gateway, state=state, after=after, limit=10)
    assert [(g.from_seq, g.to_seq) for g in rest.items] == [(4, 4)]
    assert (
        await env.rows("SELECT id, from_seq FROM gaps WHERE kind = 'sequence' ORDER BY 2")
        == before[:2]
    )


async def test_a_block_too_large_for_the_broker_closes_as_declared_with_nothing_lost(
    env: CollectorEnv,
) -> None:
    """The agent seals a block larger than the broker's packets again in smaller blocks and
    declares its seq `too_large`, `lost` 0 (edge_agent.shell.outbox_oversize): the hole closes
    and `GET /v1/gaps` lists it closed with that reason."""
    for seq in (1, 3):
        await env.link.send(seq)
    assert [(await env.ack()).missing for _ in range(2)][-1] == ((2, 2),)
    declared = gap_record(
        4, 0, GapReason.TOO_LARGE, epoch="epoch-1", from_seq=2, to_seq=2, point=None
    )
    await env.link.send(4, records=[declared])
    after = await env.ack()
    assert (after.acked_through, after.missing) == (4, ())
    gateway, state = env.gateway.gateway, GapState.CLOSED
    closed = await env.storage.gaps(EVERYTHING, gateway=gateway, state=state, after=None, limit=9)
    assert [(g.reason, g.lost, g.epoch, g.from_seq, g.to_seq) for g in closed.items] == [
        ("too_large", 0, "epoch-1", 2, 2)
    ]


async def test_a_rolled_back_epoch_closes_its_sealed_again_seqs_with_nothing_lost(
    env: CollectorEnv,
) -> None:
    """An outbox found rolled back (copy at seq 8, 1..3 delivered, 9 and 10 lost by it) seals
    4..8 again under a new epoch and declares them `outbox_restored` with `lost` 0, 9 on with
    `lost` null (edge_agent.shell.outbox_recovery): both close, and `GET /v1/gaps` lists each
    as sent, only the seqs past the copy as an unknown loss."""
    for seq in (1, 2, 3, 9, 10):
        await env.link.send(seq)
    assert [(await env.ack()).missing for _ in range(5)][-1] == ((4, 8),)
    resealed = gap_record(
        1, 0, GapReason.OUTBOX_RESTORED, epoch="epoch-1", from_seq=4, to_seq=8, point=None
    )
    lost = gap_record(1, None, GapReason.OUTBOX_RESTORED, epoch="epoch-1", from_seq=9, point=None)
    await env.link.send(1, epoch="epoch-2", records=[resealed, lost])
    assert (await env.ack()).epoch == "epoch-2"
    assert await _holes(env) == []
    gateway, state = env.gateway.gateway, GapState.CLOSED
    closed = await env.storage.gaps(EVERYTHING, gateway=gateway, state=state, after=None, limit=9)
    assert [(g.reason, g.lost, g.epoch, g.from_seq, g.to_seq) for g in closed.items] == [
        ("outbox_restored", 0, "epoch-1", 4, 8),
        ("outbox_restored", None, "epoch-1", 9, None),
    ]


async def test_a_gap_record_sealed_again_in_another_block_is_stored_once(
    env: CollectorEnv,
) -> None:
    """The agent seals a block's records again (a new epoch after sequence state was lost, a
    block split for the broker): a gap record the collector stored from the first block comes
    again in another. It is a duplicate, listed and journaled once; a record that differs in
    any field (here `lost`, then `reason`) over the same seqs is another loss and is kept."""
    full = gap_record(3, 40, GapReason.OUTBOX_FULL, epoch="epoch-1", from_seq=2, to_seq=2)
    await env.link.send(1)
    await env.link.send(3, records=[env.gateway.reading(3), full])
    await env.link.send(5, records=[env.gateway.reading(5), full])  # twice in one epoch
    more = gap_record(3, 41, GapReason.OUTBOX_FULL, epoch="epoch-1", from_seq=2, to_seq=2)
    other = gap_record(3, 40, GapReason.DISK_FULL, epoch="epoch-1", from_seq=2, to_seq=2)
    await env.link.send(1, epoch="epoch-2", records=[full, more, other, full])  # resealed
    acks = [await env.ack() for _ in range(4)]
    assert [(a.epoch, a.seq) for a in acks] == [
        ("epoch-1", 1),
        ("epoch-1", 3),
        ("epoch-1", 5),
        ("epoch-2", 1),
    ]
    gateway, state = env.gateway.gateway, GapState.CLOSED
    closed = await env.storage.gaps(EVERYTHING, gateway=gateway, state=state, after=None, limit=9)
    assert [(g.reason, g.lost, g.from_seq, g.to_seq) for g in closed.items] == [
        ("outbox_full", 40, 2, 2),
        ("outbox_full", 41, 2, 2),
        ("disk_full", 40, 2, 2),
    ]
    assert await env.rows("SELECT sum(lost) FROM gaps WHERE kind = 'record'") == [(121,)]
    journal = await env.rows("SELECT payload FROM feed WHERE kind = 'gap' ORDER BY id")
    assert len([p for p in journal if '"closed"' in str(p[0])]) == 3
    duplicates = await env.rows(
        "SELECT sum(count) FROM audit WHERE reason = 'duplicate' AND detail LIKE '%gap record%'"
    )
    assert duplicates == [(2,)]  # a row per block: block 5 and epoch-2's block 1


_AS_STORED_BEFORE = (
    "INSERT INTO gaps (gateway, epoch, kind, seq, idx, from_seq, to_seq, t, reason, lost, point,"
    " detected_at, declared_epoch, t_from, t_to)"
    " SELECT g.gateway, b.epoch, 'record', b.seq, g.idx, g.from_seq, g.to_seq, g.t, g.reason,"
    " g.lost, g.point, b.received_at, g.declared_epoch, g.t_from, g.t_to"
    " FROM gaps g JOIN blocks b ON b.gateway = g.gateway AND b.epoch = ? AND b.seq = ?"
    " WHERE g.kind = 'record' AND g.epoch = 'epoch-1' AND g.seq = 3 ORDER BY g.idx"
)
"""The rows a collector before 55ccbb1 stored for the gap records of block 3 that another
block (epoch, seq) carried again: one more row each, with that block's place and arrival."""


async def test_gap_records_stored_twice_before_the_upgrade_are_kept_once(
    broker: Broker, storage_url: str
) -> None:
    """Found when 55ccbb1 was reviewed: ingest stores a gap record sealed again once, but
    the repeats a collector of an earlier version stored stayed, listed by `GET /v1/gaps` and
    counted two or three times. The upgrade (SQLite schema 14, PostgreSQL migration 9) keeps
    the first one stored of each identity (NULL fields equal, as at ingest) and audits how
    many went; a record that differs in one field (`lost`) is another loss and stays."""
    full = gap_record(3, 40, GapReason.OUTBOX_FULL, epoch="epoch-1", from_seq=2, to_seq=2)
    more = gap_record(3, 41, GapReason.OUTBOX_FULL, epoch="epoch-1", from_seq=2, to_seq=2)
    bare = gap_record(3, None, GapReason.DISK_FULL, point=None)  # no seqs, lost nor point
    records = [full, more, bare]
    async with collector_env(broker.port, storage_url) as env:
        await env.link.send(1)
        await env.link.send(3, records=[env.gateway.reading(3), *records])
        await env.link.send(5, records=records)  # sealed again: a block split for the broker
        await env.link.send(1, epoch="epoch-2", records=records)  # and in a new epoch
        for _ in range(4):
            await env.ack()
    gateway = env.gateway.gateway
    sqlite = storage_url.startswith("sqlite")
    # The database as a collector of the version before stored it: schema 13, migration 8.
    older = "DELETE FROM schema_migrations WHERE version >= 9"
    if not sqlite:  # migrations 10 and 12's columns (SQLite's upgrades add them where missing)
        await sql_execute(
            storage_url, "ALTER TABLE alarms DROP COLUMN raise_ahead, DROP COLUMN clear_ahead"
        )
        await sql_execute(storage_url, "ALTER TABLE feed DROP COLUMN active")
    await sql_execute(storage_url, "DROP INDEX gaps_by_record_time")  # migration 11
    await sql_execute(storage_url, "PRAGMA user_version = 13" if sqlite else older)
    for epoch, seq in (("epoch-1", 5), ("epoch-2", 1)):
        assert await sql_execute(storage_url, _AS_STORED_BEFORE, epoch, seq) == 3
    records_sql = "SELECT count(*), sum(lost) FROM gaps WHERE kind = 'record'"
    assert await sql_rows(storage_url, records_sql) == [(9, 243)]

    before, _ = await upgrade_storage(storage_url)
    assert before == (13 if sqlite else 8)
    assert await sql_rows(storage_url, records_sql) == [(3, 81)]
    async with open_storage(storage_url) as storage:
        state = GapState.CLOSED
        closed = await storage.gaps(EVERYTHING, gateway=gateway, state=state, after=None, limit=9)
        audits = await storage.audit(reason=Reason.DUPLICATE)
    assert [(g.reason, g.lost, g.epoch, g.from_seq) for g in closed.items] == [
        ("outbox_full", 40, "epoch-1", 2),
        ("outbox_full", 41, "epoch-1", 2),
        ("disk_full", None, None, None),
    ]
    kept = "SELECT DISTINCT epoch, seq FROM gaps WHERE kind = 'record'"
    assert await sql_rows(storage_url, kept) == [("epoch-1", 3)]  # the first stored
    (upgrade,) = [a for a in audits if a.detail.startswith("schema upgrade")]
    assert upgrade.gateway == gateway
    assert f"6 gap record(s) of gateway {gateway}" in upgrade.detail


_MANY_RECORDS = (
    "WITH RECURSIVE n (i) AS (SELECT 0 UNION ALL SELECT i + 1 FROM n WHERE i < 4999)"
    " INSERT INTO gaps (gateway, epoch, kind, seq, idx, t, reason, lost, detected_at)"
    " SELECT ?, 'epoch-1', 'record', i, 0, 1.7e9 + i, 'outbox_full', 1, 0 FROM n"
)
"""5,000 gap records of one gateway, a second apart, as one stored per block."""


async def test_a_batchs_gap_records_are_looked_up_by_gateway_and_time(storage_url: str) -> None:
    """Found in a review: ingest looks each gap record of a batch up by (gateway, t) to store
    one sealed again once (collector.storage.gap_records), and no index had t, so each key
    read every gap record of its gateway: SQLite searched gaps_by_stream (gateway, kind), 50
    keys among 100,000 records took 722 ms; PostgreSQL scanned the whole table (24 ms). The
    plan of the lookup as ingest runs it seeks gaps_by_record_time on both backends, with
    SQLite's file never analysed (the collector does not run ANALYZE) and PostgreSQL's
    statistics as autovacuum leaves them."""
    async with open_storage(storage_url):
        pass
    for gateway in ("GW-A", "GW-B"):
        await sql_execute(storage_url, _MANY_RECORDS, gateway)
    keys = [("GW-A", 1.7e9 + 10.5), ("GW-A", 1.7e9 + 20.0)]
    if storage_url.startswith("sqlite"):
        statement = sqlite_keyed(GAP_KEY, len(keys), STORED_GAPS)
        plan = await sql_rows(
            storage_url, f"EXPLAIN QUERY PLAN {statement}", *(p for key in keys for p in key)
        )
        details = [str(row[3]) for row in plan]
    else:
        await sql_execute(storage_url, "ANALYZE gaps")
        statement = postgres_keyed(GAP_KEY, STORED_GAPS)
        plan = await sql_rows(
            storage_url, f"EXPLAIN {statement}", [k[0] for k in keys], [k[1] for k in keys]
        )
        details = [str(row[0]) for row in plan]
    assert any("gaps_by_record_time" in line for line in details), details
