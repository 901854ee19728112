"""Pure: a batch's readings stamped ahead of the collector's clock, and what they stay out of.

A gateway whose own clock is wrong (its RTC reset to 2099, a bad NTP source a month ahead)
seals readings with that time; the agent's checks of device timestamps against its clock
cannot see it. Such a reading is signed data of the gateway's chain: it is stored as sent,
with the flag `ahead_of_collector` (GET /v1/readings shows it), never dropped. But it is no
current value, and it would otherwise stay one:

- `latest` keeps only a newer-or-equal t, so one reading of 2099 was a point's latest value
  for good, hiding every current value a downstream platform monitors;
- its minute's rollup would be merged, once that minute comes, with the readings measured
  then: counts and means of two clocks that nobody could take apart again;
- its t would be its series' newest (`keys_to_look_up`), sending every later reading of the
  point down the slow path, looked up one by one.

So a reading more than `allowance` past the arrival of its block (the collector's clock) is
kept out of `latest` and the rollups, and each block with one is audited
`ahead_of_collector` (one row per block: how many, the first few (point, t); aggregated per
gateway and minute like every audit row), counted and logged by the ingest shell. An alarm
event stamped so is merged into its alarm marked (collector.storage.alarms: listed flagged,
not active by such a raise until the clock reaches it) and counted in its block's audit row too.

A meta (`up/meta`) whose `issued_at` is that far ahead is stored as sent too (its `metas` row)
and audited `ahead_of_collector`, once per meta (not per resend). It is applied at once (a
gateway booting with its clock fast sends its meta once, on connect, and a changed site map
must not wait for its next reconnect), but the newest description of a point wins, and its
`issued_at` would win for good, every correct meta after it losing (the names, thresholds and
poll of GET /v1/points and /v1/quality). So descriptions are ordered by min(issued_at, first
arrival + allowance): a meta so stamped ranks as if issued at its arrival + the allowance, and
any meta issued after that replaces it (UPSERT_POINT_META in collector.storage.ingest_rows).
"""

from __future__ import annotations

from collections.abc import Collection, Sequence
from dataclasses import dataclass, replace
from typing import Final

from collector.model import (
    MAX_DETAIL,
    AlarmEntry,
    AuditEntry,
    IncomingBlock,
    IncomingMeta,
    ReadingEntry,
    Reason,
)
from collector.storage.readings import AUDIT_SAMPLE, named
from specs.block import block_hash
from specs.records import iso_time

AHEAD_FLAG: Final = Reason.AHEAD_OF_COLLECTOR.value
"""The flag a reading stored ahead of the collector's clock carries."""

MetaKey = tuple[str, str]
"""A stored meta: (gateway, hash of its payload), the key of `metas`."""


@dataclass(frozen=True, slots=True)
class Ahead:
    """The batch's new readings split by the collector's clock.

    `stored`: every block with all its readings, those ahead flagged and no other (a flag a
    gateway sent itself is taken off a current reading): what `readings` gets;
    `current`: the blocks without the readings ahead (what `latest` and the rollups get);
    `counts`: per block of `stored`, how many of its readings are ahead; `audits`: one row per
    block with some readings or alarm events ahead.
    """

    stored: tuple[IncomingBlock, ...]
    current: tuple[IncomingBlock, ...]
    counts: tuple[int, ...]
    audits: tuple[AuditEntry, ...]


def flagged(flags: tuple[str, ...], *, ahead: bool) -> tuple[str, ...]:
    """`flags` with AHEAD_FLAG once if `ahead`, else without it.

    The flag is the collector's finding alone: a gateway may send any flag, and one it sent
    on a current reading would show in GET /v1/latest, which never holds a reading ahead, and
    make a client that leaves flagged readings out lose a current value. The block's signed
    bytes keep what was sent.
    """
    if ahead:
        return flags if AHEAD_FLAG in flags else (*flags, AHEAD_FLAG)
    return tuple(flag for flag in flags if flag != AHEAD_FLAG)


