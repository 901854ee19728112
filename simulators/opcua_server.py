"""The OPC UA transport of the simulators: an asyncua server over a site model's readings.

`OpcUaSimulator` serves one Double variable per `SimNode` in its own namespace (always index
2), steps its model every `interval` on an absolute schedule and writes each node's reading
with fresh Source and Server timestamps. A subclass says which model it serves (`_advance`,
`_observe`); simulators.slope_opcua serves the slope of simulators.profiles.slope.

Faults, for tests and the demo:

* ``silence()`` / ``resume()``: stop writing values (the server still answers; values and
  timestamps stand still, as with a data logger that stopped polling its instruments);
* ``freeze(key, ...)`` / ``unfreeze(...)``: a stuck sensor, the value stops changing while
  its timestamps keep moving;
* ``set_status(key, "BadSensorFailure")`` / ``clear_status(...)``: answer with that StatusCode
  (Bad values are nulled by the server, as OPC UA requires; Uncertain ones keep their value);
* ``use_source_timestamps(False)``: write values with a ServerTimestamp only;
* ``stop_server()`` / ``start_server()`` / ``restart()``: the server process going away and
  coming back on the same port with the same state;
* ``hang()`` / ``unhang()``: keep every open connection but stop reading from it, as a
  wedged server or a half-open link does.

`read_calls` records the node ids of each client Read service call, so a test can count
service calls.

Intervals, as a real server's: a subscription gets the publishing interval it asks for, but
not less than `min_publishing_interval` (a real server's limit; the client is told the
revised one), and `subscriptions` records each (asked, revised) pair in seconds. With
`fresh_reads` a Read that asks for MaxAge 0 gets values sampled from the model at that moment
(fresh Source and Server timestamps), as a server that reads its device on demand answers;
without it a Read returns what the last update wrote.

Security and users: simulators.opcua_security (`SimSecurity`); simulators.pki makes a set of
test certificates.
"""

from __future__ import annotations

import asyncio
import collections
import datetime as dt
import logging
from dataclasses import dataclass
from typing import TYPE_CHECKING, TypedDict, cast

from asyncua import ua
from asyncua.common.callback import Callback, CallbackType, ServerItemCallback
from asyncua.server.server import Server
from asyncua.ua.attribute_ids import AttributeIds
from asyncua.ua.status_codes import StatusCodes

from simulators.lifecycle import Simulator, cancel_task, ticks
from simulators.opcua_security import SimSecurity, Users, configure_security
from simulators.pki import SERVER_URI

if TYPE_CHECKING:
    import random
    from collections.abc import Mapping, Sequence

__all__ = ["NAMESPACE_INDEX", "OpcUaSimulator", "Serving", "SimNode", "SimSecurity"]

_log = logging.getLogger("simulators.opcua_server")

NAMESPACE_INDEX = 2  # 0 is OPC UA's, 1 the server's own; ours is registered first


@dataclass(frozen=True, slots=True)
class SimNode:
    """One served variable: its key (the string identifier), unit, meaning, model reading."""

    key: str
    unit: str
    description: str
    reading: str  # the key of the model's observation this node serves

    @property
    def node_id(self) -> str:
        """The node id a client configures, e.g. ``ns=2;s=Slope.G1.X``."""
        return f"ns={NAMESPACE_INDEX};s={self.key}"


class Serving(TypedDict, total=False):
    """How an `OpcUaSimulator` serves, whatever its model: security, users, its limits.

    A model's simulator takes these as keywords and hands them on, so their defaults and
    meaning stay those of `OpcUaSimulator.__init__` (and the module docstring).
    """

    security: SimSecurity | None
    users: Mapping[str, str] | None
    allow_anonymous: bool
    min_publishing_interval: float
    fresh_reads: bool


def _node(key: str) -> ua.NodeId:
    """Our namespace's string node id for `key`."""
    return ua.NodeId.from_string(f"ns={NAMESPACE_INDEX};s={key}")


def _status(status: str | int) -> int:
    """A StatusCode from its name (``"BadSensorFailure"``) or number."""
    if isinstance(status, int):
        return status
    code = getattr(StatusCodes, status, None)
    if code is None:
        raise ValueError(f"unknown OPC UA status code {status!r}")
    return int(code)


