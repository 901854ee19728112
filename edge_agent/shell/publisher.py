"""Forward sealed blocks over MQTT 5 and release them only on a valid collector ACK.

A broker PUBACK means nothing here (mosquitto loses queued QoS 1 messages on SIGKILL): only the
collector's signed ACK, sent after its database commit, lets the agent forget a block.

This module is the MQTT session (ACKs and commands in, blocks, heartbeats and results out);
what an ACK does is `edge_agent.shell.publisher_acks`; which block goes next, in which lane,
and what is owed again is `edge_agent.shell.publisher_lanes`; a block too large to send is
`edge_agent.shell.publisher_oversize`; the client, its settings and its will are
`edge_agent.shell.uplink`.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import Callable, Iterator
from typing import Protocol

import aiomqtt
import structlog
from paho.mqtt.properties import Properties

from edge_agent.core.agent_status import MetaStatus
from edge_agent.core.trusted_keys import TrustedKeys
from edge_agent.shell.first_failure import first_failure
from edge_agent.shell.host import clock_synchronized
from edge_agent.shell.outbox import Outbox
from edge_agent.shell.outbox_reads import StoredBlock
from edge_agent.shell.publisher_acks import AckTaker
from edge_agent.shell.publisher_lanes import Lanes
from edge_agent.shell.publisher_oversize import split_if_too_large
from edge_agent.shell.uplink import (
    UplinkClient,
    UplinkSettings,
    publish_packet_size,
    signed_properties,
    uplink_client,
)
from hostkit.backoff import ResendBackoff
from hostkit.log_limit import LineLimit
from hostkit.mqtt_held import HeldBytes
from specs.encoding import choose_encoding, encode_payload
from specs.lanes import Lane, lane_properties
from specs.signing import Signature, VerifyKey
from specs.status import GatewayStatus
from specs.topics import GatewayTopics

log = structlog.get_logger("edge_agent.publisher")

# How often the outbox is asked whether another process (backfill, `outbox resend`) wrote to
# it: cheap (one PRAGMA), and what it finds goes out after at most this delay.
_RESCAN_EVERY = 2.0


class CommandInbox(Protocol):
    """Who takes the messages on `down/cmd` (edge_agent.shell.commands.CommandDesk)."""

    async def on_command(self, payload: bytes, properties: list[tuple[str, str]] | None) -> None:
        """Judge and apply one command; never raises for a bad one."""


class Publisher:
    """One MQTT session at a time; reconnects with capped, jittered backoff."""

    def __init__(
        self,
        outbox: Outbox,
        topics: GatewayTopics,
        collector_key: VerifyKey | TrustedKeys,
        settings: UplinkSettings,
        backoff: Callable[[], Iterator[float]],
        *,
        sign: Callable[[bytes], Signature],
        meta: tuple[bytes, Signature] | None = None,
        version: str | None = None,
        config_hash: str | None = None,
        commands: CommandInbox | None = None,
        rejected_lines: LineLimit | None = None,
        clock_synced: Callable[[], bool] = clock_synchronized,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self._outbox = outbox
        self._commands = commands  # None: down/cmd is not subscribed
        self._topics = topics
        self._settings = settings
        self._new_backoff = backoff
        self._meta = meta
        self._sign = sign  # status messages are signed like blocks (specs.status)
        self._version = version
        self._config_hash = config_hash
        self._client_now: UplinkClient | None = None
        self._stopping = False  # said offline: no heartbeat after this
        self._stop_said = False
        self._backoff = backoff()
        self._lanes = Lanes(settings.max_inflight, ResendBackoff(settings.ack_timeout))
        outbox.delivery.on_replaced(self._lanes.replaced)  # a live block thinned: its readings
        self._wake = asyncio.Event()
        self._acks = AckTaker(
            outbox,
            topics,
            collector_key,
            lanes=self._lanes,
            wake=self._wake,
            rejected_lines=rejected_lines if rejected_lines is not None else LineLimit(),
            clock_synced=clock_synced,
            clock=clock,
        )
        self._idle = asyncio.Event()
        self.connected = asyncio.Event()
        self.published = 0
        self.meta_status: MetaStatus | None = None  # the catalogue at the last connect
        self._next_send = 0.0
        self._last_rescan = 0.0
        self._read_again_at: float | None = None  # a block left unsent is read again then

    @property
    def last_ack(self) -> float | None:
        """When the collector last released blocks with an ACK (wall clock; `edge-agent status`)."""
        return self._acks.last_ack

    @property
    def acks_not_recorded(self) -> tuple[int, float | None]:
        """ACKs this run could not record (a full disk), and when the last came."""
        return self._acks.not_recorded

    def replace_meta(self, meta: tuple[bytes, Signature]) -> None:
        """Send this signed meta from the next connect on (the gateway's key changed)."""
        self._meta = meta

    def notify_sealed(self, seq: int) -> None:
        """A new block is in the outbox: send it before the backlog."""
        self._lanes.add_live(seq)
        self._idle.clear()
        self._wake.set()

    async def drained(self) -> None:
        """Wait until every sealed block has been ACKed by the collector."""
        await self._idle.wait()

    @property
    def is_settled(self) -> bool:
        """Whether no live block waits to be sent or for its ACK."""
        return self._lanes.is_settled

    async def settled(self) -> None:
        """Wait until every live block sealed so far has been ACKed (the backlog may remain).

        What a stop waits for: the last readings polled reach the collector now, while a
        backlog that takes minutes to drain stays in the outbox for the next start.
        """
        while not self.is_settled:
            self._lanes.live_moved.clear()
            await self._lanes.live_moved.wait()

    def stop(self) -> None:
        """Say that the coming cancellation of `run` is a stop: no session may outlive it.

        aiomqtt waits for a PUBACK (and a SUBACK, a CONNACK) with asyncio.wait_for, which on
        Python 3.11 returns the result instead of raising when the cancellation lands in the
        loop iteration the answer does: the publisher then went on (publishing, resending, its
        ACKs unheard) while whoever cancelled it waited for good (bench/replay.py's stall; a
        stop out of budget). Task.cancelling() cannot tell a stop: on 3.11 a TaskGroup whose
        child failed leaves the waiting task's count raised for good (the collector exited
        after a mere broker loss that way, c58099c). So the stop is said, and `run` checks it
        after each such wait. A `run` started again afterwards runs (bench/replay.py's outage).
        """
        self._stop_said = True

    def _raise_if_stopped(self, session_ending: asyncio.Event | None = None) -> None:
        """Raise CancelledError when a stop was said or this session is being ended."""
        if self._stop_said or (session_ending is not None and session_ending.is_set()):
            raise asyncio.CancelledError

    async def run(self) -> None:
        """Keep a session up forever; say `stop` and cancel to stop."""
        self._stop_said = False
        while True:
            self._raise_if_stopped()
            try:
                held = HeldBytes(self._settings.incoming_bytes)
                uplink = uplink_client(self._settings, self._topics, self._sign, held)
                async with uplink as client:
                    self._client_now = client
                    try:
                        await self._session(client, held)
                    finally:
                        held.close()  # the drops not logged yet
                        self._client_now = None
                        # Cancelled too: a stopped publisher is not connected (a restarted
                        # one's callers wait for the new session, bench/replay.py).
                        self.connected.clear()
            except* aiomqtt.MqttError as group:
                self._raise_if_stopped()
                self.connected.clear()
                delay = next(self._backoff)
                log.warning("uplink_lost", error=str(group.exceptions[0]), retry_in=delay)
                await asyncio.sleep(delay)

    async def _session(self, client: UplinkClient, held: HeldBytes) -> None:
        await client.subscribe(self._topics.ack, qos=1)
        if self._commands is not None:
            await client.subscribe(self._topics.cmd, qos=1)
        if self._meta is not None:
            # On every connect: the collector may have lost it, and it is cheap.
            payload, signature = self._meta
            properties = signed_properties(signature)
            size = publish_packet_size(self._topics.meta, payload, properties)
            limit = client.maximum_packet_size
            if fits := limit is None or size <= limit:
                await client.publish(self._topics.meta, payload, qos=1, properties=properties)
            else:  # one message, not split: sent, it would end every session before a block
                log.error("meta_too_large_for_broker", bytes=size, limit=limit)
            # For `edge-agent status` and the metrics: the log line alone went unseen.
            self.meta_status = MetaStatus(fits, size, limit)
        self._raise_if_stopped()  # a stop that the waits above swallowed
        # Everything unacked is owed again on a new session; the collector dedupes. Blocks
        # sealed while the uplink was down are backlog now, sent in order in the backlog
        # lane: kept as live, the blocks sealed from now on would queue behind them.
        self._lanes.forget()
        self.connected.set()
        self._backoff = self._new_backoff()
        log.info("uplink_connected", host=self._settings.host, port=self._settings.port)
        # Not a TaskGroup: on 3.11 it can swallow the cancellation that stops the publisher
        # when a session task fails in the same turn (edge_agent.shell.first_failure).
        # `ending` is set before the session's tasks are cancelled, for those that find their
        # cancellation swallowed by a PUBACK wait.
        ending = asyncio.Event()
        await first_failure(
            ("publisher-receive", self._receive(client, held)),
            ("publisher-send", self._send(client, ending)),
            ("publisher-heartbeat", self._heartbeat(client, ending)),
            ending=ending.set,
        )

    async def _receive(self, client: aiomqtt.Client, held: HeldBytes) -> None:
        async for message in client.messages:
            try:
                await self._handle(message)
            finally:
                held.release([message])

    async def _handle(self, message: aiomqtt.Message) -> None:
        if self._commands is not None and message.topic.matches(self._topics.cmd):
            user = getattr(message.properties, "UserProperty", None)
            await self._commands.on_command(bytes(message.payload), user)
        elif message.topic.matches(self._topics.ack):
            await self._acks.on_ack(bytes(message.payload), message.properties)

    async def _rescan_if_changed(self) -> None:
        """Pick up blocks another process sealed or marked for resend, and a new epoch.

        At most every `_RESCAN_EVERY` seconds: the send loop wakes for every block.
        """
        moment = time.monotonic()
        if moment - self._last_rescan < _RESCAN_EVERY:
            return
        self._last_rescan = moment
        epoch = self._outbox.epoch
        if not await self._outbox.changed_elsewhere():
            return
        if self._outbox.epoch != epoch:
            self._lanes.forget()
        self._lanes.rescan()

    async def _send(self, client: UplinkClient, ending: asyncio.Event) -> None:
        while True:
            self._wake.clear()
            await self._rescan_if_changed()
            if self._read_again_at is not None and time.monotonic() >= self._read_again_at:
                self._read_again_at = None
                self._lanes.rescan()  # the backlog's cursor has passed it
            self._lanes.time_out()
            # Picked one at a time: a block sealed while another is published goes next.
            while (picked := await self._lanes.next_block(self._outbox.delivery)) is not None:
                await self._pace()
                # Room made since it was read may have let it give way: then it is not sent.
                live = picked[1]
                # A live one thinned is in a replacement, live too (`Lanes.replaced`, and
                # for another process's room, the next `next_block`'s read of the file).
                if (block := await self._outbox.delivery.still_held(picked[0])) is None:
                    continue
                payload, properties = self._wire(block, Lane.LIVE if live else Lane.BACKLOG)
                if await self._too_large(client, block, payload, properties, live=live):
                    continue
                self._lanes.sending(block.seq, live=live)
                await client.publish(self._topics.block, payload, qos=1, properties=properties)
                self.published += 1
                self._raise_if_stopped(ending)
            if self._lanes.is_idle:
                self._idle.set()
            else:
                self._idle.clear()
            wait = self._lanes.wait_for(_RESCAN_EVERY)
            with contextlib.suppress(TimeoutError):
                # asyncio.timeout, not wait_for (which can drop a cancellation on 3.11).
                async with asyncio.timeout(wait):
                    await self._wake.wait()

    async def _pace(self) -> None:
        """Keep to `publish_rate` so a drained backlog cannot flood a thin uplink."""
        rate = self._settings.publish_rate
        if rate is None:
            return
        now = time.monotonic()
        self._next_send = max(self._next_send, now)
        if self._next_send > now:
            await asyncio.sleep(self._next_send - now)
        self._next_send += 1.0 / rate

    def _wire(self, block: StoredBlock, lane: Lane) -> tuple[bytes, Properties]:
        """The bytes and properties `block` travels with in `lane`."""
        # Compressed for the wire only: the outbox, the hash chain and the signature keep the
        # canonical bytes, which the collector gets back by decoding per `enc`.
        encoding = choose_encoding(block.payload, self._settings.encoding)
        properties = signed_properties(block.signature, encoding=encoding)
        # The lane it was sent in (specs.lanes): the collector ingests backlog blocks only
        # when nothing else waits, so a live block overtakes a queued backlog there too.
        properties.UserProperty = lane_properties(lane)  # paho appends to the list
        return encode_payload(block.payload, encoding), properties

    async def _too_large(
        self,
        client: UplinkClient,
        block: StoredBlock,
        payload: bytes,
        properties: Properties,
        *,
        live: bool,
    ) -> bool:
        """Whether `block` is too large to send: then split (`publisher_oversize`), not sent."""
        delivery = self._outbox.delivery
        limit = self._acks.collector_limit
        not_sent = await split_if_too_large(
            client, self._topics.block, delivery, block, payload, properties, limit
        )
        if not_sent is None:
            return False
        if not_sent.failed:
            self._read_again_at = time.monotonic() + self._settings.ack_timeout
        elif live:  # none when not split: one record, or gone (thinned: `next_block` follows)
            self._lanes.resealed(not_sent.resealed)
        return True

    async def publish_result(self, payload: bytes, signature: Signature) -> None:
        """Publish a command result on `up/cmd` (QoS 1); aiomqtt.MqttError without a session."""
        client = self._client_now
        if client is None or not self.connected.is_set():
            raise aiomqtt.MqttError("no session")
        await client.publish(
            self._topics.cmd_result, payload, qos=1, properties=signed_properties(signature)
        )

    async def say_offline(self) -> bool:
        """Publish the retained offline status now; whether a session was up to carry it.

        For a clean stop: the broker sends the last will only when a session ends without a
        DISCONNECT, so without this the last heartbeat (`online: true`) would stay retained
        and the gateway would look online until the collector's presence window ran out.
        """
        self._stopping = True  # no heartbeat after this
        client = self._client_now
        if client is None or not self.connected.is_set():
            return False
        await self._publish_status(client, GatewayStatus(online=False, t=time.time()))
        return True

    async def _publish_status(self, client: aiomqtt.Client, status: GatewayStatus) -> None:
        """Publish `status` retained on the status topic, signed like a block."""
        payload = status.encode()
        await client.publish(
            self._topics.status,
            payload,
            qos=1,
            retain=True,
            properties=signed_properties(self._sign(payload)),
        )

    async def _heartbeat(self, client: aiomqtt.Client, ending: asyncio.Event) -> None:
        while True:
            stats = await self._outbox.stats()
            status = GatewayStatus(
                online=True,
                t=time.time(),
                epoch=stats.epoch,
                last_seq=stats.last_seq,
                undelivered=stats.undelivered,
                version=self._version,
                config=self._config_hash,
            )
            if not self._stopping:  # checked last: an offline status is never overtaken
                await self._publish_status(client, status)
                self._raise_if_stopped(ending)
            await asyncio.sleep(self._settings.heartbeat)
