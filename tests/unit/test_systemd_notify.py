"""sd_notify: messages reach a real datagram socket; the watchdog pings come from the event loop.

The socket is a real AF_UNIX datagram socket this test binds, as systemd binds its own; its
name goes into the environment the way systemd passes it (NOTIFY_SOCKET, WATCHDOG_USEC,
WATCHDOG_PID).
"""

from __future__ import annotations

import asyncio
import os
import socket
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

from hostkit.systemd_notify import notify, watchdog_period, watchdog_pings

PERIOD_USEC = 200_000  # pings every 0.1 s
INTERVAL = PERIOD_USEC / 1_000_000 / 2


@pytest.fixture(params=["abstract", "path"])
def listener(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[tuple[str, socket.socket]]:
    """(NOTIFY_SOCKET value, the bound socket): abstract ('@name') and a file path."""
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    if request.param == "abstract":
        name = f"ganzhi-test-{uuid.uuid4().hex}"
        sock.bind("\0" + name)
        address = "@" + name
    else:
        address = str(tmp_path / "notify")
        sock.bind(address)
    sock.settimeout(0)  # non-blocking
    try:
        yield address, sock
    finally:
        sock.close()


def test_a_message_arrives_as_one_datagram(listener: tuple[str, socket.socket]) -> None:
    address, sock = listener
    assert notify("READY=1", {"NOTIFY_SOCKET": address})
    assert sock.recv(4096) == b"READY=1"


def test_without_a_notify_socket_nothing_is_sent() -> None:
    assert not notify("READY=1", {})


def test_a_socket_nobody_binds_is_an_error(tmp_path: Path) -> None:
    with pytest.raises(OSError, match="No such file"):
        notify("READY=1", {"NOTIFY_SOCKET": str(tmp_path / "absent")})


def test_the_watchdog_period_is_for_the_process_systemd_named() -> None:
    me = str(os.getpid())
    assert watchdog_period({"WATCHDOG_USEC": "30000000"}) == 30.0
    assert watchdog_period({"WATCHDOG_USEC": "30000000", "WATCHDOG_PID": me}) == 30.0
    # A child that inherited the variables is not the watched process.
    assert watchdog_period({"WATCHDOG_USEC": "30000000", "WATCHDOG_PID": "1"}) is None
    assert watchdog_period({"WATCHDOG_USEC": "0"}) is None
    assert watchdog_period({}) is None


async def test_no_watchdog_no_pings(listener: tuple[str, socket.socket]) -> None:
    address, sock = listener
    async with watchdog_pings({"NOTIFY_SOCKET": address}) as interval:
        assert interval is None
        await asyncio.sleep(0)
    with pytest.raises(BlockingIOError):
        sock.recv(4096)


async def test_pings_stop_while_the_event_loop_is_blocked(
    listener: tuple[str, socket.socket],
) -> None:
    address, sock = listener
    loop = asyncio.get_running_loop()
    environ = {"NOTIFY_SOCKET": address, "WATCHDOG_USEC": str(PERIOD_USEC)}
    async with watchdog_pings(environ) as interval:
        assert interval == INTERVAL
        for _ in range(3):
            assert await asyncio.wait_for(loop.sock_recv(sock, 4096), 10) == b"WATCHDOG=1"
        # Block the loop (a hung driver call, a CPU-bound bug): for six ping intervals no ping
        # may come, which a pinging thread would still send.
        sock.settimeout(6 * INTERVAL)
        with pytest.raises(TimeoutError):
            sock.recv(4096)
        sock.settimeout(0)  # non-blocking
        # Free again: the pings resume.
        assert await asyncio.wait_for(loop.sock_recv(sock, 4096), 10) == b"WATCHDOG=1"
    # Left: the pinging task has ended; after what it sent before, nothing more comes.
    while True:
        try:
            sock.recv(4096)
        except BlockingIOError:
            break
    await asyncio.sleep(3 * INTERVAL)
    with pytest.raises(BlockingIOError):
        sock.recv(4096)


async def test_a_failing_ping_does_not_end_the_pings(tmp_path: Path) -> None:
    # The socket appears only after the first pings failed (systemd re-executing itself).
    address = tmp_path / "notify"
    environ = {"NOTIFY_SOCKET": str(address), "WATCHDOG_USEC": str(PERIOD_USEC)}
    async with watchdog_pings(environ):
        await asyncio.sleep(2 * INTERVAL)
        with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM) as sock:
            sock.bind(str(address))
            sock.settimeout(0)  # non-blocking
            loop = asyncio.get_running_loop()
            assert await asyncio.wait_for(loop.sock_recv(sock, 4096), 10) == b"WATCHDOG=1"
