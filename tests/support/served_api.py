"""The collector's HTTP API served by the real server (uvicorn, as `collector serve` sets it up)
over a real SQLite store seeded with two districts' data, for tests that speak HTTP on a socket.

The server runs in a thread with its own event loop, so that synchronous clients (schemathesis
over `requests`, raw sockets) can talk to it from the test's thread.
"""

from __future__ import annotations

import asyncio
import contextlib
import threading
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator, Sequence
from dataclasses import dataclass
from typing import Final

import httpx

from collector.api.app import create_app
from collector.api.limits import RateLimits, RequestLimits
from collector.api.server import ApiServer, listening_socket, server_config
from collector.feed.wakeup import LocalCommitSignal
from collector.ingest.core import Inbound, plan_batch
from collector.metrics import CollectorMetrics
from collector.model import KeyGrant
from collector.storage import open_storage
from collector.storage.base import Storage
from specs.block import GENESIS, block_hash
from specs.catalogue import default_catalogue
from specs.records import AlarmEvent, Record
from tests.support.collector_api import BEIJING, NANCHANG, NOW, TOKENS, level, pressure, serve
from tests.support.collector_client import BASE_TIME, SimGateway, gap_record
from tests.support.records import alarm_record

SEEDED: Final = (NANCHANG, BEIJING)
DISTRICT_OF: Final = {gw.gateway: gw.district for gw in SEEDED}
ENTERPRISE_OF: Final = {gw.gateway: gw.enterprise for gw in SEEDED}
STARTUP_TIMEOUT: Final = 30.0


def _records(seq: int) -> list[Record]:
    t = BASE_TIME + seq * 60
    records: list[Record] = [level(t, 1.5 + seq), pressure(t, 0.25 * seq)]
    if seq == 2:  # one alarm, raised here and cleared in seq 3
        records.append(alarm_record(f"a-{seq}", AlarmEvent.RAISE, t))
    if seq == 3:
        records.append(alarm_record("a-2", AlarmEvent.CLEAR, t))
        records.append(gap_record(seq))
    return records


def _blocks(gateway: SimGateway, seqs: Sequence[int]) -> list[Inbound]:
    messages = []
    prev = GENESIS
    for seq in range(1, max(seqs) + 1):
        payload = gateway.block(seq, records=_records(seq), prev=prev)
        prev = block_hash(payload)
        if seq in seqs:
            messages.append(
                Inbound(gateway.topics.block, payload, tuple(gateway.sign(payload)), NOW)
            )
    return messages


async def seed_two_districts(storage: Storage) -> None:
    """Readings, alarms, a gap record and an open gap (seq 4 missing) of both gateways."""
    grants = {}
    for sim in SEEDED:
        owner, key = sim.registration()
        await storage.register(owner, key)
        grants[key.kid] = KeyGrant(key, owner)
    messages = [m for sim in SEEDED for m in _blocks(sim, (1, 2, 3, 5))]
    batch = plan_batch(messages, grants, default_catalogue())
    assert not batch.audits, batch.audits
    await storage.ingest(batch)


@contextlib.asynccontextmanager
async def seeded_client(storage_url: str) -> AsyncIterator[httpx.AsyncClient]:
    """The API in-process over a fresh store at `storage_url` that `seed_two_districts` filled."""
    async with open_storage(storage_url) as storage:
        await seed_two_districts(storage)
        async with serve(storage) as http:
            yield http


@dataclass(frozen=True)
class ServedApi:
    """Where the served API listens."""

    host: str
    port: int
    backend: str
    """sqlite or postgresql"""

    @property
    def url(self) -> str:
        """The base URL."""
        return f"http://{self.host}:{self.port}"


@contextlib.contextmanager
def served_api(
    storage_url: str,
    *,
    limits: RequestLimits | None = None,
    rate_limits: RateLimits | None = None,
    seed: Callable[[Storage], Awaitable[None]] = seed_two_districts,
) -> Iterator[ServedApi]:
    """Serve the API over `storage_url` (seeded by `seed`) on a free loopback port."""
    chosen = RequestLimits() if limits is None else limits
    sock = listening_socket("127.0.0.1", 0)  # clients may connect at once
    ready = threading.Event()
    failures: list[BaseException] = []
    holder: dict[str, object] = {}

    async def run() -> None:
        commits = LocalCommitSignal()
        metrics = CollectorMetrics(offline_after=60)
        async with open_storage(storage_url) as storage:
            await seed(storage)
            app = create_app(
                storage,
                TOKENS,
                offline_after=60,
                clock=lambda: NOW + 10,
                commits=commits,
                stream_heartbeat=0.5,
                request_limits=chosen,
                rate_limits=rate_limits,
                collector_metrics=metrics,
            )
            server = ApiServer(server_config(app, chosen, stalled=metrics.connection_stalled))
            holder["server"] = server
            holder["loop"] = asyncio.get_running_loop()
            holder["commits"] = commits
            serving = asyncio.create_task(server.serve(sockets=[sock]))
            ready.set()
            await serving

    def main() -> None:
        try:
            asyncio.run(run())
        except BaseException as exc:  # noqa: BLE001 - handed to the test's thread
            failures.append(exc)
        finally:
            ready.set()

    thread = threading.Thread(target=main, name="served-api", daemon=True)
    thread.start()
    try:
        assert ready.wait(STARTUP_TIMEOUT), "the API did not start"
        if failures:
            raise failures[0]
        backend = "sqlite" if storage_url.startswith("sqlite") else "postgresql"
        yield ServedApi("127.0.0.1", sock.getsockname()[1], backend)
    finally:
        server = holder.get("server")
        loop = holder.get("loop")
        commits = holder.get("commits")
        if isinstance(loop, asyncio.AbstractEventLoop) and isinstance(commits, LocalCommitSignal):
            loop.call_soon_threadsafe(commits.close)  # live streams end
        if isinstance(server, ApiServer):
            server.should_exit = True
        thread.join(STARTUP_TIMEOUT)
        sock.close()
        assert not thread.is_alive(), "the API did not stop"
        if failures:
            raise failures[0]
