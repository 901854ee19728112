"""One OPC UA connection (`Link`): its client, its subscription and the values it delivered.

A link is thrown away whole on close. In subscribe mode a consumer task drains the
subscription into `Link.latest` (and names what is new in `Link.unsent`), and
`link_problem` says when the link is dead: the transport closed, the subscription ended, or
no publish response (data or keepalive) for `STALE_KEEPALIVES` keepalive periods.
"""

from __future__ import annotations

import asyncio
import logging
import time
from dataclasses import dataclass, field

from asyncua import ua
from asyncua.client.client import Client
from asyncua.client.ua_client import UaClientState
from asyncua.common.subscription import (
    DataChangeEvent,
    OverflowPolicy,
    StatusChangeEvent,
    Subscription,
)

from drivers.base import Quality
from drivers.opcua.model import UaValue
from drivers.opcua.samples import quality_of, status_name
from drivers.opcua.translate import reduce_value

# The driver's logger name, as before the link had a module of its own.
_log = logging.getLogger("drivers.opcua.driver")

STALE_KEEPALIVES = 1.5  # publish silence, in keepalive periods, that means the link is dead


@dataclass(slots=True)
class Link:
    """Everything that belongs to one connection; thrown away whole on close."""

    client: Client
    nodes: dict[str, ua.NodeId]
    subscription: Subscription | None = None
    consumer: asyncio.Task[None] | None = None
    keepalive_period: float = 0.0
    publishing_interval: float = 0.0  # as the server revised it, seconds (0: no subscription)
    opened_at: float = 0.0
    # Set when a publish response with data changes has been taken into `latest` (or when the
    # consumer ended); `unsent` names the points whose newest value nobody has taken yet.
    changed: asyncio.Event = field(default_factory=asyncio.Event)
    unsent: set[str] = field(default_factory=set)
    keys_by_node: dict[ua.NodeId, tuple[str, ...]] = field(default_factory=dict)
    refused: dict[str, int] = field(default_factory=dict)  # key -> monitored-item status
    unresolved: dict[str, str] = field(default_factory=dict)  # key -> why it has no node here
    latest: dict[str, UaValue] = field(default_factory=dict)
    first_values: asyncio.Event = field(default_factory=asyncio.Event)
    lost: str | None = None


def silent_until(link: Link) -> float | None:
    """When (monotonic) the subscription's silence would make the link count as dead."""
    if link.subscription is None:
        return None
    last = link.subscription.last_publish_at or link.opened_at
    return last + STALE_KEEPALIVES * link.keepalive_period


async def consume(link: Link, subscription: Subscription) -> None:
    """Drain the subscription into `link.latest`; record why it ended."""
    expected = len(link.nodes) - len(link.refused)
    async for event in subscription:
        if isinstance(event, DataChangeEvent):
            reduced = reduce_value(event.data.monitored_item.Value)
            for key in link.keys_by_node.get(event.node.nodeid, ()):
                link.latest[key] = reduced
                link.unsent.add(key)
            link.changed.set()
            if not link.first_values.is_set() and len(link.latest) >= expected:
                link.first_values.set()
        elif isinstance(event, StatusChangeEvent):
            status = int(event.notification.Status.value)
            if quality_of(status) is Quality.BAD:
                # BadTimeout (lifetime expired) or asyncua's BadShutdown on link loss.
                link.lost = f"subscription ended: {status_name(status)}"
                return
    link.lost = link.lost or "subscription closed"


def link_problem(link: Link) -> str | None:
    """Why the link is unusable, or None when it is fine."""
    state = link.client.uaclient.state
    if state is not UaClientState.CONNECTED:
        return f"connection {state.value}"
    if link.lost is not None:
        return link.lost
    if link.consumer is not None and link.consumer.done():
        return "subscription task ended"
    deadline = silent_until(link)
    if deadline is not None and time.monotonic() > deadline:
        subscription = link.subscription
        last = (subscription.last_publish_at if subscription else None) or link.opened_at
        return f"no publish response for {time.monotonic() - last:.1f} s"
    return None


