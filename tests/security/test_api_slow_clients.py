"""Slow or greedy clients cannot take the API away from everyone else.

Found by a hostile tester: `api.limits.connections` (default 512) sockets that each sent a
request line and then a header line every few seconds held every connection the server
allows, with no token and from one address, and every other client got 503 for as long as
they liked (uvicorn has no deadline for a request's head, and the per-address rate limit
sees only whole requests). Now a request's head must arrive within `api.limits.head_timeout`
of the connection being ready for it, and one client address (IPv6: its /64) holds at most
`api.limits.connections_per_address` connections; past it a new connection is closed at once.
"""

from __future__ import annotations

import socket
from collections.abc import Iterator
from contextlib import ExitStack
from pathlib import Path

import httpx
import pytest

from collector.api.limits import RequestLimits
from collector.config import parse_collector_config
from configkit.issues import ConfigError
from tests.support.config_files import COLLECTOR_HEAD
from tests.support.served_api import ServedApi, served_api

PARTIAL_HEAD = b"GET /v1/gateways HTTP/1.1\r\nHost: collector\r\nX-Slow: "
AUTH = {"Authorization": "Bearer all-token"}
GATEWAYS = b"GET /v1/gateways HTTP/1.1\r\nHost: c\r\nAuthorization: Bearer all-token\r\n\r\n"
WAIT = 30.0  # bounds a read that the server ends by closing; never slept


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


CONFIG = COLLECTOR_HEAD + "  limits: {head_timeout: 2s, connections_per_address: 8}\n"


def test_the_bounds_come_from_api_limits() -> None:
    limits = parse_collector_config(CONFIG, "collector.yaml", Path("/srv")).api.limits.settings
    assert (limits.head_timeout, limits.connections_per_address) == (2.0, 8)
    assert RequestLimits().head_timeout == 10.0  # the defaults
    assert RequestLimits().connections_per_address == 64


@pytest.mark.parametrize(
    ("old", "new", "key"),
    [
        ("head_timeout: 2s", "head_timeout: 0s", "api.limits.head_timeout"),
        (
            "connections_per_address: 8",
            "connections_per_address: 0",
            "api.limits.connections_per_address",
        ),
    ],
)
def test_a_bad_bound_is_named_by_file_line_and_key(old: str, new: str, key: str) -> None:
    with pytest.raises(ConfigError) as caught:
        parse_collector_config(CONFIG.replace(old, new), "collector.yaml", Path("/srv"))
    [issue] = caught.value.issues
    assert (issue.file, issue.line, issue.path) == ("collector.yaml", 6, key)
