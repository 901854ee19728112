"""A Modbus TCP tank farm: moving tank readings plus a fixed test pattern, on pymodbus.

Register map (one unit id, default 1; addresses are 0-based protocol addresses)::

    table     address          type     order (byte/word)  meaning
    holding   10*(n-1) + 0     float32  big/big            tank n level, m (0..10, fills, empties)
    holding   10*(n-1) + 2     float32  big/big            tank n temperature, degC (~15..40)
    holding   10*(n-1) + 4     float32  big/big            tank n pressure, MPa (0.1..0.3)
    holding   10*(n-1) + 6..9  uint16   -                  reserved, always 0
    input     10*(n-1) + 0     float32  big/big            tank n combustible gas, %LEL
    input     10*(n-1) + 2     float32  big/big            tank n toxic gas H2S, ppm
    input     10*(n-1) + 4..9  uint16   -                  reserved, always 0

    test pattern: fixed values, never change, read-only
    holding   1000 + 12*k + 0  int16    order k            -12345
    holding   1000 + 12*k + 1  uint16   order k            54321
    holding   1000 + 12*k + 2  int32    order k            -123456789
    holding   1000 + 12*k + 4  uint32   order k            3456789012
    holding   1000 + 12*k + 6  float32  order k            -1234.5625
    holding   1000 + 12*k + 8  float64  order k            -9876.54321
              k = 0 big/big, 1 big/little, 2 little/big, 3 little/little
    holding   1048             uint16   big                0xA5C3, also read as bool bits 0..15
    input     1000             uint16   big                4242
    input     1001             float32  big/big            -1234.5625
    input     1003             int32    little/little      -123456789
    coil      1000..1015       bool     -                  1,0,1,1,0,0,1,0, 1,1,1,0,0,0,0,1
    discrete  1000..1015       bool     -                  0,1,0,0,1,1,0,1, 0,0,0,1,1,1,1,0

Tank temperatures follow a compressed 10-minute "day" so a demo shows the drift. Gas readings
sit near 0..5 and spike now and then (about once every 90 s per tank and gas, at random), then
decay over a few seconds. Everything random comes from one seeded RNG.
Addresses outside the map answer Modbus exception 2 (ILLEGAL DATA ADDRESS).

Faults (simulators.faults): `TankFarmServer.set_fault` makes the farm go silent, answer
every request with an exception code, answer with garbage, or freeze its registers (the tanks
move on underneath; the registers catch up when the fault is cleared); `clear_fault` ends it.
"""

from __future__ import annotations

import math
import random
from dataclasses import dataclass, replace

from pymodbus.simulator import DataType as SimType
from pymodbus.simulator import SimData, SimDevice

from drivers.modbus.codec import DataType, Order, Table, encode
from drivers.modbus.plan import RegisterPoint
from simulators.faults import Fault
from simulators.lifecycle import ticks
from simulators.modbus_server import ModbusTcpSimulator

__all__ = [
    "SimPoint",
    "TankFarmServer",
    "TankState",
    "holding_image",
    "initial_tanks",
    "input_image",
    "pattern_map",
    "register_map",
    "serve_tankfarm",
    "step_tank",
    "tank_map",
]

TANK_STRIDE = 10
PATTERN_BASE = 1000
PATTERN_STRIDE = 12
STATUS_WORD_ADDRESS = PATTERN_BASE + 4 * PATTERN_STRIDE
STATUS_WORD = 0xA5C3
COIL_BITS = (1, 0, 1, 1, 0, 0, 1, 0, 1, 1, 1, 0, 0, 0, 0, 1)
DISCRETE_BITS = (0, 1, 0, 0, 1, 1, 0, 1, 0, 0, 0, 1, 1, 1, 1, 0)
ORDERS = (
    (Order.BIG, Order.BIG),
    (Order.BIG, Order.LITTLE),
    (Order.LITTLE, Order.BIG),
    (Order.LITTLE, Order.LITTLE),
)
PATTERN_VALUES: tuple[tuple[DataType, int, float], ...] = (
    (DataType.INT16, 0, -12345),
    (DataType.UINT16, 1, 54321),
    (DataType.INT32, 2, -123456789),
    (DataType.UINT32, 4, 3456789012),
    (DataType.FLOAT32, 6, -1234.5625),  # exact in float32, so decoding compares with ==
    (DataType.FLOAT64, 8, -9876.54321),
)
DAY_SECONDS = 600.0  # a compressed day: the demo shows the temperature cycle in minutes
LEVEL_LOW, LEVEL_HIGH = 0.5, 9.5
GAS_DECAY_SECONDS = 4.0
SPIKES_PER_SECOND = 1 / 90  # per tank and gas


