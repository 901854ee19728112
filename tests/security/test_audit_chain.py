"""The audit trail is a hash chain: a changed, deleted or added row is found.

On both backends: rejections (aggregated per source, reason and minute), admin actions and
command results are chained as they are sealed, and `verify_chain` (what `collector audit
verify` runs) checks every link and the separately kept head, so that deleting the newest
row is found like deleting any other. Several collectors appending to one database at once
keep one unbroken chain (PostgreSQL: AUDIT_LOCK; SQLite: the file's write lock).
"""

from __future__ import annotations

import asyncio
from collections import Counter
from collections.abc import AsyncIterator
from typing import cast

import asyncpg
import pytest

from collector.audit.chain import MAX_SOURCES_PER_MINUTE, Action, ActionEntry, AuditRow
from collector.audit.verify import verify_chain
from collector.model import AuditEntry, IngestBatch, Reason
from collector.storage import open_storage
from collector.storage.base import Storage
from collector.storage.capabilities import AuditTrail
from tests.support.collector_client import BASE_TIME, sim_gateway
from tests.support.collector_env import intact_audit_rows, register
from tests.support.postgres import sql_execute, sql_rows

T0 = BASE_TIME - BASE_TIME % 60  # the start of a minute


def _rejection(at: float, gateway: str = "gw-1", reason: Reason = Reason.MALFORMED) -> AuditEntry:
    return AuditEntry(at, gateway, f"gz/1/x/y/{gateway}/up/block", reason, "junk", "ab" * 32)


def _action(at: float, n: int, action: Action = Action.TOKEN_ADD) -> ActionEntry:
    return ActionEntry(at, action, "cli:tester", f"action {n}")


def _trail(storage: Storage) -> AuditTrail:
    assert isinstance(storage, AuditTrail)
    return storage


@pytest.fixture
async def trail(storage_url: str) -> AsyncIterator[AuditTrail]:
    """A storage holding six chained rows: 3 rejection rows (5 messages), 3 actions."""
    async with open_storage(storage_url) as storage:
        chain = _trail(storage)
        rejections = [_rejection(T0 + i) for i in range(3)]
        rejections += [_rejection(T0 + 5, "gw-2"), _rejection(T0 + 70)]
        await storage.ingest(IngestBatch(audits=rejections))
        await chain.record_actions([_action(T0 + 80, 1)])
        await chain.record_actions(
            [_action(T0 + 81, 2, Action.GATEWAY_ADD), _action(T0 + 82, 3, Action.COMMAND_APPLIED)]
        )
        await chain.seal_audit(T0 + 200)
        yield chain


async def _rows(trail: AuditTrail) -> tuple[AuditRow, ...]:
    return await intact_audit_rows(trail)


async def test_rejections_actions_and_command_results_make_one_intact_chain(
    trail: AuditTrail, storage_url: str
) -> None:
    rows = await _rows(trail)
    # Chained as sealed: minute T0's rejections once T0 + 70 came, the actions at once, the
    # rejection of minute T0 + 60 at the last seal.
    assert [(r.chain_seq, r.kind, r.reason, r.source, r.count) for r in rows] == [
        (1, "rejection", "malformed", "gw-1", 3),
        (2, "rejection", "malformed", "gw-2", 1),
        (3, "admin", "token_add", "cli:tester", 1),
        (4, "admin", "gateway_add", "cli:tester", 1),
        (5, "command", "command_applied", "cli:tester", 1),
        (6, "rejection", "malformed", "gw-1", 1),
    ]
    assert (rows[0].at, rows[0].last_at) == (T0, T0 + 2)
    report = await verify_chain(trail)
    assert (report.intact, report.rows, report.verified, report.head_seq) == (True, 6, 6, 6)
    # Rejections read back through the Storage protocol carry their counts.
    storage = cast("Storage", trail)  # the fixture's storage, seen as its AuditTrail
    assert sum(e.count for e in await storage.audit(reason=Reason.MALFORMED)) == 5
    assert await sql_rows(storage_url, "SELECT count(*) FROM audit WHERE chain_seq IS NULL") == [
        (0,)
    ]