class OpcUaSimulator(Simulator):
    """A running OPC UA simulator; use as ``async with Subclass(...) as sim:``."""

    def __init__(
        self,
        host: str,
        port: int,
        *,
        nodes: Sequence[SimNode],
        namespace: str,
        root: str,
        name: str,
        rng: random.Random,
        interval: float,
        security: SimSecurity | None = None,
        users: Mapping[str, str] | None = None,
        allow_anonymous: bool = True,
        min_publishing_interval: float = 0.0,
        fresh_reads: bool = False,
    ) -> None:
        """Configure; `start` listens (port 0 picks a free port, kept across restarts).

        The subclass's model must be in place before this runs: it reads the first values.

        Raises:
            ValueError: a non-positive interval.
        """
        if interval <= 0 or min_publishing_interval < 0:
            raise ValueError("need a positive interval and a minimum publishing interval >= 0")
        self.host = host
        self.port = port
        self.nodes = tuple(nodes)
        # Node ids asked for by each Read service call from a client, newest last (bounded).
        self.read_calls: collections.deque[tuple[str, ...]] = collections.deque(maxlen=256)
        # (asked, revised) publishing interval of each subscription created, seconds.
        self.subscriptions: list[tuple[float, float]] = []
        self._min_publishing = min_publishing_interval
        self._fresh_reads = fresh_reads
        self._namespace = namespace
        self._root = root
        self._name = name
        self._rng = rng
        self._interval = interval
        self._security = security
        self._users = dict(users or {})
        self._allow_anonymous = allow_anonymous
        self._values = self._readings()
        self._server: Server | None = None
        self._task: asyncio.Task[None] | None = None
        self._silent = False
        self._source_timestamps = True
        self._frozen: dict[str, float] = {}
        self._status: dict[str, int] = {}
        self._hung: list[asyncio.BaseTransport] = []

    # -- the model (the subclass's) ------------------------------------------------------

    def _advance(self, dt: float) -> None:
        """Step the model `dt` wall seconds."""
        raise NotImplementedError

    def _observe(self) -> Mapping[str, float]:
        """Return the model's readings now, by `SimNode.reading`."""
        raise NotImplementedError

    # -- lifecycle -----------------------------------------------------------------------

    @property
    def endpoint(self) -> str:
        """The URL a client connects to."""
        return f"opc.tcp://{self.host}:{self.port}"

    @property
    def running(self) -> bool:
        """Whether the OPC UA server is listening."""
        return self._server is not None

    def node_id(self, key: str) -> str:
        """The node id of a key such as ``Slope.G1.X``."""
        return f"ns={NAMESPACE_INDEX};s={key}"

    def values(self) -> dict[str, float]:
        """What the instruments reported last (before freeze, status or silence)."""
        return dict(self._values)

    async def start(self) -> None:
        """Start the OPC UA server and the update task.

        Raises:
            OSError: the address cannot be bound.
        """
        await self.start_server()
        self._task = asyncio.create_task(self._update_forever(), name=f"{self._name}-opcua-update")

    async def stop(self) -> None:
        """Stop updating and stop the server; safe to call twice."""
        task, self._task = self._task, None
        await cancel_task(task)
        await self.stop_server()

    async def start_server(self) -> None:
        """Build a fresh asyncua server with the current values and listen on `port`.

        Raises:
            OSError: the address cannot be bound.
        """
        if self._server is not None:
            return
        server = Server(user_manager=Users(self._users, allow_anonymous=self._allow_anonymous))
        await server.init()
        server.set_server_name(f"Ganzhi {self._name} simulator")
        await server.set_application_uri(SERVER_URI)
        server.set_endpoint(self.endpoint)
        await configure_security(
            server, self._security, self._users, allow_anonymous=self._allow_anonymous
        )
        index = await server.register_namespace(self._namespace)
        if index != NAMESPACE_INDEX:  # the documented node ids depend on it
            raise RuntimeError(f"namespace registered at {index}, not {NAMESPACE_INDEX}")
        root = await server.nodes.objects.add_object(_node(self._root), self._root)
        for node in self.nodes:
            variable = await root.add_variable(
                _node(node.key), node.key, 0.0, ua.VariantType.Double
            )
            await variable.write_attribute(
                AttributeIds.Description,
                ua.DataValue(ua.Variant(ua.LocalizedText(node.description))),
            )
        server.subscribe_server_callback(CallbackType.PreRead, self._record_read)
        self._revise_publishing(server)
        self._server = server
        for node in self.nodes:
            await self._write(node.key)
        try:
            await server.start()
        except OSError:
            self._server = None
            raise
        if self.port == 0 and server.bserver is not None:
            self.port = server.bserver.port  # keep the kernel's choice for restarts
        _log.info("%s simulator listening on %s", self._name, self.endpoint)

    async def stop_server(self) -> None:
        """Stop listening and drop every client; state and faults are kept."""
        server, self._server = self._server, None
        self._hung.clear()
        if server is not None:
            await server.stop()

    async def restart(self) -> None:
        """Stop the server and start a new one on the same port."""
        await self.stop_server()
        await self.start_server()

    # -- faults --------------------------------------------------------------------------

    def silence(self) -> None:
        """Stop writing values; the server keeps answering."""
        self._silent = True

    def resume(self) -> None:
        """Write values again."""
        self._silent = False

    def freeze(self, *keys: str) -> None:
        """Keep these nodes at their current value (timestamps still advance)."""
        for key in self._known(keys):
            self._frozen[key] = self._values[key]

    def unfreeze(self, *keys: str) -> None:
        """Let these nodes (all when none given) follow the model again."""
        for key in keys or tuple(self._frozen):
            self._frozen.pop(key, None)

    async def set_status(self, key: str, status: str | int) -> None:
        """Answer for `key` with this StatusCode from now on (name or number)."""
        (known,) = self._known((key,))
        self._status[known] = _status(status)
        await self._write(known)

    async def clear_status(self, *keys: str) -> None:
        """Back to Good for these nodes (all when none given)."""
        for key in keys or tuple(self._status):
            if self._status.pop(key, None) is not None:
                await self._write(key)

    def use_source_timestamps(self, on: bool) -> None:
        """Write SourceTimestamps (default) or leave them out, keeping ServerTimestamps."""
        self._source_timestamps = on

    def hang(self) -> None:
        """Stop reading from every open client connection (they stay open)."""
        if self._server is None:
            return
        for transport in list(self._server.iserver.asyncio_transports):
            if isinstance(transport, asyncio.ReadTransport) and transport.is_reading():
                transport.pause_reading()
                self._hung.append(transport)

    def unhang(self) -> None:
        """Read from the connections `hang` paused again."""
        hung, self._hung = self._hung, []
        for transport in hung:
            if isinstance(transport, asyncio.ReadTransport) and not transport.is_closing():
                transport.resume_reading()

    # -- internals -----------------------------------------------------------------------

    def _readings(self) -> dict[str, float]:
        """Observe the model and key its readings by node."""
        observed = self._observe()
        return {node.key: observed[node.reading] for node in self.nodes}

    def _known(self, keys: tuple[str, ...]) -> tuple[str, ...]:
        """Check keys against the address space."""
        unknown = [k for k in keys if k not in self._values]
        if unknown:
            raise KeyError(f"no such node: {', '.join(unknown)}")
        return keys

    def _revise_publishing(self, server: Server) -> None:
        """Hold subscriptions to `min_publishing_interval`, and record what each asked for.

        asyncua grants any publishing interval asked for; a real server revises one below its
        limit upwards and says so in its answer, which is what this does before asyncua sees
        the request.
        """
        service = server.iserver.subscription_service
        create = service.create_subscription

        async def revised(
            params: ua.CreateSubscriptionParameters, *args: object, **kwargs: object
        ) -> ua.CreateSubscriptionResult:
            asked = params.RequestedPublishingInterval / 1000
            params.RequestedPublishingInterval = max(asked, self._min_publishing) * 1000
            result = await create(params, *args, **kwargs)  # type: ignore[arg-type]
            self.subscriptions.append((asked, result.RevisedPublishingInterval / 1000))
            return result

        service.create_subscription = revised  # type: ignore[method-assign]

    async def _record_read(self, event: Callback, _dispatcher: object) -> None:
        """Remember which nodes a client's Read asked for; with `fresh_reads`, sample them.

        Runs before asyncua answers the Read, so the values written here are the answer.
        """
        if not (isinstance(event, ServerItemCallback) and event.is_external):
            return
        params = event.request_params
        nodes = params.NodesToRead
        self.read_calls.append(tuple(item.NodeId.to_string() for item in nodes))
        if self._fresh_reads and params.MaxAge == 0 and not self._silent:
            self._values = self._readings()
            keys = {node.key for node in self.nodes}
            for item in nodes:
                key = item.NodeId.Identifier
                if item.NodeId.NamespaceIndex == NAMESPACE_INDEX and key in keys:
                    await self._write(str(key))

    async def _write(self, key: str) -> None:
        """Write one node's current value, status and timestamps to the address space."""
        server = self._server
        if server is None:
            return
        now = dt.datetime.now(dt.UTC)
        value = self._frozen.get(key, self._values[key])
        status = self._status.get(key, StatusCodes.Good)
        data_value = ua.DataValue(
            ua.Variant(value, ua.VariantType.Double),
            StatusCode=ua.StatusCode(ua.UInt32(status)),
            # asyncua annotates its own datetime subclass; a plain aware datetime encodes the same.
            SourceTimestamp=cast("ua.DateTime", now) if self._source_timestamps else None,
            ServerTimestamp=cast("ua.DateTime", now),
        )
        await server.write_attribute_value(_node(key), data_value)

    async def _update_forever(self) -> None:
        """Advance the model and write every node each `interval`, on an absolute schedule."""
        async for tick in ticks(self._interval):
            self._advance(tick.dt)
            if self._silent:
                continue
            self._values = self._readings()
            for node in self.nodes:
                await self._write(node.key)
