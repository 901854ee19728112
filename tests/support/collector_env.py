"""The collector test environment: its config file, its command line, the in-process ingest.

For the collector's tests: `write_collector_config` writes a collector.yaml (any storage URL),
`collector_cli` runs a `collector` command as a user would (JSON logs), `running_ingest` runs the
ingest loop on a real broker and storage, `register` registers a `SimGateway` there, and
`collector_env` is all of that with gateway 1 linked (the `env` fixture of the ingest tests).
The gateway side (blocks, signatures, ACKs) is tests/support/collector_client.py.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TypeVar

from click.testing import CliRunner, Result

from collector.audit.chain import AuditRow
from collector.cli import main
from collector.ingest.service import Ingest, IngestSettings
from collector.model import MESSAGE_BYTES, AuditEntry, Reason
from collector.storage import open_storage
from collector.storage.base import Storage
from collector.storage.capabilities import AuditTrail
from simulators.lifecycle import cancel_task
from specs.ack import Ack
from specs.catalogue import Catalogue
from specs.signing import SigningKey, VerifyKey, signing_key_from_seed
from tests.support.broker import free_port
from tests.support.collector_client import (
    GatewayLink,
    SignedAck,
    SimGateway,
    catalogue_with_coal,
    gateway_link,
    sim_gateway,
)
from tests.support.postgres import sql_execute, sql_rows

T = TypeVar("T")
DEFAULT_STORAGE = "sqlite:///state/collector.db"  # relative: below the config's folder


def cli_config(folder: Path, storage_url: str = DEFAULT_STORAGE) -> Path:
    """A collector.yaml for commands run from the command line: no broker (port 1), any API port.

    The commands that open the storage use `storage_url`; the others never touch it.
    """
    return write_collector_config(
        folder, broker_port=1, api_port=free_port(), storage_url=storage_url
    )


def collector_cli(*args: str) -> Result:
    """Run `collector --log-format json ARGS` in-process; errors in the command are raised."""
    return CliRunner().invoke(main, ["--log-format", "json", *args], catch_exceptions=False)


async def register(storage: Storage, *gateways: SimGateway) -> None:
    """Register each of `gateways` and its key at the collector."""
    for gateway in gateways:
        await storage.register(*gateway.registration())


@contextlib.asynccontextmanager
async def running_ingest(
    port: int,
    storage_url: str,
    collector_key: SigningKey,
    *,
    batch_max: int = 200,
    storage: Storage | None = None,
    catalogue: Catalogue | None = None,
    client_id: str | None = None,
    session_expiry: float = 3600.0,
    key_overlap: float = 7 * 86400.0,
    clock: Callable[[], float] = time.time,
    max_message_bytes: int = MESSAGE_BYTES,
    clean_stop: bool = True,
    leave_on_stop: bool = False,
) -> AsyncIterator[tuple[Ingest, Storage]]:
    """Run the ingest loop (no HTTP API) against the broker on `port`, subscribed on return.

    It stores into `storage_url` (any backend) unless a `storage` is handed in.

    Readings are normalized against `catalogue` (default: `catalogue_with_coal()`). With a
    `client_id` the MQTT session is durable for `session_expiry` seconds, as `collector
    serve` runs it; without one it is a random id whose session ends with the connection.
    `clock` is when each message arrives (`received_at`). A payload over `max_message_bytes`
    is audited `too_large` unread (`ingest.max_message_bytes`; a test may go below its least).
    At the exit the loop is stopped as `collector serve` stops it (its session ends only with
    `leave_on_stop`), or with `clean_stop=False` only cancelled, unannounced (no `stop()`, so
    no `leave_on_stop`). Either way aiomqtt's exit still sends a plain DISCONNECT: neither is a
    lost connection, but since a11812b both leave the durable session as a lost connection or a
    SIGKILLed collector does (queue and place in the group kept until `session_expiry`).
    """
    async with contextlib.AsyncExitStack() as stack:
        if storage is None:
            storage = await stack.enter_async_context(open_storage(storage_url))
        settings = IngestSettings(
            "127.0.0.1",
            port,
            batch_max=batch_max,
            client_id=client_id,
            session_expiry=session_expiry,
            leave_on_stop=leave_on_stop,
            key_overlap=key_overlap,
            max_message_bytes=max_message_bytes,
        )
        ingest = Ingest(
            settings,
            storage,
            collector_key,
            clock,
            catalogue=catalogue_with_coal() if catalogue is None else catalogue,
        )
        task = asyncio.create_task(ingest.run(), name="test-ingest")
        try:
            await asyncio.wait_for(ingest.connected.wait(), 10)
            yield ingest, storage
        finally:
            if clean_stop:
                ingest.stop()
            await cancel_task(task)


async def wait_until(
    probe: Callable[[], Awaitable[T]], done: Callable[[T], bool], timeout: float = 10.0
) -> T:
    """Poll `probe` every 20 ms until `done(result)`; TimeoutError after `timeout` seconds."""
    deadline = time.monotonic() + timeout
    while True:
        result = await probe()
        if done(result):
            return result
        if time.monotonic() > deadline:
            raise TimeoutError(f"condition not met after {timeout}s; last result {result!r}")
        await asyncio.sleep(0.02)


def write_collector_config(
    folder: Path,
    *,
    broker_port: int,
    api_port: int,
    tokens: Sequence[tuple[str, str, Sequence[str]]] = (("province", "s3cret", ("*",)),),
    storage_url: str = DEFAULT_STORAGE,
) -> Path:
    """A collector.yaml in `folder` (state and keys below it); return its path.

    `storage_url` defaults to a SQLite file under `folder`; pass a postgresql:// URL (or an
    absolute sqlite:////... one) to store elsewhere.
    """
    token_lines = "".join(
        f'    - {{name: {name}, token: "{token}", districts: {json.dumps(list(districts))}}}\n'
        for name, token, districts in tokens
    )
    path = folder / "collector.yaml"
    path.write_text(
        f'broker: "mqtt://127.0.0.1:{broker_port}"\n'
        f"storage: {{url: {json.dumps(storage_url)}}}\n"
        "signing: {key_file: keys/collector.key}\n"
        "api:\n"
        f'  listen: "127.0.0.1:{api_port}"\n'
        "  tokens:\n"
        f"{token_lines}"
        "ingest: {batch_max: 200, share_group: gz-collectors}\n"
        "offline_after: 60s\n",
        encoding="utf-8",
    )
    return path


async def keyed_collector_config(
    folder: Path,
    *,
    broker_port: int,
    tokens: Sequence[tuple[str, str, Sequence[str]]],
    storage_url: str = DEFAULT_STORAGE,
) -> Path:
    """`write_collector_config` (API on a free port) and its key made by `collector keys init`
    (in-process, off the event loop); return the config's path."""
    path = write_collector_config(
        folder,
        broker_port=broker_port,
        api_port=free_port(),
        tokens=tokens,
        storage_url=storage_url,
    )
    keys = await asyncio.to_thread(
        CliRunner().invoke, main, ["keys", "init", "-c", str(path)], catch_exceptions=False
    )
    assert keys.exit_code == 0, keys.output
    return path


