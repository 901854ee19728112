"""Compressed blocks (`enc`, specs.encoding) through a real Mosquitto, on SQLite and PostgreSQL.

The agent's publisher sends its sealed blocks compressed; the collector decodes them, verifies
the signature over the canonical bytes and stores exactly those, so the chain and `collector
verify` see no difference. What cannot be decoded is refused and audited `malformed`.
"""

from __future__ import annotations

import asyncio
import dataclasses
import struct
from pathlib import Path

import aiomqtt
import pytest
import zstandard

from collector.audit.chain import minute_of
from collector.model import Reason
from specs.block import block_hash, decode_block
from specs.encoding import ENC_PROPERTY, MAX_DECODED_BYTES, Encoding, encode_payload
from specs.signing import SignatureError, signature_from_properties
from tests.support.agent_rig import running_agent
from tests.support.broker import Broker
from tests.support.collector_client import sim_gateway
from tests.support.collector_env import (
    COLLECTOR_KEY,
    CollectorEnv,
    register,
    running_ingest,
    wait_until,
)
from tests.support.postgres import sql_rows

pytestmark = pytest.mark.timeout(60)


def _float32(value: float) -> float:
    return float(struct.unpack("<f", struct.pack("<f", value))[0])


ZSTD_MAGIC = b"\x28\xb5\x2f\xfd"


async def _sniff(port: int, topic: str, count: int) -> list[aiomqtt.Message]:
    """The next `count` messages on `topic` as the broker hands them to any subscriber."""
    async with aiomqtt.Client("127.0.0.1", port, protocol=aiomqtt.ProtocolVersion.V5) as client:
        await client.subscribe(topic, qos=1)
        seen: list[aiomqtt.Message] = []
        async with asyncio.timeout(20):
            async for message in client.messages:
                seen.append(message)
                if len(seen) == count:
                    return seen
    return seen


@pytest.mark.parametrize("encoding", [Encoding.ZSTD_D1V, Encoding.ZSTD_D1, Encoding.ZSTD])
async def test_agent_sends_compressed_blocks_the_collector_stores_the_sealed_bytes(
    tmp_path: Path, broker: Broker, storage_url: str, encoding: Encoding
) -> None:
    gateway = sim_gateway(3)
    async with (
        running_ingest(broker.port, storage_url, COLLECTOR_KEY) as (_, storage),
        running_agent(
            tmp_path, broker.port, gateway, COLLECTOR_KEY.public(), encoding=encoding
        ) as agent,
    ):
        await register(storage, gateway)
        sniffer = asyncio.create_task(_sniff(broker.port, gateway.topics.block, 3))
        await asyncio.sleep(0.3)  # the sniffer subscribed
        # A poll cycle of float32 registers: 17-digit values, which zstd-d1v moves apart.
        readings = tuple(
            dataclasses.replace(
                gateway.reading(1, i, point=f"T{i:03d}-LT-01"), value=_float32(8.43 + i / 7)
            )
            for i in range(14)
        )
        await agent.seal(3)
        await agent.seal(1, records=readings)
        await wait_until(agent.undelivered, lambda seqs: seqs == [])
        on_wire = await sniffer
        stored = await _stored(storage_url)
    for message in on_wire:
        properties = dict(getattr(message.properties, "UserProperty", None) or [])
        assert properties[ENC_PROPERTY] == encoding.value
        payload = bytes(message.payload)
        assert payload.startswith(ZSTD_MAGIC)
        signature = signature_from_properties(list(properties.items()))
        # The signature is not over what travelled, but over what the collector stored.
        with pytest.raises(SignatureError):
            gateway.key.public().verify(signature, payload)
    assert [seq for seq, _ in stored] == [1, 2, 3, 4]
    prev = "0" * 64
    for _, payload in stored:
        block = decode_block(payload)  # canonical JSON, as sealed
        assert block.header.prev == prev
        prev = block_hash(payload)
    assert len(decode_block(stored[-1][1]).records) == 14


async def _stored(storage_url: str) -> list[tuple[int, bytes]]:
    rows = await sql_rows(storage_url, "SELECT seq, payload FROM blocks ORDER BY seq")
    return [(int(seq), bytes(payload)) for seq, payload in rows]


async def test_bomb_unknown_enc_and_corrupt_frames_are_audited_and_not_stored(
    env: CollectorEnv,
) -> None:
    canonical = env.gateway.block(1, prev="0" * 64)
    signed = env.gateway.sign(canonical)
    bomb = zstandard.ZstdCompressor(level=1).compress(b" " * (MAX_DECODED_BYTES + 1))
    good = encode_payload(canonical, Encoding.ZSTD_D1)
    cases = [
        (bomb, "zstd", "would decode to"),
        (good, "brotli", "encoding 'brotli' is unknown"),
        (good[:-7], "zstd-d1", "does not decode"),
        (good + b"\0", "zstd-d1", "does not decode"),
        (b"{}", "zstd", "not a zstd frame"),
    ]
    for payload, enc, _ in cases:
        await env.link.publish(payload, [*signed, (ENC_PROPERTY, enc)])
    # Rejections aggregate per (gateway, reason, minute), the first one's detail kept; each
    # case's own detail is pinned by tests/unit/test_wire_encoding.py. On a loaded machine the
    # five may straddle a minute's edge: then two rows, the earlier naming the bomb.
    rows = await wait_until(
        lambda: env.storage.audit(reason=Reason.MALFORMED),
        lambda rows: sum(r.count for r in rows) >= len(cases),
    )
    assert {r.gateway for r in rows} == {env.gateway.gateway}
    assert sum(r.count for r in rows) == len(cases)
    assert len({minute_of(r.at) for r in rows}) == len(rows) <= 2
    row = min(rows, key=lambda r: r.at)
    assert (
        row.detail == f"enc: zstd frame would decode to {MAX_DECODED_BYTES + 1} bytes, over"
        f" {MAX_DECODED_BYTES}"
    )
    assert row.payload_hash == block_hash(bomb)
    assert await env.rows("SELECT seq FROM blocks") == []
    # The same block, decodable, is stored and acknowledged.
    await env.link.publish(good, [*signed, (ENC_PROPERTY, "zstd-d1")])
    ack = await env.link.next_ack()
    assert (ack.ack.seq, ack.ack.acked_through, ack.ack.acked_hash) == (
        1,
        1,
        block_hash(canonical),
    )
    assert await env.rows("SELECT payload FROM blocks") == [(canonical,)]
