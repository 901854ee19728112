"""A coal mine's safety monitoring system (煤矿安全监控) on Modbus TCP.

The monitoring host's Modbus gateway maps each substation (分站) to a block of holding
registers. Keys are `{ss_station_code}-{ss_transducer_code}` (MT/T 1201 AQMC), so a site map
codes its points `{cs_mine_code}-{key}`. Register map (unit 1; 0-based addresses)::

    address  type     scale  unit     quota     transducer     meaning
    substation 000001: fully mechanised working face 1 (综采工作面)
    0        uint16   0.01   %CH4     MK-M0101  000001-001046  methane T1, working face
    1        uint16   0.01   %CH4     MK-M0101  000001-001047  methane T0, upper corner
    2        uint16   0.01   %CH4     MK-M0101  000001-001048  methane T2, return airway
    3        uint16   1      ppm      MK-M0104  000001-001049  carbon monoxide, return airway
    4        int16    0.1    ℃        MK-M0201  000001-001050  temperature, working face
    5..19    -        -      -        -         -              reserved, 0
    substation 000002: gas drainage pump station (瓦斯抽采泵站)
    20       float32  1      m3/min   MK-M9999  000002-002001  drainage pipe mixed flow
    22       float32  1      kPa      MK-M9999  000002-002002  drainage pipe negative pressure
    24       int16    0.1    ℃        MK-M0201  000002-002003  pump room temperature
    25       uint16   0.01   %CH4     MK-M0101  000002-002004  pump room methane

Float32 words are big-endian. Time is the wall clock (a mine reports every few seconds).
Methane sits near 0.2-0.6 %CH4 with the shearer's cutting cycle and sensor noise; about once
every 2.5 minutes the face gives off a gush that lifts T1 past 1.0 %CH4 (and sometimes past
the 1.5 power-off limit) within seconds, which the upper corner and the return airway then see
weaker and later, and which clears over a minute. CO sits at a few ppm with occasional rises
past 24 ppm (blasting fumes). Everything random comes from one seeded RNG.
"""

from __future__ import annotations

import math
import random
from dataclasses import dataclass, replace

from drivers.modbus.codec import DataType, Table
from drivers.modbus.plan import RegisterPoint
from simulators.profiles.base import Profile, chance, ou_step, relax
from simulators.tankfarm import SimPoint

__all__ = ["PROFILE", "CoalMineState", "coalmine_map", "initial_state"]

GUSTS_PER_SECOND = 1 / 150
GUST_SIZE = (0.6, 1.4)  # %CH4 above the background at the face
GUST_TAU = 20.0  # s: how fast the source of a gush dies down
# (share of the face's gush, lag in s) for T1, the upper corner T0 and the return airway T2
METHANE_PATH = ((1.0, 3.0), (0.85, 8.0), (0.6, 15.0))
CUTTING_CYCLE = 480.0  # s: one shearer pass, compressed
CO_EVENTS_PER_SECOND = 1 / 400
CO_TAU = 40.0
METHANE_MAX = 4.0  # %CH4: the sim's ceiling, far above any power-off limit
METHANE_SCALE = 0.01
TEMPERATURE_SCALE = 0.1


def coalmine_map() -> tuple[SimPoint, ...]:
    """Return the mine's register map."""

    def point(key: str, start: int, dtype: DataType) -> RegisterPoint:
        return RegisterPoint(key, Table.HOLDING, start, dtype)

    u16, i16, f32 = DataType.UINT16, DataType.INT16, DataType.FLOAT32
    return (
        SimPoint(point("000001-001046", 0, u16), "%CH4", "methane T1, working face",
                 low=0.0, high=METHANE_MAX, quota="MK-M0101", scale=METHANE_SCALE),
        SimPoint(point("000001-001047", 1, u16), "%CH4", "methane T0, upper corner",
                 low=0.0, high=METHANE_MAX, quota="MK-M0101", scale=METHANE_SCALE),
        SimPoint(point("000001-001048", 2, u16), "%CH4", "methane T2, return airway",
                 low=0.0, high=METHANE_MAX, quota="MK-M0101", scale=METHANE_SCALE),
        SimPoint(point("000001-001049", 3, u16), "ppm", "carbon monoxide, return airway",
                 low=0.0, high=200.0, quota="MK-M0104"),
        SimPoint(point("000001-001050", 4, i16), "℃", "temperature, working face",
                 low=15.0, high=40.0, quota="MK-M0201", scale=TEMPERATURE_SCALE),
        SimPoint(point("000002-002001", 20, f32), "m3/min", "drainage pipe mixed flow",
                 low=0.0, high=100.0, quota="MK-M9999"),
        SimPoint(point("000002-002002", 22, f32), "kPa", "drainage pipe negative pressure",
                 low=0.0, high=60.0, quota="MK-M9999"),
        SimPoint(point("000002-002003", 24, i16), "℃", "pump room temperature",
                 low=5.0, high=35.0, quota="MK-M0201", scale=TEMPERATURE_SCALE),
        SimPoint(point("000002-002004", 25, u16), "%CH4", "pump room methane",
                 low=0.0, high=METHANE_MAX, quota="MK-M0101", scale=METHANE_SCALE),
    )  # fmt: skip


