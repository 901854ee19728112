"""The collector's limit (`max_message_bytes`) the agent takes from signed ACKs.

The agent splits a block over that limit (edge_agent.shell.publisher._too_large). A limit below
the contract's least (specs.ack.MIN_MESSAGE_BYTES, what a collector's config takes) would
have it split blocks until they hold one record each, which it never sends: it ignores such a
value, logged once. An ACK without the field (a collector before it, in a shared group or
after a downgrade) leaves the limit heard last, since a smaller block is always taken.
Real signed ACKs into the real AckTaker on a real outbox.
"""

from __future__ import annotations

import time
from collections.abc import AsyncIterator
from pathlib import Path

import pytest
from structlog.testing import capture_logs

from edge_agent.shell.outbox_open import open_outbox
from edge_agent.shell.publisher_acks import AckTaker
from specs.ack import MIN_MESSAGE_BYTES, Ack
from specs.records import Quality, Reading, iso_time
from specs.signing import signature_properties
from tests.support.collector_client import publish_properties
from tests.support.publisher_rig import COLLECTOR_KEY, GATEWAY_KEY, SITE, ack_taker


@pytest.fixture
async def taker(tmp_path: Path) -> AsyncIterator[tuple[AckTaker, str]]:
    async with open_outbox(tmp_path / "outbox.db", SITE, GATEWAY_KEY) as outbox:
        for _ in range(6):
            reading = Reading("T001-LT-01", "WHP-LT", iso_time(time.time()), 1.0, "m", Quality.GOOD)
            await outbox.seal((reading,), now=time.time(), clock_synced=True)
        acks = ack_taker(outbox)
        yield acks, outbox.epoch


async def _ack(taker: AckTaker, epoch: str, seq: int, limit: int | None) -> int | None:
    """Hand `taker` the collector's signed ACK of `seq` saying `limit`; the limit it keeps."""
    payload = Ack(
        SITE.gateway, epoch, seq, (), seq, iso_time(time.time()), max_message_bytes=limit
    ).encode()
    await taker.on_ack(
        payload, publish_properties(signature_properties(COLLECTOR_KEY.sign(payload)))
    )
    return taker.collector_limit


async def test_a_limit_below_the_contracts_least_is_ignored_and_logged_once(
    taker: tuple[AckTaker, str],
) -> None:
    acks, epoch = taker
    with capture_logs() as logs:
        # A third-party or misconfigured collector, then one at the least itself.
        said = (460, 1, 460, MIN_MESSAGE_BYTES)
        taken = [await _ack(acks, epoch, seq, limit) for seq, limit in enumerate(said, 1)]
    assert taken == [None, None, None, MIN_MESSAGE_BYTES]  # no block is split for 460 or 1
    ignored = [e for e in logs if e["event"] == "collector_limit_below_least"]
    # Once a run, not at each ACK: a collector says it in every one.
    assert [(e["limit"], e["least"]) for e in ignored] == [(460, MIN_MESSAGE_BYTES)]
    assert all(e["event"] != "ack_rejected" for e in logs)
    # The ACKs still released their blocks (6 sealed, 4 ACKed).
    assert [b.seq for b in await acks._outbox.delivery.undelivered(after=0, limit=10)] == [5, 6]


async def test_an_ack_without_the_field_keeps_the_limit_heard_last(
    taker: tuple[AckTaker, str],
) -> None:
    acks, epoch = taker
    # None first (a collector before the field), then an older collector of the group, or a
    # downgrade, after one said 8 MiB; a limit said anew is taken, smaller or larger.
    said = (None, 8 << 20, None, 5 << 20, None, 6 << 20)
    taken = [await _ack(acks, epoch, seq, limit) for seq, limit in enumerate(said, 1)]
    assert taken == [None, 8 << 20, 8 << 20, 5 << 20, 5 << 20, 6 << 20]
