"""`tests.support.ports`: each pytest-xdist worker hands out loopback ports from its own band.

`free_port()` used to return the port the kernel picked for a socket bound to port 0, then let
it go: between that and the server's bind, another of `make test`'s three workers could be
given the same port, and one of two tests failed with "address already in use".
"""

from __future__ import annotations

import contextlib
import itertools
import socket
from pathlib import Path

import pytest

from tests.support.ports import PORT_SPAN, PortPicker, free_port, port_order, worker_band


def test_three_workers_get_disjoint_bands_that_share_the_span_out() -> None:
    bands = [worker_band(f"gw{index}", 3) for index in range(3)]
    assert [(band.start, band.stop) for band in bands] == [
        (20000, 24256),
        (24256, 28512),
        (28512, 32768),
    ]
    for one, other in itertools.combinations(bands, 2):
        assert not set(one) & set(other)
    assert all(band.start >= PORT_SPAN.start and band.stop <= PORT_SPAN.stop for band in bands)


@pytest.mark.parametrize("workers", [1, 2, 3, 8, 12, 64])
def test_any_worker_count_splits_the_span_without_overlap(workers: int) -> None:
    bands = [worker_band(f"gw{index}", workers) for index in range(workers)]
    ports = [port for band in bands for port in band]
    assert len(ports) == len(set(ports))
    assert all(len(band) == len(PORT_SPAN) // workers for band in bands)


def test_one_process_without_workers_picks_from_the_whole_span() -> None:
    assert worker_band(None, 1) == PORT_SPAN


def test_the_span_is_below_the_kernels_ephemeral_ports() -> None:
    # Ports handed out by the kernel to bind-0 servers and outgoing connections are never ours.
    ranges = Path("/proc/sys/net/ipv4/ip_local_port_range").read_text(encoding="ascii")
    low, _ = map(int, ranges.split())
    assert PORT_SPAN.stop <= low


def test_a_worker_goes_round_its_band_from_its_start_once_per_lap() -> None:
    band = range(100, 105)
    assert list(itertools.islice(port_order(band, 3), 7)) == [103, 104, 100, 101, 102, 103, 104]


def test_a_worker_id_xdist_does_not_make_is_refused() -> None:
    with pytest.raises(ValueError, match="gwX"):
        worker_band("gwX", 3)


def test_free_port_picks_from_this_workers_band(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("PYTEST_XDIST_WORKER", "gw1")
    monkeypatch.setenv("PYTEST_XDIST_WORKER_COUNT", "3")
    ports = [free_port() for _ in range(3)]
    assert all(port in worker_band("gw1", 3) for port in ports)
    assert len(set(ports)) == 3, "a port handed out is not handed out again at once"


def _hold_one_of(band: range, held: socket.socket) -> int:
    """Bind `held` to the first port of `band` it can have (other tests run too); its index."""
    for index, port in enumerate(band):
        with contextlib.suppress(OSError):
            held.bind(("127.0.0.1", port))
            return index
    pytest.fail(f"every port of {band} is taken")


def test_a_port_something_holds_is_passed_over() -> None:
    band = PORT_SPAN[:16]
    with socket.socket() as held:
        index = _hold_one_of(band, held)
        picked = PortPicker(band, start=index).next_free()
    assert picked in band
    assert picked != band[index]
