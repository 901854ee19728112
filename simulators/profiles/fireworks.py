"""A fireworks factory's workshops (烟花爆竹 工房) on Modbus TCP.

Register map (unit 1; 0-based protocol addresses; workshop w = 1..4 at base 10*(w-1))::

    table    address  type     unit     quota     meaning
    holding  base+0   uint16   persons  YHBZ-PC   people in the workshop (door counter)
    holding  base+1   uint16   persons  YHBZ-PR   rated staffing 定员 (fixed)
    holding  base+2   float32  kg       YHBZ-QT   explosive quantity in the workshop (scale)
    holding  base+4   float32  kg       YHBZ-QR   approved quantity 核定药量 (fixed)
    holding  base+6   float32  min      YHBZ-DUR  work duration of the current shift
    holding  base+8,9 -        -        -         reserved, 0

    workshop  process   rated staffing  approved quantity
    1         mixing    2               10 kg
    2         charging  4               25 kg
    3         assembly  6               50 kg
    4         packing   8               100 kg

Time runs 60 times faster than the wall clock (one second is one simulated minute). A shift
starts with about the rated crew and lasts 7 to 9 simulated hours, so it sometimes runs past
an 8-hour limit (超时); people come and go, now and then one more than the rated staffing
(超员); powder arrives in batches and is worked off, and batches that bunch up push the
quantity past the approved quantity (超量). Between shifts the workshop is empty and its
powder goes back to the magazine. Everything random comes from one seeded RNG.
"""

from __future__ import annotations

import random
from dataclasses import dataclass, replace

from drivers.modbus.codec import DataType, Table
from drivers.modbus.plan import RegisterPoint
from simulators.profiles.base import Profile, chance, relax
from simulators.tankfarm import SimPoint

__all__ = ["PROFILE", "WORKSHOPS", "FireworksState", "Workshop", "fireworks_map", "initial_state"]

TIME_SCALE = 60.0  # simulated seconds per wall second
STRIDE = 10
WORKSHOPS: tuple[tuple[str, int, float], ...] = (
    ("mixing", 2, 10.0),
    ("charging", 4, 25.0),
    ("assembly", 6, 50.0),
    ("packing", 8, 100.0),
)
"""(process, rated staffing, approved quantity kg) of workshops 1..4."""
MOVES_PER_MINUTE = 1 / 4  # someone enters or leaves about every four simulated minutes
# The crew calls for powder when it runs low; an extra batch while stocked happens too.
DELIVERIES_PER_MINUTE = (1 / 8, 1 / 60)  # (below REORDER_LEVEL, above it)
REORDER_LEVEL = 0.6  # of the approved quantity
WORK_OFF_PER_MINUTE = 0.02  # of the approved quantity, with the full crew
MAX_OVERLOAD = 1.6  # the simulated crew never piles up more than this times the approval
EXTRA_STAFF = 2  # at most this many people above the rated staffing
SHIFT_MINUTES = (420.0, 540.0)
BREAK_MINUTES = (20.0, 90.0)


def fireworks_map() -> tuple[SimPoint, ...]:
    """Return the workshops' register map."""
    points: list[SimPoint] = []
    for w, (process, rated, approved) in enumerate(WORKSHOPS, start=1):
        base = STRIDE * (w - 1)
        key = f"workshop{w}"
        points += [
            SimPoint(RegisterPoint(f"{key}.headcount", Table.HOLDING, base, DataType.UINT16),
                     "persons", f"workshop {w} ({process}) headcount",
                     low=0.0, high=float(rated + EXTRA_STAFF), quota="YHBZ-PC"),
            SimPoint(RegisterPoint(f"{key}.rated", Table.HOLDING, base + 1, DataType.UINT16),
                     "persons", f"workshop {w} rated staffing", expected=float(rated),
                     quota="YHBZ-PR"),
            SimPoint(RegisterPoint(f"{key}.quantity", Table.HOLDING, base + 2, DataType.FLOAT32),
                     "kg", f"workshop {w} explosive quantity",
                     low=0.0, high=approved * MAX_OVERLOAD + 0.1, quota="YHBZ-QT"),
            SimPoint(RegisterPoint(f"{key}.approved", Table.HOLDING, base + 4, DataType.FLOAT32),
                     "kg", f"workshop {w} approved quantity", expected=approved,
                     quota="YHBZ-QR"),
            SimPoint(RegisterPoint(f"{key}.duration", Table.HOLDING, base + 6, DataType.FLOAT32),
                     "min", f"workshop {w} work duration of the shift",
                     low=0.0, high=SHIFT_MINUTES[1] + 1, quota="YHBZ-DUR"),
        ]  # fmt: skip
    return tuple(points)


