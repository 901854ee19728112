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
from typing import Final

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


def _meta(name: str, high: float, poll: float, issued_at: float, *, at: float = NOW) -> IngestBatch:
    """One batch: the gateway's signed meta describing POINT, arriving at `at`."""
    point = PointMeta(POINT, "WHP-LT", "m", name, "dev-1", {"high": high}, poll=poll)
    payload = GW.meta([point], issued_at=issued_at)
    message = Inbound(GW.topics.meta, payload, tuple(GW.sign(payload)), at)
    batch = plan_batch([message], key_grants(GW), default_catalogue())
    assert not batch.audits, batch.audits
    return batch


async def _described(storage: Storage, url: str) -> tuple[str, dict[str, float], float]:
    """POINT's name and thresholds as GET /v1/points serves them, and its stored poll."""
    async with serve(storage) as http:
        (item,) = (await http.get("/v1/points", headers=auth())).json()["items"]
    ((poll,),) = await sql_rows(url, "SELECT poll FROM point_meta WHERE point = ?", POINT)
    return item["name"], item["thresholds"], poll


async def test_a_meta_ahead_is_audited_and_a_correct_one_replaces_it(storage_url: str) -> None:
    async with open_storage(storage_url) as storage:
        await register(storage, GW)
        ahead = _meta("OLD name (clock ahead)", 9.0, 60.0, AHEAD)
        with capture_logs() as logs:
            BatchLog().committed(ahead, await storage.ingest(ahead))
        (line,) = [entry for entry in logs if entry["event"] == "meta_ahead_of_collector"]
        assert (line["log_level"], line["ahead_seconds"]) == ("warning", AHEAD - NOW)
        (row,) = await storage.audit(reason=Reason.AHEAD_OF_COLLECTOR)
        assert row.gateway == GW.gateway
        assert row.topic == GW.topics.meta
        assert "issued_at 2036-" in row.detail
        # The only description the point has, kept until a meta arrives.
        assert await _described(storage, storage_url) == (
            "OLD name (clock ahead)",
            {"high": 9.0},
            60.0,
        )
        await storage.ingest(_meta("NEW name", 5.0, 1.0, NOW))
        assert await _described(storage, storage_url) == ("NEW name", {"high": 5.0}, 1.0)
        # Both signed messages stay stored as sent.
        assert await sql_rows(storage_url, "SELECT count(*) FROM metas") == [(2,)]


async def test_a_meta_ahead_displaces_no_current_description(storage_url: str) -> None:
    async with open_storage(storage_url) as storage:
        await register(storage, GW)
        await storage.ingest(_meta("NEW name", 5.0, 1.0, NOW))
        await storage.ingest(_meta("OLD name (clock ahead)", 9.0, 60.0, AHEAD))
        assert await _described(storage, storage_url) == ("NEW name", {"high": 5.0}, 1.0)
        assert len(await storage.audit(reason=Reason.AHEAD_OF_COLLECTOR)) == 1
        # Within the allowance it is a current meta like any other, and newer: it wins.
        await storage.ingest(_meta("near", 7.0, 2.0, NOW + ALLOWANCE))
        assert await _described(storage, storage_url) == ("near", {"high": 7.0}, 2.0)
        assert len(await storage.audit(reason=Reason.AHEAD_OF_COLLECTOR)) == 1


async def test_a_description_stored_ahead_before_the_fix_yields(storage_url: str) -> None:
    """A database that took one: a collector whose allowance let a 2036 meta in (as every one
    before the fix did) described the point by it; a correct meta later replaces it."""
    async with open_storage(storage_url) as storage:
        await register(storage, GW)
        await storage.ingest(_meta("NEW name", 5.0, 1.0, NOW))
        took = dataclasses.replace(
            _meta("OLD name (clock ahead)", 9.0, 60.0, AHEAD), ahead_allowance=AHEAD
        )
        await storage.ingest(took)
        assert await _described(storage, storage_url) == (
            "OLD name (clock ahead)",
            {"high": 9.0},
            60.0,
        )
        await storage.ingest(_meta("fixed", 6.0, 5.0, NOW - 50, at=NOW + 60))
        assert await _described(storage, storage_url) == ("fixed", {"high": 6.0}, 5.0)
        # Once the collector's clock reaches a time, a description of then is no longer ahead.
        await storage.ingest(_meta("later", 4.0, 3.0, AHEAD, at=AHEAD))
        await storage.ingest(_meta("earlier", 3.0, 3.0, AHEAD - 10, at=AHEAD + 1))
        assert (await _described(storage, storage_url))[0] == "later"
