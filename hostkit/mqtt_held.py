"""The bytes of MQTT messages received and not yet handled, kept under a budget.

aiomqtt's queue of received messages is bounded in messages at most, and a message may be as
large as MQTT allows (256 MiB): 400 unsigned 4 MB messages sent faster than a busy collector
refused them took it from 79 MiB to 1.6 GiB; 400 of 2 MB on an agent's down/ topics took
`edge-agent run` from 55 MiB to 620 MiB, still growing. So the client's queue (aiomqtt's
`queue_type`) also refuses a message while the bytes held (received and not yet through the
program's handling) are at the budget, and drops it, as past a message bound: what the sender
was not answered for it sends again. A drop is not a log line each (aiomqtt's own 'Message
queue is full' was: 3,349 lines for 20,000 junk messages to a collector): the first says so at
once, and the drops after it are counted into one `incoming_messages_dropped` line when the
minute is over (a timer: the count used to wait for the next drop, and a burst was logged as
`messages=1` with the rest never said when no drop came later), or when the session ends
(`close`). So the lines' `messages` add up to every message dropped. Bytes are given back once
the program has handled the message (`release`). The message that reaches the budget is still
taken: one message larger than the whole budget can always get through.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable
from typing import Final

import aiomqtt
import structlog

DROPS_LOGGED_EVERY: Final = 60.0
"""Seconds between two `incoming_messages_dropped` lines, at least."""

log = structlog.get_logger("hostkit.mqtt")


def message_bytes(message: aiomqtt.Message) -> int:
    """What a received message holds in memory, as counted against the budget."""
    return len(message.payload) + len(message.topic.value)


class HeldBytes:
    """Bytes of the messages one MQTT session has received and not yet handled."""

    def __init__(
        self,
        budget: int,
        clock: Callable[[], float] = time.monotonic,
        *,
        every: float = DROPS_LOGGED_EVERY,
    ) -> None:
        if budget < 1:
            raise ValueError("a byte budget holds at least one byte")
        self._budget = budget
        self._clock = clock
        self._every = every
        self.held = 0
        self._dropped = self._dropped_bytes = 0
        self._said_at = -every
        self._later: asyncio.TimerHandle | None = None  # says the count once the minute is over

    @property
    def full(self) -> bool:
        """Whether the next message should be refused."""
        return self.held >= self._budget

    def release(self, messages: list[aiomqtt.Message]) -> None:
        """`messages` were handled: their bytes are free again."""
        self.held -= sum(map(message_bytes, messages))

    def drop(self, message: aiomqtt.Message) -> None:
        """Count a message left out; log the count at most once every `every` seconds.

        Called on the client's event loop (aiomqtt's message callback).
        """
        self._dropped += 1
        self._dropped_bytes += message_bytes(message)
        now = self._clock()
        if now - self._said_at >= self._every:
            self._say(now)
        elif self._later is None:
            wait = self._said_at + self._every - now
            self._later = asyncio.get_running_loop().call_later(wait, self._minute_over)

    def close(self) -> None:
        """The session ends: say the drops not said yet."""
        self._say(self._clock())

    def _minute_over(self) -> None:
        self._later = None
        self._say(self._clock())

    def _say(self, now: float) -> None:
        if self._later is not None:  # said before the minute's timer: it has nothing to say
            self._later.cancel()
            self._later = None
        if not self._dropped:
            return
        log.warning(
            "incoming_messages_dropped",
            messages=self._dropped,
            bytes=self._dropped_bytes,
            held_bytes=self.held,
        )
        self._said_at, self._dropped, self._dropped_bytes = now, 0, 0

    def queue_type(self) -> type[asyncio.Queue[aiomqtt.Message]]:
        """The client's queue class (aiomqtt's `queue_type`), counting into this budget."""
        held = self

        class _Queue(asyncio.Queue[aiomqtt.Message]):
            def put_nowait(self, item: aiomqtt.Message) -> None:
                if held.full or self.full():  # bytes, or the client's bound in messages
                    held.drop(item)
                    return
                super().put_nowait(item)
                held.held += message_bytes(item)

        return _Queue