@dataclass(frozen=True, slots=True)
class Workshop:
    """One workshop; times in simulated minutes."""

    rated: int
    approved: float  # kg
    headcount: int
    quantity: float  # kg
    duration: float  # minutes into the shift; 0 between shifts
    shift_length: float  # minutes the current shift will last
    break_left: float  # minutes until the next shift; 0 during a shift

    @property
    def on_shift(self) -> bool:
        """Whether a crew is at work."""
        return self.break_left <= 0

    def step(self, minutes: float, rng: random.Random) -> Workshop:
        """Advance `minutes` simulated minutes."""
        if not self.on_shift:
            left = self.break_left - minutes
            if left > 0:
                # Between shifts the last powder goes back to the magazine within minutes.
                return replace(self, break_left=left, quantity=relax(self.quantity, 0, 5, minutes))
            return replace(
                self,
                break_left=0.0,
                headcount=max(1, self.rated - rng.randint(0, 1)),
                duration=0.0,
                shift_length=rng.uniform(*SHIFT_MINUTES),
            )
        duration = self.duration + minutes
        if duration >= self.shift_length:
            return replace(self, headcount=0, duration=0.0, break_left=rng.uniform(*BREAK_MINUTES))
        headcount = self.headcount
        if chance(MOVES_PER_MINUTE, minutes, rng):
            # Drawn toward the rated crew: one more than allowed happens, but not for long.
            up = 0.6 if headcount < self.rated else 0.2 if headcount == self.rated else 0.1
            headcount += 1 if rng.random() < up else -1
            headcount = min(self.rated + EXTRA_STAFF, max(1, headcount))
        quantity = self.quantity - (
            self.approved * WORK_OFF_PER_MINUTE * minutes * headcount / self.rated
        )
        low_stock = self.quantity < REORDER_LEVEL * self.approved
        if chance(DELIVERIES_PER_MINUTE[0 if low_stock else 1], minutes, rng):
            quantity += self.approved * rng.uniform(0.15, 0.35)
        quantity = min(self.approved * MAX_OVERLOAD, max(0.0, quantity))
        return replace(self, headcount=headcount, quantity=quantity, duration=duration)


@dataclass(frozen=True, slots=True)
class FireworksState:
    """Every workshop of the factory."""

    workshops: tuple[Workshop, ...]

    def step(self, dt: float, rng: random.Random) -> FireworksState:
        """Advance `dt` wall seconds."""
        minutes = dt * TIME_SCALE / 60
        return FireworksState(tuple(w.step(minutes, rng) for w in self.workshops))

    def observe(self, rng: random.Random) -> dict[str, float]:
        """Return the counters' and scales' readings; a scale shows 10 g steps."""
        values: dict[str, float] = {}
        for n, w in enumerate(self.workshops, start=1):
            weighed = w.quantity + rng.gauss(0.0, 0.01) if w.quantity > 0 else 0.0
            values |= {
                f"workshop{n}.headcount": float(w.headcount),
                f"workshop{n}.rated": float(w.rated),
                f"workshop{n}.quantity": round(max(0.0, weighed), 2),
                f"workshop{n}.approved": w.approved,
                f"workshop{n}.duration": round(w.duration, 1),
            }
        return values


def initial_state(rng: random.Random) -> FireworksState:
    """Draw a starting factory: most workshops mid-shift, one now and then on a break."""
    workshops: list[Workshop] = []
    for _, rated, approved in WORKSHOPS:
        if rng.random() < 0.2:  # noqa: PLR2004 -- one workshop in five starts on a break
            workshops.append(Workshop(rated, approved, 0, 0.0, 0.0, 0.0, rng.uniform(5, 30)))
            continue
        workshops.append(
            Workshop(
                rated=rated,
                approved=approved,
                headcount=max(1, rated - rng.randint(0, 1)),
                quantity=approved * rng.uniform(0.3, 0.8),
                duration=rng.uniform(0.0, 400.0),
                shift_length=rng.uniform(*SHIFT_MINUTES),
                break_left=0.0,
            )
        )
    return FireworksState(tuple(workshops))


PROFILE = Profile(
    name="fireworks",
    domain="YHBZ",
    description="fireworks workshops: headcount/rated staffing, quantity/approved, duration",
    points=fireworks_map(),
    start=initial_state,
)
