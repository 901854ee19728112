"""A simulated Modbus RTU bus on a pseudo terminal: several slaves, each with a fault switch.

The simulator holds the master side of a pty and answers RTU read requests (functions 1-4)
for every unit id it serves; requests for other units are ignored, as on a real bus. One
typical slave is a fireworks-workshop headcount counter (烟花爆竹 在岗人数).

Register map of every unit ``u`` (0-based protocol addresses)::

    table     address   type     meaning
    holding   0         uint16   heartbeat: +1 on every update (stops while frozen)
    holding   100       uint16   4200 + u (tells the units apart)
    holding   101       int16    -12345
    holding   102       float32  -1234.5625 (big/big)
    holding   104       uint32   3456789012 (big/big)
    holding   200..324  uint16   address - 200 (a ramp: room for full 125-register reads)
    coil      0..7      bool     1,0,1,1,0,0,1,0
    discrete  0..7      bool     0,1,0,0,1,1,0,1

and of a headcount counter, workshops ``w = 1..W``::

    input     2(w-1)    uint16   persons present in workshop w (random walk, 0..rated+2)
    input     2(w-1)+1  uint16   rated staffing of workshop w (核定人数, fixed)

Addresses outside the map answer exception 2, other functions exception 1, a count of 0 or
above the protocol limit exception 3. Each slave's `fault` makes it stay silent, answer every
request with an exception code, or send garbage (a corrupted reply behind some noise);
`frozen` stops its values from changing; `delay` makes it answer late.

A pty delivers bytes at once. With `baudrate` set, each reply is delayed by the time request
and reply would take on such a line (plus t3.5 and `turnaround`), so bus timing can be tested.

Run it: ``python -m drivers.sim.rtu_bus --link /tmp/ttyRTU`` prints the pty path and serves
until SIGINT or SIGTERM; see ``--help`` for units and faults.
"""

from __future__ import annotations

import argparse
import asyncio
import enum
import itertools
import random
import signal
import sys
from pathlib import Path
from typing import TYPE_CHECKING

from drivers.modbus.codec import DataType, Table, encode, is_bit_table
from drivers.modbus.rtu import EXCEPTION_FLAG, FUNCTION_CODES, MAX_UNIT_ID, rtu_frame
from drivers.modbus.timing import silent_interval
from drivers.serial.checksum import crc16_modbus
from drivers.sim.lifecycle import Simulator, cancel_task
from drivers.sim.pty import PtyEndpoint

if TYPE_CHECKING:
    from collections.abc import Callable, Sequence

__all__ = [
    "COIL_BITS",
    "DISCRETE_BITS",
    "PATTERN_BASE",
    "RAMP_BASE",
    "Fault",
    "RtuBusSim",
    "SimSlave",
    "headcount_slave",
    "main",
    "pattern_slave",
]

HEARTBEAT = 0
PATTERN_BASE = 100
PATTERN_UNIT_BASE = 4200
RAMP_BASE, RAMP_LENGTH = 200, 125
COIL_BITS = (1, 0, 1, 1, 0, 0, 1, 0)
DISCRETE_BITS = (0, 1, 0, 0, 1, 1, 0, 1)
REQUEST_BYTES = 8
MAX_REGISTERS, MAX_BITS = 125, 2000
ILLEGAL_FUNCTION, ILLEGAL_ADDRESS, ILLEGAL_VALUE, DEVICE_FAILURE = 1, 2, 3, 4
_TABLE_OF_FUNCTION = {code: table for table, code in FUNCTION_CODES.items()}
_RX_LIMIT = 256


class Fault(enum.StrEnum):
    """How a simulated slave misbehaves."""

    NONE = "none"
    SILENT = "silent"
    EXCEPTION = "exception"
    GARBAGE = "garbage"