@dataclass(frozen=True, slots=True)
class CoalMineState:
    """The noise-free mine air and drainage; times in wall seconds."""

    t: float
    methane_base: tuple[float, ...]  # %CH4 background of T1, T0, T2
    methane_drift: tuple[float, ...]  # slow wander around the background
    gust: float  # %CH4 the face is giving off above background now
    methane_excess: tuple[float, ...]  # what of the gush each sensor sees (lagged)
    phase: float  # of the cutting cycle
    co_base: float  # ppm
    co: float  # ppm, background wander
    co_excess: float  # ppm, a fume cloud passing
    face_temperature: float  # ℃ mean
    flow_mean: float  # m3/min
    flow: float
    suction_mean: float  # kPa
    suction: float
    pump_temperature: float  # ℃
    pump_methane: float  # %CH4

    def step(self, dt: float, rng: random.Random) -> CoalMineState:
        """Advance `dt` seconds."""
        gust = self.gust * math.exp(-dt / GUST_TAU)
        if chance(GUSTS_PER_SECOND, dt, rng):
            gust += rng.uniform(*GUST_SIZE)
        co_excess = self.co_excess * math.exp(-dt / CO_TAU)
        if chance(CO_EVENTS_PER_SECOND, dt, rng):
            co_excess += rng.uniform(8.0, 30.0)
        return replace(
            self,
            t=self.t + dt,
            methane_drift=tuple(
                ou_step(d, 0.0, tau=120.0, sigma=0.04, dt=dt, rng=rng) for d in self.methane_drift
            ),
            gust=gust,
            methane_excess=tuple(
                relax(excess, share * gust, lag, dt)
                for excess, (share, lag) in zip(self.methane_excess, METHANE_PATH, strict=True)
            ),
            co=ou_step(self.co, self.co_base, tau=60.0, sigma=0.6, dt=dt, rng=rng),
            co_excess=co_excess,
            flow=ou_step(self.flow, self.flow_mean, tau=30.0, sigma=1.5, dt=dt, rng=rng),
            suction=ou_step(self.suction, self.suction_mean, tau=30.0, sigma=0.8, dt=dt, rng=rng),
            pump_temperature=ou_step(
                self.pump_temperature, 19.5, tau=300.0, sigma=0.4, dt=dt, rng=rng
            ),
            pump_methane=ou_step(self.pump_methane, 0.06, tau=60.0, sigma=0.02, dt=dt, rng=rng),
        )

    def observe(self, rng: random.Random) -> dict[str, float]:
        """Return the transducers' readings: noisy, at their resolution, never negative."""
        cycle = math.sin(2 * math.pi * (self.t / CUTTING_CYCLE + self.phase))
        keys = ("000001-001046", "000001-001047", "000001-001048")
        values: dict[str, float] = {}
        for key, base, drift, excess in zip(
            keys, self.methane_base, self.methane_drift, self.methane_excess, strict=True
        ):
            # Cutting releases more gas at the face as the shearer passes.
            true = base + drift + 0.08 * cycle + excess
            values[key] = _methane(true + rng.gauss(0.0, 0.01))
        face = self.face_temperature + 0.8 * cycle + rng.gauss(0.0, 0.05)
        values |= {
            "000001-001049": float(round(min(200.0, max(0.0, self.co + self.co_excess)))),
            "000001-001050": round(min(40.0, max(15.0, face)), 1),
            "000002-002001": round(min(100.0, max(0.0, self.flow)), 2),
            "000002-002002": round(min(60.0, max(0.0, self.suction)), 2),
            "000002-002003": round(min(35.0, max(5.0, self.pump_temperature)), 1),
            "000002-002004": _methane(self.pump_methane + rng.gauss(0.0, 0.005)),
        }
        return values


def _methane(value: float) -> float:
    """Return a methane reading at the transducer's 0.01 %CH4 resolution."""
    return round(min(METHANE_MAX, max(0.0, value)), 2)


def initial_state(rng: random.Random) -> CoalMineState:
    """Draw a starting mine: calm air, the shearer somewhere in its cycle."""
    co_base = rng.uniform(2.0, 6.0)
    flow_mean, suction_mean = rng.uniform(36.0, 48.0), rng.uniform(18.0, 26.0)
    return CoalMineState(
        t=0.0,
        # The upper corner collects gas from the goaf; the return airway is diluted.
        methane_base=(rng.uniform(0.3, 0.45), rng.uniform(0.4, 0.55), rng.uniform(0.2, 0.35)),
        methane_drift=(0.0, 0.0, 0.0),
        gust=0.0,
        methane_excess=(0.0, 0.0, 0.0),
        phase=rng.random(),
        co_base=co_base,
        co=co_base,
        co_excess=0.0,
        face_temperature=rng.uniform(24.0, 28.0),
        flow_mean=flow_mean,
        flow=flow_mean,
        suction_mean=suction_mean,
        suction=suction_mean,
        pump_temperature=rng.uniform(17.0, 22.0),
        pump_methane=rng.uniform(0.03, 0.1),
    )


PROFILE = Profile(
    name="coalmine",
    domain="MK",
    description="coal mine safety monitoring: methane, CO, temperature, drainage flow",
    points=coalmine_map(),
    start=initial_state,
)
