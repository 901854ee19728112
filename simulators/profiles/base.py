"""What every Modbus TCP site profile shares: the model protocol, register images, the server.

A profile is a register map (`SimPoint`s, as in the tank farm) plus a physical model. The
model is a frozen dataclass that knows the noise-free truth (`step`) and what the instruments
report for it (`observe`, keyed by `SimPoint.point.key`, in engineering units). The server
encodes each observed value at its point's address (``raw = value / scale``, rounded for
integer types), so the register map is the single source of both the wire layout and the
``--map`` listing.

The server steps the model on an absolute asyncio timer with the nominal period as `dt`:
tick k always holds the same values for the same seed, however late the loop runs.

Faults (simulators.faults): `ProfileServer.set_fault` makes the server go silent, answer
every request with an exception code, answer with garbage, or freeze its registers (the model
and `values` run on underneath; the registers catch up when the fault is cleared).
"""

from __future__ import annotations

import math
import random
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, Protocol, Self

from pymodbus.simulator import DataType as SimType
from pymodbus.simulator import SimData, SimDevice

from drivers.modbus.codec import DataType, Table, encode, is_bit_table
from simulators.faults import Fault
from simulators.lifecycle import ticks
from simulators.modbus_server import ModbusTcpSimulator
from simulators.tankfarm import SimPoint

if TYPE_CHECKING:
    from collections.abc import Sequence
    from types import TracebackType


__all__ = [
    "DAY",
    "PLACEHOLDER_ADDRESS",
    "Profile",
    "ProfileServer",
    "Showers",
    "SimServer",
    "SiteModel",
    "chance",
    "encode_value",
    "ou_step",
    "register_images",
    "relax",
]

DAY = 86400.0
"""Seconds in a (simulated) day."""
SHOWER_START = 1 / (12 * 3600)
"""Showers per simulated second: about two a day."""
SHOWER_STOP = 1 / 3600
"""Showers end at this rate per simulated second: they last about an hour."""
RAIN_TIP = 0.2
"""mm of rain per tip of a tipping-bucket gauge."""
PLACEHOLDER_ADDRESS = 0xFFFF
"""pymodbus needs a block in every table: a profile without coils gets one unused bit here."""

_WRITE_FUNCTION = {Table.HOLDING: 16, Table.INPUT: 4}  # pymodbus setValues addresses tables so
_INTEGER_LIMITS = {
    DataType.INT16: (-(1 << 15), (1 << 15) - 1),
    DataType.UINT16: (0, (1 << 16) - 1),
    DataType.INT32: (-(1 << 31), (1 << 31) - 1),
    DataType.UINT32: (0, (1 << 32) - 1),
}


class SiteModel(Protocol):
    """The physical state of a simulated site."""

    def step(self, dt: float, rng: random.Random) -> SiteModel:
        """Return the state `dt` seconds (wall time) later."""
        ...

    def observe(self, rng: random.Random) -> Mapping[str, float]:
        """Return what the instruments report now, by register-map key, in engineering units."""
        ...


class SimServer(Protocol):
    """What `serve_profile` returns for any profile: an address, a counter, faults, `stop()`."""

    host: str
    port: int
    unit_id: int
    request_count: int

    @property
    def fault(self) -> Fault:
        """The current fault mode."""
        ...

    def set_fault(self, fault: Fault) -> None:
        """Misbehave this way from the next reply on."""
        ...

    def clear_fault(self) -> None:
        """Behave normally again."""
        ...

    async def stop(self) -> None:
        """Stop serving; safe to call twice."""
        ...

    async def __aenter__(self) -> Self: ...

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None: ...


@dataclass(frozen=True, slots=True)
class Profile:
    """A simulated site: its name, catalogue domain, register map and how its model starts."""

    name: str
    domain: str
    description: str
    points: tuple[SimPoint, ...]
    start: Callable[[random.Random], SiteModel]


def chance(rate: float, dt: float, rng: random.Random) -> bool:
    """Return whether a Poisson event of `rate` per second happens within `dt` seconds."""
    return rng.random() < 1 - math.exp(-rate * dt)


def relax(value: float, target: float, tau: float, dt: float) -> float:
    """Move `value` toward `target` as a first-order lag with time constant `tau`."""
    return target + (value - target) * math.exp(-dt / tau)


def ou_step(
    value: float, mean: float, *, tau: float, sigma: float, dt: float, rng: random.Random
) -> float:
    """Advance an Ornstein-Uhlenbeck process: it wanders around `mean` with spread `sigma`.

    The exact discretisation, so the spread does not depend on the step size.
    """
    decay = math.exp(-dt / tau)
    return mean + (value - mean) * decay + sigma * math.sqrt(1 - decay * decay) * rng.gauss()


