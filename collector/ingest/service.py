"""The ingest shell: MQTT in, one storage transaction per batch, signed ACKs out.

A broker PUBACK means nothing here; only the ACK published after the database commit lets an
agent forget a block. So the loop is: take a batch of what the client has queued, live
messages ahead of blocks marked `lane: backlog` (collector.ingest.lanes; up to `batch_max`
live ones, or backlog ones for about `backlog_batch_seconds`), look up the keys and gateways
the batch names, let the pure core plan the batch, commit it, and only then publish one ACK
per stored or duplicate block (collector.ingest.ack_out: their PUBACKs are awaited beside the
next batch), and the key notice to a registered gateway whose block was refused for its key
(collector.ingest.key_notice). A lost connection is retried with backoff; whatever was in
flight is resent by the agents, and deduplication absorbs it.
"""

from __future__ import annotations

import asyncio
import ssl
import time
import uuid
from collections.abc import AsyncIterator, Callable, Iterator, Sequence
from dataclasses import dataclass, replace
from typing import Final

import aiomqtt
import structlog
from paho.mqtt.packettypes import PacketTypes
from paho.mqtt.properties import Properties

from collector.config import MAX_SESSION_EXPIRY
from collector.feed.wakeup import CommitSignal
from collector.ingest.ack_out import AckOut
from collector.ingest.batch_log import BatchLog
from collector.ingest.core import Inbound, Outgoing, build_acks, notice_ack, plan_batch
from collector.ingest.deferral import ingest_deferring
from collector.ingest.key_notice import KeyNotices, registered_at_their_place
from collector.ingest.lanes import BacklogBudget, Lanes
from collector.ingest.takeover import Reconnects
from collector.metrics import CollectorMetrics
from collector.model import AHEAD_ALLOWANCE, MESSAGE_BYTES, KeyRefusal, LiveKey
from collector.storage.base import Storage, StorageError
from hostkit.backoff import backoff_delays
from hostkit.log_limit import LineLimit
from hostkit.mqtt import NO_DELAY, CancelSafeClient
from hostkit.mqtt_held import HeldBytes
from specs.catalogue import Catalogue, default_catalogue
from specs.lanes import Lane, lane_of
from specs.signing import SigningKey
from specs.topics import ROOT, collector_subscription

STATUS_SUBSCRIPTION: Final = f"{ROOT}/+/+/+/status"
STORAGE_RETRY_DELAY: Final = 1.0
LEAVE_TIMEOUT: Final = 5.0  # a clean stop waits this long for the broker's UNSUBACK at most
INCOMING_QUEUE_BOUND: Final = 10_000
INCOMING_BYTES_BOUND: Final = 128 * 1024 * 1024
"""Bytes of received messages not yet ingested (hostkit.mqtt_held); a backlog of 10,000
blocks of a few KB each stays far below it."""

log = structlog.get_logger("collector.ingest")


@dataclass(frozen=True, slots=True)
class IngestSettings:
    """What the ingest loop needs from the collector config.

    With a `client_id` the MQTT session is durable (clean start off, `session_expiry`
    seconds): what the broker queued for this collector while it was down arrives when it
    reconnects (unless `leave_on_stop` ended the session at a clean stop, see `Ingest`).
    Without one (tools, in-process tests) the id is random and the session ends with the
    connection: a random id could never find its session again, and a session left behind
    would keep taking its turn in the shared subscription (see `Ingest`).
    """

    host: str
    port: int
    # For an mqtts:// broker: the CA to verify it by and the client certificate to show it.
    tls: ssl.SSLContext | None = None
    share_group: str = "gz-collectors"
    batch_max: int = 200
    # How long a batch from the backlog lane should take, and how many messages it takes at
    # most (collector.ingest.lanes.BacklogBudget): a live block that arrives while one is
    # stored waits for it, so it stays short.
    backlog_batch_seconds: float = 0.02
    backlog_batch_max: int = 16
    client_id: str | None = None
    session_expiry: float = 86400.0
    leave_on_stop: bool = False  # a clean stop leaves the group and ends the session
    reconnect_min: float = 0.2
    reconnect_max: float = 30.0
    offline_after: float = 60.0  # how long a sign of life keeps a gateway live (presence)
    key_overlap: float = 7 * 86400.0  # a rotated gateway key's old key signs this long still
    ahead_allowance: float = AHEAD_ALLOWANCE  # a reading's t past its arrival, still current
    incoming_bytes: int = INCOMING_BYTES_BOUND  # held of messages not yet ingested (HeldBytes)
    max_message_bytes: int = MESSAGE_BYTES  # a larger payload is audited `too_large` unread

    @property
    def durable(self) -> bool:
        """Whether the broker keeps this collector's session across disconnects."""
        return self.client_id is not None

    @property
    def broker(self) -> str:
        """The broker as a URL, for logs."""
        return f"{'mqtt' if self.tls is None else 'mqtts'}://{self.host}:{self.port}"