def consumer_done(link: Link, task: asyncio.Task[None]) -> None:
    """Record why the subscription consumer stopped, so `read` reports it (and nothing leaks)."""
    link.changed.set()  # a caller waiting for the next publish learns of it now
    if task.cancelled():
        return
    exc = task.exception()
    if exc is not None:  # a bug in the mapping: end this link loudly, the caller reconnects
        _log.error("OPC UA subscription consumer failed", exc_info=exc)
        link.lost = f"subscription consumer failed: {exc!r}"


async def abandon(client: Client, limit: float) -> None:
    """Tear a client down without letting a dead or hung server stall us.

    asyncua's `disconnect` cancels its background tasks, sends CloseSession only over a
    live socket (bounded by the request timeout), logs what it could not close and never
    raises; the outer bound is a backstop in case a step waits on something else.
    """
    try:
        async with asyncio.timeout(limit + 1.0):
            await client.disconnect()
    except TimeoutError:
        client.disconnect_socket()


async def subscribe(
    link: Link,
    device_id: str,
    *,
    publishing_interval: float,
    sampling_interval: float,
    keepalive_count: int,
) -> None:
    """Create the subscription and its monitored items, and start draining it.

    The server may revise what is asked (a real one within its limits): the revised
    intervals are kept on the link and logged, so a server that publishes slower than asked
    (and so delays every value) is visible.
    """
    client = link.client
    params = ua.CreateSubscriptionParameters(
        RequestedPublishingInterval=publishing_interval * 1000,
        RequestedLifetimeCount=3 * keepalive_count,  # Part 4: >= 3 keepalives
        RequestedMaxKeepAliveCount=keepalive_count,
        MaxNotificationsPerPublish=0,  # no limit: one publish carries every change
        PublishingEnabled=True,
        Priority=0,
    )
    keys_by_node: dict[ua.NodeId, list[str]] = {}
    for key, node in link.nodes.items():
        keys_by_node.setdefault(node, []).append(key)
    link.keys_by_node = {node: tuple(keys) for node, keys in keys_by_node.items()}
    unique = list(link.keys_by_node)
    if not unique:  # nothing to monitor: no subscription, nothing to wait for
        link.first_values.set()
        return
    # Built directly rather than through Client.create_subscription: that one keeps the
    # server's revised keepalive to itself and enrols the subscription in asyncua's
    # watchdog, which would re-create it on the same session behind our back. Here a
    # silent subscription means a new connection, decided in `link_problem`. The
    # consumer keeps the queue short; its bound only matters if the loop stalls.
    subscription = Subscription(
        client.uaclient.session,
        params,
        None,
        queue_maxsize=max(64, 4 * len(unique)),
        overflow=OverflowPolicy.DROP_OLDEST,
    )
    link.subscription = subscription
    revised = await subscription.init()
    link.publishing_interval = revised.RevisedPublishingInterval / 1000
    link.keepalive_period = link.publishing_interval * max(1, revised.RevisedMaxKeepAliveCount)
    results = await subscription.subscribe_data_change(
        [client.get_node(node) for node in unique],
        queuesize=1,
        sampling_interval=ua.Double(sampling_interval * 1000),
    )
    for node, result in zip(unique, results, strict=True):
        if isinstance(result, ua.StatusCode):
            for key in link.keys_by_node[node]:
                link.refused[key] = int(result.value)
    # The sampling interval each item was given is not kept by asyncua's Subscription; the
    # publishing interval is what bounds the wait of a sampled change at the server.
    # A server that publishes slower than asked delays every change by up to the difference
    # (G6): worth a warning, as it is the server's limit and only its configuration helps.
    slower = link.publishing_interval > publishing_interval * 1.01
    _log.log(
        logging.WARNING if slower else logging.INFO,
        "opcua_subscription_created device=%s publishing_interval=%gs (asked %gs) "
        "keepalive=%gs sampling_interval asked=%gs nodes=%d refused_points=%d",
        device_id,
        link.publishing_interval,
        publishing_interval,
        link.keepalive_period,
        sampling_interval,
        len(unique),
        len(link.refused),
    )
    if len(link.refused) == len(link.nodes):
        link.first_values.set()  # nothing will ever arrive; do not wait for it
    link.opened_at = time.monotonic()
    link.consumer = asyncio.create_task(consume(link, subscription), name=f"opcua-{device_id}")
    link.consumer.add_done_callback(lambda task: consumer_done(link, task))
