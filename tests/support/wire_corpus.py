"""Synthetic but realistic gz/1 blocks: the training set of the zstd dictionary, and bench data.

Sites of all five domains with the catalogue's indicators and canonical units, point codes in
several naming styles, values as instruments give them (float32 registers widened to Python
floats, which print with up to 17 digits; scaled integers; whole counts; 0/1 states), one poll
time per device cycle with milliseconds, mostly `good` readings with a few `uncertain`/`bad`
ones and their flags, now and then an alarm event or a gap record. Every value is distinct per
point and moves between cycles (a random walk), unlike the demo simulator, whose devices read
the same registers.

Deterministic: the same seed gives the same blocks byte for byte, so the dictionary trained on
them (tests.support.zstd_dict) can be made again and checked.
"""

from __future__ import annotations

import dataclasses
import random
import string
import struct
from collections.abc import Iterator
from dataclasses import dataclass
from typing import cast

from specs.block import BlockHeader, block_hash, encode_block
from specs.catalogue import Indicator, default_catalogue
from specs.identifiers import credit_code_check_character
from specs.records import AlarmEvent, AlarmRecord, GapReason, GapRecord, Quality, Reading, iso_time
from specs.records import Record as WireRecord

DOMAINS = ("WHP", "WKK", "YHBZ", "MK", "BP")
_START = 1_780_000_000.0  # 2026-05-28: a plausible recent time


@dataclass(frozen=True, slots=True)
class Point:
    """One configured point of a synthetic site."""

    code: str
    indicator: Indicator
    style: str  # float32 | scaled | count | state


@dataclass
class _State:
    value: float


def _float32(value: float) -> float:
    return float(struct.unpack("<f", struct.pack("<f", value))[0])


def _credit_code(rng: random.Random, district: str) -> str:
    body = (
        "91"
        + district
        + "".join(rng.choice(string.digits + "ABCDEFGHJKLMNPQRTUWXY") for _ in range(9))
    )
    return body + credit_code_check_character(body)


def _point_code(rng: random.Random, style: int, device: int, n: int, suffix: str) -> str:
    if style == 0:
        return f"T{device * 50 + n:03d}-{suffix}-01"
    if style == 1:
        return f"PLC{device}.AI{n:03d}"
    if style == 2:
        return f"{suffix}_{device:02d}_{n:02d}"
    if style == 3:
        return f"D{device}-{rng.choice(['N', 'S', 'E', 'W'])}{n}-{suffix}"
    return f"{suffix.lower()}.{device}.{n}"


def _value_style(indicator: Indicator, rng: random.Random) -> str:
    if indicator.unit == "0/1":
        return "state"
    if indicator.unit == "persons":
        return "count"
    return rng.choices(["float32", "scaled"], weights=[3, 2])[0]


@dataclass
class Site:
    """A synthetic gateway: identity, points, and where its chain stands."""

    header: BlockHeader
    points: tuple[tuple[int, Point], ...]  # (device, point)
    rng: random.Random
    states: dict[str, _State]
    now: float

    def _reading(self, point: Point, t: str) -> WireRecord:
        rng = self.rng
        indicator = point.indicator
        state = self.states[point.code]
        span = indicator.high - indicator.low
        if point.style == "state":
            state.value = 1.0 if rng.random() < 0.02 else 0.0
        elif point.style == "count":
            state.value = float(max(0, round(state.value + rng.choice([-1, 0, 0, 0, 1]))))
        else:
            state.value += rng.gauss(0, span * 0.0005)
        value: float | None = state.value
        if point.style == "float32":
            value = _float32(state.value)
        elif point.style == "scaled":
            value = round(state.value, 2)
        elif point.style in {"state", "count"}:
            value = int(state.value) if rng.random() < 0.5 else state.value
        quality, flags = Quality.GOOD, cast("tuple[str, ...]", ())
        roll = rng.random()
        if roll < 0.005:
            quality, value = Quality.BAD, None
        elif roll < 0.01:
            quality, flags = Quality.UNCERTAIN, ("out_of_range",)
        if self.header.clock == "unsynced":
            flags = (*flags, "clock_unsynced")
        return Reading(point.code, indicator.code, t, value, indicator.unit, quality, flags)

    def cycle(self, step: float) -> list[WireRecord]:
        """One poll cycle of every device: its readings, sometimes an alarm event."""
        self.now += step
        records: list[WireRecord] = []
        times: dict[int, str] = {}
        for device, point in self.points:
            if device not in times:
                times[device] = iso_time(self.now + self.rng.uniform(0, 0.2))
            reading = self._reading(point, times[device])
            records.append(reading)
            if self.rng.random() < 0.002 and isinstance(reading, Reading):
                records.append(_alarm(reading, self.rng))
        return records

    def seal(self, records: list[WireRecord]) -> bytes:
        """The canonical block of `records`, chained onto the previous one."""
        header = self.header
        payload = encode_block(header, records)
        self.header = dataclasses.replace(
            header,
            seq=header.seq + 1,
            prev=block_hash(payload),
            sealed_at=iso_time(self.now + 0.21),
        )
        return payload


