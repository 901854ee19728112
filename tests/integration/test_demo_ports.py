"""`demo.ports`: the demo's ports come from their own band and are held until the demo ends.

The demo's ports were the kernel's port-0 picks, let go at once: between that and its servers'
binds, a second `make demo`, a test session or any client could be given the same port (the
kernel's ephemeral range serves every process). Here: another run's pick fails on a held
port, while the real servers the demo starts on it (Mosquitto, the simulator, the collector's
API socket) listen beside the hold.
"""

from __future__ import annotations

import asyncio
import contextlib
import errno
import socket
from collections.abc import Iterator
from pathlib import Path

import pytest

from collector.api.server import listening_socket
from demo.broker import Broker, free_port
from demo.ports import DEMO_PORTS, reserve_port
from simulators.profiles import serve_profile
from tests.support.ports import PORT_SPAN

pytestmark = pytest.mark.timeout(60)


def port_of(held: socket.socket) -> int:
    return int(held.getsockname()[1])


def bind_plainly(port: int) -> None:
    """Bind 127.0.0.1:`port` as another program's port probe does (no SO_REUSEADDR)."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", port))


@contextlib.contextmanager
def held_band(size: int) -> Iterator[tuple[range, socket.socket]]:
    """A band of `size` ports of DEMO_PORTS starting at a port held now (other runs go on)."""
    with reserve_port() as held:
        start = port_of(held)
        yield range(start, min(start + size, DEMO_PORTS.stop)), held


def test_the_band_is_below_the_ephemeral_ports_and_apart_from_the_tests() -> None:
    # The kernel gives no port-0 server and no outgoing connection one of these, and a test
    # session hands out none of them.
    ranges = Path("/proc/sys/net/ipv4/ip_local_port_range").read_text(encoding="ascii")
    low, _ = map(int, ranges.split())
    assert DEMO_PORTS.stop <= low
    assert not set(DEMO_PORTS) & set(PORT_SPAN)
    assert DEMO_PORTS.start >= 1024


def test_a_held_port_is_refused_to_another_run() -> None:
    with held_band(1) as (band, held):
        with pytest.raises(OSError, match="in use") as refused:
            bind_plainly(port_of(held))
        assert refused.value.errno == errno.EADDRINUSE
        with pytest.raises(RuntimeError, match="is taken"):
            reserve_port(band)  # a second demo whose band holds only this port
        with pytest.raises(RuntimeError, match="is taken"):
            free_port(band)
    bind_plainly(band.start)  # let go with the demo


def test_runs_at_once_never_share_a_port() -> None:
    with contextlib.ExitStack() as runs:
        ports = [port_of(runs.enter_context(reserve_port())) for _ in range(60)]
    assert len(set(ports)) == len(ports)
    assert all(port in DEMO_PORTS for port in ports)


def test_a_port_something_else_bound_is_passed_over() -> None:
    with held_band(16) as (band, _), reserve_port(band) as other:
        assert port_of(other) in band
        assert port_of(other) != band.start  # the held one


def test_free_port_is_below_the_ephemeral_ports() -> None:
    # The benchmarks' free_port: not held, but no client of the kernel is given it.
    assert free_port() in DEMO_PORTS


def test_mosquitto_listens_on_a_held_port(tmp_path: Path) -> None:
    with reserve_port() as held:
        broker = Broker(port=port_of(held), workdir=tmp_path)
        broker.start()  # waits until it accepts connections
        try:
            assert broker.process is not None
            assert broker.process.poll() is None
        finally:
            broker.stop()


def test_the_collector_api_listens_on_a_held_port() -> None:
    with (
        reserve_port() as held,
        listening_socket("127.0.0.1", port_of(held)) as api,
        socket.create_connection(("127.0.0.1", port_of(held)), timeout=5),
    ):
        accepted, _ = api.accept()
        accepted.close()


async def test_the_simulator_listens_on_a_held_port() -> None:
    with reserve_port() as held:
        sim = await serve_profile("tankfarm", port=port_of(held))
        try:
            _, writer = await asyncio.open_connection("127.0.0.1", port_of(held))
            writer.close()
            await writer.wait_closed()
        finally:
            await sim.stop()
