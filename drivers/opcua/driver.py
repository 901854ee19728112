"""OPC UA driver: data-change subscriptions by default, one batched Read per cycle as fallback.

asyncua stays inside this package: its exceptions are translated into the DriverError tree
once (`translate`), and its objects are reduced to `UaValue` before they leave
(`reduce_value`). The connection's state is a `Link` (`link.py`); the security files and the
session's secure channel are `security.py`'s; the endpoint URL, the node ids and
the poll-mode Read call are `addressing.py`'s; which value each point hands out, and when, is
`handout.py`'s.

Reconnect policy belongs to the caller, as for every driver. Every `connect()` builds a NEW
asyncua `Client`: reconnecting a used one can hang for ever (opcua-asyncio #1660), and
asyncua's own auto-reconnect is left off so that only one component decides when to retry.

Subscribe mode: values are pushed as they arrive
    `connect()` creates one subscription (publishing interval, keepalive count from
    `keepalive`, lifetime three keepalives) with one monitored item per distinct node
    (sampling interval `sampling_interval`, queue size 1), then waits up to `timeout` for the
    initial values. The server may revise both intervals within its limits; the revised
    publishing interval is logged (``opcua_subscription_created``) and is what
    `publishing_interval` says once connected. A background task drains the subscription
    (asyncua's async-iterator API) into a latest-value table, so notifications never queue up
    behind the caller.

    `pushed()` waits for the next publish response with data changes and returns a sample
    for each point whose value changed since it was last handed out: the caller stores it
    when it arrives, not at its next poll (G6: a publish that landed just after a poll tick
    used to wait a whole poll interval). A point hands out at most one new value per sampling
    interval, so a server that samples faster than asked does not multiply the readings.

    `read()` makes no network call: it returns one sample per point, in configuration order,
    except the points `pushed()` handed out since the previous `read()` (their reading of
    this cycle is out already):

    * the newest notification not handed out yet (earlier ones of the same interval are
      superseded; OPC UA queue size 1 does the same on the server);
    * otherwise the last known value again, flagged ``held`` and stamped with this read's
      time. Data-change semantics say an unreported value is unchanged, and the live
      subscription (its keepalives) vouches that it is still current;
    * a BAD sample (``no_value: ...``) until the point's first value arrives, or
      with the server's status (``BadNodeIdUnknown``) when it refused to monitor the node.

    A caller that never calls `pushed()` gets every value from `read()` as before.

    `read()` and `pushed()` raise DriverConnectionError when the link is gone: the transport
    closed, the server reported the subscription dead (a Bad StatusChangeNotification), or no
    publish response (data or keepalive) arrived for 1.5 keepalive periods. A dead link is
    therefore reported within 2 keepalives at most, and the next `connect()` subscribes afresh.

Poll mode
    `read()` sends one Read service call for all distinct nodes (TimestampsToReturn=Both,
    MaxAge=0: the server is to take a fresh value from its source) and maps each DataValue
    the same way; a value whose timestamps did not move since the previous read is ``held``.
    Nothing is pushed: `pushed()` waits until cancelled.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from typing import TYPE_CHECKING

from asyncua.client.client import Client
from asyncua.ua.uaerrors import UaError

from drivers.base import (
    DriverConnectionError,
    DriverError,
    RawSample,
)
from drivers.opcua.addressing import DEFAULT_PORT, normalize_endpoint, read_values, resolve_nodes
from drivers.opcua.handout import Handout
from drivers.opcua.link import Link, abandon, link_problem, silent_until, subscribe
from drivers.opcua.model import (
    OpcUaSecurityError,
    ReadMode,
    UaPoint,
    UaSecurity,
)
from drivers.opcua.security import APPLICATION_URI, load_material, open_session
from drivers.opcua.translate import translate

if TYPE_CHECKING:
    from collections.abc import Callable, Sequence

__all__ = ["DEFAULT_PORT", "OpcUaDriver", "OpcUaSecurityError"]

# The config's defaults (edge_agent.config.opcua_device) are the agent's; these are for
# direct users of the driver (tests, tools).
DEFAULT_PUBLISHING = 0.02
_PRODUCT_URI = "urn:ganzhi"


class OpcUaDriver:
    """Read the configured nodes of one OPC UA server; implements the `Driver` protocol."""

    def __init__(
        self,
        device_id: str,
        endpoint: str,
        points: Sequence[UaPoint] = (),
        *,
        mode: ReadMode | str = ReadMode.SUBSCRIBE,
        publishing_interval: float = DEFAULT_PUBLISHING,
        sampling_interval: float | None = None,
        keepalive: float = 10.0,
        timeout: float = 4.0,
        session_timeout: float = 60.0,
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
            publishing_interval: the subscription's publishing interval, seconds: the longest
                a sampled change waits at the server before it is sent.
            sampling_interval: how often the server samples each node, seconds; None: the
                publishing interval.
            keepalive: subscription keepalive period, seconds (rounded to a whole number of
                publishing intervals); a link silent for 1.5 of these is reported dead.
            timeout: per-request timeout, seconds; also the wait for initial values.
            session_timeout: requested session timeout, seconds.
            security: Basic256Sha256 Sign/SignAndEncrypt settings; None for no security.
            username: optional user name for the session; anonymous when None.
            password: the user's password.
            wall_clock: Unix-time source, for tests.
            mono_clock: monotonic source, for tests.

        Raises:
            ValueError: an impossible setting (bad endpoint, non-positive interval, ...).
        """
        if sampling_interval is None:
            sampling_interval = publishing_interval
        if min(publishing_interval, sampling_interval, timeout, session_timeout) <= 0:
            raise ValueError(
                "publishing_interval, sampling_interval, timeout and session_timeout must be > 0"
            )
        if keepalive < publishing_interval:
            raise ValueError("keepalive must be at least one publishing interval")
        if password is not None and username is None:
            raise ValueError("a password needs a username")
        keys = [p.key for p in points]
        if len(set(keys)) != len(keys):
            raise ValueError("point keys must be unique")
        self._device_id = device_id
        self._endpoint = normalize_endpoint(endpoint)
        self._points = tuple(points)
        self._mode = ReadMode(mode)
        self._publishing_interval = publishing_interval
        self._sampling_interval = sampling_interval
        self._keepalive_count = max(1, round(keepalive / publishing_interval))
        self._timeout = timeout
        self._session_timeout = session_timeout
        self._security = security
        self._username = username
        self._password = password
        self._link: Link | None = None
        # Between a point's pushed values: a sampling interval, less a tenth for jitter.
        self._handout = Handout(sampling_interval * 0.9, wall=wall_clock, mono=mono_clock)

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
    def publishing_interval(self) -> float:
        """Publishing interval in seconds: as revised by the server once subscribed."""
        link = self._link
        if link is not None and link.publishing_interval > 0:
            return link.publishing_interval
        return self._publishing_interval

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
        return self._link is not None and link_problem(self._link) is None

    async def connect(self) -> None:
        """Open a new client, session and (subscribe mode) subscription.

        Raises:
            OpcUaSecurityError: certificate, policy, mode or user refused (either side).
            DriverConnectionError: the server cannot be reached or refused the session.
        """
        await self.close()
        # Security files are read before any socket opens: a bad file is a config problem.
        material = load_material(self._security) if self._security is not None else None
        client = self._new_client()
        link = Link(client, {})
        try:
            await open_session(
                client,
                device_id=self._device_id,
                security=self._security,
                material=material,
                username=self._username,
                password=self._password,
            )
            link.nodes, link.unresolved = await resolve_nodes(client, self._points)
            if self._mode is ReadMode.SUBSCRIBE:
                await subscribe(
                    link,
                    self._device_id,
                    publishing_interval=self._publishing_interval,
                    sampling_interval=self._sampling_interval,
                    keepalive_count=self._keepalive_count,
                )
        except asyncio.CancelledError:
            await abandon(client, self._timeout)
            raise
        except (OSError, UaError) as exc:
            # OSError: refused, reset, timed out (TimeoutError is one); UaError: service faults
            # and asyncua's own checks. Anything else is a bug and should surface as such.
            await abandon(client, self._timeout)
            raise translate(exc, self._device_id, connecting=True) from exc
        except DriverError:
            await abandon(client, self._timeout)
            raise
        self._link = link
        self._handout.reconnected()
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
        await abandon(link.client, self._timeout)

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
        problem = link_problem(link)
        if problem is not None:
            raise DriverConnectionError(f"{self._device_id}: {problem}")
        if self._mode is ReadMode.POLL:
            values = await read_values(link, self._device_id)
            return self._handout.samples(link, values, self._points)
        # What `pushed` handed out this cycle is out; a newer value of such a point waits
        # for `pushed` when its sampling interval is up (or for the next read).
        points = self._handout.to_read(self._points)
        link.unsent.difference_update(p.key for p in points)
        return self._handout.samples(link, link.latest, points)

    async def pushed(self) -> list[RawSample]:
        """Wait for data changes the server sent; a sample per point with a new value.

        Returns when a publish response brought values not handed out yet (by this or by
        `read`), in configuration order; never an empty list. A point hands out at most one
        new value per sampling interval (less a tenth, for jitter): a server that samples
        faster than asked (asyncua's does on every write) does not multiply the readings; the
        newest value waits until the interval is up. In poll mode nothing is ever pushed:
        this waits until cancelled.

        Raises:
            DriverConnectionError: the link is down, or went silent while waiting.
        """
        link = self._link
        if link is None:
            raise DriverConnectionError(f"{self._device_id}: not connected")
        if link.subscription is None:
            await asyncio.Event().wait()  # never set: poll mode pushes nothing
        while True:
            problem = link_problem(link)
            if problem is not None:
                raise DriverConnectionError(f"{self._device_id}: {problem}")
            now = time.monotonic()
            due = self._handout.due(link.unsent, now)
            if due:
                break
            # Wake for the next change, when a waiting value is due, or when the silence
            # would make the link dead (to say so then).
            wakes = self._handout.next_due(link.unsent)
            deadline = silent_until(link)
            if deadline is not None:
                wakes.append(deadline)
            wait = max(0.0, min(wakes) - now) if wakes else None
            link.changed.clear()
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(wait):
                    await link.changed.wait()
        link.unsent -= due
        self._handout.pushed(due)
        return self._handout.samples(link, link.latest, [p for p in self._points if p.key in due])

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
        client.application_uri = APPLICATION_URI
        client.product_uri = _PRODUCT_URI
        client.session_timeout = int(self._session_timeout * 1000)
        return client