@dataclass(frozen=True, slots=True)
class SimPoint:
    """One simulated point: where it lives, what it means, and what a reader should see.

    `expected` is the exact value of a test-pattern point; `low`..`high` bounds a moving one.
    Both are engineering values: ``raw * scale``, where `scale` is what a site map sets for
    a point the instrument reports as a scaled integer (0.01 %CH4 steps, say). `quota` is the
    catalogue indicator a site map should give the point ("" for test-pattern points).
    """

    point: RegisterPoint
    unit: str
    description: str
    expected: float | None = None
    low: float | None = None
    high: float | None = None
    quota: str = ""
    scale: float = 1.0


def tank_map(tanks: int = 3) -> tuple[SimPoint, ...]:
    """Return the moving tank points, keys ``tank{n}.level`` and so on, n from 1."""
    points: list[SimPoint] = []
    for n in range(1, tanks + 1):
        base = TANK_STRIDE * (n - 1)
        for table, offset, name, unit, low, high, quota in (
            (Table.HOLDING, 0, "level", "m", 0.0, 10.0, "WHP-LT"),
            (Table.HOLDING, 2, "temperature", "degC", 15.0, 40.0, "WHP-TT"),
            (Table.HOLDING, 4, "pressure", "MPa", 0.1, 0.3, "WHP-PT"),
            (Table.INPUT, 0, "lel", "%LEL", 0.0, 100.0, "WHP-LEL"),
            (Table.INPUT, 2, "h2s", "ppm", 0.0, 100.0, "WHP-TOX"),
        ):
            point = RegisterPoint(f"tank{n}.{name}", table, base + offset, DataType.FLOAT32)
            points.append(
                SimPoint(point, unit, f"tank {n} {name}", low=low, high=high, quota=quota)
            )
    return tuple(points)


def pattern_map() -> tuple[SimPoint, ...]:
    """Return the fixed test-pattern points with their exact expected values."""
    points: list[SimPoint] = []
    for k, (byte_order, word_order) in enumerate(ORDERS):
        base = PATTERN_BASE + PATTERN_STRIDE * k
        for dtype, offset, value in PATTERN_VALUES:
            key = f"test.{dtype}.{byte_order}_{word_order}"
            point = RegisterPoint(key, Table.HOLDING, base + offset, dtype, byte_order, word_order)
            points.append(SimPoint(point, "", f"{dtype} {byte_order}/{word_order}", value))
    status = RegisterPoint("test.status", Table.HOLDING, STATUS_WORD_ADDRESS, DataType.UINT16)
    points.append(SimPoint(status, "", "status word", STATUS_WORD))
    for bit in range(16):
        point = RegisterPoint(
            f"test.status.bit{bit}", Table.HOLDING, STATUS_WORD_ADDRESS, DataType.BOOL, bit=bit
        )
        points.append(SimPoint(point, "", f"status bit {bit}", (STATUS_WORD >> bit) & 1))
    for key, start, dtype, byte_order, value in (
        ("test.input.uint16", 1000, DataType.UINT16, Order.BIG, 4242),
        ("test.input.float32", 1001, DataType.FLOAT32, Order.BIG, -1234.5625),
        ("test.input.int32_ll", 1003, DataType.INT32, Order.LITTLE, -123456789),
    ):
        point = RegisterPoint(key, Table.INPUT, start, dtype, byte_order, byte_order)
        points.append(SimPoint(point, "", key, value))
    for table, bits in ((Table.COIL, COIL_BITS), (Table.DISCRETE, DISCRETE_BITS)):
        for i, value in enumerate(bits):
            point = RegisterPoint(f"test.{table}.{i}", table, PATTERN_BASE + i, DataType.BOOL)
            points.append(SimPoint(point, "", f"{table} {PATTERN_BASE + i}", value))
    return tuple(points)


