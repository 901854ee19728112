"""ACKs on their way out while the next batch is stored (issue 11.3, G5).

An ACK is published only after its batch has committed; waiting for the broker's PUBACKs as
well before taking the next batch added a broker round trip to every batch (about 3 ms on
the 2-core bench machine, a sixth of a backlog batch), and a live block that arrived
meanwhile waited for it. So the ingest loop hands a batch's ACKs over here and goes on: paho
sends them in the order they were given, the PUBACKs are awaited beside the next batch, and
a failed publish (the broker gone) ends the session at the loop's next batch, as it did
inline. What was not sent when a session ends is resent by the agents after their ACK
timeout and answered again as a duplicate.
"""

from __future__ import annotations

import asyncio
from collections.abc import Sequence

import aiomqtt
import structlog
from paho.mqtt.packettypes import PacketTypes
from paho.mqtt.properties import Properties

from collector.ingest.core import Outgoing

log = structlog.get_logger("collector.ingest")


def _publish_properties(properties: Sequence[tuple[str, str]]) -> Properties:
    props = Properties(PacketTypes.PUBLISH)  # type: ignore[no-untyped-call] # paho lacks hints here
    props.UserProperty = list(properties)
    return props


class AckOut:
    """The ACKs of one session whose PUBACK has not come back yet.

    `bound`: how many may wait for their PUBACK before `send` waits too, so a slow broker
    slows the loop down instead of growing memory.
    """

    def __init__(self, client: aiomqtt.Client, bound: int) -> None:
        self._client = client
        self._bound = bound
        self._pending: set[asyncio.Task[None]] = set()
        self._failure: BaseException | None = None

    def raise_failure(self) -> None:
        """Raise aiomqtt.MqttError when an ACK could not be published (the session is over)."""
        if isinstance(self._failure, aiomqtt.MqttError):
            # From the failure: its cause (the broker's DISCONNECT reason) says why.
            raise aiomqtt.MqttError(f"ACK publish failed: {self._failure}") from self._failure
        if self._failure is not None:
            raise self._failure  # a defect, not a lost broker

    async def send(self, acks: Sequence[Outgoing]) -> None:
        """Hand `acks` to the client in order; return once at most `bound` wait for a PUBACK."""
        self.raise_failure()
        for ack in acks:
            task = asyncio.create_task(self._publish(ack), name="collector-ack")
            self._pending.add(task)
            task.add_done_callback(self._done)
        while len(self._pending) > self._bound:
            await asyncio.wait(self._pending, return_when=asyncio.FIRST_COMPLETED)
            self.raise_failure()

    async def _publish(self, ack: Outgoing) -> None:
        # paho writes the PUBLISH when this task first runs, and tasks first run in the order
        # they were created: the ACKs leave in the order the batches were committed.
        await self._client.publish(
            ack.topic, ack.payload, qos=1, properties=_publish_properties(ack.properties)
        )
        log.debug("ack_published", topic=ack.topic, size=len(ack.payload))

    def _done(self, task: asyncio.Task[None]) -> None:
        self._pending.discard(task)
        if task.cancelled():
            return
        failure = task.exception()  # retrieved from each: asyncio logs those never retrieved
        if failure is not None and self._failure is None:
            self._failure = failure

    def abandon(self) -> None:
        """The session ends: what has not been published is the agents' to resend."""
        for task in self._pending:
            task.cancel()
