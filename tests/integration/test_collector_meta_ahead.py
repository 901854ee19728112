"""Metas stamped ahead of the collector's clock, on SQLite and PostgreSQL.

Found by a hostile tester: a signed meta whose `issued_at` was years ahead (a gateway clock once
wrong) was stored with no audit row, and since the newest `issued_at` wins, every correct meta
after it lost: GET /v1/points kept its names and thresholds, GET /v1/quality its poll, for good.
Now it is handled like a reading ahead: kept as sent (the `metas` row), audited
`ahead_of_collector`, and it displaces no description; a description stored ahead of the clock
at a meta's arrival (the only one a point had, or one a collector before this took) yields to it.
Through the ingest path (`plan_batch`, `Storage.ingest`) and the API in-process.
"""

from __future__ import annotations

import dataclasses
from collections.abc import AsyncIterator
from typing import Final

import pytest
from structlog.testing import capture_logs

from collector.ingest.batch_log import BatchLog
from collector.ingest.core import Inbound, plan_batch
from collector.model import IngestBatch, Reason
from collector.storage import open_storage
from collector.storage.base import Storage
from specs.catalogue import default_catalogue
from specs.meta import PointMeta
from tests.support.collector_api import NANCHANG, NOW, auth, serve
from tests.support.collector_client import key_grants
from tests.support.collector_env import register
from tests.support.postgres import sql_rows

GW: Final = NANCHANG
POINT: Final = "T001-LT-01"
AHEAD: Final = NOW + 10 * 365 * 86400.0  # a gateway clock ten years ahead
ALLOWANCE: Final = 900.0  # ingest.ahead_allowance's default


@pytest.fixture
async def storage(storage_url: str) -> AsyncIterator[Storage]:
    """The collector's storage, the gateway registered."""
    async with open_storage(storage_url) as opened:
        await register(opened, GW)
        yield opened


def _meta(name: str, high: float, poll: float, issued_at: float, *, at: float = NOW) -> IngestBatch:
    """One batch: the gateway's signed meta describing POINT, arriving at `at`."""
    point = PointMeta(POINT, "WHP-LT", "m", name, "dev-1", {"high": high}, poll=poll)
    payload = GW.meta([point], issued_at=issued_at)
    message = Inbound(GW.topics.meta, payload, tuple(GW.sign(payload)), at)
    batch = plan_batch([message], key_grants(GW), default_catalogue())
    assert not batch.audits, batch.audits
    return batch


# What the meta signed by a gateway clock ten years ahead describes: name, thresholds, poll.
DESCRIBED_AHEAD: Final = ("OLD name (clock ahead)", {"high": 9.0}, 60.0)


def _ahead_meta() -> IngestBatch:
    """The meta signed ten years ahead (DESCRIBED_AHEAD), arriving now."""
    name, thresholds, poll = DESCRIBED_AHEAD
    return _meta(name, thresholds["high"], poll, AHEAD)


async def _described(storage: Storage, url: str) -> tuple[str, dict[str, float], float]:
    """POINT's name and thresholds as GET /v1/points serves them, and its stored poll."""
    async with serve(storage) as http:
        (item,) = (await http.get("/v1/points", headers=auth())).json()["items"]
    ((poll,),) = await sql_rows(url, "SELECT poll FROM point_meta WHERE point = ?", POINT)
    return item["name"], item["thresholds"], poll


async def test_a_meta_ahead_is_audited_and_a_correct_one_replaces_it(
    storage: Storage, storage_url: str
) -> None:
    ahead = _ahead_meta()
    with capture_logs() as logs:
        BatchLog().committed(ahead, await storage.ingest(ahead))
    (line,) = [entry for entry in logs if entry["event"] == "meta_ahead_of_collector"]
    assert (line["log_level"], line["ahead_seconds"]) == ("warning", AHEAD - NOW)
    (row,) = await storage.audit(reason=Reason.AHEAD_OF_COLLECTOR)
    assert row.gateway == GW.gateway
    assert row.topic == GW.topics.meta
    assert "issued_at 2036-" in row.detail
    # The point's description, ranked as issued at its arrival + the allowance: a meta
    # issued before then loses to it, and the first issued after it replaces it.
    await storage.ingest(_meta("NEW name", 5.0, 1.0, NOW))
    assert await _described(storage, storage_url) == DESCRIBED_AHEAD
    then = NOW + ALLOWANCE + 1
    await storage.ingest(_meta("NEW name", 5.0, 1.0, then, at=then))
    assert await _described(storage, storage_url) == ("NEW name", {"high": 5.0}, 1.0)
    # Both signed messages stay stored as sent.
    assert await sql_rows(storage_url, "SELECT count(*) FROM metas") == [(3,)]


