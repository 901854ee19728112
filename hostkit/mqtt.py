"""What every MQTT client of ours shares: its socket settings, and a guard for its calls."""

from __future__ import annotations

import asyncio
import socket
from collections.abc import Awaitable
from typing import Any, Final, Self, TypeVar

import aiomqtt
import structlog
from aiomqtt.types import PayloadType, SubscribeTopic
from paho.mqtt.client import MQTT_ERR_SUCCESS
from paho.mqtt.packettypes import PacketTypes
from paho.mqtt.properties import Properties
from paho.mqtt.reasoncodes import ReasonCode
from paho.mqtt.subscribeoptions import SubscribeOptions

T = TypeVar("T")

log = structlog.get_logger("hostkit.mqtt")

EXIT_SECONDS: Final = 5.0
"""How long leaving a client waits for its DISCONNECT to be written."""

# paho (under aiomqtt) leaves Nagle's algorithm on. A collector writes its ACK right after the
# 4-byte PUBACK of the block it answers, and the kernel then holds the ACK until the broker's
# delayed TCP acknowledgement, about 40 ms: nearly the whole 50 ms latency budget of a reading
# beyond its flush interval (bench/latency.py's published -> acked stage: 45 ms at p50 with
# Nagle, 11 ms without). MQTT messages are whole packets already; nothing gains from batching.
NO_DELAY: Final = ((socket.IPPROTO_TCP, socket.TCP_NODELAY, 1),)
"""`socket_options` for `aiomqtt.Client`: send each MQTT packet at once."""


async def cancellable(call: Awaitable[T]) -> T:
    """Await one aiomqtt call (publish, subscribe) so that cancelling the caller always raises.

    aiomqtt 2.x waits for the broker's PUBACK or SUBACK with asyncio.wait_for, and Python
    3.11's wait_for returns the answer instead of raising when the cancellation lands in the
    loop iteration that handled it: about half the cancellations of a QoS 1 flood on loopback
    (tests/integration/test_mqtt_cancel.py). The caller then went on as if never cancelled:
    a stopped collector waited for the next message, the command desk for the next result.
    A cancellation asked for during the call that did not raise shows in the task's
    cancelling() count (nothing but the canceller's own handler uncancels), so it is raised
    here, after the call. Not a task of its own with a shield: that costs two loop iterations
    per publish, about 100 us of a 200-300 us loopback round trip.
    """
    task = asyncio.current_task()
    asked = 0 if task is None else task.cancelling()
    result = await call
    if task is not None and task.cancelling() > asked:
        raise asyncio.CancelledError  # answered, but the caller was cancelled meanwhile
    return result


