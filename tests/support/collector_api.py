"""The collector's HTTP API over real storage, for the API tests: fill, serve, ask.

Readings go in through the ingest path (`plan_batch` on signed blocks, then
`Storage.ingest`), exactly as blocks from a gateway would; the app is served in-process
through httpx's ASGI transport.
"""

from __future__ import annotations

import base64
import contextlib
import dataclasses
from collections.abc import AsyncIterator, Mapping, Sequence
from datetime import UTC, timezone
from typing import Any, Final

import httpx

from collector.api.app import create_app
from collector.api.core import ApiToken
from collector.ingest.core import Inbound, plan_batch
from collector.storage.base import Storage
from specs.block import GENESIS, block_hash
from specs.catalogue import Catalogue, default_catalogue
from specs.records import Quality, Reading, Record, iso_time
from tests.support.collector_client import BASE_TIME, SimGateway, key_grants, sim_gateway

NANCHANG: Final = sim_gateway(1, district="360100")
BEIJING: Final = sim_gateway(2, district="110101")
TOKENS: Final = (
    ApiToken("province", "all-token", ("*",)),
    ApiToken("nanchang", "nc-token", ("360100",)),
    ApiToken("shenzhen", "sz-token", ("440300",)),
)
# The same tokens as collector.yaml rows (`write_collector_config(tokens=...)`).
TOKEN_ROWS: Final = tuple((t.name, t.token, t.districts) for t in TOKENS)
NOW: Final = BASE_TIME + 1000
PROBLEM_KEYS: Final = {"type", "title", "status", "detail"}
# float32(2.4833622) widened to float64, as a Modbus register gives it: the API shows 2.4833622.
FLOAT32: Final = 2.4833621978759766


def level(t: float, value: float | None, quality: Quality = Quality.GOOD) -> Reading:
    """A tank-level reading of point T001-LT-01 at unix time `t`."""
    return Reading("T001-LT-01", "WHP-LT", iso_time(t), value, "m", quality)


def pressure(t: float, value: float | None, quality: Quality = Quality.GOOD) -> Reading:
    """A pressure reading of point T001-PT-01 at unix time `t`."""
    return Reading("T001-PT-01", "WHP-PT", iso_time(t), value, "MPa", quality)


async def store_blocks(
    storage: Storage,
    gateway: SimGateway,
    blocks: Sequence[Sequence[Record]] | Mapping[int, Sequence[Record]],
    *,
    received: float = NOW,
    catalogue: Catalogue | None = None,
    ahead_allowance: float | None = None,
) -> None:
    """Store `blocks` of `gateway` through the ingest path, in one batch, received at `received`.

    `ahead_allowance`: the ingesting collector's (None: the default).

    A sequence is seqs 1, 2, ...; a mapping names each block's seq, so some can be missing (a
    gap). Each block chains to the one before it, or to GENESIS when that is not stored here.
    """
    by_seq = dict(blocks) if isinstance(blocks, Mapping) else dict(enumerate(blocks, start=1))
    messages = []
    hashes: dict[int, str] = {}
    for seq, records in by_seq.items():
        payload = gateway.block(seq, records=list(records), prev=hashes.get(seq - 1, GENESIS))
        hashes[seq] = block_hash(payload)
        signature = tuple(gateway.sign(payload))
        messages.append(Inbound(gateway.topics.block, payload, signature, received))
    grants = key_grants(NANCHANG, BEIJING)
    batch = plan_batch(messages, grants, catalogue or default_catalogue())
    assert not batch.audits, batch.audits
    if ahead_allowance is not None:
        batch = dataclasses.replace(batch, ahead_allowance=ahead_allowance)
    await storage.ingest(batch)


@contextlib.asynccontextmanager
async def serve(storage: Storage, zone: timezone = UTC) -> AsyncIterator[httpx.AsyncClient]:
    """An httpx client talking to the API over `storage` in-process."""
    app = create_app(storage, TOKENS, offline_after=60, clock=lambda: NOW + 10, display_zone=zone)
    transport = httpx.ASGITransport(app=app)
    async with httpx.AsyncClient(transport=transport, base_url="http://collector") as http:
        yield http


def auth(bearer: str = "all-token") -> dict[str, str]:
    """The Authorization header of a token."""
    return {"Authorization": f"Bearer {bearer}"}


def basic_auth(password: str, user: str = "operator") -> dict[str, str]:
    """The Authorization header of HTTP Basic credentials (the status page's and the docs')."""
    pair = base64.b64encode(f"{user}:{password}".encode()).decode()
    return {"Authorization": f"Basic {pair}"}


async def get_page(
    client: httpx.AsyncClient, path: str, bearer: str = "all-token", **params: Any
) -> dict[str, Any]:
    """One JSON list page (200, `items` and `next`)."""
    response = await client.get(path, params=params, headers=auth(bearer))
    assert response.status_code == 200, response.text
    body: dict[str, Any] = response.json()
    assert set(body) == {"items", "next"}
    return body


async def get_all(
    client: httpx.AsyncClient, path: str, bearer: str = "all-token", **params: Any
) -> tuple[list[dict[str, Any]], int]:
    """Every item of a list, following `next`; with the number of pages it took."""
    items: list[dict[str, Any]] = []
    cursor: str | None = None
    pages = 0
    while True:
        extra = {} if cursor is None else {"cursor": cursor}
        page = await get_page(client, path, bearer, **params, **extra)
        items.extend(page["items"])
        pages += 1
        cursor = page["next"]
        if cursor is None:
            return items, pages


def assert_problem(response: httpx.Response, status: int) -> dict[str, Any]:
    """An RFC 9457 problem document with this status; its body."""
    assert response.status_code == status, response.text
    assert response.headers["content-type"] == "application/problem+json"
    body: dict[str, Any] = response.json()
    assert set(body) == PROBLEM_KEYS
    assert (body["type"], body["status"]) == ("about:blank", status)
    assert body["title"]
    assert body["detail"]
    return body
