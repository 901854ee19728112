"""A block read to be sent that gives way to room-making before it is published is not sent.

The publisher reads a block (`Delivery.undelivered`, `Delivery.get`) and publishes it a few
awaits later (the publish pace, the mending of a later block of the chunk read). A seal on a
full outbox that makes room in between thins or drops the oldest undelivered blocks, and a
gap record it commits declares their seqs as ones that will never come (reliability.md, When
the outbox is full): the block then went out after that declaration. Here the seal is made
exactly there, from a hook on the real read, on a real outbox file at its 1 MiB budget, and
the blocks go through a real Mosquitto to a test link playing the collector. The seal is the
agent's own (its sealer), or that of a real `edge-agent backfill` run beside it: another
process, whose commits the agent learns of from the file only (`PRAGMA data_version`). A live
block's replacement goes first, in the live lane, whichever process made the room.
"""

from __future__ import annotations

import asyncio
import json
import sqlite3
import sys
from collections.abc import Awaitable, Callable
from contextlib import AbstractAsyncContextManager, closing
from pathlib import Path

import aiomqtt
import pytest
import yaml
from click.testing import CliRunner

from demo.__main__ import write_configs
from edge_agent.cli import main
from edge_agent.config import load_site_config
from edge_agent.core.plan_compile import identity_of
from edge_agent.shell.keyfile import load_gateway_key
from edge_agent.shell.outbox import Outbox
from edge_agent.shell.outbox_open import open_outbox
from edge_agent.shell.outbox_reads import StoredBlock
from edge_agent.shell.publisher import Publisher
from specs.block import decode_block
from specs.lanes import Lane
from specs.records import GapRecord, Record
from tests.support.broker import Broker
from tests.support.collector_link import FakeCollectorLink
from tests.support.instrument_log import write_log
from tests.support.outbox_budget import MIB, minute_block
from tests.support.outbox_file import committed_records, read_only
from tests.support.outbox_site import T0
from tests.support.publisher_rig import TOPICS, gateway_publisher

pytestmark = pytest.mark.timeout(120)

WINDOW = 4
BACKFILL_ROWS = 6_000  # over 1 MiB of blocks: one run makes room down to the oldest block


@pytest.fixture
def site(tmp_path: Path) -> Path:
    """The tank farm's site map with its gateway key and a 1 MiB outbox; its site.yaml."""
    config = write_configs(tmp_path, "tankfarm", "mqtt://127.0.0.1:1", 1, 1)
    site_map = yaml.safe_load(config.read_text(encoding="utf-8"))
    site_map["outbox"]["max_bytes"] = MIB
    config.write_text(yaml.safe_dump(site_map, allow_unicode=True), encoding="utf-8")
    result = CliRunner().invoke(main, ["keys", "init", "-c", str(config)])
    assert result.exit_code == 0, result.output
    return config


def _open(site: Path) -> AbstractAsyncContextManager[Outbox]:
    """The site's outbox, opened as `edge-agent run` opens it (same identity, key, budget)."""
    config = load_site_config(site)
    key = load_gateway_key(config.signing.key_file, config.signing.algorithm)
    return open_outbox(config.outbox.path, identity_of(config), key, max_bytes=MIB)


def _declared(path: Path) -> set[int]:
    """Every seq a gap record committed in the file declares (the file holds one epoch)."""
    return {
        seq
        for record in committed_records(path)
        if isinstance(record, GapRecord) and record.from_seq is not None
        for seq in range(record.from_seq, (record.to_seq or record.from_seq) + 1)
    }


def _held(path: Path) -> list[int]:
    """The undelivered seqs the file holds, oldest first."""
    with closing(sqlite3.connect(path)) as db:
        rows = db.execute("SELECT seq FROM blocks WHERE delivered_at IS NULL ORDER BY seq")
        return [int(row[0]) for row in rows]


def _gave_way(path: Path, seq: int) -> bool:
    """Whether `seq`'s row is gone and a gap record committed in the file declares it."""
    return seq not in _held(path) and seq in _declared(path)


MakeRoom = Callable[[Path, Outbox, int], Awaitable[None]]


async def _by_the_agent(site: Path, outbox: Outbox, seq: int) -> None:
    """The agent's own seals (its sealer's), until the block `seq` has given way."""
    path = load_site_config(site).outbox.path
    index = 1_000
    while not _gave_way(path, seq):
        assert index < 1_500, f"block {seq} never gave way"
        await outbox.seal(minute_block(index), now=T0 + index, clock_synced=True)
        index += 1


async def _by_backfill(site: Path, _outbox: Outbox, seq: int) -> None:
    """`edge-agent backfill` run to its end, until the block `seq` has given way."""
    path = load_site_config(site).outbox.path
    for run in range(1, 4):
        if _gave_way(path, seq):
            return
        csv = write_log(site.parent / f"log{run}.csv", run, BACKFILL_ROWS)
        process = await asyncio.create_subprocess_exec(
            *(str(Path(sys.executable).parent / "edge-agent"), "backfill", "-c", str(site)),
            *("--csv", str(csv), "--json"),
            stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.PIPE,
        )
        said, err = await process.communicate()
        # Making room is the point: a run whose seals let readings go exits 75 (6edd6e6).
        let_go = json.loads(said)["let_go"] if said.strip() else None
        assert process.returncode == (75 if let_go else 0), (process.returncode, err.decode())
        assert f'"imported": {BACKFILL_ROWS},' in said.decode(), said.decode()
    assert _gave_way(path, seq), f"block {seq} never gave way"


