"""One request, one answer, then close: the connection handling of the agent's local servers.

The metrics responder (`GET /metrics`) and the status socket (`status`) both take a single
request per connection, bounded in size (the server's stream `limit`) and in time, answer it
and close. A client that hangs up first, never finishes asking, or never reads its answer is
no error of the agent's: there is nothing to answer and nothing to log.

Each server holds at most MAX_OPEN_CONNECTIONS connections: a new one drops the oldest still
waiting for its request (or is dropped itself when all are being answered). Every connection
is a file, and a crowd of idle ones, each held for its timeout, took every file the agent may
open (systemd's soft limit is 1024): its status socket and device reconnects failed, and
asyncio logged a traceback per refused accept. Dropping the oldest rather than the newest
keeps a scraper that asks at once served through such a crowd.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Awaitable, Callable
from typing import Final

MAX_OPEN_CONNECTIONS: Final = 8
"""Connections a server holds at once (a scraper and `edge-agent status` need one each)."""
ACCEPT_BACKLOG: Final = MAX_OPEN_CONNECTIONS
"""The servers' listen backlog: asyncio accepts up to this many at a time before they run."""

Handler = Callable[[asyncio.StreamReader, asyncio.StreamWriter], Awaitable[None]]


class _Held:
    """The open connections of one server, oldest first, each still asking or answered."""

    def __init__(self) -> None:
        self._asking: dict[asyncio.StreamWriter, bool] = {}

    def admit(self, writer: asyncio.StreamWriter) -> bool:
        """Hold `writer`, dropping the oldest one still asking if need be; False: no room."""
        if len(self._asking) >= MAX_OPEN_CONNECTIONS:
            oldest = next((held for held, asking in self._asking.items() if asking), None)
            if oldest is None:
                return False
            del self._asking[oldest]
            oldest.transport.abort()  # its read ends (IncompleteReadError), its file is freed
        self._asking[writer] = True
        return True

    def answering(self, writer: asyncio.StreamWriter) -> None:
        self._asking[writer] = False

    def release(self, writer: asyncio.StreamWriter) -> None:
        self._asking.pop(writer, None)


def one_request_handler(
    answer: Callable[[bytes], Awaitable[bytes]],
    *,
    ends_with: bytes,
    timeout: float,
    too_long: bytes | None,
) -> Handler:
    """A stream handler that reads one request up to `ends_with` and writes `answer(request)`.

    `timeout` is the seconds a client has to send its request, and again to take the answer.
    A request longer than the server's stream limit gets `too_long` (None: no answer at all).
    """
    held = _Held()

    async def respond(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> bytes | None:
        try:
            async with asyncio.timeout(timeout):
                request = await reader.readuntil(ends_with)
        except asyncio.LimitOverrunError:
            return too_long
        except (asyncio.IncompleteReadError, TimeoutError):
            return None  # the client went away or never finished asking: nothing to answer
        held.answering(writer)
        return await answer(request)

    async def handle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        if not held.admit(writer):
            writer.transport.abort()
            return
        try:
            response = await respond(reader, writer)
            if response is not None:
                writer.write(response)
                async with asyncio.timeout(timeout):
                    await writer.drain()
        except ConnectionError:
            pass  # the client hung up first; the next one starts afresh
        except TimeoutError:
            writer.transport.abort()  # it does not read its answer: dropped, not waited for
        finally:
            held.release(writer)
            writer.close()
            with contextlib.suppress(ConnectionError):
                await writer.wait_closed()

    return handle
