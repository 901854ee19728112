"""An ACK lists at most MAX_ACK_RANGES holes, the lowest, and the holes still all fill.

Found in review: `missing` had no bound, so a gateway sending every other seq grew every ACK
(5,000 holes: 58 KiB per ACK). The agent resends only what an ACK lists and leaves the rest
to its ACK timeout (edge_agent.shell.publisher_lanes), so listing the lowest holes loses
nothing: each ACK after a resend lists the next ones. Real Mosquitto, real ingest, both
backends; the gateway here resends exactly what each ACK lists, nothing else.
"""

from __future__ import annotations

import json

from collector.ingest.core import MAX_ACK_RANGES
from tests.support.collector_client import SignedAck
from tests.support.collector_env import CollectorEnv

# Enough for several ACKs of MAX_ACK_RANGES each: the bound, then the rounds that fill them.
HOLES = 200
TOP = 2 * HOLES + 1  # seqs 1, 3, ..., TOP sent: every even seq below TOP is a hole
ACK_BYTES = 2048  # 64 ranges of three-digit seqs and the rest of an ACK fit well within


def _bounded(signed: SignedAck) -> None:
    ack = signed.ack
    assert len(ack.missing) <= MAX_ACK_RANGES, len(ack.missing)
    assert len(signed.payload) <= ACK_BYTES, len(signed.payload)
    if ack.missing:  # the lowest holes: the first starts right above acked_through
        assert ack.missing[0][0] == ack.acked_through + 1


async def _acks(env: CollectorEnv, count: int) -> list[SignedAck]:
    found = [await env.link.next_ack() for _ in range(count)]
    for signed in found:
        _bounded(signed)
    return found


async def test_acks_stay_bounded_and_every_hole_still_fills(env: CollectorEnv) -> None:
    sent = list(range(1, TOP + 1, 2))
    for seq in sent:
        await env.link.send(seq)
    last = (await _acks(env, len(sent)))[-1].ack
    assert (last.acked_through, len(last.missing)) == (1, MAX_ACK_RANGES)
    # The stream's own state keeps every hole (GET /v1/gaps lists them all).
    [(missing,)] = await env.rows("SELECT missing FROM ingest_state")
    assert len(json.loads(missing)) == HOLES
    rounds = 0
    while last.missing:
        resend = [seq for low, high in last.missing for seq in range(low, high + 1)]
        for seq in resend:
            await env.link.send(seq)
        last = (await _acks(env, len(resend)))[-1].ack
        rounds += 1
    assert rounds == -(-HOLES // MAX_ACK_RANGES)
    assert last.acked_through == TOP
    [(stored,)] = await env.rows("SELECT count(*) FROM blocks")
    assert stored == TOP
    assert await env.rows("SELECT * FROM gaps WHERE kind = 'sequence'") == []
