"""Loopback ports for the servers tests start, never the same for two pytest-xdist workers.

`free_port()` used to hand out the port the kernel picked for a socket bound to port 0 and let
it go at once; the server bound it a moment later. The kernel picks from its ephemeral range
for every process, so in between another of `make test`'s workers could be given the same port
(for its own server, or an outgoing connection), and a test failed on "address already in use".
Now each worker picks only from its own band of `PORT_SPAN` (`gw0`, `gw1`, `gw2`: disjoint
thirds, from PYTEST_XDIST_WORKER and PYTEST_XDIST_WORKER_COUNT), which lies below the kernel's
ephemeral ports (32768-60999 by default), so neither another worker nor an outgoing connection
is ever given it. A port is still bound once to see that it is free (another program on the box,
or another test session, may hold it), and a worker goes round its band, so a port it handed
out is not handed out again until every other port of the band has been. One process without
xdist picks from the whole span.
"""

from __future__ import annotations

import os
import random
import socket
from collections.abc import Iterator
from typing import Final

PORT_SPAN: Final = range(20000, 32768)
"""The ports tests hand out: below Linux's default ephemeral range, above the well-known."""


def worker_band(worker: str | None, workers: int, span: range = PORT_SPAN) -> range:
    """The ports xdist worker `worker` (`gw<N>`) of `workers` picks from; `span` for no worker.

    The span is cut into `workers` equal, disjoint bands; `gw<N>` gets the N-th. xdist names its
    workers gw0 .. gw<workers - 1> (a crashed worker's replacement keeps its id).
    """
    if worker is None or workers <= 1:
        return span
    number = worker.removeprefix("gw")
    if not number.isdigit() or int(number) >= workers:
        raise ValueError(f"{worker!r} is not an xdist worker id gw0 .. gw{workers - 1}")
    size = len(span) // workers
    return span[int(number) * size : (int(number) + 1) * size]


def port_order(band: range, start: int) -> Iterator[int]:
    """The ports of `band` round and round, each lap from its `start`-th."""
    while True:
        yield from band[start:]
        yield from band[:start]


def _free(port: int) -> bool:
    """Whether nothing holds 127.0.0.1:`port` now (bound and let go, no SO_REUSEADDR)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as trial:
        try:
            trial.bind(("127.0.0.1", port))
        except OSError:
            return False
    return True


class PortPicker:
    """Hands out the free ports of one band in turn."""

    def __init__(self, band: range, start: int) -> None:
        self._band = band
        self._order = port_order(band, start)

    def next_free(self) -> int:
        """The next port of the band that nothing holds; RuntimeError after a lap without."""
        for _ in self._band:
            port = next(self._order)
            if _free(port):
                return port
        raise RuntimeError(f"every port of {self._band.start}-{self._band.stop - 1} is taken")


_pickers: dict[tuple[str | None, int], PortPicker] = {}


def free_port() -> int:
    """A TCP port on 127.0.0.1 that nothing listens on, and no other xdist worker hands out."""
    worker = os.environ.get("PYTEST_XDIST_WORKER")
    workers = int(os.environ.get("PYTEST_XDIST_WORKER_COUNT", "1"))
    picker = _pickers.get((worker, workers))
    if picker is None:
        band = worker_band(worker, workers)
        # A random start: two test sessions on one box (each with its gw0) rarely meet.
        start = random.SystemRandom().randrange(len(band))
        picker = _pickers.setdefault((worker, workers), PortPicker(band, start))
    return picker.next_free()