def register_map(tanks: int = 3) -> tuple[SimPoint, ...]:
    """Return every point the simulator serves: the tanks, then the test pattern."""
    return tank_map(tanks) + pattern_map()


@dataclass(frozen=True, slots=True)
class TankState:
    """The physical state of one simulated tank."""

    level: float
    filling: bool
    rate: float
    phase: float
    temperature: float
    pressure: float
    lel_base: float
    lel: float
    h2s_base: float
    h2s: float


def initial_tanks(tanks: int, rng: random.Random) -> tuple[TankState, ...]:
    """Draw a starting state for each tank."""
    states: list[TankState] = []
    for _ in range(tanks):
        level = rng.uniform(1.0, 9.0)
        lel_base, h2s_base = rng.uniform(0.5, 3.0), rng.uniform(0.5, 3.0)
        phase = rng.random()
        states.append(
            TankState(
                level=level,
                filling=rng.random() < 0.5,  # noqa: PLR2004 -- a fair coin
                rate=rng.uniform(0.005, 0.02),
                phase=phase,
                temperature=_temperature(0.0, phase),
                pressure=_pressure(level),
                lel_base=lel_base,
                lel=lel_base,
                h2s_base=h2s_base,
                h2s=h2s_base,
            )
        )
    return tuple(states)


def _temperature(t: float, phase: float) -> float:
    """Return the daily temperature curve at sim time `t`."""
    return 27.5 + 12.0 * math.sin(2 * math.pi * (t / DAY_SECONDS + phase))


def _pressure(level: float) -> float:
    """Return the head pressure of a tank filled to `level` metres."""
    return 0.1 + 0.02 * level


def _gas(
    value: float, base: float, peak: tuple[float, float], dt: float, rng: random.Random
) -> float:
    """Decay a gas reading toward its base, with noise and an occasional spike."""
    excess = (value - base) * math.exp(-dt / GAS_DECAY_SECONDS)
    if rng.random() < 1 - math.exp(-SPIKES_PER_SECOND * dt):
        excess = max(excess, rng.uniform(*peak))
    return max(0.0, base + excess + rng.gauss(0.0, 0.05))


def step_tank(state: TankState, t: float, dt: float, rng: random.Random) -> TankState:
    """Advance one tank by `dt` seconds, ending at sim time `t`."""
    level, filling = state.level, state.filling
    level += state.rate * dt if filling else -state.rate * dt
    if level >= LEVEL_HIGH:
        level, filling = LEVEL_HIGH, False
    elif level <= LEVEL_LOW:
        level, filling = LEVEL_LOW, True
    noise = rng.gauss(0.0, 0.05)
    return replace(
        state,
        level=level,
        filling=filling,
        temperature=min(40.0, max(15.0, _temperature(t, state.phase) + noise)),
        pressure=min(0.3, max(0.1, _pressure(level) + noise / 50)),
        lel=min(100.0, _gas(state.lel, state.lel_base, (10.0, 40.0), dt, rng)),
        h2s=min(100.0, _gas(state.h2s, state.h2s_base, (10.0, 30.0), dt, rng)),
    )


def _float32(value: float) -> tuple[int, ...]:
    """Encode a reading the way the tank registers hold it."""
    return encode(value, DataType.FLOAT32)


def holding_image(states: tuple[TankState, ...]) -> list[int]:
    """Return the tank block of holding registers for these states."""
    registers: list[int] = []
    for s in states:
        registers += [*_float32(s.level), *_float32(s.temperature), *_float32(s.pressure)]
        registers += [0] * (TANK_STRIDE - 6)
    return registers


