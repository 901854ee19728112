"""A simulated Modbus RTU bus on a pseudo terminal: several slaves, each with a fault switch.

The simulator holds the master side of a pty and answers RTU read requests (functions 1-4)
for every unit id it serves; requests for other units are ignored, as on a real bus. The
slaves, their register map and their faults are simulators.rtu_slaves'; one typical slave is
a fireworks-workshop headcount counter (烟花爆竹 在岗人数).

A pty delivers bytes at once. With `baudrate` set, each reply is delayed by the time request
and reply would take on such a line (plus t3.5 and `turnaround`), so bus timing can be tested.

Run it: ``python -m simulators.rtu_bus --link /tmp/ttyRTU`` prints the pty path and serves
until SIGINT or SIGTERM; see ``--help`` for units and faults.
"""

from __future__ import annotations

import argparse
import asyncio
import random
import sys
from pathlib import Path
from typing import TYPE_CHECKING

from drivers.modbus.rtu_frame import has_valid_crc
from drivers.modbus.timing import silent_interval
from simulators.lifecycle import ticks
from simulators.pty import PtySimulator, serve_pty
from simulators.rtu_slaves import Fault, SimSlave, headcount_slave, pattern_slave

if TYPE_CHECKING:
    from collections.abc import Coroutine, Sequence
    from typing import Any

__all__ = ["RtuBusSim", "main"]

REQUEST_BYTES = 8
_RX_LIMIT = 256


def _requests(buffer: bytearray) -> list[tuple[int, int, int, int]]:
    """Take every complete read-sized request frame off the front of `buffer`.

    Hunts: a byte that does not start an 8-byte frame with a valid CRC is dropped.
    Returns (unit, function, start, count) tuples.
    """
    found: list[tuple[int, int, int, int]] = []
    while len(buffer) >= REQUEST_BYTES:
        frame = bytes(buffer[:REQUEST_BYTES])
        if not has_valid_crc(frame):
            del buffer[0]
            continue
        del buffer[:REQUEST_BYTES]
        unit, function = frame[0], frame[1]
        start, count = int.from_bytes(frame[2:4], "big"), int.from_bytes(frame[4:6], "big")
        found.append((unit, function, start, count))
    return found


class RtuBusSim(PtySimulator):
    """A running simulated bus; use as ``async with RtuBusSim([...]) as sim``, open `sim.path`."""

    kind = "bus"
    task_name = "rtu-bus-sim-update"

    def __init__(
        self,
        slaves: Sequence[SimSlave],
        *,
        baudrate: int | None = None,
        bits_per_char: int = 11,
        turnaround: float = 0.0,
        interval: float = 0.5,
        seed: int = 0,
        link: Path | None = None,
    ) -> None:
        """Configure the bus; `start` (or ``async with``) opens the pty.

        Args:
            slaves: the slaves on the bus (unique unit ids).
            baudrate: simulate this line speed by delaying replies; None answers at once.
            bits_per_char: bits per character for the simulated line time.
            turnaround: how long a slave thinks before answering, seconds.
            interval: how often the slaves' values change, seconds.
            seed: seed of every random choice (values, garbage).
            link: a symlink to create to the pty path.

        Raises:
            ValueError: duplicate unit ids, a negative turnaround, a non-positive interval.
        """
        units = [s.unit_id for s in slaves]
        if len(set(units)) != len(units):
            raise ValueError("unit ids must be unique on a bus")
        if turnaround < 0 or interval <= 0:
            raise ValueError("need turnaround >= 0 and interval > 0")
        super().__init__(link)
        self.slaves = {s.unit_id: s for s in slaves}
        self._char = bits_per_char / baudrate if baudrate else 0.0
        self._silence = silent_interval(baudrate) if baudrate else 0.0
        self._turnaround = turnaround
        self._interval = interval
        self._rng = random.Random(seed)
        self._rx = bytearray()

    def slave(self, unit_id: int) -> SimSlave:
        """Return the slave with this unit id (KeyError if there is none)."""
        return self.slaves[unit_id]

    def _background(self) -> Coroutine[Any, Any, None]:
        """Advance the slaves' values while started."""
        return self._update_forever()

    async def _update_forever(self) -> None:
        """Advance every slave's values every `interval` seconds."""
        async for _ in ticks(self._interval):
            for slave in self.slaves.values():
                slave.step(self._rng)

    def _on_data(self, chunk: bytes) -> None:
        """Answer every complete request in what the master sent."""
        self._rx += chunk
        del self._rx[:-_RX_LIMIT]
        for unit, function, start, count in _requests(self._rx):
            slave = self.slaves.get(unit)
            if slave is None:  # no slave on this bus has that unit id: silence, as on a real bus
                continue
            reply = slave.answer(function, start, count, self._rng)
            if reply is not None:
                self._send_later(reply, slave.delay)

    def _send_later(self, reply: bytes, think: float) -> None:
        """Send a reply when it would be complete on the simulated line."""
        line = (REQUEST_BYTES + len(reply)) * self._char + self._silence
        self._send_after(line + self._turnaround + think, reply)


