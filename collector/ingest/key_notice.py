"""Telling a registered gateway that its blocks are refused for their key.

The collector ACKs the blocks it stores, and only those: a block refused for its key
(`unknown_key`, `revoked_key`, `retired_key`) got no answer, so an agent whose key was revoked
or retired, or whose new key was never registered, saw a growing backlog and ACK timeouts and
nothing else. The ingest now answers such a block with the key notice
(`collector.ingest.core.notice_ack`): an ordinary signed ACK of the epoch the block's header
names, carrying what is stored of it already and `seq` null (it answers no block, so it
releases nothing new), with `keys`, which leaves out the refused key. docs/contract.md, ACK.

The refused block's signature was not taken, so anyone able to publish on a gateway's topic
can cause one. Hence: only a gateway the registry holds, at the place its topic and header
name (the notice goes to its registered `down/ack`, never to a topic the message made up), at
most once per `KEY_NOTICE_INTERVAL` per gateway and collector process.

Pure but for `KeyNotices`, which keeps when each gateway was told.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Final

from collector.ingest.judge import MAX_ID, registered_topics
from collector.model import Gateway, KeyRefusal, Reason
from specs.block import BlockFormatError, decode_block
from specs.topics import GatewayTopics, TopicError, parse_topic

KEY_NOTICE_INTERVAL: Final = 60.0
"""Seconds between two key notices to one gateway from one collector process."""

KEY_REFUSALS: Final = frozenset({Reason.UNKNOWN_KEY, Reason.REVOKED_KEY, Reason.RETIRED_KEY})


def key_refusal(topic: str, payload: bytes, reason: Reason) -> KeyRefusal | None:
    """The refusal to tell, for an `up/block` message refused for `reason`; else None.

    None too for a payload that is no block of the topic's own gateway and place, or whose
    epoch is longer than any the collector stores.
    """
    if reason not in KEY_REFUSALS:
        return None
    try:
        topics, _ = parse_topic(topic)
        header = decode_block(payload).header
    except (TopicError, BlockFormatError, RecursionError):
        return None
    if GatewayTopics(header.district, header.enterprise, header.gateway) != topics:
        return None
    if len(header.epoch) > MAX_ID:
        return None
    return KeyRefusal(topics, header.epoch)


def registered_at_their_place(
    refusals: Iterable[KeyRefusal], registered: Mapping[str, Gateway]
) -> tuple[KeyRefusal, ...]:
    """Those of `refusals` whose gateway the registry holds at the place they name."""
    found: list[KeyRefusal] = []
    for refusal in refusals:
        owner = registered.get(refusal.topics.gateway)
        if owner is not None and registered_topics(owner) == refusal.topics:
            found.append(refusal)
    return tuple(found)


class KeyNotices:
    """When each gateway was last told (monotonic seconds): one notice per interval.

    Only gateways told hold an entry (registered ones), and entries go once their interval is
    over, so made-up gateway ids never grow it.
    """

    def __init__(self, interval: float = KEY_NOTICE_INTERVAL) -> None:
        self._interval = interval
        self._told: dict[str, float] = {}

    def due(self, refusals: Iterable[KeyRefusal], now: float) -> tuple[KeyRefusal, ...]:
        """One refusal per gateway not told within the interval: the last of the batch."""
        last = {refusal.topics.gateway: refusal for refusal in refusals}
        if not last:  # nearly every batch: nothing to sweep for
            return ()
        self._told = {gw: at for gw, at in self._told.items() if now - at < self._interval}
        return tuple(refusal for gw, refusal in last.items() if gw not in self._told)

    def told(self, gateway: str, now: float) -> None:
        """`gateway` was sent a notice at `now`."""
        self._told[gateway] = now
