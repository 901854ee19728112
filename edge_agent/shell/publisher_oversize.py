"""A block the publisher may not send as it is, too large: it is split instead.

Over the broker's packet limit (its CONNACK's Maximum Packet Size) or over the payload the
collector takes (its ACKs' `max_message_bytes`). Sent, it would end the session (the
broker's), or be audited too_large unread and never ACKed (the collector's), and be sent first
again, for ever. So it is not sent, and its records are sealed again in smaller blocks
(`outbox_oversize`). A live block's go in the live lane (`Lanes.resealed`): they carry the
last readings polled, and a stop waits for the live lane.
"""

from __future__ import annotations

import sqlite3
import time
from dataclasses import dataclass

import structlog
from paho.mqtt.properties import Properties

from edge_agent.shell.host import clock_synchronized
from edge_agent.shell.outbox_delivery import Delivery
from edge_agent.shell.outbox_reads import StoredBlock
from edge_agent.shell.uplink import UplinkClient

log = structlog.get_logger("edge_agent.publisher")


@dataclass(frozen=True, slots=True)
class NotSent:
    """A block too large to send, and what became of it."""

    resealed: tuple[int, ...]  # the blocks sealed in its place; none: it was not split
    failed: bool  # the split failed (a full disk, say): read it again later


async def split_if_too_large(  # noqa: PLR0917 - the send loop's one call
    client: UplinkClient,
    topic: str,
    delivery: Delivery,
    block: StoredBlock,
    payload: bytes,
    properties: Properties,
    collector_limit: int | None,
) -> NotSent | None:
    """None: `block` may be published to `topic` as `payload`; else what became of it."""
    over = client.too_large(topic, payload, properties, collector_limit)
    if over is None:
        return None
    log.warning(
        "block_too_large_for_broker" if over.broker else "block_too_large_for_collector",
        seq=block.seq,
        bytes=over.size,
        limit=over.limit,
        parts=over.parts,
        readings=block.readings,
    )
    try:
        resealed = await delivery.seal_smaller(
            block, over.parts, now=time.time(), clock_synced=clock_synchronized()
        )
    except sqlite3.Error as exc:
        # A full disk, say: not sent either way; what follows it goes now, and it is read
        # again at the resend pace (one try and one line per `ack_timeout`).
        log.warning("too_large_block_not_sealed_again", seq=block.seq, error=str(exc))
        return NotSent((), failed=True)
    return NotSent(resealed, failed=False)
