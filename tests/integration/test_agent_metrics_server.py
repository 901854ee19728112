"""The agent's metrics responder over real loopback sockets: what it answers, and to what not."""

from __future__ import annotations

import asyncio
import os
from collections.abc import AsyncIterator

import httpx
import pytest
import structlog

from edge_agent.shell import metrics_server
from edge_agent.shell.metrics_server import MAX_HEAD_BYTES, ScrapeFailedError, serve_metrics
from edge_agent.shell.one_request import MAX_OPEN_CONNECTIONS

CROWD = 300
BODY = b"# HELP gz_test_total t\n# TYPE gz_test_total counter\ngz_test_total 1.0\n"


@pytest.fixture
async def server() -> AsyncIterator[tuple[str, list[str]]]:
    """A responder on a free port; the test sets the list's one item to `fail` to fail scrapes."""
    mode = ["ok"]

    async def scrape() -> bytes:
        if mode[0] == "fail":
            raise ScrapeFailedError("the outbox cannot be read: disk I/O error")
        return BODY

    listening = await serve_metrics("127.0.0.1", 0, scrape)
    port = listening.sockets[0].getsockname()[1]
    try:
        yield f"http://127.0.0.1:{port}", mode
    finally:
        listening.close()
        await listening.wait_closed()


async def _raw(base: str, request: bytes) -> bytes:
    host, port = base.removeprefix("http://").split(":")
    reader, writer = await asyncio.open_connection(host, int(port))
    writer.write(request)
    await writer.drain()
    answer = await asyncio.wait_for(reader.read(), 10)
    writer.close()
    await writer.wait_closed()
    return answer


async def test_get_metrics_is_the_scrape_and_everything_else_is_refused(
    server: tuple[str, list[str]],
) -> None:
    base, mode = server
    async with httpx.AsyncClient(base_url=base) as http:
        ok = await http.get("/metrics")
        with_query = await http.get("/metrics?name[]=gz_test_total")
        head = await http.head("/metrics")
        other = await http.get("/")
        post = await http.post("/metrics", content=b"x")
        mode[0] = "fail"
        failed = await http.get("/metrics")
    assert (ok.status_code, ok.content) == (200, BODY)
    assert ok.headers["content-type"] == "text/plain; version=0.0.4; charset=utf-8"
    assert ok.headers["connection"] == "close"
    assert with_query.content == BODY
    assert (head.status_code, head.content) == (200, b"")
    assert head.headers["content-length"] == str(len(BODY))
    assert other.status_code == 404
    assert (post.status_code, post.headers["allow"]) == (405, "GET, HEAD")
    assert failed.status_code == 503
    assert "disk I/O error" in failed.text


async def test_a_huge_or_broken_request_head_gets_no_scrape(server: tuple[str, list[str]]) -> None:
    base, _ = server
    huge = b"GET /metrics HTTP/1.1\r\nX-Pad: " + b"a" * MAX_HEAD_BYTES + b"\r\n\r\n"
    assert (await _raw(base, huge)).startswith(b"HTTP/1.1 431 ")
    assert (await _raw(base, b"HELLO\r\n\r\n")).startswith(b"HTTP/1.1 400 ")


async def test_a_client_that_never_finishes_its_head_is_dropped(
    server: tuple[str, list[str]], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(metrics_server, "HEAD_TIMEOUT", 0.2)
    base, _ = server
    assert await _raw(base, b"GET /metrics HTTP/1.1\r\n") == b""  # closed without an answer


async def test_a_taken_port_fails_the_start_and_says_which(server: tuple[str, list[str]]) -> None:
    base, _ = server
    port = int(base.rsplit(":", 1)[1])

    async def scrape() -> bytes:
        return BODY

    with structlog.testing.capture_logs() as logs, pytest.raises(OSError, match="in use"):
        await serve_metrics("127.0.0.1", port, scrape)
    (failed,) = [e for e in logs if e["event"] == "metrics_listen_failed"]
    assert failed["listen"] == f"127.0.0.1:{port}"


def _open_files() -> int:
    return len(os.listdir("/proc/self/fd"))  # noqa: PTH208 - a count, no paths


async def _settled_open_files() -> int:
    """This process's open files once the responder has taken what the kernel queued for it."""
    await asyncio.sleep(0.5)
    return _open_files()


async def test_a_crowd_of_idle_connections_holds_few_files_and_a_scrape_still_gets_in(
    server: tuple[str, list[str]],
) -> None:
    """Found by the security hostile test: every connection was held for its HEAD_TIMEOUT.

    Under systemd's soft limit of 1024 files, a neighbour on the site network opening that many
    connections took every file the agent had: `edge-agent status` answered 'not running' and
    the agent logged 'socket.accept() out of system resource' with a traceback, over and over.
    """
    base, _ = server
    host, port = base.removeprefix("http://").split(":")
    before = _open_files()
    crowd = [await asyncio.open_connection(host, int(port)) for _ in range(CROWD)]
    held = await _settled_open_files() - before - CROWD  # the responder's side of the crowd
    async with httpx.AsyncClient(base_url=base) as http:
        scraped = await http.get("/metrics")
    for _, writer in crowd:
        writer.close()
        await writer.wait_closed()
    await asyncio.sleep(0.2)  # the responder sees them go before the fixture stops it
    assert held <= MAX_OPEN_CONNECTIONS, f"{held} files held for {CROWD} idle connections"
    assert (scraped.status_code, scraped.content) == (200, BODY)


async def test_a_client_that_never_reads_its_answer_is_dropped(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(metrics_server, "HEAD_TIMEOUT", 0.3)

    async def scrape() -> bytes:
        return b"x" * 16 * 1024 * 1024  # far past what the kernel buffers for a socket

    listening = await serve_metrics("127.0.0.1", 0, scrape)
    port = listening.sockets[0].getsockname()[1]
    try:
        before = _open_files()
        _, writer = await asyncio.open_connection("127.0.0.1", port)
        writer.write(b"GET /metrics HTTP/1.1\r\n\r\n")
        await asyncio.sleep(2.0)  # never reading
        held = _open_files() - before - 1
        writer.close()
        assert held == 0, "the responder still holds the connection of a client that never reads"
    finally:
        listening.close()
        await listening.wait_closed()
