"""A tailings pond (尾矿库) online monitoring station on Modbus TCP.

Register map (unit 1; 0-based protocol addresses; float32 big/big unless said)::

    table    address  type     unit  quota   meaning
    holding  0        float32  m     WKK-WL  pond water level, elevation (~1250.5 m)
    holding  2        float32  m     WKK-BL  dry beach length (shrinks as the pond rises)
    holding  4        float32  mm    WKK-RF  rainfall today (resets at simulated midnight)
    holding  6..9     -        -     -       reserved, 0
    holding  10+2(s-1) float32 m     WKK-PL  phreatic line depth at dam section s = 1..3
    input    6(n-1)+0 float32  mm    WKK-DX  dam crest GNSS n = 1..2, displacement X
    input    6(n-1)+2 float32  mm    WKK-DY  ... Y
    input    6(n-1)+4 float32  mm    WKK-DZ  ... Z (settlement: negative)
    input    20+(k-1) int16    0.1mm WKK-ID  inclinometer k = 1..2, internal displacement
                                             (scale 0.1)

Time runs 60 times faster than the wall clock (one second is one simulated minute, a day is
24 minutes) so that a demo shows showers, the pond rising and the phreatic line following.
Rain falls in showers (see `Showers`); the catchment raises the pond, a decant tower lowers it
back over about a simulated day; the beach shortens by 100 m per metre of rise (a 1 %
beach slope); the phreatic line rises (its depth shrinks) behind the pond with a lag of a
few hours. The dam drifts slowly: a few millimetres per simulated day, plus GNSS noise.
Everything random comes from one seeded RNG.
"""

from __future__ import annotations

import random
from dataclasses import dataclass, replace

from drivers.modbus.codec import DataType, Order, Table
from drivers.modbus.plan import RegisterPoint
from simulators.profiles.base import DAY, Profile, Showers, relax
from simulators.tankfarm import SimPoint

__all__ = ["PROFILE", "TailingsState", "initial_state", "tailings_map"]

TIME_SCALE = 60.0  # simulated seconds per wall second
NORMAL_LEVEL = 1250.5  # m, the decant tower's overflow sill
BEACH_AT_NORMAL = 150.0  # m
BEACH_SLOPE = 0.01  # the beach drops 1 m per 100 m
CATCHMENT_RATIO = 4.0  # mm of pond rise per mm of rain (the catchment is larger than the pond)
DECANT_TAU = DAY  # the pond drains back to the sill over about a day
PHREATIC_TAU = 4 * 3600.0  # the phreatic line follows the pond with hours of lag
SECTIONS = 3
STATIONS = 2
INCLINOMETERS = 2
GNSS_NOISE = (0.8, 0.8, 1.5)  # mm: vertical GNSS is about twice as noisy as horizontal
DISPLACEMENT_BOUND = 500.0  # mm: the simulated dam stops creeping here (months of demo)


def tailings_map() -> tuple[SimPoint, ...]:
    """Return the pond's register map."""

    def f32(key: str, table: Table, start: int) -> RegisterPoint:
        return RegisterPoint(key, table, start, DataType.FLOAT32, Order.BIG, Order.BIG)

    bound = DISPLACEMENT_BOUND + 10
    points = [
        SimPoint(f32("pond.level", Table.HOLDING, 0), "m", "pond water level (elevation)",
                 low=1245.0, high=1258.0, quota="WKK-WL"),
        SimPoint(f32("beach.length", Table.HOLDING, 2), "m", "dry beach length",
                 low=0.0, high=400.0, quota="WKK-BL"),
        SimPoint(f32("rain.today", Table.HOLDING, 4), "mm", "rainfall since midnight",
                 low=0.0, high=400.0, quota="WKK-RF"),
    ]  # fmt: skip
    points += (
        SimPoint(f32(f"phreatic{s}.depth", Table.HOLDING, 10 + 2 * (s - 1)), "m",
                 f"phreatic line depth, dam section {s}", low=0.0, high=40.0, quota="WKK-PL")
        for s in range(1, SECTIONS + 1)
    )  # fmt: skip
    points += (
        SimPoint(f32(f"gnss{n}.{axis}", Table.INPUT, 6 * (n - 1) + 2 * i), "mm",
                 f"dam crest GNSS {n} displacement {axis.upper()}",
                 low=-bound, high=bound, quota=f"WKK-D{axis.upper()}")
        for n in range(1, STATIONS + 1)
        for i, axis in enumerate("xyz")
    )  # fmt: skip
    points += (
        SimPoint(RegisterPoint(f"inclinometer{k}.displacement", Table.INPUT, 20 + k - 1,
                               DataType.INT16),
                 "mm", f"inclinometer {k} internal displacement",
                 low=-bound, high=bound, quota="WKK-ID", scale=0.1)
        for k in range(1, INCLINOMETERS + 1)
    )  # fmt: skip
    return tuple(points)


