"""Loopback ports for the servers the demo starts, held until the demo ends.

The demo used to take the port the kernel picked for a socket bound to port 0 and let it go at
once; its broker, simulator and collector bound it a moment later (the collector seconds
later). The kernel picks from its ephemeral range (32768-60999 by default) for every process's
port-0 binds and outgoing connections, so in between anything on the box could be given the
same port: a second `make demo`, a test session's server, any client. The demo's server then
failed to start, or, worse, the demo's `wait_for_port` found the other run's server listening
and the demo talked to it.

Now `reserve_port` takes a port from `DEMO_PORTS`, below the ephemeral range and apart from
the tests' ports (tests/support/ports.py, 20000-32767), from a random start, and holds it:
bound without SO_REUSEADDR, which fails on a port anything else has bound, then marked
SO_REUSEADDR. While the socket is open, a bind without SO_REUSEADDR fails on the port (another
demo's pick, a test's probe), and nothing listens there; the server it is for binds it beside
the held socket and listens, as Linux lets two sockets marked SO_REUSEADDR share an address
while neither listens. Mosquitto, the simulators (asyncio servers) and the collector's API
(`collector.api.server.listening_socket`) all mark theirs.
"""

from __future__ import annotations

import errno
import random
import socket
from typing import Final

DEMO_PORTS: Final = range(10000, 20000)
"""The ports the demo and the benchmarks take: below the kernel's ephemeral range and below
the tests' span, above most well-known services."""


def reserve_port(band: range = DEMO_PORTS) -> socket.socket:
    """Hold a port of `band` on 127.0.0.1 that nothing has bound, for a SO_REUSEADDR server.

    The port is `socket.getsockname()[1]`; it is held until the socket is closed.

    Raises:
        RuntimeError: every port of the band is taken.
        OSError: a bind failed for another reason than the port being in use.
    """
    start = random.SystemRandom().randrange(len(band))
    for port in (*band[start:], *band[:start]):
        held = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        try:
            held.bind(("127.0.0.1", port))
        except OSError as exc:
            held.close()
            if exc.errno != errno.EADDRINUSE:
                raise
            continue
        # Set after the bind: the bind itself must fail on any port already bound.
        held.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        return held
    raise RuntimeError(f"every port of {band.start}-{band.stop - 1} is taken")


def free_port(band: range = DEMO_PORTS) -> int:
    """A port of `band` on 127.0.0.1 that nothing has bound right now, not held.

    For servers that may not mark SO_REUSEADDR (the benchmarks start other programs' servers):
    below the ephemeral range no client is given it, but another run may pick it before the
    server binds it. The demo holds its ports with `reserve_port` instead.
    """
    with reserve_port(band) as held:
        return int(held.getsockname()[1])
