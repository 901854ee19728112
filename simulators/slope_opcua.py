"""An open-pit slope on OPC UA: GNSS displacement, an inclinometer and a rain gauge.

Address space (namespace ``urn:ganzhi:sim:slope``, always index 2)::

    node id                    unit  meaning
    ns=2;s=Slope.G{n}.X        mm    GNSS station n, cumulative displacement east
    ns=2;s=Slope.G{n}.Y        mm    GNSS station n, cumulative displacement north
    ns=2;s=Slope.G{n}.Z        mm    GNSS station n, cumulative displacement up (settles: < 0)
    ns=2;s=Slope.I1.Angle      deg   inclinometer tilt
    ns=2;s=Slope.R1.Rain       mm    rain gauge, accumulated since start (0.2 mm buckets)

All are Double variables. The physics is the one slope model of simulators.profiles.slope
(the Modbus slope profile serves it too): a compressed demo where the slope creeps a few
millimetres per simulated day (a simulated day is 24 wall minutes), now and then surges,
and rain falls in showers; GNSS readings carry 1.5-3 mm of noise, the inclinometer a few
thousandths of a degree. This module is only its OPC UA address space: the transport, its
faults and its security are simulators.opcua_server's (see there), the test certificates
simulators.pki's. Everything random comes from one seeded RNG.
"""

from __future__ import annotations

import argparse
import logging
import random
import sys
from pathlib import Path
from typing import TYPE_CHECKING, Unpack

from simulators.lifecycle import print_rows, run_command, stop_on_signals
from simulators.opcua_security import SimSecurity
from simulators.opcua_server import OpcUaSimulator, Serving, SimNode
from simulators.pki import make_test_pki
from simulators.profiles.slope import initial_state

if TYPE_CHECKING:
    from collections.abc import Mapping

    from simulators.profiles.slope import SlopeState

__all__ = ["NAMESPACE_URI", "SlopeServer", "main", "slope_nodes"]

_log = logging.getLogger("simulators.slope_opcua")

NAMESPACE_URI = "urn:ganzhi:sim:slope"


def slope_nodes(stations: int = 3) -> tuple[SimNode, ...]:
    """Return every node the simulator serves, GNSS stations numbered from 1."""
    nodes: list[SimNode] = []
    for n in range(1, stations + 1):
        for axis, meaning in (("X", "east"), ("Y", "north"), ("Z", "up")):
            nodes.append(
                SimNode(f"Slope.G{n}.{axis}", "mm", f"GNSS {n} displacement {meaning}",
                        reading=f"gnss{n}.{axis.lower()}")
            )  # fmt: skip
    nodes.append(SimNode("Slope.I1.Angle", "deg", "inclinometer tilt", "inclinometer.angle"))
    nodes.append(SimNode("Slope.R1.Rain", "mm", "accumulated rainfall", "rain.total"))
    return tuple(nodes)


class SlopeServer(OpcUaSimulator):
    """A running slope simulator; use as ``async with SlopeServer(...) as sim:``."""

    def __init__(
        self,
        host: str = "127.0.0.1",
        port: int = 0,
        *,
        stations: int = 3,
        seed: int = 0,
        interval: float = 0.5,
        **serving: Unpack[Serving],
    ) -> None:
        """Configure; `start` listens (port 0 picks a free port, kept across restarts).

        `serving` (security, users, allow_anonymous, min_publishing_interval, fresh_reads):
        see simulators.opcua_server.

        Raises:
            ValueError: fewer than one station or a non-positive interval.
        """
        if stations < 1 or interval <= 0:
            raise ValueError("need at least one station and a positive interval")
        rng = random.Random(seed)
        self._slope: SlopeState = initial_state(rng, stations)
        super().__init__(
            host,
            port,
            nodes=slope_nodes(stations),
            namespace=NAMESPACE_URI,
            root="Slope",
            name="slope",
            rng=rng,
            interval=interval,
            **serving,
        )

    def _advance(self, dt: float) -> None:
        """Step the slope `dt` wall seconds."""
        self._slope = self._slope.step(dt, self._rng)

    def _observe(self) -> Mapping[str, float]:
        """The station's readings: GNSS, inclinometer, rain since start (and the rest)."""
        return self._slope.observe(self._rng, inclinometer=True)


# -- command line ----------------------------------------------------------------------


def _parse(argv: list[str] | None) -> argparse.Namespace:
    """Parse the command line."""
    parser = argparse.ArgumentParser(
        prog="python -m simulators.slope_opcua",
        description="Serve a simulated open-pit slope over OPC UA until SIGINT/SIGTERM.",
    )
    parser.add_argument("--host", default="127.0.0.1", help="address to listen on")
    parser.add_argument("--port", type=int, default=4840, help="TCP port (0: any free port)")
    parser.add_argument("--stations", type=int, default=3, help="number of GNSS stations")
    parser.add_argument("--seed", type=int, default=0, help="random seed")
    parser.add_argument("--interval", type=float, default=0.5, help="update period, seconds")
    parser.add_argument(
        "--min-publishing",
        type=float,
        default=0.0,
        help="shortest publishing interval granted, seconds (a real server's limit)",
    )
    parser.add_argument(
        "--fresh-reads",
        action="store_true",
        help="answer a Read with MaxAge 0 from a fresh sample (a server reading its device)",
    )
    parser.add_argument(
        "--pki",
        type=Path,
        help="offer Basic256Sha256 only, with test certificates in this folder (made if absent)",
    )
    parser.add_argument("--nodes", action="store_true", help="print the node map and exit")
    args = parser.parse_args(argv)
    if args.stations < 1 or args.interval <= 0 or args.min_publishing < 0:
        parser.error("need --stations >= 1, --interval > 0 and --min-publishing >= 0")
    return args


def _security(pki_dir: Path) -> SimSecurity:
    """Reuse or make the test PKI in `pki_dir`; trust its client certificate."""
    server_cert = pki_dir / "server-cert.pem"
    if not server_cert.exists():
        make_test_pki(pki_dir)
    return SimSecurity(
        cert=server_cert,
        key=pki_dir / "server-key.pem",
        trusted=(pki_dir / "client-cert.pem",),
    )


async def _serve(args: argparse.Namespace) -> None:
    """Serve until SIGINT or SIGTERM."""
    stop = stop_on_signals()
    security = _security(args.pki) if args.pki is not None else None
    sim = SlopeServer(
        args.host,
        args.port,
        stations=args.stations,
        seed=args.seed,
        interval=args.interval,
        security=security,
        min_publishing_interval=args.min_publishing,
        fresh_reads=args.fresh_reads,
    )
    async with sim:
        _log.info("slope simulator: %d stations on %s", args.stations, sim.endpoint)
        await stop.wait()
    _log.info("slope simulator stopped")


def main(argv: list[str] | None = None) -> int:
    """Run the simulator; return the process exit code."""
    args = _parse(argv)
    if args.nodes:
        print_rows(
            {"node": node.node_id, "unit": node.unit, "description": node.description}
            for node in slope_nodes(args.stations)
        )
        return 0
    # asyncua logs every request at INFO; keep the simulator's own lines readable.
    return run_command(_serve(args), _log, quiet=("asyncua",))


if __name__ == "__main__":
    sys.exit(main())