async def _problems(trail: AuditTrail) -> list[tuple[int, str]]:
    report = await verify_chain(trail)
    assert not report.intact
    return [(p.seq, p.problem) for p in report.broken]


async def test_a_changed_count_is_found(trail: AuditTrail, storage_url: str) -> None:
    await sql_execute(storage_url, "UPDATE audit SET count = count + 1 WHERE chain_seq = 3")
    [(seq, problem)] = await _problems(trail)
    assert (seq, "changed" in problem) == (3, True)


async def test_a_changed_row_with_a_recomputed_hash_is_found_at_the_next_link(
    trail: AuditTrail, storage_url: str
) -> None:
    await sql_execute(
        storage_url,
        "UPDATE audit SET detail = 'nothing happened', hash = ? WHERE chain_seq = 2",
        "f" * 64,
    )
    problems = await _problems(trail)
    assert [seq for seq, _ in problems] == [2, 3]


@pytest.mark.parametrize(
    ("deleted", "found_at", "message"),
    [
        (4, 5, "rows 4..4 are missing"),
        (6, 6, "rows 6..6 are missing: the chain head says 6"),
        (1, 2, "rows 1..1 are missing"),
    ],
    ids=["in-the-middle", "newest", "oldest"],
)
async def test_a_deleted_row_is_found(
    trail: AuditTrail, storage_url: str, deleted: int, found_at: int, message: str
) -> None:
    await sql_execute(storage_url, "DELETE FROM audit WHERE chain_seq = ?", deleted)
    [(seq, problem)] = await _problems(trail)
    assert seq == found_at
    assert message in problem


@pytest.mark.parametrize("column", ["hash", "prev"])
async def test_a_removed_hash_or_prev_is_found(
    trail: AuditTrail, storage_url: str, column: str
) -> None:
    """Found by a hostile tester: a sealed row with its hash (or prev) set to NULL ended
    `audit verify` with a ValueError traceback ('only sealed rows are verified'), naming no row:
    the tampering the check is there to find took the check down."""
    await sql_execute(storage_url, f"UPDATE audit SET {column} = NULL WHERE chain_seq = 3")
    problems = await _problems(trail)
    assert problems[0] == (3, f"the row was changed: its {column} was removed")
    assert [seq for seq, _ in problems] == [3]


async def test_a_number_column_holding_text_is_found(trail: AuditTrail, storage_url: str) -> None:
    """SQLite keeps text in a REAL column: `at = 'yesterday'` ended `audit verify` (and `sites
    history`) with a ValueError traceback. PostgreSQL refuses the change itself."""
    if not storage_url.startswith("sqlite"):
        with pytest.raises(asyncpg.InvalidTextRepresentationError):
            await sql_execute(storage_url, "UPDATE audit SET at = 'yesterday' WHERE chain_seq = 2")
        return
    await sql_execute(storage_url, "UPDATE audit SET at = 'yesterday' WHERE chain_seq = 2")
    problems = await _problems(trail)
    assert problems == [(2, "the row was changed: at 'yesterday' is not a number")]


@pytest.mark.parametrize("storage_urls", ["sqlite"], indirect=True)  # bigint refuses or rounds
@pytest.mark.parametrize("seq", ["'third'", "2.5"])
async def test_a_chain_seq_that_is_no_whole_number_is_found(
    trail: AuditTrail, storage_url: str, seq: str
) -> None:
    """SQLite keeps text or a fraction in the INTEGER chain_seq: `chain_seq = 'third'` ended
    `audit verify` with a ValueError traceback ('invalid literal for int()') naming no row.
    The row is not in the chain at its place any more: seq 3 is reported missing."""
    await sql_execute(storage_url, f"UPDATE audit SET chain_seq = {seq} WHERE chain_seq = 3")
    problems = await _problems(trail)
    assert problems == [(4, "rows 3..3 are missing (deleted or never written)")]


