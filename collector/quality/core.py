"""Pure parts of `GET /v1/quality`: presence intervals, the time window, and the ratios.

- **Online rate**: the share of the window a gateway was live. Presence is kept at ingest as
  [since, until) intervals: a sign of life at t (a block, a meta message, an online status)
  keeps the gateway live until t + offline_after, as `GET /v1/gateways` judges `online`; an
  offline status (the last will) ends the interval at once.
- **Completeness**: readings received / readings expected, expected from the poll periods the
  gateway's newest signed meta gives its points (floor(window / poll) per point). Only points
  with a poll period count, on both sides.
- **Timeliness**: the share of received readings whose block arrived within LATE_AFTER seconds
  of the reading's time; `late` counts the others.
"""

from __future__ import annotations

import enum
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, replace
from typing import Final

from collector.model import IngestBatch

LATE_AFTER: Final = 60.0
"""A reading whose block arrived more than this many seconds after its time is late."""
DEFAULT_WINDOW: Final = 86400.0
"""The window when `from` is not given: the day before `to` (default: now)."""


class QualityGroup(enum.StrEnum):
    """What one item of `GET /v1/quality` covers."""

    GATEWAY = "gateway"
    ENTERPRISE = "enterprise"
    DISTRICT = "district"


# --- presence, kept at ingest ------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Sign:
    """A sign of life (`online`) or an offline status of a gateway, at collector time `at`."""

    gateway: str
    at: float
    online: bool = True


@dataclass(frozen=True, slots=True)
class Presence:
    """One stored interval [since, until) during which a gateway was live; `id` 0: new."""

    gateway: str
    since: float
    until: float
    id: int = 0


def signs(batch: IngestBatch) -> list[Sign]:
    """The signs of life in a batch: verified blocks and metas, and statuses as they say."""
    found = [Sign(b.block.header.gateway, b.received_at) for b in batch.blocks]
    found.extend(Sign(m.meta.gateway, m.received_at) for m in batch.metas)
    found.extend(Sign(s.gateway, s.at, online=s.online) for s in batch.statuses)
    return found


def advance_presence(
    newest: Mapping[str, Presence], found: Iterable[Sign], window: float
) -> list[Presence]:
    """The intervals to write after `found`: changed stored ones (their id) and new ones (id 0).

    `newest` holds each gateway's latest stored interval. Signs are taken in time order, an
    offline status after a sign of the same instant. A sign older than the newest interval is
    another collector's batch committed late: it moves that interval's start back when its
    window reaches it (two heartbeats 5 s apart committed in the wrong order), and is history
    already counted otherwise.
    """
    chains: dict[str, list[Presence]] = {gateway: [held] for gateway, held in newest.items()}
    for sign in sorted(found, key=lambda s: (s.at, not s.online)):
        chain = chains.setdefault(sign.gateway, [])
        held = chain[-1] if chain else None
        if sign.online:
            if held is not None and held.since <= sign.at <= held.until:
                chain[-1] = replace(held, until=max(held.until, sign.at + window))
            elif held is not None and sign.at < held.since <= sign.at + window:
                chain[-1] = replace(held, since=sign.at)
            elif held is None or sign.at > held.until:
                chain.append(Presence(sign.gateway, sign.at, sign.at + window))
        elif held is not None and held.since <= sign.at < held.until:
            chain[-1] = replace(held, until=sign.at)
    return [
        interval
        for gateway, chain in chains.items()
        for interval in chain
        if interval.id == 0 or interval != newest.get(gateway)
    ]


# --- the window and the figures ------------------------------------------------------------------


class WindowError(ValueError):
    """`from` and `to` do not make a window."""


@dataclass(frozen=True, slots=True)
class QualityWindow:
    """[start, end) as asked, and `observed`: its part up to now (what can have happened)."""

    start: float
    end: float
    observed_end: float

    @property
    def observed(self) -> float:
        """Seconds of the window up to now."""
        return max(0.0, self.observed_end - self.start)


def quality_window(t_from: float | None, t_to: float | None, now: float) -> QualityWindow:
    """The window of a request: `to` defaults to now, `from` to DEFAULT_WINDOW before `to`."""
    end = now if t_to is None else t_to
    start = end - DEFAULT_WINDOW if t_from is None else t_from
    if start >= end:
        raise WindowError("to: must be later than from")
    return QualityWindow(start, end, min(end, now))


@dataclass(frozen=True, slots=True)
class QualityCounts:
    """What the database adds up for one group over a window.

    `gateways` registered gateways are in the group; `online_seconds` is the sum over them of
    their live time in the window; `expected` and `received` readings of points with a poll
    period; `late` of those received arrived more than LATE_AFTER after their time.
    """

    key: str
    gateways: int
    online_seconds: float
    expected: int
    received: int
    late: int


@dataclass(frozen=True, slots=True)
class QualityFigures:
    """The ratios of one group (None where the denominator is zero)."""

    key: str
    gateways: int
    online_rate: float | None
    completeness: float | None
    timeliness: float | None
    expected: int
    received: int
    late: int


_DIGITS: Final = 6


def _ratio(part: float, whole: float) -> float | None:
    return None if whole <= 0 else round(part / whole, _DIGITS)


def figures(counts: QualityCounts, window: QualityWindow) -> QualityFigures:
    """Online rate over the observed window, completeness and timeliness of the readings."""
    return QualityFigures(
        key=counts.key,
        gateways=counts.gateways,
        online_rate=_ratio(counts.online_seconds, counts.gateways * window.observed),
        completeness=_ratio(counts.received, counts.expected),
        timeliness=_ratio(counts.received - counts.late, counts.received),
        expected=counts.expected,
        received=counts.received,
        late=counts.late,
    )


@dataclass(frozen=True, slots=True)
class QualityFilter:
    """Which gateways count: by id, enterprise and district (all optional)."""

    gateway: str | None = None
    enterprise: str | None = None
    district: str | None = None