def _user_properties(message: aiomqtt.Message) -> tuple[tuple[str, str], ...]:
    found = getattr(message.properties, "UserProperty", None) or []
    return tuple((str(name), str(value)) for name, value in found)


def _lane(message: aiomqtt.Message) -> Lane:
    return lane_of(_user_properties(message))


async def _batches(
    messages: aiomqtt.MessagesIterator, settings: IngestSettings, backlog: BacklogBudget
) -> AsyncIterator[list[aiomqtt.Message]]:
    """Batches of what the client has queued, live messages ahead of backlog blocks.

    Each round moves whatever the client holds already into the lanes (no waiting to fill a
    batch) and takes one batch (collector.ingest.lanes): a live block that arrived behind
    queued backlog blocks goes into the next batch.
    """
    lanes: Lanes[aiomqtt.Message] = Lanes(_lane, INCOMING_QUEUE_BOUND)
    while True:
        if not lanes:
            lanes.put(await anext(messages))
        while len(messages) > 0 and not lanes.full:
            lanes.put(await anext(messages))
        yield lanes.take(settings.batch_max, backlog.size())


class Ingest:
    """Subscribes, verifies, stores and acknowledges until cancelled.

    `connected` is set while the client is subscribed (tests and `run_collector` wait on it).
    Readings are normalized against `catalogue` (default: the one shipped with `specs`).
    `commits`, when given, is notified after every committed batch (live streams wake on it),
    and `metrics` counts it.

    The session is durable when the settings name a client id: MQTT 5 clean start off and a
    Session Expiry Interval, subscribed inside the shared subscription
    `$share/<group>/gz/1/+/+/+/up/#`. What Mosquitto 2.0 (2.0.11, src/subs.c
    `subs__shared_process`, src/database.c `db__message_insert`) does with it:

    - Each message to a shared subscription goes to the first member of the group's list,
      which then moves to the back: strict round robin, *whether or not that member's client
      is connected*. A member stays in the list while its session lives (until it expires,
      or a clean start replaces it), connected or not.
    - A QoS 1 message for a disconnected member is queued in its session (up to
      `max_queued_messages`, default 1000 per client; more are dropped) and delivered when
      that client id connects again; it is never handed to another member. Sessions live in
      memory unless `persistence true`: a broker restart ends them.
    - So with one collector, blocks published while it is down wait for it. With N
      collectors, one that is down takes every N-th block into its queue until it returns or
      its session expires (then they are gone): the agents resend unacknowledged blocks after
      their ACK timeout, so those blocks are late, never lost. Keep `session_expiry` about as
      long as an outage you would rather wait out than resend, and never run two processes
      with one client id (each connect takes the session from the other, see
      collector.ingest.takeover).
    - With `leave_on_stop` a clean stop (`stop()`) leaves the group and ends the session
      (`_leave`), its share going to the live members at once. Off by default: a restart takes
      its queue, the broker's buffer for a lone collector (tests/faults/test_disk_full.py).
    - paho acknowledges a QoS 1 PUBLISH as it arrives, before the batch is committed: what
      was in flight when a collector dies is resent by the agents, as before.
    """

    def __init__(
        self,
        settings: IngestSettings,
        storage: Storage,
        signing_key: SigningKey,
        clock: Callable[[], float] = time.time,
        catalogue: Catalogue | None = None,
        *,
        commits: CommitSignal | None = None,
        metrics: CollectorMetrics | None = None,
        rejection_lines: LineLimit | None = None,
    ) -> None:
        self._settings = settings
        self._commits = commits
        self._metrics = metrics
        self._storage = storage
        self._key = signing_key
        self._clock = clock
        self._catalogue = catalogue if catalogue is not None else default_catalogue()
        self._client_id = settings.client_id or f"gz-collector-{uuid.uuid4().hex[:12]}"
        self.connected = asyncio.Event()
        self._stopping = False
        self._backlog = BacklogBudget(settings.backlog_batch_seconds, settings.backlog_batch_max)
        self._log = BatchLog(rejection_lines)  # rejections, readings ahead: a bounded number
        self._notices = KeyNotices()  # when each gateway was last told its key is refused

    def stop(self) -> None:
        """Say that the coming cancellation of `run` is a stop: no retry path may outlive it.

        A cancellation can be lost on its way through the libraries: inside an asyncpg
        transaction it closes the connection and the transaction's exit raises InterfaceError
        in its place (a StorageError here), and aiomqtt's wait_for may swallow one on Python
        3.11. A `collector serve` stopped that way went on retrying for minutes. Task.cancelling()
        cannot tell (on 3.11 a TaskGroup whose child failed leaves the parent's count raised, so
        it would also stop the loop after a mere broker loss): the stop is said explicitly.
        """
        self._stopping = True

    def _raise_if_stopping(self) -> None:
        if self._stopping:
            raise asyncio.CancelledError

    async def run(self) -> None:
        """Stay connected and ingest; reconnect after capped, fully jittered delays (hostkit).

        The delays start afresh after a session that lasted `SHORT_SESSION`: sessions cut
        short again and again (a flapping link, two processes with one client id) space out
        up to `reconnect_max`. Only a broker's word that the session was taken over holds the
        collector off longer (collector.ingest.takeover).
        """
        reconnects = Reconnects(self._reconnect_delays, self._client_id)
        while True:
            started = time.monotonic()
            try:
                await self._session()
            except aiomqtt.MqttError as exc:
                self._raise_if_stopping()
                lasted = time.monotonic() - started if self.connected.is_set() else None
                self.connected.clear()
                await asyncio.sleep(reconnects.wait_after(exc, lasted))

    def _reconnect_delays(self) -> Iterator[float]:
        settings = self._settings
        return backoff_delays(initial=settings.reconnect_min, cap=settings.reconnect_max)

    def _connect_properties(self) -> Properties:
        props = Properties(PacketTypes.CONNECT)  # type: ignore[no-untyped-call] # paho lacks hints here
        expiry = round(self._settings.session_expiry) if self._settings.durable else 0
        props.SessionExpiryInterval = min(expiry, MAX_SESSION_EXPIRY)
        return props

    async def _session(self) -> None:
        # Durable with a stable client id (the broker queues for us while we are down), clean
        # and gone at disconnect with a random one: see the class docstring.
        held = HeldBytes(self._settings.incoming_bytes)
        async with CancelSafeClient(
            self._settings.host,
            self._settings.port,
            identifier=self._client_id,
            tls_context=self._settings.tls,
            protocol=aiomqtt.ProtocolVersion.V5,
            clean_start=not self._settings.durable,
            properties=self._connect_properties(),
            # Bounded: past this, messages are dropped here and the agents resend them on
            # their ACK timeout, instead of memory growing while the database is slow. (The
            # lanes hold as many again: `_batches` takes no more from the client past that.)
            # And bounded in bytes, queue, lanes and the batch together (HeldBytes).
            max_queued_incoming_messages=INCOMING_QUEUE_BOUND,
            queue_type=held.queue_type(),
            socket_options=NO_DELAY,
        ) as client:
            # A batch publishes its ACKs concurrently, up to one per block, while up to a
            # batch's worth of earlier ones wait for their PUBACK (AckOut); aiomqtt warns for
            # each publish past 10 pending, which at a thousand gateways is a log line per ACK.
            client.pending_calls_threshold = 2 * self._settings.batch_max
            acks_out = AckOut(client, bound=self._settings.batch_max)
            try:  # a stop from here on leaves the group, even one in the subscribes
                await client.subscribe(collector_subscription(self._settings.share_group), qos=1)
                await client.subscribe(STATUS_SUBSCRIPTION, qos=1)
                # A stop that the CONNACK wait swallowed (aiomqtt's wait_for on 3.11): past
                # here the loop waits for a message, which on an idle site may never come.
                self._raise_if_stopping()
                self.connected.set()
                log.info(
                    "broker_subscribed",
                    broker=self._settings.broker,
                    client_id=self._client_id,
                    durable=self._settings.durable,
                )
                await self._ingest(client.messages, acks_out, held)
            finally:
                acks_out.abandon()
                held.close()  # the drops not logged yet
                if self._stopping and self._settings.leave_on_stop:
                    await self._leave(client)

    async def _leave(self, client: CancelSafeClient) -> None:
        """A clean stop: out of the group (UNSUBACK awaited), then the session ended (expiry 0)."""
        # Were the DISCONNECT lost (paho closes as it writes it, PUBACKs perhaps unread: a
        # reset), the session left would hold no subscription, so take no turn.
        client.end_session_at_exit()
        subscriptions = [collector_subscription(self._settings.share_group), STATUS_SUBSCRIPTION]
        try:
            await client.unsubscribe(subscriptions, timeout=LEAVE_TIMEOUT)
        except aiomqtt.MqttError as exc:  # the broker is gone: the session's expiry ends it
            log.warning("broker_group_not_left", error=str(exc), client_id=self._client_id)
            return
        log.info("broker_group_left", client_id=self._client_id)

    async def _ingest(
        self, messages: aiomqtt.MessagesIterator, acks_out: AckOut, held: HeldBytes
    ) -> None:
        async for batch in _batches(messages, self._settings, self._backlog):
            self._raise_if_stopping()
            acks_out.raise_failure()
            taken = time.monotonic()
            inbound = [
                Inbound(
                    topic=m.topic.value,
                    payload=bytes(m.payload),
                    properties=_user_properties(m),
                    received_at=self._clock(),
                )
                for m in batch
            ]
            try:
                acks = await self.process(inbound)
            except StorageError as exc:
                self._raise_if_stopping()  # a stop that asyncpg turned into this error
                # Nothing committed, nothing acknowledged: the agents resend these blocks.
                # The pause keeps a broken disk from turning into a hot loop.
                log.exception("ingest_batch_failed", error=str(exc), messages=len(inbound))
                await asyncio.sleep(STORAGE_RETRY_DELAY)
                continue
            finally:
                held.release(batch)
            if _lane(batch[0]) is Lane.BACKLOG:  # a batch is of one lane (Lanes.take)
                self._backlog.took(len(batch), time.monotonic() - taken)
            await acks_out.send(acks)

    async def process(self, messages: Sequence[Inbound]) -> tuple[Outgoing, ...]:
        """Verify, store and decide the ACKs for one batch (committed when this returns)."""
        kids = {kid for m in messages if (kid := m.kid) is not None}
        grants = await self._storage.grants(kids) if kids else {}
        batch = replace(
            plan_batch(
                messages,
                grants,
                self._catalogue,
                max_message_bytes=self._settings.max_message_bytes,
            ),
            presence_window=self._settings.offline_after,
            key_overlap=self._settings.key_overlap,
            ahead_allowance=self._settings.ahead_allowance,
        )
        batch, result = await ingest_deferring(self._storage, batch)  # (collector.ingest.deferral)
        if self._commits is not None:
            self._commits.notify()  # live streams read what this batch committed
        self._log.committed(batch, result)
        if self._metrics is not None:
            self._metrics.batch_committed(batch, result, self._clock())
        limit = self._settings.max_message_bytes  # said in each ACK: the agent splits above it
        acks = build_acks(batch.blocks, result, self._key, self._clock(), max_message_bytes=limit)
        return acks + await self._key_notices(batch.key_refusals)

    async def _key_notices(self, refusals: Sequence[KeyRefusal]) -> tuple[Outgoing, ...]:
        """The notices (collector.ingest.key_notice) for the batch's blocks refused for their key.

        A read that fails costs these notices only (the next refusal tells), not the ACKs.
        """
        moment = time.monotonic()
        due = self._notices.due(refusals, moment)
        if not due:
            return ()
        notices: list[tuple[KeyRefusal, Outgoing]] = []
        try:
            registered = await self._storage.find_gateways({r.topics.gateway for r in due})
            for refusal in registered_at_their_place(due, registered):
                gateway = refusal.topics.gateway
                state = await self._storage.stream(gateway, refusal.epoch)
                keys = await self._storage.keys(gateway)
                live = [
                    LiveKey(k.kid, k.added_at, k.retired_at) for k in keys if k.revoked_at is None
                ]
                notice = notice_ack(
                    refusal,
                    state,
                    live,
                    self._key,
                    self._clock(),
                    max_message_bytes=self._settings.max_message_bytes,
                )
                notices.append((refusal, notice))
        except StorageError as exc:
            log.warning("gateway_key_refusal_unanswered", error=str(exc))
            return ()
        for refusal, _ in notices:
            self._notices.told(refusal.topics.gateway, moment)
            log.info(
                "gateway_key_refusal_answered",
                gateway=refusal.topics.gateway,
                epoch=refusal.epoch,
            )
        return tuple(notice for _, notice in notices)
