"""A client of `GET /v1/stream` for tests: SSE messages parsed as a consumer sees them.

`open_stream` connects (bearer token, Last-Event-ID, query parameters) and queues every message
as it arrives; `Stream.take` waits for the next events (WAIT at most), `Stream.quiet` collects
what else came within a short while.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from typing import Any

import httpx

WAIT = 10.0  # seconds an expected event may take


@dataclass(frozen=True)
class Message:
    """One SSE message as a client sees it (a comment has only `comment`)."""

    id: str | None = None
    event: str | None = None
    data: str | None = None
    comment: str | None = None

    @property
    def body(self) -> dict[str, Any]:
        assert self.data is not None
        parsed: dict[str, Any] = json.loads(self.data)
        return parsed


async def messages(response: httpx.Response) -> AsyncIterator[Message]:
    """Parse an event stream (text/event-stream) into messages, comments included."""
    fields: dict[str, str] = {}
    async for line in response.aiter_lines():
        if not line:
            if fields:
                yield Message(**fields)
            fields = {}
            continue
        name, _, value = line.partition(":")
        value = value.removeprefix(" ")
        if not name:
            yield Message(comment=value)
        elif name in {"id", "event", "data"}:
            fields[name] = (
                f"{fields[name]}\n{value}" if name == "data" and name in fields else value
            )


@dataclass
class Stream:
    """An open stream: its messages arrive in a queue, read with `take`."""

    response: httpx.Response
    queue: asyncio.Queue[Message] = field(default_factory=asyncio.Queue)
    ended: asyncio.Event = field(default_factory=asyncio.Event)

    async def take(self, count: int, *, comments: bool = False) -> list[Message]:
        """The next `count` messages (events, or comments too)."""
        taken: list[Message] = []
        async with asyncio.timeout(WAIT):
            while len(taken) < count:
                message = await self.queue.get()
                if message.comment is None or comments:
                    taken.append(message)
        return taken

    async def quiet(self, seconds: float = 0.5) -> list[Message]:
        """Whatever events arrive within `seconds` (should be none)."""
        await asyncio.sleep(seconds)
        found: list[Message] = []
        while not self.queue.empty():
            message = self.queue.get_nowait()
            if message.comment is None:
                found.append(message)
        return found


@contextlib.asynccontextmanager
async def open_stream(
    base_url: str,
    bearer: str = "all-token",
    last_event_id: str | None = None,
    **params: str,
) -> AsyncIterator[Stream]:
    headers = {"Authorization": f"Bearer {bearer}"}
    if last_event_id is not None:
        headers["Last-Event-ID"] = last_event_id
    async with (
        httpx.AsyncClient(base_url=base_url, timeout=httpx.Timeout(WAIT, read=None)) as http,
        http.stream("GET", "/v1/stream", params=params, headers=headers) as response,
    ):
        assert response.status_code == 200
        assert response.headers["content-type"].startswith("text/event-stream")
        stream = Stream(response)

        async def pump() -> None:
            async for message in messages(response):
                await stream.queue.put(message)
            stream.ended.set()  # the server ended the response

        task = asyncio.create_task(pump())
        try:
            yield stream
        finally:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError, httpx.HTTPError):
                await task