# --------------------------------------------------------------------------------------------
# Command line


def _fault_arg(text: str) -> tuple[int, str, int]:
    """Parse ``UNIT=silent|garbage|frozen|exception[:CODE]``."""
    unit_text, _, kind = text.partition("=")
    kind, _, code_text = kind.partition(":")
    usage = f"{text!r}: want UNIT=silent|garbage|frozen|exception[:CODE]"
    if kind not in {*Fault, "frozen"} or (code_text and kind != Fault.EXCEPTION):
        raise argparse.ArgumentTypeError(usage)
    try:
        return int(unit_text), kind, int(code_text or "4")
    except ValueError:
        raise argparse.ArgumentTypeError(usage) from None


def _parse(argv: list[str] | None) -> argparse.Namespace:
    """Parse the command line."""
    parser = argparse.ArgumentParser(
        prog="python -m simulators.rtu_bus",
        description="Simulated Modbus RTU bus on a pseudo terminal; prints the pty path.",
    )
    parser.add_argument("--link", type=Path, help="also make this symlink to the pty")
    parser.add_argument("--headcount", type=int, default=3, help="unit id of the headcount")
    parser.add_argument(
        "--units",
        default="1,2",
        help="comma-separated unit ids of plain pattern slaves (empty for none)",
    )
    parser.add_argument("--baudrate", type=int, help="simulate this line speed")
    parser.add_argument("--turnaround", type=float, default=0.0, help="slave think time, s")
    parser.add_argument("--interval", type=float, default=1.0, help="value update period, s")
    parser.add_argument("--seed", type=int, default=0, help="random seed")
    parser.add_argument(
        "--fault",
        type=_fault_arg,
        action="append",
        default=[],
        help="UNIT=silent|garbage|frozen|exception[:CODE]; repeatable",
    )
    return parser.parse_args(argv)


def _build(args: argparse.Namespace) -> RtuBusSim:
    """Build the bus the command line describes."""
    units = [int(u) for u in args.units.split(",") if u.strip()]
    slaves = [headcount_slave(args.headcount, seed=args.seed)]
    slaves += [pattern_slave(u) for u in units]
    sim = RtuBusSim(
        slaves,
        baudrate=args.baudrate,
        turnaround=args.turnaround,
        interval=args.interval,
        seed=args.seed,
        link=args.link,
    )
    for unit, kind, code in args.fault:
        slave = sim.slave(unit)
        if kind == "frozen":
            slave.frozen = True
        else:
            slave.fault = Fault(kind)
            slave.exception_code = code
    return sim


def main(argv: list[str] | None = None) -> int:
    """Run the simulator; return the process exit code."""
    args = _parse(argv)
    try:
        sim = _build(args)
    except (ValueError, KeyError) as exc:
        sys.stderr.write(f"rtu_bus: {exc}\n")
        return 2
    asyncio.run(serve_pty(sim))
    return 0


if __name__ == "__main__":
    sys.exit(main())
