"""An open-pit mine slope (露天矿山边坡) monitoring station on Modbus TCP.

Register map (unit 1; 0-based protocol addresses; float32 bytes big-endian)::

    table    address     type     words   unit  quota  meaning
    holding  10(n-1)+0   float32  big     mm    BP-GX  GNSS station n = 1..3, displacement X
    holding  10(n-1)+2   float32  big     mm    BP-GY  ... Y
    holding  10(n-1)+4   float32  big     mm    BP-GZ  ... Z (settlement: negative)
    holding  10(n-1)+6,7 -        -       -     -      reserved, 0
    holding  30+2(k-1)   float32  little  mm    BP-RD  slope radar zone k = 1..2, line-of-sight
                                                       deformation (the radar's controller
                                                       sends the low word first: CDAB)
    holding  40          float32  big     mm    BP-RF  rainfall today (resets at midnight)
    holding  42          float32  big     m     BP-GW  groundwater level, elevation (~842 m)

Time runs 60 times faster than the wall clock (one second is one simulated minute, a day is
24 minutes). The slope creeps a few millimetres per simulated day; now and then (more often
in rain) it accelerates to 5-15 times that for a few simulated hours, past the GB 51214
reference of 10 mm/d, and settles back. The radar sees the same movement along its line of
sight with sub-millimetre noise; GNSS has 1.5 mm (horizontal) and 3 mm (vertical) of noise.
Rain falls in showers; the groundwater table rises with it and drains back over days.
Everything random comes from one seeded RNG.

This is the one slope model: the OPC UA slope station (simulators.slope_opcua) serves the
same physics over OPC UA, any number of GNSS stations, and also reads an inclinometer (its tilt
follows the slope's mean horizontal displacement) and the rain gauge's total since start
(``observe(rng, inclinometer=True)``).
"""

from __future__ import annotations

import math
import random
from dataclasses import dataclass, replace

from drivers.modbus.codec import DataType, Order, Table
from drivers.modbus.plan import RegisterPoint
from simulators.profiles.base import DAY, RAIN_TIP, Profile, Showers, chance, relax
from simulators.tankfarm import SimPoint

__all__ = ["PROFILE", "STATIONS", "SlopeState", "initial_state", "slope_map"]

TIME_SCALE = 60.0  # simulated seconds per wall second
STATIONS = 3
RADAR_ZONES = 2
GNSS_NOISE = (1.5, 1.5, 3.0)  # mm
RADAR_NOISE = 0.1  # mm
SURGE_START = 1 / (12 * 3600)  # per simulated second, when dry; three times that in rain
SURGE_HOURS = (2.0, 6.0)
SURGE_FACTOR = (5.0, 15.0)
SURGE_TAU = 1800.0  # the slope speeds up and slows down over about half an hour
GROUNDWATER_BASE = 842.0  # m elevation in dry weather
INFILTRATION = 15.0  # mm of water-table rise per mm of rain
GROUNDWATER_TAU = 2 * DAY
DISPLACEMENT_BOUND = 5000.0  # mm: a slope that moved 5 m has failed; the sim stops there
LOS_FACTOR = 0.9  # the radar looks at the slope about 25 degrees off its dip direction
TILT_BASE = 1.0  # deg: the inclinometer's reading before the slope moved
TILT_PER_MM = 0.01  # deg of tilt per mm of mean horizontal displacement
TILT_NOISE = 0.002  # deg


def slope_map() -> tuple[SimPoint, ...]:
    """Return the slope's register map."""
    bound = DISPLACEMENT_BOUND + 20
    points: list[SimPoint] = []
    for n in range(1, STATIONS + 1):
        for i, axis in enumerate("xyz"):
            point = RegisterPoint(f"gnss{n}.{axis}", Table.HOLDING, 10 * (n - 1) + 2 * i,
                                  DataType.FLOAT32)  # fmt: skip
            points.append(
                SimPoint(point, "mm", f"GNSS station {n} displacement {axis.upper()}",
                         low=-bound, high=bound, quota=f"BP-G{axis.upper()}")
            )  # fmt: skip
    for k in range(1, RADAR_ZONES + 1):
        point = RegisterPoint(f"radar{k}.deformation", Table.HOLDING, 30 + 2 * (k - 1),
                              DataType.FLOAT32, Order.BIG, Order.LITTLE)  # fmt: skip
        points.append(
            SimPoint(point, "mm", f"slope radar zone {k} line-of-sight deformation",
                     low=-bound, high=bound, quota="BP-RD")
        )  # fmt: skip
    points += [
        SimPoint(RegisterPoint("rain.today", Table.HOLDING, 40, DataType.FLOAT32), "mm",
                 "rainfall since midnight", low=0.0, high=400.0, quota="BP-RF"),
        SimPoint(RegisterPoint("groundwater.level", Table.HOLDING, 42, DataType.FLOAT32), "m",
                 "groundwater level (elevation)", low=835.0, high=870.0, quota="BP-GW"),
    ]  # fmt: skip
    return tuple(points)