MAKERS = [pytest.param(_by_the_agent, id="agent"), pytest.param(_by_backfill, id="backfill")]


async def _published(
    outbox: Outbox, broker: Broker, count: int, connected: Callable[[Publisher], Awaitable[None]]
) -> list[tuple[int, Lane]]:
    """The seqs the publisher sends, each with its lane, until the link has `count` blocks
    (none answered).

    `connected` is called once its session is up.
    """
    publisher = gateway_publisher(outbox, broker.port, ack_timeout=30, max_inflight=WINDOW)
    async with aiomqtt.Client(
        "127.0.0.1", broker.port, protocol=aiomqtt.ProtocolVersion.V5
    ) as client:
        await client.subscribe(TOPICS.block, qos=1)
        link = FakeCollectorLink(client, outbox.epoch)
        tasks = [asyncio.create_task(link.listen()), asyncio.create_task(publisher.run())]
        try:
            await publisher.connected.wait()
            await connected(publisher)
            # Up to 60 s: the backfill runs made from the read hook count in it (8-9 s at load
            # 12 on 2 cores; the link's 10 s default failed once).
            await link.wait_for(count, timeout=60)
        finally:
            publisher.stop()
            for task in tasks:
                task.cancel()
            await asyncio.gather(*tasks, return_exceptions=True)
    return list(zip(link.received, link.lanes, strict=True))


def _check(path: Path, gone: int, received: list[int], *, live: int | None = None) -> None:
    """No declared seq went out (each was declared before any publish here), and the oldest
    blocks the file holds went, in order (but the block `live`, sent first)."""
    declared = _declared(path)
    assert gone in declared
    # Before: the block read before it gave way went first, after its declaration.
    early = sorted(declared & set(received))
    assert not early, f"{early} published after their declaration: {received}"
    backlog = [seq for seq in _held(path) if seq != live]
    assert received == backlog[: len(received)], (received, _held(path))


def _records(path: Path, seq: int) -> tuple[Record, ...]:
    """The records of the block `seq` the file holds."""
    with closing(read_only(path)) as db:
        (row,) = db.execute("SELECT payload FROM blocks WHERE seq = ?", (seq,))
    return decode_block(bytes(row[0])).records


@pytest.mark.parametrize("make_room", MAKERS)
async def test_a_backlog_block_that_gave_way_after_it_was_read_is_not_published(
    site: Path, broker: Broker, monkeypatch: pytest.MonkeyPatch, make_room: MakeRoom
) -> None:
    async with _open(site) as outbox:
        for index in range(120):  # at the budget: thinned and dropped, nothing ACKed
            await outbox.seal(minute_block(index), now=T0 + index, clock_synced=True)

    async with _open(site) as outbox:
        read = outbox.delivery.undelivered
        gave_way: list[int] = []

        async def read_then_room_made(*, after: int, limit: int) -> list[StoredBlock]:
            """The real read; the first time, room is made until its first block gave way."""
            chunk = await read(after=after, limit=limit)
            if chunk and not gave_way:
                await make_room(site, outbox, chunk[0].seq)
                gave_way.append(chunk[0].seq)
            return chunk

        async def nothing(_publisher: Publisher) -> None:
            pass

        monkeypatch.setattr(outbox.delivery, "undelivered", read_then_room_made)
        received = await _published(outbox, broker, WINDOW, nothing)
        path = load_site_config(site).outbox.path

    (seq,) = gave_way
    # Before: the agent's seals [41, 49, 50, 51] (fixed by 738f323); backfill's, [41, 57, ...].
    _check(path, seq, [sent for sent, _ in received])


@pytest.mark.parametrize("make_room", MAKERS)
async def test_a_live_block_that_gave_way_after_it_was_taken_is_not_published(
    site: Path, broker: Broker, monkeypatch: pytest.MonkeyPatch, make_room: MakeRoom
) -> None:
    async with _open(site) as outbox:
        take = outbox.delivery.get
        gave_way: list[int] = []

        async def taken_then_room_made(seq: int) -> StoredBlock | None:
            """The real `get` (from memory); the first time, room is made until it gave way."""
            block = await take(seq)
            if block is not None and not gave_way:
                await make_room(site, outbox, seq)
                gave_way.append(seq)
            return block

        async def seal_live(publisher: Publisher) -> None:
            """The sealer's block, and its notice: the publisher takes it in the live lane."""
            block = await outbox.seal(minute_block(0), now=T0, clock_synced=True)
            publisher.notify_sealed(block.seq)

        monkeypatch.setattr(outbox.delivery, "get", taken_then_room_made)
        received = await _published(outbox, broker, 2, seal_live)  # backfill holds 3
        path = load_site_config(site).outbox.path

    (seq,) = gave_way
    # The replacement holding its readings goes first, in the live lane, the rest as backlog
    # in order: told by the agent's own room-making (`Lanes.replaced`), read from the file
    # for backfill's, another process's (`Delivery.replacement_of`). Before, backfill's went
    # as backlog: [(3, backlog), (4, backlog)], 3 the replacement.
    (replacement, lane), *rest = received
    assert lane is Lane.LIVE, received
    assert set(minute_block(0)) & set(_records(path, replacement)), (replacement, received)
    _check(path, seq, [sent for sent, _ in rest], live=replacement)
