"""The collector's side of the wire in the publisher tests, played by the test itself.

`collector_link` is a new MQTT session on the gateway's block topic, as a collector's: its
`FakeCollectorLink` records each block as it arrives (seq, payload, lane, when) and sends the
ACKs the test asks for, signed with COLLECTOR_KEY unless told otherwise. `InOrderCollector`
answers every block on a link as the real collector does, with no database behind it.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass, field

import aiomqtt

from hostkit.mqtt import CancelSafeClient
from specs.ack import Ack
from specs.block import decode_block
from specs.lanes import Lane, lane_of
from specs.records import iso_time
from specs.signing import SigningKey, signature_properties
from tests.support.broker import Broker
from tests.support.collector_client import publish_properties
from tests.support.publisher_rig import COLLECTOR_KEY, SITE, TOPICS


@dataclass
class FakeCollectorLink:
    """The collector's side of the wire, driven by the test: records blocks, sends ACKs."""

    client: aiomqtt.Client
    epoch: str
    received: list[int] = field(default_factory=list)
    payloads: list[bytes] = field(default_factory=list)
    lanes: list[Lane] = field(default_factory=list)  # the `lane` each block came with
    times: list[float] = field(default_factory=list)  # when each block came (monotonic)
    arrived: asyncio.Event = field(default_factory=asyncio.Event)

    async def listen(self) -> None:
        async for message in self.client.messages:
            block = decode_block(bytes(message.payload))
            self.payloads.append(bytes(message.payload))
            user = getattr(message.properties, "UserProperty", None) or []
            self.lanes.append(lane_of((str(k), str(v)) for k, v in user))
            self.received.append(block.header.seq)
            self.times.append(time.monotonic())
            self.arrived.set()

    async def wait_for(self, count: int, timeout: float = 10) -> None:
        await self._wait(lambda: len(self.received) >= count, f"{count} blocks", timeout)

    async def wait_for_send(self, seq: int, nth: int, timeout: float = 10) -> float:
        """Wait until `seq` has come `nth` times; when it came the `nth` time (monotonic)."""
        await self._wait(lambda: self.received.count(seq) >= nth, f"{seq} x{nth}", timeout)
        return self.when(seq, nth)

    async def _wait(self, done: Callable[[], bool], wanted: str, timeout: float) -> None:
        deadline = time.monotonic() + timeout
        while not done():
            self.arrived.clear()
            remaining = deadline - time.monotonic()
            assert remaining > 0, f"only {self.received} arrived, wanted {wanted}"
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self.arrived.wait(), remaining)

    def sends_of(self, seq: int, within: tuple[float, float]) -> int:
        """How many times `seq` came between these two monotonic moments (both included)."""
        low, high = within
        came = zip(self.received, self.times, strict=True)
        return sum(1 for s, t in came if s == seq and low <= t <= high)

    def when(self, seq: int, nth: int) -> float:
        """When `seq` came for the `nth` time (1: the first)."""
        return [t for s, t in zip(self.received, self.times, strict=True) if s == seq][nth - 1]

    async def ack(
        self,
        through: int,
        *,
        missing: tuple[tuple[int, int], ...] = (),
        seq: int | None = None,
        key: SigningKey = COLLECTOR_KEY,
        acked_hash: str | None = None,
        conflict: bool = False,
        issued_at: str | None = None,
    ) -> None:
        payload = Ack(
            SITE.gateway,
            self.epoch,
            through,
            missing,
            seq,
            iso_time(time.time()) if issued_at is None else issued_at,
            acked_hash,
            conflict,
        )
        body = payload.encode()
        properties = publish_properties(signature_properties(key.sign(body)))
        await self.client.publish(TOPICS.ack, body, qos=1, properties=properties)


@dataclass
class InOrderCollector:
    """Answers every block as the real collector does: ACK of what it holds, holes as missing.

    Stores whatever arrives (no database), so the ACK state is exactly the collector's rule:
    acked_through is the top of the contiguous run from 1, missing the holes above it.
    """

    link: FakeCollectorLink
    stored: set[int] = field(default_factory=set)
    # Called after each answer with how many blocks have arrived (to act mid-drain).
    after_answer: Callable[[int], Awaitable[None]] | None = None

    def state(self) -> tuple[int, tuple[tuple[int, int], ...]]:
        through = 0
        while through + 1 in self.stored:
            through += 1
        holes: list[tuple[int, int]] = []
        low = through + 1
        for seq in sorted(s for s in self.stored if s > through):
            if seq > low:
                holes.append((low, seq - 1))
            low = seq + 1
        return through, tuple(holes)

    stopping: bool = False

    @contextlib.asynccontextmanager
    async def answering(self) -> AsyncIterator[None]:
        """Answer blocks while inside; stopped by a flag too, not only by cancelling.

        aiomqtt's publish waits with asyncio.wait_for, which on 3.11 can drop a cancellation
        that comes as the PUBACK does: the loop would go on and the test never end.
        """
        task = asyncio.create_task(self.run())
        try:
            yield
        finally:
            self.stopping = True
            self.link.arrived.set()
            task.cancel()
            await asyncio.gather(task, return_exceptions=True)

    async def run(self) -> None:
        answered = 0
        while not self.stopping:
            while answered < len(self.link.received) and not self.stopping:
                seq = self.link.received[answered]
                answered += 1
                self.stored.add(seq)
                through, missing = self.state()
                await self.link.ack(through, missing=missing, seq=seq)
                if self.after_answer is not None:
                    await self.after_answer(answered)
            self.link.arrived.clear()
            await self.link.arrived.wait()


@contextlib.asynccontextmanager
async def collector_link(broker: Broker, epoch: str) -> AsyncIterator[FakeCollectorLink]:
    """A new MQTT session listening on the gateway's block topic, as a collector does."""
    # CancelSafeClient: a task cancelled while its `ack` awaits the PUBACK always ends.
    async with CancelSafeClient(
        "127.0.0.1", broker.port, protocol=aiomqtt.ProtocolVersion.V5
    ) as client:
        await client.subscribe(TOPICS.block, qos=1)
        link = FakeCollectorLink(client, epoch)
        listening = asyncio.create_task(link.listen())
        try:
            yield link
        finally:
            listening.cancel()
            await asyncio.gather(listening, return_exceptions=True)