# The collector key the in-process ingest signs its ACKs with in these tests.
COLLECTOR_KEY = signing_key_from_seed(b"collector-test-key-seed-32-bytes")


@dataclass
class CollectorEnv:
    """A running in-process ingest on a real broker, one registered gateway linked to it."""

    storage: Storage
    link: GatewayLink
    gateway: SimGateway
    url: str
    collector: VerifyKey = field(default_factory=COLLECTOR_KEY.public)

    async def rows(self, query: str) -> list[tuple[Any, ...]]:
        """The rows of a read-only SQL query on the storage's tables (SQLite or PostgreSQL)."""
        return await sql_rows(self.url, query)

    async def signed_ack(self) -> SignedAck:
        """The next ACK the linked gateway receives; raises unless the collector signed it."""
        signed = await self.link.next_ack()
        self.collector.verify(signed.signature, signed.payload)
        return signed

    async def ack(self) -> Ack:
        """The next ACK the linked gateway receives, its signature checked."""
        return (await self.signed_ack()).ack

    async def audited(self, reason: Reason, count: int = 1) -> tuple[AuditEntry, ...]:
        """The audit entries of `reason`, once there are at least `count` (10 s at most)."""

        async def probe() -> tuple[AuditEntry, ...]:
            return await self.storage.audit(reason=reason)

        return await wait_until(probe, lambda rows: len(rows) >= count)


@contextlib.asynccontextmanager
async def collector_env(
    broker_port: int, storage_url: str, clock: Callable[[], float] = time.time
) -> AsyncIterator[CollectorEnv]:
    """Start the ingest on `storage_url`, register gateway 1 and link it (the `env` fixture)."""
    gateway = sim_gateway(1)
    async with running_ingest(broker_port, storage_url, COLLECTOR_KEY, clock=clock) as (
        _,
        storage,
    ):
        await register(storage, gateway)
        async with gateway_link(broker_port, gateway) as link:
            yield CollectorEnv(storage, link, gateway, storage_url)


async def intact_audit_rows(trail: AuditTrail, limit: int = 100) -> tuple[AuditRow, ...]:
    """The first `limit` sealed audit rows of a chain nobody changed by hand (none unreadable)."""
    rows = await trail.audit_rows(after=None, limit=limit)
    intact = tuple(row for row in rows if isinstance(row, AuditRow))
    assert len(intact) == len(rows), f"rows changed by hand: {set(rows) - set(intact)}"
    return intact


async def heard_at(url: str, gateway: str, t: float) -> None:
    """The province's newest reading is of `t`: a point of `gateway` last heard then.

    Retention measures ages from the newest reading stored, never from a clock past it (a
    clock ahead, or a province quiet since): a test that moves the clock on to expire months
    has the province heard up to then. Written in `latest` (kept whatever retention deletes)
    for a point of its own, so that the test's readings, rollups and blocks stay as it made
    them.
    """
    await sql_execute(
        url,
        "INSERT INTO latest (gateway, point, quota, t, value, unit, quality, flags)"
        " VALUES (?, 'T001-LT-99', 'WHP-LT', ?, 1.0, 'm', 'good', '[]')"
        " ON CONFLICT (gateway, point) DO UPDATE SET t = excluded.t",
        gateway,
        t,
    )
