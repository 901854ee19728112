"""Garbage of both signs (readings of +-1.7e308) answers alike on SQLite and PostgreSQL.

A minute whose stored total is +inf (two readings of 1.7e308 in one batch) folded with a
later batch's -inf (two of -1.7e308) sums to NaN: PostgreSQL kept the NaN, SQLite stores
NaN as NULL, a total it then took for "no value yet". So the same blocks answered
differently per backend: after a third batch of that minute, SQLite's `every=1m` average was
the third batch's value over all five readings and PostgreSQL's null; a whole-minute hour
summed around SQLite's NULL too. Aggregating the raw readings, SQLite's avg() overflowed
to infinity (null) where PostgreSQL's scaled sum gave a number. The same ingest runs
against both backends here and the API must answer the same, byte for byte.
"""

from __future__ import annotations

import csv
import io
from pathlib import Path
from typing import Any

import httpx

from collector.storage import open_storage
from specs.records import iso_time
from tests.support.collector_api import (
    NANCHANG,
    auth,
    get_all,
    level,
    serve,
    store_blocks,
)
from tests.support.collector_client import BASE_TIME
from tests.support.collector_env import register

HUGE = 1.7e308  # an instrument's garbage, stored out_of_range
SMALL = 2.0**1000  # exact beside sums of HUGE (a multiple of their last place), so any
# order of summing gives one answer
MINUTE = BASE_TIME - BASE_TIME % 3600 + 600  # a whole minute, ten minutes into an hour
# One block per batch, in this order: seq -> readings.
BATCHES = {
    1: [level(MINUTE + 1, HUGE), level(MINUTE + 2, HUGE)],  # the minute's total: +inf
    2: [level(MINUTE + 3, -HUGE), level(MINUTE + 4, -HUGE)],  # folded with -inf: NaN
    3: [level(MINUTE + 5, SMALL)],  # a later, finite value of that minute
    4: [level(MINUTE + 61, HUGE), level(MINUTE + 62, HUGE)],  # next minute: +inf
    5: [level(MINUTE + 121, -HUGE), level(MINUTE + 122, -HUGE)],  # and the one after: -inf
}
HOUR = MINUTE - 600
QUERIES: list[dict[str, Any]] = [
    {},
    *(
        {"every": every, "from": iso_time(start), "to": iso_time(HOUR + 7200)}
        for every in ("1m", "1h")
        # Whole minutes: from the rollups; half a second off: from the raw readings.
        for start in (HOUR, HOUR - 0.5)
    ),
]


async def _answers(url: str) -> dict[str, Any]:
    """What the API shows of BATCHES stored at `url`: JSON and CSV of every query, latest."""
    async with open_storage(url) as storage:
        await register(storage, NANCHANG)
        for seq, readings in BATCHES.items():
            await store_blocks(storage, NANCHANG, {seq: readings})
        shown: dict[str, Any] = {}
        async with serve(storage) as http:
            shown["latest"] = (await get_all(http, "/v1/latest"))[0]
            for number, params in enumerate(QUERIES):
                shown[f"json {number}"] = (await get_all(http, "/v1/readings", **params))[0]
                shown[f"csv {number}"] = await _csv(http, params)
        return shown


async def _csv(http: httpx.AsyncClient, params: dict[str, Any]) -> list[list[str]]:
    headers = {**auth(), "Accept": "text/csv"}
    response = await http.get("/v1/readings", params=params, headers=headers)
    assert response.status_code == 200, response.text
    return list(csv.reader(io.StringIO(response.text, newline="")))


async def test_garbage_of_both_signs_answers_alike_on_both_backends(
    tmp_path: Path, postgres_url: str
) -> None:
    on_sqlite = await _answers(f"sqlite:///{tmp_path / 'collector.db'}")
    on_postgres = await _answers(postgres_url)
    differ = {name: (answer, on_postgres[name]) for name, answer in on_sqlite.items()}
    assert {name: both for name, both in differ.items() if both[0] != both[1]} == {}
    # What both show, as docs/contract.md says: a bucket whose sums went past the largest
    # double both ways (+inf and -inf) has no average, whatever else it holds.
    minutes_rolled = on_sqlite["json 1"]
    assert [(b["count"], b["avg"]) for b in minutes_rolled] == [(5, None), (2, None), (2, None)]
    [hour_rolled] = on_sqlite["json 3"]
    assert (hour_rolled["count"], hour_rolled["avg"]) == (9, None)
    # From the raw readings, each bucket is one sum of its values: finite in the first
    # minute and the hour, past the largest double in the two minutes of one sign.
    minutes_raw = on_sqlite["json 2"]
    assert [(b["count"], b["avg"]) for b in minutes_raw] == [(5, SMALL / 5), (2, None), (2, None)]
    [hour_raw] = on_sqlite["json 4"]
    assert (hour_raw["count"], hour_raw["avg"]) == (9, SMALL / 9)