class SimSlave:
    """One simulated slave: four sparse tables, a fault switch and a request counter.

    `update` (if any) advances the slave's values; the bus calls it every `interval` unless
    the slave is `frozen`.
    """

    def __init__(
        self,
        unit_id: int,
        *,
        holding: dict[int, int] | None = None,
        inputs: dict[int, int] | None = None,
        coils: dict[int, int] | None = None,
        discrete: dict[int, int] | None = None,
        update: Callable[[SimSlave, random.Random], None] | None = None,
    ) -> None:
        if not 1 <= unit_id <= MAX_UNIT_ID:
            raise ValueError(f"unit id {unit_id} is outside 1..{MAX_UNIT_ID}")
        self.unit_id = unit_id
        self.tables: dict[Table, dict[int, int]] = {
            Table.HOLDING: dict(holding or {}),
            Table.INPUT: dict(inputs or {}),
            Table.COIL: dict(coils or {}),
            Table.DISCRETE: dict(discrete or {}),
        }
        self.fault = Fault.NONE
        self.exception_code = DEVICE_FAILURE
        self.frozen = False
        self.delay = 0.0  # extra think time: a slow slave answers after its master gave up
        self.requests = 0
        self._update = update

    @property
    def holding(self) -> dict[int, int]:
        """Return the holding registers (address -> value), live."""
        return self.tables[Table.HOLDING]

    @property
    def inputs(self) -> dict[int, int]:
        """Return the input registers (address -> value), live."""
        return self.tables[Table.INPUT]

    def step(self, rng: random.Random) -> None:
        """Advance the values once, unless frozen."""
        if self.frozen:
            return
        self.holding[HEARTBEAT] = (self.holding.get(HEARTBEAT, 0) + 1) & 0xFFFF
        if self._update is not None:
            self._update(self, rng)

    def answer(self, function: int, start: int, count: int, rng: random.Random) -> bytes | None:
        """Return the reply frame to a read request, or None for silence."""
        self.requests += 1
        if self.fault is Fault.SILENT:
            return None
        if self.fault is Fault.EXCEPTION:
            return self._exception(function, self.exception_code)
        reply = self._reply(function, start, count)
        if self.fault is Fault.GARBAGE:
            return _garble(reply, rng)
        return reply

    def _reply(self, function: int, start: int, count: int) -> bytes:
        """Return the correct reply frame."""
        kind = _TABLE_OF_FUNCTION.get(function)
        if kind is None:
            return self._exception(function, ILLEGAL_FUNCTION)
        bits = is_bit_table(kind)
        if not 1 <= count <= (MAX_BITS if bits else MAX_REGISTERS):
            return self._exception(function, ILLEGAL_VALUE)
        table = self.tables[kind]
        addresses = range(start, start + count)
        if any(a not in table for a in addresses):
            return self._exception(function, ILLEGAL_ADDRESS)
        values = [table[a] for a in addresses]
        if bits:
            data = bytearray((count + 7) // 8)
            for i, bit in enumerate(values):
                data[i // 8] |= (bit & 1) << (i % 8)
        else:
            data = bytearray(b"".join(v.to_bytes(2, "big") for v in values))
        return rtu_frame(self.unit_id, bytes([function, len(data)]) + bytes(data))

    def _exception(self, function: int, code: int) -> bytes:
        """Return an exception reply frame."""
        return rtu_frame(self.unit_id, bytes([function | EXCEPTION_FLAG, code]))


def _garble(reply: bytes, rng: random.Random) -> bytes:
    """Corrupt a reply as line noise would: a byte changed, some noise in front.

    CRC-16 catches every error within 16 bits, so the changed byte alone guarantees the reply
    fails its check.
    """
    body = bytearray(reply)
    index = rng.randrange(1, len(body) - 2)
    body[index] ^= rng.randrange(1, 256)
    noise = bytes(rng.randrange(256) for _ in range(rng.randrange(1, 5)))
    return noise + bytes(body)


def _pattern_tables(unit_id: int) -> dict[str, dict[int, int]]:
    """Return the common map of every unit: heartbeat, fixed pattern, coils, discretes."""
    holding = {HEARTBEAT: 0, PATTERN_BASE: PATTERN_UNIT_BASE + unit_id}
    for offset, value, dtype in (
        (1, -12345, DataType.INT16),
        (2, -1234.5625, DataType.FLOAT32),
        (4, 3456789012, DataType.UINT32),
    ):
        for i, register in enumerate(encode(value, dtype)):
            holding[PATTERN_BASE + offset + i] = register
    holding.update({RAMP_BASE + i: i for i in range(RAMP_LENGTH)})
    return {
        "holding": holding,
        "coils": dict(enumerate(COIL_BITS)),
        "discrete": dict(enumerate(DISCRETE_BITS)),
    }


def pattern_slave(unit_id: int) -> SimSlave:
    """Return a slave with only the common map: heartbeat, fixed pattern, coils, discretes."""
    tables = _pattern_tables(unit_id)
    return SimSlave(
        unit_id, holding=tables["holding"], coils=tables["coils"], discrete=tables["discrete"]
    )


def headcount_slave(
    unit_id: int, rated: Sequence[int] = (12, 8, 20, 6), *, seed: int = 0
) -> SimSlave:
    """Return a fireworks-workshop headcount counter, one (present, rated) pair per workshop.

    Raises:
        ValueError: no workshops, or a rated staffing below 1.
    """
    if not rated or min(rated) < 1:
        raise ValueError("need at least one workshop with a rated staffing >= 1")
    start = random.Random(seed)
    inputs: dict[int, int] = {}
    for w, limit in enumerate(rated):
        inputs[2 * w] = start.randint(0, limit)
        inputs[2 * w + 1] = limit

    def walk(sim: SimSlave, rng: random.Random) -> None:
        # People come and go one at a time; now and then a workshop is over its rated staff,
        # which is the condition a fireworks regulator alarms on.
        for w, limit in enumerate(rated):
            present = sim.inputs[2 * w] + rng.choice((-1, 0, 0, 1))
            sim.inputs[2 * w] = min(limit + 2, max(0, present))

    tables = _pattern_tables(unit_id)
    return SimSlave(
        unit_id,
        holding=tables["holding"],
        inputs=inputs,
        coils=tables["coils"],
        discrete=tables["discrete"],
        update=walk,
    )


def _requests(buffer: bytearray) -> list[tuple[int, int, int, int]]:
    """Take every complete read-sized request frame off the front of `buffer`.

    Hunts: a byte that does not start an 8-byte frame with a valid CRC is dropped.
    Returns (unit, function, start, count) tuples.
    """
    found: list[tuple[int, int, int, int]] = []
    while len(buffer) >= REQUEST_BYTES:
        frame = bytes(buffer[:REQUEST_BYTES])
        if crc16_modbus(frame[:-2]).to_bytes(2, "little") != frame[-2:]:
            del buffer[0]
            continue
        del buffer[:REQUEST_BYTES]
        unit, function = frame[0], frame[1]
        start, count = int.from_bytes(frame[2:4], "big"), int.from_bytes(frame[4:6], "big")
        found.append((unit, function, start, count))
    return found


class RtuBusSim(Simulator):
    """A running simulated bus; use as ``async with RtuBusSim([...]) as sim``, open `sim.path`."""

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
        self.slaves = {s.unit_id: s for s in slaves}
        self._char = bits_per_char / baudrate if baudrate else 0.0
        self._silence = silent_interval(baudrate) if baudrate else 0.0
        self._turnaround = turnaround
        self._interval = interval
        self._rng = random.Random(seed)
        self._link = link
        self._rx = bytearray()
        self._pty: PtyEndpoint | None = None
        self._task: asyncio.Task[None] | None = None
        self._replies: set[asyncio.TimerHandle] = set()
        self.ignored = 0

    @property
    def path(self) -> str:
        """Return the path a driver opens (the link if one was asked for).

        Raises:
            RuntimeError: the bus is not started.
        """
        if self._pty is None:
            raise RuntimeError("the simulated bus is not started")
        return self._pty.device

    @property
    def pty_path(self) -> str:
        """Return the pty's own path (``/dev/pts/N``), whether or not there is a link.

        Raises:
            RuntimeError: the bus is not started.
        """
        if self._pty is None:
            raise RuntimeError("the simulated bus is not started")
        return self._pty.path

    def slave(self, unit_id: int) -> SimSlave:
        """Return the slave with this unit id (KeyError if there is none)."""
        return self.slaves[unit_id]

    async def start(self) -> None:
        """Open the pty and start answering and updating."""
        self._pty = PtyEndpoint(self._on_data, self._link)
        self._pty.start()
        self._task = asyncio.create_task(self._update_forever(), name="rtu-bus-sim-update")

    async def stop(self) -> None:
        """Stop answering and close the pty; safe to call twice."""
        task, self._task = self._task, None
        await cancel_task(task)
        for handle in self._replies:
            handle.cancel()
        self._replies.clear()
        pty, self._pty = self._pty, None
        if pty is not None:
            pty.close()

    async def _update_forever(self) -> None:
        """Advance every slave's values every `interval` seconds."""
        loop = asyncio.get_running_loop()
        started = loop.time()
        for tick in itertools.count(1):
            await asyncio.sleep(max(0.0, started + tick * self._interval - loop.time()))
            for slave in self.slaves.values():
                slave.step(self._rng)

    def _on_data(self, chunk: bytes) -> None:
        """Answer every complete request in what the master sent."""
        self._rx += chunk
        del self._rx[:-_RX_LIMIT]
        for unit, function, start, count in _requests(self._rx):
            slave = self.slaves.get(unit)
            if slave is None:
                self.ignored += 1
                continue
            reply = slave.answer(function, start, count, self._rng)
            if reply is not None:
                self._send_later(reply, slave.delay)

    def _send_later(self, reply: bytes, think: float) -> None:
        """Send a reply when it would be complete on the simulated line."""
        line = (REQUEST_BYTES + len(reply)) * self._char + self._silence
        delay = line + self._turnaround + think
        if delay <= 0:
            self._send(reply, None)
            return
        loop = asyncio.get_running_loop()
        handle: asyncio.TimerHandle | None = None

        def fire() -> None:
            self._send(reply, handle)

        handle = loop.call_later(delay, fire)
        self._replies.add(handle)

    def _send(self, reply: bytes, handle: asyncio.TimerHandle | None) -> None:
        """Write a reply to the pty."""
        if handle is not None:
            self._replies.discard(handle)
        if self._pty is not None:
            self._pty.write(reply)


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
        prog="python -m drivers.sim.rtu_bus",
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


async def _serve(sim: RtuBusSim) -> None:
    """Serve until SIGINT or SIGTERM."""
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)
    async with sim:
        sys.stdout.write(sim.pty_path + "\n")
        sys.stdout.flush()
        await stop.wait()


def main(argv: list[str] | None = None) -> int:
    """Run the simulator; return the process exit code."""
    args = _parse(argv)
    try:
        sim = _build(args)
    except (ValueError, KeyError) as exc:
        sys.stderr.write(f"rtu_bus: {exc}\n")
        return 2
    asyncio.run(_serve(sim))
    return 0


if __name__ == "__main__":
    sys.exit(main())