@dataclass(frozen=True, slots=True)
class Showers:
    """Rain falling in showers, and a tipping-bucket gauge's total since simulated midnight."""

    today: float = 0.0  # mm, the true total since midnight
    intensity: float = 0.0  # mm/h; 0 when dry

    @classmethod
    def start(cls, rng: random.Random, wet: float) -> Showers:
        """Draw the weather at start: raining with probability `wet`."""
        if rng.random() >= wet:
            return cls()
        return cls(today=rng.uniform(0.0, 10.0), intensity=_intensity(rng))

    def step(self, t: float, sim_dt: float, rng: random.Random) -> Showers:
        """Advance from simulated time `t` by `sim_dt` simulated seconds."""
        today = self.today + self.intensity * sim_dt / 3600
        if math.floor((t + sim_dt) / DAY) != math.floor(t / DAY):
            today = 0.0  # the gauge's daily total restarts at midnight
        intensity = self.intensity
        if intensity and chance(SHOWER_STOP, sim_dt, rng):
            intensity = 0.0
        elif not intensity and chance(SHOWER_START, sim_dt, rng):
            intensity = _intensity(rng)
        return Showers(today, intensity)

    def reading(self) -> float:
        """Return the gauge's daily total: whole tips of the bucket."""
        return round(math.floor(self.today / RAIN_TIP + 1e-9) * RAIN_TIP, 1)


def _intensity(rng: random.Random) -> float:
    """Draw a shower's intensity in mm/h: mostly light to moderate, now and then a downpour."""
    return min(40.0, 0.5 + rng.expovariate(1 / 5))


def encode_value(sim: SimPoint, value: float) -> tuple[int, ...]:
    """Encode an engineering value into its point's registers (``raw = value / scale``).

    Integer types round to the nearest step and saturate at the type's limits, as an
    instrument's analog-to-digital converter does.
    """
    p = sim.point
    raw = value / sim.scale
    limits = _INTEGER_LIMITS.get(p.dtype)
    if limits is not None:
        raw = float(min(limits[1], max(limits[0], round(raw))))
    return encode(raw, p.dtype, p.byte_order, p.word_order, p.bit)


def register_images(
    points: Sequence[SimPoint], values: Mapping[str, float]
) -> dict[Table, list[int]]:
    """Return the holding and input register images, from address 0, for these values.

    Registers no point uses (reserved words between blocks) read as 0.

    Raises:
        ValueError: a point is in a bit table, or `values` lacks a point's key.
    """
    images: dict[Table, dict[int, int]] = {Table.HOLDING: {}, Table.INPUT: {}}
    for sim in points:
        p = sim.point
        if is_bit_table(p.table):
            raise ValueError(f"{p.key}: profiles serve registers only, not {p.table}")
        if p.key not in values:
            raise ValueError(f"the model reports no value for {p.key}")
        for i, register in enumerate(encode_value(sim, values[p.key])):
            images[p.table][p.start + i] = register
    return {
        table: [image.get(a, 0) for a in range(max(image) + 1)] if image else []
        for table, image in images.items()
    }


def _device(unit_id: int, images: Mapping[Table, list[int]]) -> SimDevice:
    """Build the pymodbus device; every table gets a block (pymodbus insists on one)."""
    placeholder = [
        SimData(PLACEHOLDER_ADDRESS, values=[False], datatype=SimType.BITS, readonly=True)
    ]

    def registers(table: Table) -> list[SimData]:
        image = images[table]
        if not image:
            return [SimData(PLACEHOLDER_ADDRESS, values=[0], datatype=SimType.REGISTERS)]
        return [SimData(0, values=image, datatype=SimType.REGISTERS)]

    return SimDevice(
        id=unit_id,
        simdata=(placeholder, placeholder, registers(Table.HOLDING), registers(Table.INPUT)),
    )


class ProfileServer(ModbusTcpSimulator):
    """A running profile: its address, request counter, tick count, fault switch and `stop()`.

    Build it with `serve_profile`; it needs a running event loop.
    """

    def __init__(
        self,
        host: str,
        port: int,
        *,
        profile: Profile,
        unit_id: int,
        rng: random.Random,
        interval: float,
        fault: Fault | None = None,
    ) -> None:
        self.profile = profile
        self.ticks = 0
        self._rng = rng
        self._interval = interval
        self.model = profile.start(rng)
        self.values: Mapping[str, float] = self.model.observe(rng)
        self._images = register_images(profile.points, self.values)
        super().__init__(
            host,
            port,
            unit_id=unit_id,
            device=_device(unit_id, self._images),
            fault=fault,
            task_name=f"{profile.name}-update",
        )

    async def _update_forever(self) -> None:
        """Step the model and publish its registers every `interval` seconds."""
        async for tick in ticks(self._interval):
            self.model = self.model.step(self._interval, self._rng)
            self.values = self.model.observe(self._rng)
            self.ticks = tick.number
            if self._faults.frozen:
                continue  # the model runs on; the registers keep their last values
            images = register_images(self.profile.points, self.values)
            for table, function in _WRITE_FUNCTION.items():
                if images[table]:
                    await self._server.async_setValues(self.unit_id, function, 0, images[table])