def input_image(states: tuple[TankState, ...]) -> list[int]:
    """Return the tank block of input registers for these states."""
    registers: list[int] = []
    for s in states:
        registers += [*_float32(s.lel), *_float32(s.h2s)]
        registers += [0] * (TANK_STRIDE - 4)
    return registers


def _pattern_registers(table: Table) -> list[int]:
    """Return the test-pattern registers of one register table, from address 1000 on."""
    image: dict[int, int] = {}
    for sim in pattern_map():
        p = sim.point
        if p.table is not table or p.dtype is DataType.BOOL or sim.expected is None:
            continue
        for i, register in enumerate(encode(sim.expected, p.dtype, p.byte_order, p.word_order)):
            image[p.start + i] = register
    return [image[a] for a in range(PATTERN_BASE, max(image) + 1)]


def _pattern_block(values: list[bool] | list[int], datatype: SimType) -> SimData:
    """A read-only block of the test pattern at `PATTERN_BASE`."""
    return SimData(PATTERN_BASE, values=values, datatype=datatype, readonly=True)


def _device(unit_id: int, states: tuple[TankState, ...]) -> SimDevice:
    """Build the pymodbus device: tank blocks at 0, the read-only test pattern at 1000."""
    bits, regs = SimType.BITS, SimType.REGISTERS
    return SimDevice(
        id=unit_id,
        simdata=(
            [_pattern_block([bool(b) for b in COIL_BITS], bits)],
            [_pattern_block([bool(b) for b in DISCRETE_BITS], bits)],
            [
                SimData(0, values=holding_image(states), datatype=regs),
                _pattern_block(_pattern_registers(Table.HOLDING), regs),
            ],
            [
                SimData(0, values=input_image(states), datatype=regs),
                _pattern_block(_pattern_registers(Table.INPUT), regs),
            ],
        ),
    )


class TankFarmServer(ModbusTcpSimulator):
    """A running tank farm: its address, a request counter, a fault switch and `stop()`.

    Build it with `serve_tankfarm`; it needs a running event loop.
    """

    def __init__(
        self,
        host: str,
        port: int,
        *,
        unit_id: int,
        states: tuple[TankState, ...],
        rng: random.Random,
        interval: float,
        fault: Fault | None = None,
    ) -> None:
        super().__init__(
            host,
            port,
            unit_id=unit_id,
            device=_device(unit_id, states),
            fault=fault,
            task_name="tankfarm-update",
        )
        self.states = states
        self._rng = rng
        self._interval = interval

    async def _update_forever(self) -> None:
        """Advance the tanks and publish their registers every `interval` seconds."""
        async for tick in ticks(self._interval):
            self.states = tuple(step_tank(s, tick.elapsed, tick.dt, self._rng) for s in self.states)
            if self._faults.frozen:
                continue  # the tanks move on; the registers keep their last values
            await self._server.async_setValues(self.unit_id, 16, 0, holding_image(self.states))
            await self._server.async_setValues(self.unit_id, 4, 0, input_image(self.states))


async def serve_tankfarm(
    host: str = "127.0.0.1",
    port: int = 5020,
    *,
    tanks: int = 3,
    seed: int = 0,
    unit_id: int = 1,
    interval: float = 0.2,
    fault: Fault | None = None,
) -> TankFarmServer:
    """Start a tank farm listening on `host:port` (port 0 picks a free one; see `.port`).

    `fault` starts it misbehaving (see `TankFarmServer.set_fault`).

    Use the result as ``async with await serve_tankfarm(...) as farm:`` or call `stop()`.

    Raises:
        ValueError: fewer than one tank, or a non-positive interval.
        OSError: the address cannot be bound.
    """
    if tanks < 1 or interval <= 0:
        raise ValueError("need at least one tank and a positive interval")
    rng = random.Random(seed)
    farm = TankFarmServer(
        host,
        port,
        unit_id=unit_id,
        states=initial_tanks(tanks, rng),
        rng=rng,
        interval=interval,
        fault=fault,
    )
    await farm.start()
    return farm