def split_ahead(blocks: Sequence[IncomingBlock], allowance: float) -> Ahead:
    """The readings of `blocks` more than `allowance` past their block's arrival, apart.

    Alarm events that far ahead are only audited here (collector.storage.alarms marks them).
    """
    stored: list[IncomingBlock] = []
    current: list[IncomingBlock] = []
    counts: list[int] = []
    audits: list[AuditEntry] = []
    for incoming in blocks:
        bound = incoming.received_at + allowance
        readings = incoming.entries.readings
        ahead = [r for r in readings if r.t > bound]
        counts.append(len(ahead))
        if ahead or any(a.t > bound for a in incoming.entries.alarms):
            audits.append(_audit(incoming, ahead, bound))
        if not ahead and not any(AHEAD_FLAG in r.flags for r in readings):
            stored.append(incoming)
            current.append(incoming)
            continue
        marked = tuple(
            r._replace(flags=flagged(r.flags, ahead=r.t > bound))
            if (r.t > bound) != (AHEAD_FLAG in r.flags)
            else r
            for r in readings
        )
        stored.append(replace(incoming, entries=replace(incoming.entries, readings=marked)))
        kept = tuple(r for r in marked if r.t <= bound)
        current.append(replace(incoming, entries=replace(incoming.entries, readings=kept)))
    return Ahead(tuple(stored), tuple(current), tuple(counts), tuple(audits))


def _audit(incoming: IncomingBlock, ahead: Sequence[ReadingEntry], bound: float) -> AuditEntry:
    header = incoming.block.header
    entries = incoming.entries
    alarms = [a for a in entries.alarms if a.t > bound]
    newest = max([r.t for r in entries.readings] + [a.t for a in entries.alarms])
    stamped = [
        *([f"{len(ahead)} reading(s) ({named(ahead)})"] if ahead else []),
        *([f"{len(alarms)} alarm event(s) ({_alarm_names(alarms)})"] if alarms else []),
    ]
    detail = (
        f"gateway {header.gateway} epoch {header.epoch} seq {header.seq}: {' and '.join(stamped)}"
        f" stamped ahead of the collector's clock ({iso_time(incoming.received_at)}"
        f" at arrival), the newest by {newest - incoming.received_at:.0f} s: the gateway's clock"
        f" is wrong; stored as sent, flagged {AHEAD_FLAG}, not in latest nor the rollups, an"
        " alarm raised so not active until the clock reaches it"
    )
    return incoming.audit(Reason.AHEAD_OF_COLLECTOR, detail)


def _alarm_names(alarms: Sequence[AlarmEntry]) -> str:
    """The first few (alarm_id, event, t) of `alarms`, as the audit row names them."""
    first = ", ".join(
        f"{a.alarm_id} {a.event.value}@{iso_time(a.t)}" for a in alarms[:AUDIT_SAMPLE]
    )
    return first + (", ..." if len(alarms) > AUDIT_SAMPLE else "")


def meta_is_ahead(meta: IncomingMeta, allowance: float) -> bool:
    """Whether `meta` was issued more than `allowance` past its arrival."""
    return meta.issued_at > meta.received_at + allowance


def metas_ahead(
    metas: Sequence[IncomingMeta], allowance: float, stored: Collection[MetaKey]
) -> tuple[AuditEntry, ...]:
    """One audit row per meta whose `issued_at` is more than `allowance` past its arrival.

    Once per meta: not for one `stored` already (a resend, the agent's on each connect), nor
    twice in one batch.
    """
    seen = set(stored)
    audits: list[AuditEntry] = []
    for meta in metas:
        key = (meta.meta.gateway, block_hash(meta.payload))
        if not meta_is_ahead(meta, allowance) or key in seen:
            continue
        seen.add(key)
        audits.append(
            AuditEntry(
                at=meta.received_at,
                gateway=meta.meta.gateway,
                topic=meta.topic,
                reason=Reason.AHEAD_OF_COLLECTOR,
                detail=(
                    f"meta of gateway {meta.meta.gateway} ({len(meta.points)} point(s))"
                    f" issued_at {iso_time(meta.issued_at)},"
                    f" {meta.issued_at - meta.received_at:.0f} s past the collector's clock"
                    f" ({iso_time(meta.received_at)} at arrival): the gateway's clock is wrong;"
                    " stored as sent and applied, ranked as if issued at its arrival + the"
                    " allowance: a meta issued after that replaces it"
                )[:MAX_DETAIL],
                payload_hash=key[1],
            )
        )
    return tuple(audits)
