"""Both programs as systemd `Type=notify` services with a watchdog, seen from systemd's side.

`edge-agent run` and `collector serve` run as real processes (a pymodbus simulator, a real
Mosquitto, SQLite) with NOTIFY_SOCKET naming a real AF_UNIX datagram socket this test binds,
as systemd does, and WATCHDOG_USEC as `WatchdogSec=` sets it. Each must send READY=1 only once
it really works (agent: outbox open and every device tried once; collector: database open and
subscribed at the broker), then WATCHDOG=1 every half period, none while the process is frozen
(SIGSTOP: what a hung loop looks like from outside; tests/unit/test_systemd_notify.py shows
the pings come from the event loop itself), and STOPPING=1 on SIGTERM, then exit 0.

Both run with W+X memory refused (tests/support/mdwe.py), as the units'
MemoryDenyWriteExecute=yes will run them.
"""

from __future__ import annotations

import contextlib
import os
import signal
import socket
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.e2e.harness import Site
from tests.support.broker import Broker, free_port, wait_for_port

BIN = Path(sys.executable).parent
WATCHDOG_USEC = 500_000  # WatchdogSec=500ms: a ping every 0.25 s
PING_EVERY = WATCHDOG_USEC / 1_000_000 / 2
FROZEN_FOR = 6 * PING_EVERY
SLOW_DEVICE_TIMEOUT = 2.0  # the device that never answers: its first cycle takes this long
MDWE = (str(BIN / "python"), str(Path(__file__).parents[1] / "support" / "mdwe.py"))


class NotifySocket:
    """systemd's end of the protocol: a bound datagram socket and what arrived on it."""

    def __init__(self, sock: socket.socket, address: str) -> None:
        self.sock = sock
        self.address = address

    def next(self, timeout: float) -> str | None:
        """The next message within `timeout` seconds, or None."""
        self.sock.settimeout(timeout)
        try:
            return self.sock.recv(4096).decode()
        except (TimeoutError, BlockingIOError):
            return None

    def next_but_pings(self, timeout: float) -> str | None:
        """The next message other than WATCHDOG=1 within `timeout` seconds, or None."""
        deadline = time.monotonic() + timeout
        while (left := deadline - time.monotonic()) > 0:
            message = self.next(left)
            if message != "WATCHDOG=1":
                return message
        return None

    def pings(self, count: int) -> list[str | None]:
        """The next `count` messages, each waited for up to four ping intervals."""
        return [self.next(4 * PING_EVERY) for _ in range(count)]


@pytest.fixture
def notify_socket() -> Iterator[NotifySocket]:
    name = f"ganzhi-test-{uuid.uuid4().hex}"
    with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM) as sock:
        sock.bind("\0" + name)
        yield NotifySocket(sock, "@" + name)


@contextlib.contextmanager
def service(argv: list[str], work: Path, notify: NotifySocket) -> Iterator[subprocess.Popen[bytes]]:
    """`argv` started as systemd starts a Type=notify unit with WatchdogSec=, W+X refused."""
    env = {**os.environ, "NOTIFY_SOCKET": notify.address, "WATCHDOG_USEC": str(WATCHDOG_USEC)}
    env.pop("WATCHDOG_PID", None)
    with (work / "service.log").open("ab") as log:
        process = subprocess.Popen(
            [*MDWE, *argv], cwd=work, env=env, stdout=log, stderr=subprocess.STDOUT
        )
    try:
        yield process
    finally:
        if process.poll() is None:
            os.kill(process.pid, signal.SIGCONT)
            process.kill()
        process.wait()


def log_of(work: Path) -> str:
    return (work / "service.log").read_text(encoding="utf-8", errors="replace")[-4000:]


def watched_until_stopped(
    process: subprocess.Popen[bytes], notify: NotifySocket, work: Path
) -> None:
    """Pings flow, stop while the process is frozen, resume; SIGTERM: STOPPING=1, exit 0."""
    assert notify.pings(3) == ["WATCHDOG=1"] * 3
    os.kill(process.pid, signal.SIGSTOP)
    try:
        while notify.next(0.2) is not None:  # what was sent before the stop took effect
            pass
        assert notify.next(FROZEN_FOR) is None, "pings from a frozen process"
    finally:
        os.kill(process.pid, signal.SIGCONT)
    assert notify.next(4 * PING_EVERY) == "WATCHDOG=1"
    process.send_signal(signal.SIGTERM)
    assert notify.next_but_pings(5) == "STOPPING=1", log_of(work)
    try:
        code = process.wait(timeout=30)
    except subprocess.TimeoutExpired:
        pytest.fail(f"no exit 30 s after STOPPING=1:\n{log_of(work)}")
    assert code == 0, log_of(work)


def test_the_collector_is_ready_once_subscribed_then_watched(
    tmp_path: Path, notify_socket: NotifySocket
) -> None:
    (tmp_path / "broker").mkdir()
    broker = Broker(port=free_port(), workdir=tmp_path / "broker")  # not started yet
    site = Site(work=tmp_path / "site", broker=broker)
    site.work.mkdir()
    site.setup()
    argv = [str(BIN / "collector"), "serve", "-c", "collector.yaml"]
    try:
        with service(argv, site.work, notify_socket) as collector:
            # The API answers and the database is open, but the broker is down: not ready,
            # and no pings before READY=1.
            wait_for_port(site.api_port, timeout=30)
            assert (site.work / "state" / "collector.db").is_file()
            assert notify_socket.next(1.0) is None, log_of(site.work)
            broker.start()
            assert notify_socket.next(30) == "READY=1", log_of(site.work)
            watched_until_stopped(collector, notify_socket, site.work)
    finally:
        broker.stop()


@contextlib.contextmanager
def silent_device() -> Iterator[tuple[socket.socket, int]]:
    """A TCP port that accepts a connection and never answers (a PLC that hangs)."""
    port = free_port()
    with socket.create_server(("127.0.0.1", port)) as listener:
        yield listener, port


def test_the_agent_is_ready_once_every_device_was_polled_then_watched(
    tmp_path: Path, broker: Broker, notify_socket: NotifySocket
) -> None:
    site = Site(work=tmp_path / "site", broker=broker)
    site.work.mkdir()
    with silent_device() as (listener, silent_port):

        def one_device_silent(site_map: dict[str, Any]) -> None:
            device = next(d for d in site_map["devices"] if d["id"] == "gas-t1")
            device["port"] = silent_port
            device["timeout"] = f"{SLOW_DEVICE_TIMEOUT}s"

        site.setup(configure=one_device_silent)
        site.start_sim()
        argv = [str(BIN / "edge-agent"), "run", "-c", "site.yaml"]
        try:
            with service(argv, site.work, notify_socket) as agent:
                listener.settimeout(30)
                connection, _ = listener.accept()  # the agent asks the silent device
                with connection:
                    # Its read cannot end before the device timeout: not ready before that.
                    assert notify_socket.next(SLOW_DEVICE_TIMEOUT - 0.5) is None
                    assert notify_socket.next(30) == "READY=1", log_of(site.work)
                    assert site.outbox_path.is_file()
                    watched_until_stopped(agent, notify_socket, site.work)
        finally:
            site.stop_all()
