"""One request, one answer, then close: the connection handling of the agent's local servers.

The metrics responder (`GET /metrics`) and the status socket (`status`) both take a single
request per connection, bounded in size (the server's stream `limit`) and in time, answer it
and close. A client that hangs up first, or never finishes asking, is no error of the agent's:
there is nothing to answer and nothing to log.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Awaitable, Callable

Handler = Callable[[asyncio.StreamReader, asyncio.StreamWriter], Awaitable[None]]


def one_request_handler(
    answer: Callable[[bytes], Awaitable[bytes]],
    *,
    ends_with: bytes,
    timeout: float,
    too_long: bytes | None,
) -> Handler:
    """A stream handler that reads one request up to `ends_with` and writes `answer(request)`.

    `timeout` is the seconds a client has to send its request. A request longer than the
    server's stream limit gets `too_long` (None: no answer at all).
    """

    async def handle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            try:
                async with asyncio.timeout(timeout):
                    request = await reader.readuntil(ends_with)
            except asyncio.LimitOverrunError:
                if too_long is None:
                    return
                response = too_long
            except (asyncio.IncompleteReadError, TimeoutError):
                return  # the client went away or never finished asking: nothing to answer
            else:
                response = await answer(request)
            writer.write(response)
            await writer.drain()
        except ConnectionError:
            pass  # the client hung up first; the next one starts afresh
        finally:
            writer.close()
            with contextlib.suppress(ConnectionError):
                await writer.wait_closed()

    return handle