class CancelSafeClient(aiomqtt.Client):
    """aiomqtt.Client whose publish, subscribe and unsubscribe go through `cancellable`.

    The one client every agent and collector session uses, so that no caller can forget it.
    Entering the client (the CONNACK wait) is not covered: a stop swallowed there is seen by
    the stop checks after the session's subscriptions (Publisher, Ingest).

    Leaving the client is bounded (`EXIT_SECONDS`) and never raises its own failure; see
    `__aexit__`. After `end_session_at_exit()` the exit ends the MQTT 5 session too: its
    DISCONNECT carries Session Expiry Interval 0. A plain DISCONNECT leaves a durable session
    the expiry it connected with (MQTT 5.0, 3.14.2.2.2).
    """

    _ends_session = False

    def end_session_at_exit(self) -> None:
        """Make leaving the client end its session at the broker (queue, subscriptions)."""
        self._ends_session = True

    async def __aenter__(self) -> Self:
        """Connect; a cancellation on the way (a stop, a connect timeout) leaves nothing open.

        aiomqtt's own enter, cancelled while it waits for CONNACK, cancels its `_connected`
        future and hands back neither the socket nor its lock: the TCP connection stayed open,
        kept alive by the misc loop's PINGREQs, and the client could not be entered again.
        """
        try:
            await super().__aenter__()
        except asyncio.CancelledError:
            self._abandon_connect()
            raise
        return self

    def _abandon_connect(self) -> None:
        """The half-made connection closed, the client as before the enter."""
        if self._client.socket() is not None:
            # paho's own close: aiomqtt's socket-close callback drops the reader and the misc
            # loop.
            self._client._sock_close()  # noqa: SLF001
        if self._misc_task is not None and not self._misc_task.done():
            self._misc_task.cancel()
        if self._connected.done():
            self._connected = asyncio.Future()
        if self._lock.locked():
            self._lock.release()

    async def __aexit__(self, *exc_info: Any) -> None:  # noqa: ANN401, PYI036 # passed on as is
        """Disconnect (with `end_session_at_exit`, Session Expiry Interval 0), bounded.

        The wait for the DISCONNECT to be written is bounded (`EXIT_SECONDS`): behind a broker
        that reads nothing (hung or SIGSTOPped, its socket buffers full) it never is. Then,
        or when cancelled during the wait, the socket is closed here and aiomqtt's exit only
        releases the client (its own wait, up to its call timeout, is not begun: it raised
        MqttError in place of the body's exception and kept the client's lock).

        A DISCONNECT not written is logged (`mqtt_disconnect_not_written`, `cancelled` when a
        cancellation rather than the bound ended the wait), never raised:
        when the body raised, that exception is the session's story (a lost link, a stop's
        CancelledError), and the ingest and publisher loops act on it; when the body returned,
        its work was acknowledged already (sites' command PUBLISH had its PUBACK) and the
        connection is gone either way. What the broker misses is only the word that we
        left: it keeps a durable session with its connect expiry (a session-ending exit's
        expiry 0 is lost with it, `broker_group_not_left` tells the same for a leave), and
        fires the will when its keepalive notices. A cancellation during the wait raises.
        """
        disconnected = self._disconnected
        sent = gave_up = False
        try:
            if not disconnected.done():
                props = None
                if self._ends_session:
                    props = Properties(PacketTypes.DISCONNECT)  # type: ignore[no-untyped-call] # paho lacks hints here
                    props.SessionExpiryInterval = 0
                sent = self._client.disconnect(properties=props) == MQTT_ERR_SUCCESS
                if sent:
                    # Set once the DISCONNECT is written (paho's on_disconnect): aiomqtt's exit
                    # then finds the client disconnected and only releases it.
                    async with asyncio.timeout(EXIT_SECONDS):
                        await asyncio.wait((disconnected,))
        except TimeoutError:
            gave_up = True
        finally:
            if sent and not disconnected.done():
                # Given up on, or cancelled during the wait: the close drops the DISCONNECT.
                log.warning(
                    "mqtt_disconnect_not_written",
                    seconds=EXIT_SECONDS,
                    cancelled=not gave_up,
                    ends_session=self._ends_session,
                    body_raised=exc_info[0] is not None,
                )
                self._client._sock_close()  # noqa: SLF001 # paho's own close: aiomqtt's readers go
                disconnected.set_result(None)
            if sent and self._connected.done():
                # As aiomqtt's own graceful exit does: entered again, the client waits for
                # the new connection's CONNACK instead of finding the old one's.
                self._connected = asyncio.Future()
            await super().__aexit__(*exc_info)

    async def publish(  # aiomqtt's signature
        self,
        /,
        topic: str,
        payload: PayloadType = None,
        qos: int = 0,
        retain: bool = False,
        properties: Properties | None = None,
        *args: Any,  # noqa: ANN401
        timeout: float | None = None,  # noqa: ASYNC109 # aiomqtt's signature
        **kwargs: Any,  # noqa: ANN401
    ) -> None:
        """Aiomqtt's publish; a cancellation of the caller always raises CancelledError."""
        call = super().publish(
            topic, payload, qos, retain, properties, *args, timeout=timeout, **kwargs
        )
        await cancellable(call)

    async def subscribe(  # aiomqtt's signature
        self,
        /,
        topic: SubscribeTopic,
        qos: int = 0,
        options: SubscribeOptions | None = None,
        properties: Properties | None = None,
        *args: Any,  # noqa: ANN401
        timeout: float | None = None,  # noqa: ASYNC109 # aiomqtt's signature
        **kwargs: Any,  # noqa: ANN401
    ) -> tuple[int, ...] | list[ReasonCode]:
        """Aiomqtt's subscribe; a cancellation of the caller always raises CancelledError."""
        call = super().subscribe(topic, qos, options, properties, *args, timeout=timeout, **kwargs)
        return await cancellable(call)

    async def unsubscribe(
        self,
        /,
        topic: str | list[str],
        properties: Properties | None = None,
        *args: Any,  # noqa: ANN401
        timeout: float | None = None,  # noqa: ASYNC109 # aiomqtt's signature
        **kwargs: Any,  # noqa: ANN401
    ) -> None:
        """Aiomqtt's unsubscribe; a cancellation of the caller always raises CancelledError."""
        await cancellable(super().unsubscribe(topic, properties, *args, timeout=timeout, **kwargs))