@dataclass(frozen=True, slots=True)
class TailingsState:
    """The noise-free pond; times and rates are simulated (see TIME_SCALE)."""

    t: float  # simulated seconds since midnight of day 0
    level: float  # m
    rain: Showers
    phreatic: tuple[float, ...]  # m depth per section
    phreatic_base: tuple[float, ...]  # m depth at the normal pond level
    phreatic_gain: tuple[float, ...]  # m of rise per m of pond rise
    gnss: tuple[tuple[float, float, float], ...]  # mm
    gnss_rate: tuple[tuple[float, float, float], ...]  # mm per simulated day
    inclinometer: tuple[float, ...]  # mm
    inclinometer_rate: tuple[float, ...]  # mm per simulated day

    def step(self, dt: float, rng: random.Random) -> TailingsState:
        """Advance `dt` wall seconds."""
        sim_dt = dt * TIME_SCALE
        inflow = CATCHMENT_RATIO * self.rain.intensity * sim_dt / 3600 / 1000  # m
        level = relax(self.level + inflow, NORMAL_LEVEL, DECANT_TAU, sim_dt)
        rise = level - NORMAL_LEVEL
        phreatic = tuple(
            max(0.5, relax(depth, base - gain * rise, PHREATIC_TAU, sim_dt))
            for depth, base, gain in zip(
                self.phreatic, self.phreatic_base, self.phreatic_gain, strict=True
            )
        )
        days = sim_dt / DAY
        gnss = tuple(
            (_creep(x, vx * days), _creep(y, vy * days), _creep(z, vz * days))
            for (x, y, z), (vx, vy, vz) in zip(self.gnss, self.gnss_rate, strict=True)
        )
        inclinometer = tuple(
            _creep(d, v * days)
            for d, v in zip(self.inclinometer, self.inclinometer_rate, strict=True)
        )
        return replace(
            self,
            t=self.t + sim_dt,
            level=level,
            rain=self.rain.step(self.t, sim_dt, rng),
            phreatic=phreatic,
            gnss=gnss,
            inclinometer=inclinometer,
        )

    def observe(self, rng: random.Random) -> dict[str, float]:
        """Return the instruments' readings, noisy and at their resolution."""
        beach = BEACH_AT_NORMAL - (self.level - NORMAL_LEVEL) / BEACH_SLOPE
        values = {
            # A radar gauge: millimetre resolution, a few mm of ripple.
            "pond.level": round(self.level + rng.gauss(0.0, 0.003), 3),
            "beach.length": round(max(0.0, beach + rng.gauss(0.0, 0.3)), 1),
            "rain.today": self.rain.reading(),
        }
        for s, depth in enumerate(self.phreatic, start=1):
            values[f"phreatic{s}.depth"] = round(max(0.0, depth + rng.gauss(0.0, 0.01)), 2)
        for n, position in enumerate(self.gnss, start=1):
            for axis, true, noise in zip("xyz", position, GNSS_NOISE, strict=True):
                values[f"gnss{n}.{axis}"] = round(true + rng.gauss(0.0, noise), 1)
        for k, displacement in enumerate(self.inclinometer, start=1):
            values[f"inclinometer{k}.displacement"] = round(displacement + rng.gauss(0.0, 0.05), 1)
        return values


def _creep(value: float, step: float) -> float:
    """Add a creep step, stopping at the bound so a months-long run stays plausible."""
    return min(DISPLACEMENT_BOUND, max(-DISPLACEMENT_BOUND, value + step))


def initial_state(rng: random.Random) -> TailingsState:
    """Draw a starting pond: wet or dry, the dam already some millimetres off its survey."""
    level = NORMAL_LEVEL + rng.uniform(-0.1, 0.3)
    base = tuple(rng.uniform(6.0, 14.0) for _ in range(SECTIONS))
    gain = tuple(rng.uniform(0.5, 1.5) for _ in range(SECTIONS))
    return TailingsState(
        t=rng.uniform(0.0, DAY),
        level=level,
        rain=Showers.start(rng, wet=0.5),  # half the demos start in a shower
        phreatic=tuple(b - g * (level - NORMAL_LEVEL) for b, g in zip(base, gain, strict=True)),
        phreatic_base=base,
        phreatic_gain=gain,
        gnss=tuple(
            (rng.uniform(5.0, 25.0), rng.uniform(-10.0, 10.0), -rng.uniform(10.0, 40.0))
            for _ in range(STATIONS)
        ),
        # Downstream (X), along the crest (Y), settling (Z): mm per simulated day.
        gnss_rate=tuple(
            (rng.uniform(1.0, 4.0), rng.uniform(-1.0, 1.0), -rng.uniform(0.5, 2.0))
            for _ in range(STATIONS)
        ),
        inclinometer=tuple(rng.uniform(2.0, 20.0) for _ in range(INCLINOMETERS)),
        inclinometer_rate=tuple(rng.uniform(0.5, 2.0) for _ in range(INCLINOMETERS)),
    )


PROFILE = Profile(
    name="tailings",
    domain="WKK",
    description="tailings pond: level, beach, rainfall, phreatic line, dam displacement",
    points=tailings_map(),
    start=initial_state,
)