async def test_deleting_the_head_record_is_found(trail: AuditTrail, storage_url: str) -> None:
    await sql_execute(storage_url, "DELETE FROM audit_chain")
    [(_, problem)] = await _problems(trail)
    assert "head is missing" in problem


async def test_a_row_added_past_the_head_is_found(trail: AuditTrail, storage_url: str) -> None:
    [row] = [r for r in await _rows(trail) if r.chain_seq == 6]
    await sql_execute(
        storage_url,
        "INSERT INTO audit (at, topic, reason, detail, payload_hash, kind, chain_seq, prev, hash)"
        " VALUES (?, '', 'token_add', 'forged', '', 'admin', 7, ?, ?)",
        T0 + 300,
        row.hash,
        "e" * 64,
    )
    problems = await _problems(trail)
    assert (7, "rows past the chain head 6 were added") in problems


async def test_open_rows_of_the_current_minute_are_counted_not_yet_chained(
    storage_url: str,
) -> None:
    async with open_storage(storage_url) as storage:
        await storage.ingest(IngestBatch(audits=[_rejection(T0 + 1), _rejection(T0 + 2)]))
        report = await verify_chain(_trail(storage))
        assert (report.intact, report.rows, report.open) == (True, 0, 1)
        assert await _trail(storage).seal_audit(T0 + 59) == 0  # the minute is not over
        assert await _trail(storage).seal_audit(T0 + 60) == 1
        report = await verify_chain(_trail(storage))
    assert (report.intact, report.rows, report.open) == (True, 1, 0)


async def test_collectors_appending_at_once_keep_one_chain(storage_url: str) -> None:
    """Two storages (two collectors) on one database append actions and rejections at once."""
    rounds = 25

    async def work(storage: Storage, who: int) -> None:
        chain = _trail(storage)
        for n in range(rounds):
            at = T0 + n * 30
            await chain.record_actions([_action(at, who * 1000 + n)])
            await storage.ingest(IngestBatch(audits=[_rejection(at, f"gw-{who}")]))

    async with open_storage(storage_url) as first, open_storage(storage_url) as second:
        await asyncio.gather(work(first, 1), work(second, 2))
        await _trail(first).seal_audit(T0 + 3600)
        report = await verify_chain(_trail(second))
    assert report.intact, report.broken
    actions = 2 * rounds
    assert report.rows == report.head_seq
    assert report.rows > actions  # the actions and every minute's rejection rows
    seqs = await sql_rows(storage_url, "SELECT chain_seq FROM audit ORDER BY chain_seq")
    assert [seq for (seq,) in seqs] == list(range(1, report.rows + 1))


async def test_a_registered_gateway_keeps_its_own_row_after_a_crowd_of_made_up_sources(
    storage_url: str,
) -> None:
    """Made-up gateway names fill the 32 rows of a minute; a registered one still gets its own."""
    real = sim_gateway(1)
    crowd = [_rejection(T0 + 1, f"made-up-{n}") for n in range(MAX_SOURCES_PER_MINUTE + 10)]
    async with open_storage(storage_url) as storage:
        await register(storage, real)
        await storage.ingest(IngestBatch(audits=[*crowd, _rejection(T0 + 2, real.gateway)]))
        await storage.ingest(IngestBatch(audits=[_rejection(T0 + 3, "made-up-late")]))
        rows = await storage.audit(limit=100)
    sources = Counter(row.gateway for row in rows)
    assert sources[real.gateway] == 1
    assert sources[None] == 1  # the overflow row: 10 + 1 made-up sources past the 32
    assert [r.count for r in rows if r.gateway is None] == [11]
    assert len(rows) == MAX_SOURCES_PER_MINUTE + 2
