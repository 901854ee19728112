"""The bytes of messages received and not yet ingested, kept under a budget.

The MQTT client's queue and the lanes (collector.ingest.lanes) are bounded in messages, but a
message may be as large as MQTT allows (256 MiB): 400 unsigned 4 MB messages sent faster than
a busy collector refused them took it from 79 MiB to 1.6 GiB. So the client's queue also
refuses a message while the bytes held (received, in the queue or the lanes, and not yet
through a batch) are at the budget; aiomqtt then drops it (logging 'Message queue is full')
and the agents resend what was not acknowledged, as past the message bound. Bytes are given
back once the batch that took them is done, so the budget covers the queue, the lanes and the
batch being stored together. The message that reaches the budget is still taken: one message
larger than the whole budget can always get through.
"""

from __future__ import annotations

import asyncio

import aiomqtt


def message_bytes(message: aiomqtt.Message) -> int:
    """What a received message holds in memory, as counted against the budget."""
    return len(message.payload) + len(message.topic.value)


class HeldBytes:
    """Bytes of the messages one MQTT session has received and not yet ingested."""

    def __init__(self, budget: int) -> None:
        if budget < 1:
            raise ValueError("a byte budget holds at least one byte")
        self._budget = budget
        self.held = 0

    @property
    def full(self) -> bool:
        """Whether the next message should be refused."""
        return self.held >= self._budget

    def release(self, messages: list[aiomqtt.Message]) -> None:
        """`messages` went through a batch: their bytes are free again."""
        self.held -= sum(map(message_bytes, messages))

    def queue_type(self) -> type[asyncio.Queue[aiomqtt.Message]]:
        """The client's queue class (aiomqtt's `queue_type`), counting into this budget."""
        held = self

        class _Queue(asyncio.Queue[aiomqtt.Message]):
            def put_nowait(self, item: aiomqtt.Message) -> None:
                if held.full:
                    raise asyncio.QueueFull  # aiomqtt logs and drops the message
                super().put_nowait(item)
                held.held += message_bytes(item)

        return _Queue
