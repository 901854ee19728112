"""Run a site simulator: ``python -m simulators [--profile NAME] --port 5020 [--seed N]``.

Profiles: tankfarm (the default, with ``--tanks``), tailings, fireworks, slope, coalmine; see
simulators.profiles. ``--map`` prints the chosen profile's register map as JSON lines and
exits. ``--fault silent|garbage|frozen|exception[:CODE]`` starts it misbehaving (see
simulators.faults). SIGINT and SIGTERM stop it cleanly.
"""

from __future__ import annotations

import argparse
import logging
import sys
from typing import TYPE_CHECKING

from simulators.faults import FAULT_CHOICES, Fault
from simulators.lifecycle import print_rows, run_command, stop_on_signals
from simulators.profiles import PROFILE_NAMES, TANKFARM, profile_map, serve_profile

if TYPE_CHECKING:
    from collections.abc import Iterator

_log = logging.getLogger("simulators")


def _fault_arg(text: str) -> Fault:
    """Parse ``--fault``; argparse turns the error into a usage message."""
    try:
        return Fault.parse(text)
    except ValueError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None


def _parse(argv: list[str] | None) -> argparse.Namespace:
    """Parse the command line."""
    parser = argparse.ArgumentParser(prog="python -m simulators", description=__doc__)
    parser.add_argument(
        "--profile", choices=PROFILE_NAMES, default=TANKFARM, help="which site to simulate"
    )
    parser.add_argument("--host", default="127.0.0.1", help="address to listen on")
    parser.add_argument("--port", type=int, default=5020, help="TCP port (0: any free port)")
    parser.add_argument("--tanks", type=int, default=3, help="number of tanks (tankfarm)")
    parser.add_argument("--seed", type=int, default=0, help="random seed")
    parser.add_argument("--unit-id", type=int, default=1, help="Modbus unit id to answer")
    parser.add_argument("--interval", type=float, default=0.2, help="update period, seconds")
    parser.add_argument(
        "--fault",
        type=_fault_arg,
        default=Fault.normal(),
        metavar="FAULT",
        help=f"misbehave: {FAULT_CHOICES}. silent: read requests, never answer; garbage: "
        "answer random bytes; frozen: answer, but the values stop changing; exception: answer "
        "every request with Modbus exception CODE (default 4, SERVER DEVICE FAILURE)",
    )
    parser.add_argument("--map", action="store_true", help="print the register map and exit")
    args = parser.parse_args(argv)
    if args.tanks < 1 or args.interval <= 0 or not 0 <= args.unit_id <= 255:  # noqa: PLR2004
        parser.error("need --tanks >= 1, --interval > 0 and --unit-id in 0..255")
    return args


def _map_rows(profile: str, tanks: int) -> Iterator[dict[str, object]]:
    """The profile's register map, one JSON object per point."""
    for sim in profile_map(profile, tanks=tanks):
        p = sim.point
        row: dict[str, object] = {
            "key": p.key,
            "table": str(p.table),
            "start": p.start,
            "type": str(p.dtype),
            "byte_order": str(p.byte_order),
            "word_order": str(p.word_order),
            "bit": p.bit,
            "unit": sim.unit,
            "description": sim.description,
            "expected": sim.expected,
            "low": sim.low,
            "high": sim.high,
        }
        if profile != TANKFARM:  # the tank farm's rows keep their original fields for scripts
            row |= {"quota": sim.quota or None, "scale": sim.scale}
        yield row


async def _serve(args: argparse.Namespace) -> None:
    """Serve until SIGINT or SIGTERM."""
    stop = stop_on_signals()
    sim = await serve_profile(
        args.profile,
        args.host,
        args.port,
        seed=args.seed,
        unit_id=args.unit_id,
        interval=args.interval,
        tanks=args.tanks,
        fault=args.fault,
    )
    # The tank farm keeps its original log lines: scripts and tests wait for them.
    label = "tank farm" if args.profile == TANKFARM else args.profile
    what = f"{args.tanks} tanks on" if args.profile == TANKFARM else "on"
    _log.info("%s: %s %s:%d unit %d", label, what, sim.host, sim.port, sim.unit_id)
    if sim.fault != Fault.normal():
        _log.info("%s: fault %s", label, sim.fault)
    try:
        await stop.wait()
    finally:
        await sim.stop()
    _log.info("%s stopped", label)


def main(argv: list[str] | None = None) -> int:
    """Run the simulator; return the process exit code."""
    args = _parse(argv)
    if args.map:
        print_rows(_map_rows(args.profile, args.tanks))
        return 0
    return run_command(_serve(args), _log)


if __name__ == "__main__":
    sys.exit(main())
