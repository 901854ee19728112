"""Pure: alarms pair by merging each raise or clear event into the stored state.

Each event merges into the state of its (gateway, alarm_id), whatever order the blocks arrive
in: the same events in any order give the same state. An event stamped more than the ahead
allowance past its block's arrival (a wrong gateway clock, collector.storage.ahead) is merged
all the same, its half marked ahead: the alarm is listed flagged, and not active by such a
raise until the collector's clock reaches it (AlarmState.active_at, judged when asked).
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import replace

from collector.model import AlarmEntry, IncomingBlock
from collector.readmodel import AlarmState
from specs.records import AlarmEvent

AlarmKey = tuple[str, str]


def alarm_key(gateway: str, alarm: AlarmEntry) -> AlarmKey:
    """The identity of an alarm: (gateway, alarm_id)."""
    return (gateway, alarm.alarm_id)


def _earlier(held: float | None, new: float) -> bool:
    return held is None or new < held


def merge_alarm(
    held: AlarmState | None,
    gateway: str,
    source: tuple[str, int],
    event: AlarmEntry,
    *,
    ahead: bool = False,
) -> AlarmState:
    """The alarm after one more raise or clear event; order-independent.

    Blocks arrive out of order, so a clear may come before its raise: each event fills its own
    half, and the raise's description wins whenever it is known. A repeated event (a resent
    block cannot repeat one, but an agent may re-state an alarm) keeps the earliest time, so
    merging the same events in any order gives the same state. `source` is the block's
    (epoch, seq); `ahead`: the event was stamped ahead of the collector's clock, which marks
    the half it states (a property of the event and its block, so order-independent still).
    """
    where = (source[0], source[1], event.idx)
    if event.event is AlarmEvent.RAISE:
        if held is not None and not _earlier(held.raised_at, event.t):
            return held
        cleared: Half = (None, None, False)
        if held is not None:
            cleared = (held.cleared_at, held.cleared_in, held.cleared_ahead)
        return _described(gateway, event, (event.t, where, ahead), cleared)
    if held is None:
        return _described(gateway, event, (None, None, False), (event.t, where, ahead))
    if not _earlier(held.cleared_at, event.t):
        return held
    if held.raised_at is None:
        # Still only clears: the earliest clear describes the alarm until its raise arrives.
        return merge_alarm(None, gateway, source, event, ahead=ahead)
    return replace(held, cleared_at=event.t, cleared_in=where, cleared_ahead=ahead)


Half = tuple[float | None, tuple[str, int, int] | None, bool]
"""When an alarm was raised (or cleared), the record that said so, and whether it was stamped
ahead of the collector's clock."""


def _described(gateway: str, event: AlarmEntry, raised: Half, cleared: Half) -> AlarmState:
    """An alarm as `event` describes it, with its raise and clear halves."""
    return AlarmState(
        gateway=gateway,
        alarm_id=event.alarm_id,
        point=event.point,
        quota=event.quota,
        level=event.level,
        raised_at=raised[0],
        cleared_at=cleared[0],
        value=event.value,
        threshold=event.threshold,
        unit=event.unit,
        trigger_t=event.trigger_t,
        related=event.related,
        detail=event.detail,
        raised_in=raised[1],
        cleared_in=cleared[1],
        raised_ahead=raised[2],
        cleared_ahead=cleared[2],
    )


def merge_alarms(
    held: Mapping[AlarmKey, AlarmState],
    blocks: Iterable[IncomingBlock],
    allowance: float,
) -> dict[AlarmKey, AlarmState]:
    """The alarms the events of `blocks` touch, after merging them into what is stored.

    An event whose t is more than `allowance` past its block's arrival is stamped ahead.
    """
    merged: dict[AlarmKey, AlarmState] = {}
    for incoming in blocks:
        header = incoming.block.header
        bound = incoming.received_at + allowance
        for event in incoming.entries.alarms:
            key = alarm_key(header.gateway, event)
            before = merged.get(key, held.get(key))
            source = (header.epoch, header.seq)
            merged[key] = merge_alarm(before, header.gateway, source, event, ahead=event.t > bound)
    return merged
