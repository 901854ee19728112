"""OPC UA driver: data-change subscriptions by default, one batched Read per cycle as fallback.

This is the only module that imports the asyncua client, so asyncua's exceptions are
translated into the DriverError tree here, once (`_translate`), and asyncua's objects are
reduced to `UaValue` before they leave (`_reduce`).

Reconnect policy belongs to the caller, as for every driver. Every `connect()` builds a NEW
asyncua `Client`: reconnecting a used one can hang for ever (opcua-asyncio #1660), and
asyncua's own auto-reconnect is left off so that only one component decides when to retry.

Subscribe mode and the agent's poll loop
    `connect()` creates one subscription (publishing interval, keepalive count from
    `keepalive`, lifetime three keepalives) with one monitored item per distinct node, then
    waits up to `timeout` for the initial values. A background task drains the subscription
    (asyncua's async-iterator API) into a latest-value table, so notifications never queue
    up behind the poll loop. `read()` makes no network call: it returns one sample per point,
    in configuration order:

    * the newest notification received since the previous `read()` (earlier ones of the same
      interval are superseded; OPC UA queue size 1 does the same on the server);
    * otherwise the last known value again, flagged ``held`` and stamped with this read's
      time. Data-change semantics say an unreported value is unchanged, and the live
      subscription (its keepalives) vouches that it is still current;
    * a BAD sample (``no_value: ...``) until the point's first value arrives, or
      with the server's status (``BadNodeIdUnknown``) when it refused to monitor the node.

    Given the caller's read cadence (`cycle`, the agent's poll interval), `read()` returns at
    a publish response rather than at once: at once when one with data arrived within the
    last tenth of a cycle and has not been read, otherwise as soon as the next one arrives,
    waiting at most nine tenths of a cycle (then with what it has: repeats are ``held``). The
    server publishes on its own clock, so without this a value waited in the table for the
    next read: up to a whole poll interval, and about a whole one for good, since a
    subscription made during a poll publishes just after every later poll tick (G6: source ->
    stored 1.6-2.2 s at 1 s poll and publishing interval, against 0.25 s for Modbus).

    `read()` raises DriverConnectionError when the link is gone: the transport closed, the
    server reported the subscription dead (a Bad StatusChangeNotification), or no publish
    response (data or keepalive) arrived for 1.5 keepalive periods. A dead link is therefore
    reported within 2 keepalives at most, and the next `connect()` subscribes afresh.

Poll mode
    `read()` sends one Read service call for all distinct nodes (TimestampsToReturn=Both,
    MaxAge=0) and maps each DataValue the same way; a value whose timestamps did not move
    since the previous read is ``held``.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from dataclasses import dataclass, field
from typing import TYPE_CHECKING
from urllib.parse import urlsplit, urlunsplit

from asyncua import ua
from asyncua.client.client import Client
from asyncua.client.ua_client import UaClientState
from asyncua.common.subscription import (
    DataChangeEvent,
    OverflowPolicy,
    StatusChangeEvent,
    Subscription,
)
from asyncua.crypto import security_policies, uacrypto
from asyncua.ua.attribute_ids import AttributeIds
from asyncua.ua.status_codes import StatusCodes
from asyncua.ua.uaerrors import UaError, UaStatusCodeError
from cryptography import x509
from cryptography.hazmat.primitives.serialization import (
    Encoding,
    load_der_private_key,
    load_pem_private_key,
)

from drivers.base import (
    DriverConnectionError,
    DriverError,
    DriverProtocolError,
    DriverTimeoutError,
    Quality,
    RawSample,
)
from drivers.opcua.model import (
    OpcUaSecurityError,
    ReadMode,
    SecurityMode,
    SecurityPolicy,
    UaPoint,
    UaSecurity,
    UaValue,
)
from drivers.opcua.samples import epoch_seconds, quality_of, status_name, to_sample

if TYPE_CHECKING:
    from collections.abc import Callable, Sequence
    from pathlib import Path

__all__ = ["DEFAULT_PORT", "OpcUaDriver", "OpcUaSecurityError"]

_log = logging.getLogger(__name__)

DEFAULT_PORT = 4840
STALE_KEEPALIVES = 1.5  # publish silence, in keepalive periods, that means the link is dead
FRESH_SHARE = 0.1  # of the read cycle: a publish this recent is read at once, not waited for
_APPLICATION_URI = "urn:ganzhi:edge-agent"
_PRODUCT_URI = "urn:ganzhi"

_POLICY_CLASSES: dict[SecurityPolicy, type[security_policies.SecurityPolicy]] = {
    SecurityPolicy.BASIC256SHA256: security_policies.SecurityPolicyBasic256Sha256,
}
_UA_MODES = {
    SecurityMode.SIGN: ua.MessageSecurityMode.Sign,
    SecurityMode.SIGN_AND_ENCRYPT: ua.MessageSecurityMode.SignAndEncrypt,
}
# Service results that mean "you may not in": certificate, policy, mode or user refused.
_SECURITY_CODES = frozenset(
    {
        "BadSecurityChecksFailed",
        "BadSecurityPolicyRejected",
        "BadSecurityModeRejected",
        "BadIdentityTokenInvalid",
        "BadIdentityTokenRejected",
        "BadUserAccessDenied",
        "BadUserSignatureInvalid",
        "BadApplicationSignatureInvalid",
        "BadNoValidCertificates",
    }
)
# Service results that mean the session or channel is gone: only a new connection helps.
_LINK_CODES = frozenset(
    {
        "BadSessionIdInvalid",
        "BadSessionClosed",
        "BadSessionNotActivated",
        "BadSecureChannelIdInvalid",
        "BadSecureChannelClosed",
        "BadSecureChannelTokenUnknown",
        "BadTcpSecureChannelUnknown",
        "BadConnectionClosed",
        "BadNotConnected",
        "BadServerNotConnected",
        "BadServerHalted",
        "BadShutdown",
        "BadCommunicationError",
        "BadDisconnect",
        "BadNoSubscription",
        "BadSubscriptionIdInvalid",
        "BadTooManySessions",
    }
)


@dataclass(slots=True)
class _Material:
    """Security files, loaded and converted for asyncua (which guesses formats by suffix)."""

    cert_der: bytes
    key: bytes
    key_format: str
    server_cert_der: bytes | None
    application_uri: str


@dataclass(slots=True)
class _Link:
    """Everything that belongs to one connection; thrown away whole on close."""

    client: Client
    nodes: dict[str, ua.NodeId]
    subscription: Subscription | None = None
    consumer: asyncio.Task[None] | None = None
    keepalive_period: float = 0.0
    opened_at: float = 0.0
    # Set when a publish response with data changes has been taken into `latest` (or when the
    # consumer ended); `changed_at` is when, on the monotonic clock.
    changed: asyncio.Event = field(default_factory=asyncio.Event)
    changed_at: float | None = None
    keys_by_node: dict[ua.NodeId, tuple[str, ...]] = field(default_factory=dict)
    refused: dict[str, int] = field(default_factory=dict)  # key -> monitored-item status
    latest: dict[str, UaValue] = field(default_factory=dict)
    first_values: asyncio.Event = field(default_factory=asyncio.Event)
    lost: str | None = None


class OpcUaDriver:
    """Read the configured nodes of one OPC UA server; implements the `Driver` protocol."""

    def __init__(
        self,
        device_id: str,
        endpoint: str,
        points: Sequence[UaPoint] = (),
        *,
        mode: ReadMode | str = ReadMode.SUBSCRIBE,
        publishing_interval: float = 1.0,
        keepalive: float = 10.0,
        timeout: float = 4.0,
        session_timeout: float = 60.0,
        cycle: float | None = None,
        security: UaSecurity | None = None,
        username: str | None = None,
        password: str | None = None,
        wall_clock: Callable[[], float] = time.time,
        mono_clock: Callable[[], float] = time.monotonic,
    ) -> None:
        """Configure the driver; nothing is opened until `connect`.

        Args:
            device_id: the device's id from the site map.
            endpoint: ``opc.tcp://host[:port][/path]``; the port defaults to 4840.
            points: the points to read; several points may share one node.
            mode: ``subscribe`` (data-change subscription) or ``poll`` (Read each cycle).
            publishing_interval: subscription publishing and sampling interval, seconds.
            keepalive: subscription keepalive period, seconds (rounded to a whole number of
                publishing intervals); a link silent for 1.5 of these is reported dead.
            timeout: per-request timeout, seconds; also the wait for initial values.
            session_timeout: requested session timeout, seconds.
            cycle: how often the caller reads, seconds (the poll interval); in subscribe mode
                `read` then waits for the next publish with data (see the module docstring).
                None: `read` returns at once.
            security: Basic256Sha256 Sign/SignAndEncrypt settings; None for no security.
            username: optional user name for the session; anonymous when None.
            password: the user's password.
            wall_clock: Unix-time source, for tests.
            mono_clock: monotonic source, for tests.

        Raises:
            ValueError: an impossible setting (bad endpoint, non-positive interval, ...).
        """
        if publishing_interval <= 0 or timeout <= 0 or session_timeout <= 0:
            raise ValueError("publishing_interval, timeout and session_timeout must be > 0")
        if cycle is not None and cycle <= 0:
            raise ValueError("cycle must be > 0")
        if keepalive < publishing_interval:
            raise ValueError("keepalive must be at least one publishing interval")
        if password is not None and username is None:
            raise ValueError("a password needs a username")
        keys = [p.key for p in points]
        if len(set(keys)) != len(keys):
            raise ValueError("point keys must be unique")
        self._device_id = device_id
        self._endpoint = _normalize_endpoint(endpoint)
        self._points = tuple(points)
        self._mode = ReadMode(mode)
        self._publishing_interval = publishing_interval
        self._keepalive_count = max(1, round(keepalive / publishing_interval))
        self._timeout = timeout
        self._session_timeout = session_timeout
        self._cycle = cycle
        self._security = security
        self._username = username
        self._password = password
        self._wall = wall_clock
        self._mono = mono_clock
        self._link: _Link | None = None
        # The DataValue each point's last sample came from: a repeat of it is `held`.
        self._returned: dict[str, UaValue] = {}

    @property
    def device_id(self) -> str:
        """The device's id from the site map."""
        return self._device_id

    @property
    def endpoint(self) -> str:
        """The server endpoint URL, with the default port filled in."""
        return self._endpoint

    @property
    def mode(self) -> ReadMode:
        """Subscribe or poll."""
        return self._mode

    @property
    def points(self) -> tuple[UaPoint, ...]:
        """The configured points, in order."""
        return self._points

    @property
    def keepalive_period(self) -> float:
        """Subscription keepalive in seconds: as revised by the server once subscribed."""
        link = self._link
        if link is not None and link.keepalive_period > 0:
            return link.keepalive_period
        return self._keepalive_count * self._publishing_interval

    @property
    def connected(self) -> bool:
        """Whether a session is open and, in subscribe mode, the subscription alive."""
        return self._link is not None and self._link_problem(self._link) is None

    async def connect(self) -> None:
        """Open a new client, session and (subscribe mode) subscription.

        Raises:
            OpcUaSecurityError: certificate, policy, mode or user refused (either side).
            DriverConnectionError: the server cannot be reached or refused the session.
        """
        await self.close()
        # Security files are read before any socket opens: a bad file is a config problem.
        material = _load_material(self._security) if self._security is not None else None
        client = self._new_client()
        link = _Link(client, {})
        try:
            await self._open(client, material)
            link.nodes = await self._resolve_nodes(client)
            if self._mode is ReadMode.SUBSCRIBE:
                await self._subscribe(link)
        except asyncio.CancelledError:
            await _abandon(client, self._timeout)
            raise
        except (OSError, UaError) as exc:
            # OSError: refused, reset, timed out (TimeoutError is one); UaError: service faults
            # and asyncua's own checks. Anything else is a bug and should surface as such.
            await _abandon(client, self._timeout)
            raise _translate(exc, self._device_id, connecting=True) from exc
        except DriverError:
            await _abandon(client, self._timeout)
            raise
        self._link = link
        if link.subscription is not None:
            # Initial values come with the first publish; bounded wait, an absent one reads BAD.
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(self._timeout):
                    await link.first_values.wait()

    async def close(self) -> None:
        """Stop the subscription task and close the session; safe to call twice."""
        link, self._link = self._link, None
        if link is None:
            return
        consumer = link.consumer
        if consumer is not None and not consumer.done():  # a finished one was reported already
            consumer.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await consumer
        await _abandon(link.client, self._timeout)

    async def read(self) -> list[RawSample]:
        """Return one sample per configured point, in configuration order.

        See the module docstring for what a sample means in each mode. Bad statuses and
        unreadable values are BAD samples, never exceptions.

        Raises:
            DriverConnectionError: the link is down (call `connect` again).
            DriverTimeoutError: poll mode: the server did not answer the Read in time.
            DriverProtocolError: poll mode: the server refused the Read as a whole.
        """
        link = self._link
        if link is None:
            raise DriverConnectionError(f"{self._device_id}: not connected")
        problem = self._link_problem(link)
        if problem is not None:
            raise DriverConnectionError(f"{self._device_id}: {problem}")
        if self._mode is ReadMode.POLL:
            values = await self._read_all(link)
        else:
            if self._cycle is not None:
                await self._next_publish(link, self._cycle)
                problem = self._link_problem(link)
                if problem is not None:
                    raise DriverConnectionError(f"{self._device_id}: {problem}")
            values = dict(link.latest)
            link.changed.clear()  # what arrived so far is read
        return self._samples(link, values)

    @staticmethod
    async def _next_publish(link: _Link, cycle: float) -> None:
        """Return when a publish with data is at hand: a fresh unread one, or the next one.

        Bounded by nine tenths of `cycle`, so the caller's cadence holds, and by the moment
        the link would count as silent, so a dead link is reported as soon as without the
        wait. A publish response's notifications are all queued at once and the consumer
        takes them without yielding, so when this wakes, `latest` holds the whole response.
        """
        now = time.monotonic()
        fresh = cycle * FRESH_SHARE
        changed_at = link.changed_at
        if link.changed.is_set() and changed_at is not None:
            if now - changed_at <= fresh:
                return
            link.changed.clear()  # unread but stale: wait for a newer one
        wait = cycle - fresh
        if link.subscription is not None:
            last = link.subscription.last_publish_at or link.opened_at
            wait = min(wait, last + STALE_KEEPALIVES * link.keepalive_period - now)
        with contextlib.suppress(TimeoutError):
            async with asyncio.timeout(max(0.0, wait)):
                await link.changed.wait()

    # -- connection --------------------------------------------------------------------

    def _new_client(self) -> Client:
        """A fresh asyncua client: no state survives from an earlier connection."""
        client = Client(
            self._endpoint,
            timeout=self._timeout,
            # asyncua's supervisor probes the server this often and marks the client
            # disconnected when a probe fails: half of a keepalive keeps detection in budget.
            watchdog_intervall=max(0.5, self.keepalive_period / 2),
        )
        client.name = f"Ganzhi edge agent ({self._device_id})"
        client.description = client.name
        client.application_uri = _APPLICATION_URI
        client.product_uri = _PRODUCT_URI
        client.session_timeout = int(self._session_timeout * 1000)
        return client

    async def _open(self, client: Client, material: _Material | None) -> None:
        """Check the server offers our policy and mode, set security and user, connect."""
        security = self._security
        policy_uri = (
            _POLICY_CLASSES[security.policy].URI
            if security is not None
            else security_policies.SecurityPolicyNone.URI
        )
        ua_mode = _UA_MODES[security.mode] if security is not None else ua.MessageSecurityMode.None_
        # Ask first (over an unsecured channel, as OPC UA discovery does) so that a mode the
        # server does not offer is a clear error, not a silent server and a timeout.
        endpoints = await client.connect_and_get_server_endpoints()
        offered = [e for e in endpoints if e.SecurityPolicyUri == policy_uri]
        chosen = next((e for e in offered if e.SecurityMode == ua_mode), None)
        if chosen is None:
            have = sorted({_describe(e.SecurityPolicyUri, e.SecurityMode) for e in endpoints})
            want = _describe(policy_uri, ua_mode)
            raise OpcUaSecurityError(
                f"{self._device_id}: server offers no {want} endpoint (it offers {', '.join(have)})"
            )
        if security is not None and material is not None:
            announced = _first_der(chosen.ServerCertificate or b"")
            server_der = material.server_cert_der or announced
            if not server_der:
                raise OpcUaSecurityError(f"{self._device_id}: server announced no certificate")
            if material.server_cert_der is not None and announced and announced != server_der:
                raise OpcUaSecurityError(
                    f"{self._device_id}: server certificate differs from the pinned server_cert"
                )
            client.application_uri = material.application_uri
            await self._set_security(client, security, material, server_der, ua_mode)
        if self._username is not None:
            client.set_user(self._username)
            if self._password is not None:
                client.set_password(self._password)
        await client.connect()

    async def _set_security(
        self,
        client: Client,
        security: UaSecurity,
        material: _Material,
        server_der: bytes,
        ua_mode: ua.MessageSecurityMode,
    ) -> None:
        """Hand the checked files to asyncua's security policy."""
        try:
            await client.set_security(
                _POLICY_CLASSES[security.policy],
                uacrypto.CertProperties(material.cert_der, "der"),
                uacrypto.CertProperties(material.key, material.key_format, security.key_password),
                server_certificate=uacrypto.CertProperties(server_der, "der"),
                mode=ua_mode,
            )
        except (ValueError, TypeError) as exc:
            # cryptography's complaints about a key or certificate the policy cannot use
            # (wrong type or size): a security configuration error, not a bug here.
            raise OpcUaSecurityError(f"{self._device_id}: {exc}") from exc

    async def _resolve_nodes(self, client: Client) -> dict[str, ua.NodeId]:
        """Parse each point's node id; ``nsu=`` namespace URIs are looked up on the server."""
        namespaces: list[str] | None = None
        nodes: dict[str, ua.NodeId] = {}
        for point in self._points:
            parsed = ua.NodeId.from_string(point.node_id)
            uri = getattr(parsed, "NamespaceUri", None)
            if uri:
                if namespaces is None:
                    namespaces = list(await client.get_namespace_array())
                if uri not in namespaces:
                    raise DriverProtocolError(
                        f"{self._device_id}: server has no namespace {uri!r} ({point.key})"
                    )
                parsed = ua.NodeId(
                    parsed.Identifier, ua.Int16(namespaces.index(uri)), parsed.NodeIdType
                )
            nodes[point.key] = ua.NodeId(
                parsed.Identifier, parsed.NamespaceIndex, parsed.NodeIdType
            )
        return nodes

    async def _subscribe(self, link: _Link) -> None:
        """Create the subscription and its monitored items, and start draining it."""
        client = link.client
        params = ua.CreateSubscriptionParameters(
            RequestedPublishingInterval=self._publishing_interval * 1000,
            RequestedLifetimeCount=3 * self._keepalive_count,  # Part 4: >= 3 keepalives
            RequestedMaxKeepAliveCount=self._keepalive_count,
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
        # silent subscription means a new connection, decided in `_link_problem`. The
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
        link.keepalive_period = (
            revised.RevisedPublishingInterval / 1000 * max(1, revised.RevisedMaxKeepAliveCount)
        )
        results = await subscription.subscribe_data_change(
            [client.get_node(node) for node in unique],
            queuesize=1,
            sampling_interval=ua.Double(self._publishing_interval * 1000),
        )
        for node, result in zip(unique, results, strict=True):
            if isinstance(result, ua.StatusCode):
                for key in link.keys_by_node[node]:
                    link.refused[key] = int(result.value)
        if len(link.refused) == len(link.nodes):
            link.first_values.set()  # nothing will ever arrive; do not wait for it
        link.opened_at = time.monotonic()
        link.consumer = asyncio.create_task(
            self._consume(link, subscription), name=f"opcua-{self._device_id}"
        )
        link.consumer.add_done_callback(lambda task: _consumer_done(link, task))

    async def _consume(self, link: _Link, subscription: Subscription) -> None:
        """Drain the subscription into `link.latest`; record why it ended."""
        expected = len(link.nodes) - len(link.refused)
        async for event in subscription:
            if isinstance(event, DataChangeEvent):
                reduced = _reduce(event.data.monitored_item.Value)
                for key in link.keys_by_node.get(event.node.nodeid, ()):
                    link.latest[key] = reduced
                link.changed_at = time.monotonic()
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

    def _link_problem(self, link: _Link) -> str | None:
        """Why the link is unusable, or None when it is fine."""
        state = link.client.uaclient.state
        if state is not UaClientState.CONNECTED:
            return f"connection {state.value}"
        if link.lost is not None:
            return link.lost
        if link.consumer is not None and link.consumer.done():
            return "subscription task ended"
        subscription = link.subscription
        if subscription is not None:
            last = subscription.last_publish_at or link.opened_at
            silent = time.monotonic() - last
            if silent > STALE_KEEPALIVES * link.keepalive_period:
                return f"no publish response for {silent:.1f} s"
        return None

    # -- reading -----------------------------------------------------------------------

    async def _read_all(self, link: _Link) -> dict[str, UaValue]:
        """One Read service call for every distinct node."""
        unique = list(dict.fromkeys(link.nodes.values()))
        if not unique:  # a Read of nothing is a service fault (BadNothingToDo)
            return {}
        params = ua.ReadParameters(
            MaxAge=0,
            TimestampsToReturn=ua.TimestampsToReturn.Both,
            NodesToRead=[ua.ReadValueId(NodeId=n, AttributeId=AttributeIds.Value) for n in unique],
        )
        try:
            results = await link.client.uaclient.read(params)
        except (OSError, UaError) as exc:
            # OSError covers the dropped socket and TimeoutError; UaError the service faults.
            raise _translate(exc, self._device_id, connecting=False) from exc
        if len(results) != len(unique):
            raise DriverProtocolError(
                f"{self._device_id}: Read returned {len(results)} results for {len(unique)} nodes"
            )
        by_node = {node: _reduce(dv) for node, dv in zip(unique, results, strict=True)}
        return {key: by_node[node] for key, node in link.nodes.items()}

    def _samples(self, link: _Link, values: dict[str, UaValue]) -> list[RawSample]:
        """Map this read's DataValues to samples, remembering them for `held`."""
        wall, mono = self._wall(), self._mono()
        samples: list[RawSample] = []
        for point in self._points:
            value = values.get(point.key)
            if value is None:
                refused = link.refused.get(point.key)
                if refused is None:
                    samples.append(
                        RawSample(
                            point.key,
                            None,
                            Quality.BAD,
                            wall,
                            mono,
                            error="no_value: no notification received yet",
                        )
                    )
                    continue
                value = UaValue(None, refused)
            samples.append(
                to_sample(
                    point.key, value, wall=wall, mono=mono, previous=self._returned.get(point.key)
                )
            )
            self._returned[point.key] = value
        return samples


def _consumer_done(link: _Link, task: asyncio.Task[None]) -> None:
    """Record why the subscription consumer stopped, so `read` reports it (and nothing leaks)."""
    link.changed.set()  # a read waiting for the next publish learns of it now
    if task.cancelled():
        return
    exc = task.exception()
    if exc is not None:  # a bug in the mapping: end this link loudly, the caller reconnects
        _log.error("OPC UA subscription consumer failed", exc_info=exc)
        link.lost = f"subscription consumer failed: {exc!r}"


def _reduce(data_value: ua.DataValue | None) -> UaValue:
    """Turn an asyncua DataValue into plain Python; the one place its shape is known."""
    if data_value is None:
        return UaValue(None, int(StatusCodes.BadNoData))
    variant = data_value.Value
    value = variant.Value if variant is not None else None
    status = data_value.StatusCode
    return UaValue(
        value=value,
        status=int(status.value) if status is not None else 0,
        source_time=epoch_seconds(data_value.SourceTimestamp),
        server_time=epoch_seconds(data_value.ServerTimestamp),
    )


def _translate(  # noqa: PLR0911 -- one flat decision table reads best
    exc: OSError | UaError, device_id: str, *, connecting: bool
) -> DriverError:
    """Map one asyncua or socket exception to the DriverError tree."""
    if isinstance(exc, TimeoutError):
        if connecting:
            return DriverConnectionError(f"{device_id}: timed out connecting")
        return DriverTimeoutError(f"{device_id}: request timed out")
    if isinstance(exc, OSError):
        return DriverConnectionError(f"{device_id}: {str(exc) or type(exc).__name__}")
    if isinstance(exc, UaStatusCodeError):
        name = status_name(int(exc.code))
        if name in _SECURITY_CODES or name.startswith("BadCertificate"):
            return OpcUaSecurityError(f"{device_id}: refused: {exc}")
        if name == "BadTimeout":
            return DriverTimeoutError(f"{device_id}: {exc}")
        if connecting or name in _LINK_CODES:
            return DriverConnectionError(f"{device_id}: {exc}")
        return DriverProtocolError(f"{device_id}: {exc}")
    # A bare UaError is asyncua's own complaint (no matching endpoint, certificate mismatch,
    # malformed message); while connecting it means we could not get in.
    if connecting:
        return DriverConnectionError(f"{device_id}: {exc}")
    return DriverProtocolError(f"{device_id}: {exc}")


async def _abandon(client: Client, limit: float) -> None:
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


def _normalize_endpoint(endpoint: str) -> str:
    """Check an ``opc.tcp://`` URL and fill in the default port."""
    parts = urlsplit(endpoint)
    if parts.scheme != "opc.tcp" or not parts.hostname:
        raise ValueError(f"endpoint must be opc.tcp://host[:port][/path], got {endpoint!r}")
    try:
        port = parts.port
    except ValueError as exc:
        raise ValueError(f"endpoint {endpoint!r}: {exc}") from None
    if port is None:
        return urlunsplit(parts._replace(netloc=f"{parts.netloc}:{DEFAULT_PORT}"))
    return endpoint


def _describe(policy_uri: str, mode: ua.MessageSecurityMode) -> str:
    """``Basic256Sha256/SignAndEncrypt``: how a technician names an endpoint."""
    return f"{policy_uri.rsplit('#', 1)[-1]}/{mode.name.rstrip('_')}"


def _first_der(blob: bytes) -> bytes:
    """Return the first certificate of a DER chain (servers may append their CA chain)."""
    if len(blob) < 2:  # noqa: PLR2004 -- tag and length bytes
        return b""
    length, offset = blob[1], 2
    if length & 0x80:  # long form: the low bits count the length bytes that follow
        count = length & 0x7F
        length = int.from_bytes(blob[2 : 2 + count], "big")
        offset = 2 + count
    return bytes(blob[: offset + length])


def _read_file(path: Path, what: str) -> bytes:
    """Read a small security file; a missing or unreadable one is a security error."""
    try:
        return path.read_bytes()
    except OSError as exc:
        raise OpcUaSecurityError(f"cannot read {what} {path}: {exc.strerror or exc}") from exc


def _certificate_der(data: bytes, path: Path, what: str) -> bytes:
    """Return a PEM or DER certificate as DER, checked by parsing it."""
    try:
        if data.lstrip().startswith(b"-----BEGIN"):
            return x509.load_pem_x509_certificate(data).public_bytes(Encoding.DER)
        return x509.load_der_x509_certificate(data).public_bytes(Encoding.DER)
    except ValueError as exc:
        raise OpcUaSecurityError(f"{what} {path} is not a certificate: {exc}") from exc


def _load_material(security: UaSecurity) -> _Material:
    """Read and check the certificate and key files (a few KB, once per connect)."""
    cert_der = _certificate_der(_read_file(security.cert, "certificate"), security.cert, "cert")
    key = _read_file(security.key, "private key")
    key_format = "pem" if key.lstrip().startswith(b"-----BEGIN") else "der"
    _check_private_key(key, key_format, security)
    server_der = None
    if security.server_cert is not None:
        server_der = _certificate_der(
            _read_file(security.server_cert, "server certificate"),
            security.server_cert,
            "server_cert",
        )
    uri = security.application_uri or _certificate_uri(cert_der) or _APPLICATION_URI
    return _Material(cert_der, key, key_format, server_der, uri)


def _check_private_key(key: bytes, key_format: str, security: UaSecurity) -> None:
    """Parse the private key once so a wrong file or password is named as such."""
    password = security.key_password.encode() if security.key_password is not None else None
    load = load_pem_private_key if key_format == "pem" else load_der_private_key
    try:
        load(key, password)
    except (ValueError, TypeError) as exc:  # TypeError: password given/missing vs encryption
        raise OpcUaSecurityError(f"private key {security.key} cannot be loaded: {exc}") from exc


def _certificate_uri(cert_der: bytes) -> str | None:
    """The application URI in a certificate's subjectAltName, which servers compare with ours."""
    cert = x509.load_der_x509_certificate(cert_der)
    try:
        san = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName)
    except x509.ExtensionNotFound:
        return None
    uris = san.value.get_values_for_type(x509.UniformResourceIdentifier)
    return uris[0] if uris else None
