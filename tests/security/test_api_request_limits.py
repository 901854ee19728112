"""Requests are bounded: URL (414), headers (431), body (413), connections (503).

The app answers problem documents for the first three; the HTTP server (uvicorn, configured
by `collector.api.server.server_config` as `collector serve` configures it) also refuses
headers that do not end within the bound (400) and connections past the bound (503). All
tried over HTTP on the real server.
"""

from __future__ import annotations

import socket
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import httpx
import pytest
from starlette.types import Message, Receive, Scope, Send

from collector.api.limits import RequestLimits
from collector.api.sizes import RequestSizeLimit
from collector.storage import open_storage
from tests.support.collector_api import assert_problem, auth, serve
from tests.support.served_api import ServedApi, served_api

SMALL = RequestLimits(
    url_bytes=512, body_bytes=64, header_bytes=2048, header_count=20, connections=4
)


@pytest.fixture(scope="module")
def api(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServedApi]:
    folder: Path = tmp_path_factory.mktemp("limits")
    with served_api(f"sqlite:///{folder}/collector.db", limits=SMALL) as served:
        yield served


@pytest.fixture
async def http(api: ServedApi) -> AsyncIterator[httpx.AsyncClient]:
    async with httpx.AsyncClient(base_url=api.url, headers=auth(), timeout=30) as client:
        yield client


def _padded(total: int) -> str:
    """A /v1/gateways URL of exactly `total` bytes (path and query)."""
    head = "/v1/gateways?gateway="
    return head + "x" * (total - len(head))


async def test_a_url_over_the_bound_is_414_and_at_it_is_served(http: httpx.AsyncClient) -> None:
    at_bound = await http.get(_padded(SMALL.url_bytes))
    assert at_bound.status_code == 200, at_bound.text
    body = assert_problem(await http.get(_padded(SMALL.url_bytes + 1)), 414)
    assert str(SMALL.url_bytes) in body["detail"]


async def test_the_url_bound_counts_bytes_as_sent_percent_encoded(http: httpx.AsyncClient) -> None:
    # 200 characters of 3 UTF-8 bytes each are 1,800 bytes once percent-encoded.
    assert_problem(await http.get("/v1/gateways", params={"gateway": "汉" * 200}), 414)


async def test_a_body_over_the_bound_is_413_declared_or_chunked(http: httpx.AsyncClient) -> None:
    fits = await http.request("GET", "/v1/gateways", content=b"x" * SMALL.body_bytes)
    assert fits.status_code == 200, fits.text
    declared = await http.request("GET", "/v1/gateways", content=b"x" * (SMALL.body_bytes + 1))
    assert_problem(declared, 413)

    async def chunks() -> AsyncIterator[bytes]:
        for _ in range(10):
            yield b"y" * 16

    assert_problem(await http.request("GET", "/v1/gateways", content=chunks()), 413)


def test_a_huge_declared_length_is_refused_not_an_error(api: ServedApi) -> None:
    answer = _raw(
        api,
        b"GET /healthz HTTP/1.1\r\nHost: collector\r\nConnection: close\r\n"
        b"Content-Length: " + b"9" * 1000 + b"\r\n\r\n",
    )
    assert answer.startswith(b"HTTP/1.1 400 "), answer[:200]  # h11 refuses it first


async def test_the_app_refuses_a_huge_declared_length_by_itself() -> None:
    # Behind another server, Content-Length may reach the app unchecked; Python refuses
    # int() of more than 4,300 digits, so the bound must answer before that.
    sent: list[Message] = []

    async def route(scope: Scope, receive: Receive, send: Send) -> None:
        raise AssertionError("the request went past the bound")

    async def receive() -> Message:
        return {"type": "http.request", "body": b"", "more_body": False}

    async def send(message: Message) -> None:
        sent.append(message)

    scope = {
        "type": "http",
        "method": "GET",
        "path": "/healthz",
        "raw_path": b"/healthz",
        "query_string": b"",
        "headers": [(b"content-length", b"9" * 5000)],
    }
    roomy_headers = RequestLimits(header_bytes=1_000_000)  # so that the length is what counts
    await RequestSizeLimit(route, limits=roomy_headers)(scope, receive, send)
    assert sent[0]["status"] == 413


async def test_the_bounds_hold_without_a_token_too(api: ServedApi) -> None:
    async with httpx.AsyncClient(base_url=api.url, timeout=30) as anonymous:
        assert_problem(await anonymous.get(_padded(SMALL.url_bytes + 1)), 414)
        assert_problem(await anonymous.get(_padded(SMALL.url_bytes)), 401)


def _raw(api: ServedApi, request: bytes) -> bytes:
    with socket.create_connection((api.host, api.port), timeout=30) as sock:
        sock.sendall(request)
        answer = b""
        while chunk := sock.recv(65536):  # the server closes after refusing
            answer += chunk
        return answer


async def test_headers_over_the_bound_are_431(http: httpx.AsyncClient) -> None:
    long = {f"x-pad-{i}": "p" * 100 for i in range(30)}  # 3 KiB > 2 KiB, arriving whole
    assert_problem(await http.get("/healthz", headers=long), 431)
    many = {f"x-{i}": "" for i in range(SMALL.header_count + 1)}
    assert_problem(await http.get("/healthz", headers=many), 431)
    assert (await http.get("/healthz", headers={"x-pad": "p" * 1024})).status_code == 200


def test_headers_that_do_not_end_within_the_bound_are_refused_by_the_server(
    api: ServedApi,
) -> None:
    # Headers still coming past the bound: the server stops buffering them and closes.
    request = b"GET /healthz HTTP/1.1\r\nHost: collector\r\nX-Pad: " + b"p" * 4096
    with socket.create_connection((api.host, api.port), timeout=30) as sock:
        sock.sendall(request)
        answer = b""
        while chunk := sock.recv(65536):
            answer += chunk
    assert answer.startswith(b"HTTP/1.1 400 "), answer[:200]
    assert httpx.get(f"{api.url}/healthz").status_code == 200  # the server goes on


def test_connections_over_the_bound_get_503(api: ServedApi) -> None:
    idle = [socket.create_connection((api.host, api.port), timeout=30) for _ in range(4)]
    try:
        # The server counts connections when it accepts them: this request is the fifth.
        answer = httpx.get(f"{api.url}/healthz", headers={"Connection": "close"})
        assert answer.status_code == 503
    finally:
        for sock in idle:
            sock.close()


async def test_a_body_within_the_bound_reaches_the_route_in_process(tmp_path: Path) -> None:
    # In-process (no HTTP server): the bounds are the app's own, with its default limits.
    async with open_storage(f"sqlite:///{tmp_path}/c.db") as storage, serve(storage) as client:
        answer = await client.request("GET", "/healthz", content=b"z" * 4096)
        assert answer.status_code == 200
        assert_problem(await client.request("GET", "/healthz", content=b"z" * 4097), 413)
        assert_problem(await client.get("/healthz?" + "q" * 8192), 414)