@dataclass(frozen=True, slots=True)
class SlopeState:
    """The noise-free slope; times and rates are simulated (see TIME_SCALE)."""

    t: float  # simulated seconds since midnight of day 0
    gnss: tuple[tuple[float, float, float], ...]  # mm
    creep: tuple[tuple[float, float, float], ...]  # mm per simulated day, when calm
    radar: tuple[float, ...]  # mm along the line of sight
    factor: float  # how many times its creep rate the slope moves now
    surge: float  # the factor it is heading for: 1 when calm
    surge_left: float  # simulated seconds of acceleration left
    rain: Showers
    groundwater: float  # m elevation
    rain_total: float = 0.0  # mm since the simulation started (never reset)

    def step(self, dt: float, rng: random.Random) -> SlopeState:
        """Advance `dt` wall seconds."""
        sim_dt = dt * TIME_SCALE
        rain = self.rain.step(self.t, sim_dt, rng)
        surge, surge_left = self.surge, self.surge_left - sim_dt
        if surge > 1 and surge_left <= 0:
            surge, surge_left = 1.0, 0.0
        elif surge == 1 and chance(SURGE_START * (3 if rain.intensity else 1), sim_dt, rng):
            # Rain softens the slope: accelerations come more often while it rains.
            surge, surge_left = rng.uniform(*SURGE_FACTOR), rng.uniform(*SURGE_HOURS) * 3600
        factor = relax(self.factor, surge, SURGE_TAU, sim_dt)
        days = sim_dt / DAY * factor
        gnss = tuple(
            (_bounded(x + vx * days), _bounded(y + vy * days), _bounded(z + vz * days))
            for (x, y, z), (vx, vy, vz) in zip(self.gnss, self.creep, strict=True)
        )
        radar = tuple(
            _bounded(d + LOS_FACTOR * _zone_speed(self.creep, k) * days)
            for k, d in enumerate(self.radar)
        )
        recharge = INFILTRATION * self.rain.intensity * sim_dt / 3600 / 1000  # m
        groundwater = relax(self.groundwater + recharge, GROUNDWATER_BASE, GROUNDWATER_TAU, sim_dt)
        return replace(
            self,
            t=self.t + sim_dt,
            gnss=gnss,
            radar=radar,
            factor=factor,
            surge=surge,
            surge_left=max(0.0, surge_left),
            rain=rain,
            groundwater=min(groundwater, GROUNDWATER_BASE + 25),
            rain_total=self.rain_total + self.rain.intensity * sim_dt / 3600,  # as Showers counts
        )

    def observe(self, rng: random.Random, *, inclinometer: bool = False) -> dict[str, float]:
        """Return the instruments' readings, noisy and at their resolution.

        With `inclinometer` also ``inclinometer.angle`` (deg) and ``rain.total`` (mm since
        start, whole bucket tips), which the OPC UA station reads and the Modbus map has not.
        Their noise is drawn last and only when asked, so the Modbus profile's random stream
        stays what it was.
        """
        values: dict[str, float] = {}
        for n, position in enumerate(self.gnss, start=1):
            for axis, true, noise in zip("xyz", position, GNSS_NOISE, strict=True):
                values[f"gnss{n}.{axis}"] = round(true + rng.gauss(0.0, noise), 1)
        for k, deformation in enumerate(self.radar, start=1):
            values[f"radar{k}.deformation"] = round(deformation + rng.gauss(0.0, RADAR_NOISE), 2)
        values["rain.today"] = self.rain.reading()
        values["groundwater.level"] = round(self.groundwater + rng.gauss(0.0, 0.005), 3)
        if inclinometer:
            values["inclinometer.angle"] = round(self.tilt() + rng.gauss(0.0, TILT_NOISE), 4)
            values["rain.total"] = round(
                math.floor(self.rain_total / RAIN_TIP + 1e-9) * RAIN_TIP, 1
            )
        return values

    def tilt(self) -> float:
        """Return the true inclinometer tilt in degrees: it follows the mean horizontal move."""
        moved = sum(math.hypot(x, y) for x, y, _ in self.gnss) / len(self.gnss)
        return TILT_BASE + TILT_PER_MM * moved


def _zone_speed(creep: tuple[tuple[float, float, float], ...], zone: int) -> float:
    """Return the horizontal creep rate a radar zone sees: its two nearest stations' mean."""
    last = len(creep) - 1  # fewer stations than zones: the zones share the last station
    stations = (creep[min(zone, last)], creep[min(zone + 1, last)])
    return sum(math.hypot(vx, vy) for vx, vy, _ in stations) / len(stations)


def _bounded(value: float) -> float:
    return min(DISPLACEMENT_BOUND, max(-DISPLACEMENT_BOUND, value))


def initial_state(rng: random.Random, stations: int = STATIONS) -> SlopeState:
    """Draw a starting slope: calm, each station creeping down its own dip direction.

    Raises:
        ValueError: fewer than one station.
    """
    if stations < 1:
        raise ValueError("need at least one GNSS station")
    creep: list[tuple[float, float, float]] = []
    for _ in range(stations):
        speed, heading = rng.uniform(1.0, 4.0), rng.uniform(0.6, 1.0)  # mm/d, rad from X
        creep.append((speed * math.cos(heading), speed * math.sin(heading), -rng.uniform(0.3, 1.5)))
    gnss = tuple((rng.uniform(10, 60), rng.uniform(10, 60), -rng.uniform(5, 30)) for _ in creep)
    return SlopeState(
        t=rng.uniform(0.0, DAY),
        gnss=gnss,
        creep=tuple(creep),
        radar=tuple(rng.uniform(5.0, 40.0) for _ in range(RADAR_ZONES)),
        factor=1.0,
        surge=1.0,
        surge_left=0.0,
        rain=Showers.start(rng, wet=0.3),
        groundwater=GROUNDWATER_BASE + rng.uniform(0.0, 2.0),
    )


PROFILE = Profile(
    name="slope",
    domain="BP",
    description="open-pit slope: GNSS and radar displacement, rainfall, groundwater",
    points=slope_map(),
    start=initial_state,
)
