"""Slow or greedy clients cannot take the API away from everyone else.

Found by a hostile tester: `api.limits.connections` (default 512) sockets that each sent a
request line and then a header line every few seconds held every connection the server
allows, with no token and from one address, and every other client got 503 for as long as
they liked (uvicorn has no deadline for a request's head, and the per-address rate limit
sees only whole requests). Now a request's head must arrive within `api.limits.head_timeout`
of the connection being ready for it, and one client address (IPv6: its /64) holds at most
`api.limits.connections_per_address` connections; past it a new connection is closed at once.

Left in a closing note: a client that opened `GET /v1/stream` and stopped reading held its
connection for ever (511 such sockets from 8 loopback addresses held every slot: 45 s on, 75.6
MB were still queued for them in the kernel, up to 683 kB each, and everyone else got 503).
Now the server resets a connection whose client has taken no byte for `api.limits.send_timeout`
while more waits for it, logs and counts it, and a stream's client resumes with Last-Event-ID;
a client that reads, however slowly, keeps its stream. (At first the connection's
TCP_USER_TIMEOUT did this, and the kernel cut the slow reader below in 7 of 10 runs at load
7-11: bytes taken through window updates did not start its time afresh.)
"""

from __future__ import annotations

import socket
import time
from collections.abc import Iterator, MutableMapping
from contextlib import ExitStack
from pathlib import Path
from typing import Any

import httpx
import pytest
from structlog.testing import capture_logs

from collector.api.limits import RequestLimits
from collector.config import parse_collector_config
from collector.storage.base import Storage
from tests.e2e.harness import wait_until
from tests.support.collector_api import BEIJING, NANCHANG, level, store_blocks
from tests.support.collector_client import BASE_TIME
from tests.support.config_files import COLLECTOR, COLLECTOR_HEAD
from tests.support.served_api import ServedApi, served_api

PARTIAL_HEAD = b"GET /v1/gateways HTTP/1.1\r\nHost: collector\r\nX-Slow: "
AUTH = {"Authorization": "Bearer all-token"}
GATEWAYS = b"GET /v1/gateways HTTP/1.1\r\nHost: c\r\nAuthorization: Bearer all-token\r\n\r\n"
WAIT = 30.0  # bounds a read that the server ends by closing; never slept
STALLED = 4  # streams whose client never reads: with one more connection, every slot
BACKLOG = 2000  # readings, ~500 kB of events: far more than a stalled socket's buffers take
IMPATIENT = 3.0  # seconds of send_timeout for the slow reader
STREAMING = b"HTTP/1.1 200 "
STREAM_FROM_START = (
    b"GET /v1/stream HTTP/1.1\r\nHost: c\r\nAuthorization: Bearer all-token\r\n"
    b"Last-Event-ID: r0.f0\r\n\r\n"
)


@pytest.fixture
def api(tmp_path: Path) -> Iterator[ServedApi]:
    limits = RequestLimits(connections=4, head_timeout=0.5, connections_per_address=3)
    with served_api(f"sqlite:///{tmp_path}/c.db", limits=limits) as served:
        yield served


@pytest.fixture
def patient_api(tmp_path: Path) -> Iterator[ServedApi]:
    """Idle connections stay as long as the test needs them."""
    limits = RequestLimits(connections=8, head_timeout=600.0, connections_per_address=3)
    with served_api(f"sqlite:///{tmp_path}/c.db", limits=limits) as served:
        yield served


async def _backlog(storage: Storage) -> None:
    """Both gateways registered, BACKLOG readings of Nanchang's level stored."""
    for sim in (NANCHANG, BEIJING):
        await storage.register(*sim.registration())
    readings = [level(BASE_TIME + i, float(i)) for i in range(BACKLOG)]
    await store_blocks(storage, NANCHANG, [readings[i : i + 200] for i in range(0, BACKLOG, 200)])


@pytest.fixture
def feed_api(tmp_path: Path) -> Iterator[ServedApi]:
    """Every connection slot but one can be taken by stalled streams (uvicorn's 503 is at
    `connections` open, the new one included)."""
    limits = RequestLimits(connections=STALLED + 1, send_timeout=8.0)
    with served_api(f"sqlite:///{tmp_path}/c.db", limits=limits, seed=_backlog) as served:
        yield served


@pytest.fixture
def impatient_feed_api(tmp_path: Path) -> Iterator[ServedApi]:
    """A short send_timeout, for a client that is slow but reads."""
    limits = RequestLimits(send_timeout=IMPATIENT)
    with served_api(f"sqlite:///{tmp_path}/c.db", limits=limits, seed=_backlog) as served:
        yield served


def _stalled_stream(api: ServedApi) -> socket.socket:
    """A stream from the first event whose client takes nothing after its status line (a
    small receive buffer).

    The status line is awaited: uvicorn counts a connection against `connections` from its
    accept but compares when it reads the head, so on a loaded host streams opened one after
    another without waiting were all accepted before any head was read, and were answered 503
    themselves (nothing left to stall; 1 of 15 runs at load 4-6 waited 30 s for 4 closed).
    """
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
    sock.settimeout(WAIT)
    sock.connect((api.host, api.port))
    sock.sendall(STREAM_FROM_START)
    status = sock.recv(len(STREAMING), socket.MSG_WAITALL)
    assert status == STREAMING, status
    return sock


def _closed_by_server(sock: socket.socket) -> bool:
    """Whether the server closes `sock` (read to its end; a reset counts as closed)."""
    try:
        while sock.recv(4096):
            pass
    except ConnectionResetError:
        pass
    return True


