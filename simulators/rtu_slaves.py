"""The slaves of the simulated Modbus RTU bus (simulators.rtu_bus): tables, faults, values.

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

and of a headcount counter (a fireworks workshop's 在岗人数), workshops ``w = 1..W``::

    input     2(w-1)    uint16   persons present in workshop w (random walk, 0..rated+2)
    input     2(w-1)+1  uint16   rated staffing of workshop w (核定人数, fixed)

Addresses outside the map answer exception 2, other functions exception 1, a count of 0 or
above the protocol limit exception 3. Each slave's `fault` makes it stay silent, answer every
request with an exception code, or send garbage (a corrupted reply behind some noise);
`frozen` stops its values from changing; `delay` makes it answer late.
"""

from __future__ import annotations

import enum
import random
from typing import TYPE_CHECKING

from drivers.modbus.codec import MAX_UNIT_ID, DataType, Table, encode, is_bit_table
from drivers.modbus.rtu_frame import EXCEPTION_FLAG, FUNCTION_CODES, rtu_frame

if TYPE_CHECKING:
    from collections.abc import Callable, Sequence

__all__ = [
    "COIL_BITS",
    "DISCRETE_BITS",
    "PATTERN_BASE",
    "RAMP_BASE",
    "Fault",
    "SimSlave",
    "headcount_slave",
    "pattern_slave",
]

HEARTBEAT = 0
PATTERN_BASE = 100
PATTERN_UNIT_BASE = 4200
RAMP_BASE, RAMP_LENGTH = 200, 125
COIL_BITS = (1, 0, 1, 1, 0, 0, 1, 0)
DISCRETE_BITS = (0, 1, 0, 0, 1, 1, 0, 1)
MAX_REGISTERS, MAX_BITS = 125, 2000
ILLEGAL_FUNCTION, ILLEGAL_ADDRESS, ILLEGAL_VALUE, DEVICE_FAILURE = 1, 2, 3, 4
_TABLE_OF_FUNCTION = {code: table for table, code in FUNCTION_CODES.items()}


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