def _alarm(reading: Reading, rng: random.Random) -> AlarmRecord:
    level = rng.choice(["H", "HH", "L"])
    return AlarmRecord(
        alarm_id=f"{reading.point}/{level}/{reading.t}",
        point=reading.point,
        quota=reading.quota,
        t=reading.t,
        event=rng.choice([AlarmEvent.RAISE, AlarmEvent.CLEAR]),
        level=level,
        value=reading.value,
        threshold=round(rng.uniform(1, 100), 1),
        unit=reading.unit,
        trigger_t=reading.t,
        related=None,
        detail=None,
    )


def make_site(seed: int, domain: str, points: int, *, devices: int | None = None) -> Site:
    """A site of `domain` with `points` points spread over `devices` devices."""
    rng = random.Random(seed)
    catalogue = default_catalogue()
    indicators = catalogue.for_site(domain)
    district = rng.choice(["360100", "130200", "420100", "510100", "610300", "150200"])
    enterprise = _credit_code(rng, district)
    devices = devices if devices is not None else max(1, points // rng.choice([10, 20, 50, 100]))
    naming = rng.randrange(5)
    chosen: list[tuple[int, Point]] = []
    states: dict[str, _State] = {}
    for n in range(points):
        device = n % devices
        indicator = indicators[rng.randrange(len(indicators))]
        suffix = indicator.code.split("-", 1)[1]
        code = _point_code(rng, naming, device, n // devices, suffix)
        point = Point(code, indicator, _value_style(indicator, rng))
        chosen.append((device, point))
        mid = indicator.low + (indicator.high - indicator.low) * rng.uniform(0.05, 0.4)
        states[code] = _State(mid if point.style != "count" else float(rng.randrange(1, 9)))
    chosen.sort(key=lambda pair: pair[0])
    header = BlockHeader(
        gateway=f"{enterprise}-GW{rng.randrange(1, 10):02d}",
        enterprise=enterprise,
        district=district,
        domain=domain,
        epoch=f"{rng.getrandbits(64):016x}",
        seq=rng.randrange(1, 100_000),
        prev=f"{rng.getrandbits(256):064x}",
        sealed_at=iso_time(_START),
        clock="synced" if rng.random() < 0.9 else "unsynced",
        mine_code=f"{rng.randrange(10**8, 10**9)}" if domain == "MK" else None,
    )
    return Site(header, tuple(chosen), rng, states, _START + rng.uniform(0, 86400 * 200))


def blocks(site: Site, readings_per_block: int, count: int, poll: float = 1.0) -> Iterator[bytes]:
    """`count` blocks of about `readings_per_block` records each, in poll order."""
    pending: list[WireRecord] = []
    made = 0
    while made < count:
        pending.extend(site.cycle(poll))
        while len(pending) >= readings_per_block and made < count:
            yield site.seal(pending[:readings_per_block])
            pending = pending[readings_per_block:]
            made += 1


def gap_block(site: Site) -> bytes:
    """A block opening with a gap record, as after an outbox that filled up."""
    gap = GapRecord(
        t=iso_time(site.now),
        reason=GapReason.OUTBOX_FULL,
        lost=site.rng.randrange(1, 5000),
        t_from=iso_time(site.now - 600),
        t_to=iso_time(site.now - 300),
        epoch=f"{site.rng.getrandbits(64):016x}",
        from_seq=10,
        to_seq=20,
        point=None,
    )
    return site.seal([gap, *site.cycle(1.0)])


def training_samples(seed: int = 1, sites_per_domain: int = 24) -> list[bytes]:
    """The dictionary's training set: small and middle blocks of many sites of every domain."""
    samples: list[bytes] = []
    rng = random.Random(seed)
    for domain in DOMAINS:
        for index in range(sites_per_domain):
            site = make_site(rng.getrandbits(32) + index, domain, rng.choice([8, 14, 30, 60, 200]))
            size = rng.choice([5, 10, 14, 20, 40, 80])
            samples.extend(blocks(site, size, 12))
            samples.append(gap_block(site))
    return samples