def test_a_head_that_does_not_arrive_in_time_is_cut_off(api: ServedApi) -> None:
    with ExitStack() as stack:
        slow = [
            stack.enter_context(socket.create_connection((api.host, api.port), timeout=WAIT))
            for _ in range(3)
        ]
        for sock in slow:
            sock.sendall(PARTIAL_HEAD)
        assert all(_closed_by_server(sock) for sock in slow)
    assert httpx.get(f"{api.url}/v1/gateways", headers=AUTH).status_code == 200


def test_a_head_that_arrives_in_pieces_in_time_is_served(api: ServedApi) -> None:
    with socket.create_connection((api.host, api.port), timeout=WAIT) as sock:
        sock.sendall(PARTIAL_HEAD)
        sock.sendall(b"1\r\nAuthorization: Bearer all-token\r\nConnection: close\r\n\r\n")
        answer = b""
        while chunk := sock.recv(65536):
            answer += chunk
    assert answer.startswith(b"HTTP/1.1 200 "), answer[:200]


def test_one_address_holds_at_most_its_share_of_connections(patient_api: ServedApi) -> None:
    api = patient_api
    with ExitStack() as stack:
        share = [
            stack.enter_context(socket.create_connection((api.host, api.port), timeout=WAIT))
            for _ in range(3)  # idle: the address's whole share
        ]
        with pytest.raises(httpx.TransportError):
            httpx.get(f"{api.url}/v1/gateways", headers=AUTH)
        # The connections within the share are served as ever.
        share[0].sendall(GATEWAYS)
        assert share[0].recv(12) == b"HTTP/1.1 200"


def test_a_stream_whose_client_stops_reading_gives_its_slot_back(feed_api: ServedApi) -> None:
    api = feed_api
    with ExitStack() as stack, capture_logs() as logs:
        stalled = [stack.enter_context(_stalled_stream(api)) for _ in range(STALLED)]
        # Every slot is held: anyone else is turned away while they are.
        assert httpx.get(f"{api.url}/v1/gateways", headers=AUTH).status_code == 503

        def closed() -> list[MutableMapping[str, Any]]:
            return [entry for entry in logs if entry["event"] == "stalled_connection_closed"]

        wait_until(lambda: len(closed()) == STALLED, WAIT, f"{STALLED} stalled streams closed")
        assert {entry["path"] for entry in closed()} == {"/v1/stream"}
        # Their connections are gone: what a client reads now ends (its taking is answered
        # with a reset), where before it would wait for more events.
        assert all(_closed_by_server(sock) for sock in stalled)
    metrics = httpx.get(f"{api.url}/metrics", headers=AUTH).text
    assert f"gz_collector_api_stalled_connections_total {STALLED}.0" in metrics.splitlines()
    # A client that reads gets a slot, and every event from where it asks.
    readings = 0
    headers = {**AUTH, "Last-Event-ID": "r0.f0"}
    with httpx.stream("GET", f"{api.url}/v1/stream", headers=headers, timeout=WAIT) as live:
        assert live.status_code == 200
        for line in live.iter_lines():
            readings += line == "event: reading"
            if readings == BACKLOG:
                break
    assert readings == BACKLOG


def test_a_slow_reader_keeps_its_stream(impatient_feed_api: ServedApi) -> None:
    """Its windows stay small and full for far longer than send_timeout in all, but it takes
    some every tenth of a second: each byte taken starts the time afresh."""
    api = impatient_feed_api
    received = b""
    with capture_logs() as logs, _stalled_stream(api) as sock:
        give_up = time.monotonic() + 4 * IMPATIENT
        while time.monotonic() < give_up:  # ~200 kB of the ~500 kB backlog
            received += sock.recv(2048)
            time.sleep(0.1)
        while received.count(b"event: reading") < BACKLOG:
            chunk = sock.recv(65536)  # a stream that was cut off ends here, or times out
            assert chunk, f"cut off after {received.count(b'event: reading')} readings"
            received += chunk
    assert not [entry for entry in logs if entry["event"] == "stalled_connection_closed"]


CONFIG = (
    COLLECTOR_HEAD + "  limits: {head_timeout: 2s, connections_per_address: 8, send_timeout: 1m}\n"
)


def test_the_bounds_come_from_api_limits() -> None:
    limits = parse_collector_config(CONFIG, "collector.yaml", Path("/srv")).api.limits.settings
    assert (limits.head_timeout, limits.connections_per_address) == (2.0, 8)
    assert limits.send_timeout == 60.0
    assert RequestLimits().head_timeout == 10.0  # the defaults
    assert RequestLimits().connections_per_address == 64
    assert RequestLimits().send_timeout == 30.0


@pytest.mark.parametrize(
    ("old", "new", "key"),
    [
        ("head_timeout: 2s", "head_timeout: 0s", "api.limits.head_timeout"),
        (
            "connections_per_address: 8",
            "connections_per_address: 0",
            "api.limits.connections_per_address",
        ),
        ("send_timeout: 1m", "send_timeout: 500ms", "api.limits.send_timeout"),
        ("send_timeout: 1m", "send_timeout: 2d", "api.limits.send_timeout"),
    ],
)
def test_a_bad_bound_is_named_by_file_line_and_key(old: str, new: str, key: str) -> None:
    issue = COLLECTOR.only_issue(CONFIG.replace(old, new))
    assert (issue.file, issue.line, issue.path) == ("collector.yaml", 6, key)