async def test_a_meta_ahead_ranks_as_issued_at_its_arrival_plus_the_allowance(
    storage: Storage, storage_url: str
) -> None:
    """Applied at once (a gateway booting with its clock fast and a changed site map sends its
    meta once, on connect), but ordered as if issued at arrival + allowance: a meta issued
    after that wins, one issued before it does not."""
    await storage.ingest(_meta("NEW name", 5.0, 1.0, NOW))
    await storage.ingest(_ahead_meta())
    assert await _described(storage, storage_url) == DESCRIBED_AHEAD
    assert len(await storage.audit(reason=Reason.AHEAD_OF_COLLECTOR)) == 1
    # Issued before the ahead meta's arrival + allowance: older than it, it loses.
    await storage.ingest(_meta("earlier", 8.0, 9.0, NOW + ALLOWANCE - 1, at=NOW + 60))
    assert (await _described(storage, storage_url))[0] == DESCRIBED_AHEAD[0]
    # Issued at it (within the allowance of its own arrival): a current meta, and it wins.
    await storage.ingest(_meta("near", 7.0, 2.0, NOW + ALLOWANCE, at=NOW + 120))
    assert await _described(storage, storage_url) == ("near", {"high": 7.0}, 2.0)
    assert len(await storage.audit(reason=Reason.AHEAD_OF_COLLECTOR)) == 1


async def test_a_clock_fast_at_agent_start_still_describes_the_points_at_once(
    storage: Storage, storage_url: str
) -> None:
    """Review 6: a gateway clock 1 h fast at start (the agent sends its meta once, on connect,
    and may not reconnect for weeks) and a changed site map. Before: the old description stayed
    ('old', high 5.0) until the next reconnect; after: the new one, at once."""
    await storage.ingest(_meta("old", 5.0, 1.0, NOW - 86400))
    await storage.ingest(_meta("new", 7.0, 2.0, NOW + 3600, at=NOW))
    assert await _described(storage, storage_url) == ("new", {"high": 7.0}, 2.0)
    assert len(await storage.audit(reason=Reason.AHEAD_OF_COLLECTOR)) == 1


async def test_a_resent_meta_ahead_is_audited_once(storage: Storage, storage_url: str) -> None:
    """Review 6: the agent resends the same signed meta on every connect. Before: one
    ahead_of_collector row per resend (5); after: one per meta (its `metas` row is one too)."""
    for k in range(5):
        await storage.ingest(_meta("ahead", 9.0, 60.0, NOW + 86400, at=NOW + 120 * k))
    assert len(await storage.audit(reason=Reason.AHEAD_OF_COLLECTOR)) == 1
    assert await sql_rows(storage_url, "SELECT count(*) FROM metas") == [(1,)]


async def test_a_correct_meta_issued_after_the_ahead_one_ranks_wins(
    storage: Storage, storage_url: str
) -> None:
    """Review 6: a first description from a meta 1 h ahead; the agent restarts with a fixed
    clock 50 min later and resends its meta on two reconnects. Before: 'ahead' stayed, for good
    once the clock passed its issued_at; after: 'correct', resends or not."""
    await storage.ingest(_meta("ahead", 9.0, 60.0, NOW + 3600, at=NOW))
    for k in range(3):
        await storage.ingest(_meta("correct", 5.0, 1.0, NOW + 3000, at=NOW + 3000 + 600 * k))
        assert (await _described(storage, storage_url))[0] == "correct"
    # A resend of the ahead meta, now within the allowance, still ranks as at first arrival.
    await storage.ingest(_meta("ahead", 9.0, 60.0, NOW + 3600, at=NOW + 3590))
    assert (await _described(storage, storage_url))[0] == "correct"


async def test_a_description_stored_ahead_before_the_fix_yields(
    storage: Storage, storage_url: str
) -> None:
    """A database that took one: a collector whose allowance let a 2036 meta in (as every one
    before 02ac439 did) described the point by it; it ranks as issued at its arrival + the
    allowance, so a correct meta issued after that replaces it."""
    await storage.ingest(_meta("NEW name", 5.0, 1.0, NOW))
    took = dataclasses.replace(_ahead_meta(), ahead_allowance=AHEAD)
    await storage.ingest(took)
    assert await _described(storage, storage_url) == DESCRIBED_AHEAD
    later = NOW + ALLOWANCE + 60
    await storage.ingest(_meta("fixed", 6.0, 5.0, later, at=later))
    assert await _described(storage, storage_url) == ("fixed", {"high": 6.0}, 5.0)
    # Once the collector's clock reaches a time, a description of then is no longer ahead.
    await storage.ingest(_meta("later", 4.0, 3.0, AHEAD, at=AHEAD))
    await storage.ingest(_meta("earlier", 3.0, 3.0, AHEAD - 10, at=AHEAD + 1))
    assert (await _described(storage, storage_url))[0] == "later"
    # The API shows each meta's issued_at as sent (the ordering time is not stored).
    assert await sql_rows(
        storage_url, "SELECT issued_at FROM point_meta WHERE point = ?", POINT
    ) == [(AHEAD,)]
