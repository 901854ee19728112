"""Pure parts of the live feed: positions, journal entries of a batch, merging in commit order.

Readings are the feed's bulk and are read straight from the readings table by id. Alarm,
gap and status events are few: the ingest transaction writes each into a journal (`feed`
table) together with `readings_through`, the highest reading id at that commit. A stream's
position is the pair (last reading id sent, last journal id sent), shown as `r<id>.f<id>`:
resuming after it sends exactly the readings and journal rows with higher ids that match the
stream's filters, nothing twice and nothing lost, in this process or after a restart, since
both ids come from the database.

Readings and journal rows are merged in commit order: a journal row follows the readings
stored in the same commit (ids up to its `readings_through`) and precedes later ones.

An alarm event is the alarm's state as the collector wrote it, with `active` as that collector
judged it then (by its own ahead allowance), kept in the row's own `active` column, not in its
payload: a collector before 6f577c0 builds AlarmState from every key of the payload (SQLite
schema 16, PostgreSQL migration 12 make it refuse the database instead). Every collector
serving the journal sends the same event. `collector.feed.due` says when an alarm raised ahead
of the clock gets one more, active.
"""

from __future__ import annotations

import enum
import json
import re
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import asdict, dataclass
from typing import Final

from collector.model import IncomingBlock, StatusUpdate, StreamState
from collector.readmodel import MISSING, AlarmState, GapRow, GapState, ReadingRow


class FeedKind(enum.StrEnum):
    """What a feed event is about; the SSE `event:` field."""

    READING = "reading"
    ALARM = "alarm"
    GAP = "gap"
    STATUS = "status"


ALL_KINDS: Final = frozenset(FeedKind)

KIND_NAMES: Final = ", ".join(FeedKind)
"""The kinds `?types=` takes, as its description and its errors list them."""


class PositionError(ValueError):
    """A Last-Event-ID that this feed did not make."""


@dataclass(frozen=True, slots=True, order=True)
class FeedPosition:
    """How far a stream has read: the last reading id and the last journal id it covered."""

    readings: int = 0
    journal: int = 0

    @property
    def token(self) -> str:
        """The SSE `id:` of this position."""
        return f"r{self.readings}.f{self.journal}"

    def behind(self, head: FeedPosition) -> bool:
        """Whether anything up to `head` is not covered yet."""
        return self.readings < head.readings or self.journal < head.journal

    def ahead_of(self, head: FeedPosition) -> bool:
        """Whether this position names ids the database does not have (yet)."""
        return self.readings > head.readings or self.journal > head.journal


_TOKEN: Final = re.compile(r"r([0-9]{1,18})\.f([0-9]{1,18})")


def parse_position(token: str) -> FeedPosition:
    """The position in a Last-Event-ID; PositionError unless this feed made it."""
    match = _TOKEN.fullmatch(token.strip())
    if match is None:
        raise PositionError(f"Last-Event-ID {token[:40]!r} is not a position of this feed")
    return FeedPosition(int(match[1]), int(match[2]))


def parse_kinds(text: str | None) -> frozenset[FeedKind]:
    """The kinds `?types=` names (comma-separated; None: all); ValueError naming an unknown."""
    if text is None:
        return ALL_KINDS
    names = [name.strip() for name in text.split(",") if name.strip()]
    if not names:
        raise ValueError(f"types: name at least one of {KIND_NAMES}")
    unknown = sorted(set(names) - {kind.value for kind in FeedKind})
    if unknown:
        raise ValueError(f"types: {', '.join(unknown)} unknown; choose from {KIND_NAMES}")
    return frozenset(FeedKind(name) for name in names)


@dataclass(frozen=True, slots=True)
class FeedFilter:
    """What a stream sends: kinds, and optionally one gateway and one point.

    With `point`, only events naming that point pass (readings, alarms, gap records of it);
    gateway-wide events (status changes, open holes) do not.
    """

    gateway: str | None = None
    point: str | None = None
    kinds: frozenset[FeedKind] = ALL_KINDS


@dataclass(frozen=True, slots=True)
class StatusChange:
    """A gateway's status flipped (or was seen for the first time) at `at`."""

    gateway: str
    online: bool
    at: float


JournalEvent = AlarmState | GapRow | StatusChange


@dataclass(frozen=True, slots=True)
class JournalEntry:
    """One journal row to write in the ingest transaction."""

    kind: FeedKind
    gateway: str
    point: str | None
    payload: str
    at: float
    active: bool | None = None
    """An alarm row's `active` as its writer judged it (None: not an alarm)."""


@dataclass(frozen=True, slots=True)
class JournalRow:
    """One journal row as read back, with its gateway's enterprise and district."""

    id: int
    readings_through: int
    kind: FeedKind
    event: JournalEvent
    enterprise: str
    district: str
    at: float
    """The collector's clock when the row was written."""
    active: bool | None = None
    """An alarm row's `active` as its writer judged it (None: not an alarm, or a row written
    before it was kept; `event_active` judges it then)."""


@dataclass(frozen=True, slots=True)
class FeedPage:
    """What a stream reads in one go: readings (rowid = id) and journal rows, ascending.

    Both are limited to ids up to the head the stream read before; `*_more` says a side was
    cut at its limit.
    """

    readings: tuple[ReadingRow, ...] = ()
    readings_more: bool = False
    journal: tuple[JournalRow, ...] = ()
    journal_more: bool = False


@dataclass(frozen=True, slots=True)
class FeedEvent:
    """One event to send, with the position right after it (its SSE id)."""

    kind: FeedKind
    item: ReadingRow | JournalRow
    position: FeedPosition


# --- the journal of one ingest batch ----------------------------------------------------------


def _payload(body: Mapping[str, object]) -> str:
    return json.dumps(body, separators=(",", ":"), ensure_ascii=False, allow_nan=False)


def alarm_entry(state: AlarmState, at: float, allowance: float) -> JournalEntry:
    """The journal row of an alarm's state written at the clock `at`, `active` judged there.

    Judged with the writer's `allowance` and kept: a collector of another allowance serving
    the row, or sweeping for alarms come due, takes the writer's word.
    """
    active = state.active_at(at, allowance)
    return JournalEntry(
        FeedKind.ALARM, state.gateway, state.point, _payload(asdict(state)), at, active
    )


def written_active(column: object, payload: str) -> bool | None:
    """The `active` an alarm row keeps: its column's; None where neither says.

    A row written from 6f577c0 until the column was added keeps it in its payload (stored
    before the upgrade, the upgrade moved it; a collector of that version still running during
    a rolling upgrade goes on writing it there).
    """
    value = json.loads(payload).get("active") if column is None else column
    return None if value is None else bool(value)


def event_active(state: AlarmState, at: float, written: bool | None, allowance: float) -> bool:
    """An alarm event's `active`: as its writer judged it.

    A row that does not say (an older collector's) is judged at its `at` with `allowance`.
    """
    return state.active_at(at, allowance) if written is None else written


def _gap_payload(row: GapRow) -> str:
    body = asdict(row)
    body["state"] = row.state.value
    return _payload(body)


def gap_record_entries(blocks: Iterable[IncomingBlock]) -> list[JournalEntry]:
    """A closed gap per gap record of the blocks stored now (as GET /v1/gaps lists it)."""
    entries: list[JournalEntry] = []
    for incoming in blocks:
        gateway = incoming.block.header.gateway
        for gap in incoming.entries.gaps:
            row = GapRow(
                gateway=gateway,
                epoch=gap.epoch,
                from_seq=gap.from_seq,
                to_seq=gap.to_seq,
                t_from=gap.t_from,
                t_to=gap.t_to,
                lost=gap.lost,
                reason=gap.reason.value,
                state=GapState.CLOSED,
            )
            entries.append(
                JournalEntry(
                    FeedKind.GAP, gateway, gap.point, _gap_payload(row), incoming.received_at
                )
            )
    return entries


def hole_entries(
    before: Mapping[tuple[str, str], StreamState],
    after: Mapping[tuple[str, str], StreamState],
    at: float,
) -> list[JournalEntry]:
    """The holes of each stream that closed (filled or declared) and opened in one batch.

    A hole that shrank is a closed hole and the open holes left of it, so that a consumer
    keeping the set of open holes by (gateway, epoch, from_seq, to_seq) stays right.
    """
    entries: list[JournalEntry] = []
    for stream, state in sorted(after.items()):
        held = before.get(stream)
        old = set(held.missing) if held is not None else set()
        new = set(state.missing)
        for holes, hole_state in ((old - new, GapState.CLOSED), (new - old, GapState.OPEN)):
            for low, high in sorted(holes):
                row = GapRow(stream[0], stream[1], low, high, None, None, None, MISSING, hole_state)
                entries.append(JournalEntry(FeedKind.GAP, stream[0], None, _gap_payload(row), at))
    return entries


def status_entries(
    held: Mapping[str, tuple[bool, float]], statuses: Sequence[StatusUpdate]
) -> list[JournalEntry]:
    """A journal row per status that changes a gateway's stored (online, last_seen).

    `held` is the stored state before the batch. A status older than the stored one is not
    applied (the storage keeps the newest), so it changes nothing here either.
    """
    state = dict(held)
    entries: list[JournalEntry] = []
    for status in statuses:
        before = state.get(status.gateway)
        if before is not None and status.at < before[1]:
            continue
        state[status.gateway] = (status.online, status.at)
        if before is None or before[0] != status.online:
            body = {"online": status.online, "at": status.at}
            entries.append(
                JournalEntry(FeedKind.STATUS, status.gateway, None, _payload(body), status.at)
            )
    return entries


# --- reading the journal back -----------------------------------------------------------------


def _span(value: object) -> tuple[str, int, int] | None:
    if not isinstance(value, list):
        return None
    epoch, seq, idx = value
    return (str(epoch), int(seq), int(idx))


def journal_event(kind: FeedKind, gateway: str, payload: str) -> JournalEvent:
    """The event a journal row's payload holds (written by the entries above)."""
    body = json.loads(payload)
    if kind is FeedKind.ALARM:
        body.pop("active", None)  # the writer's judgement: `written_active`
        body["raised_in"] = _span(body.get("raised_in"))
        body["cleared_in"] = _span(body.get("cleared_in"))
        return AlarmState(**body)
    if kind is FeedKind.GAP:
        body["state"] = GapState(body["state"])
        return GapRow(**body)
    return StatusChange(gateway, bool(body["online"]), float(body["at"]))


# --- merging a page in commit order -----------------------------------------------------------


def interleave(
    page: FeedPage, start: FeedPosition, head: FeedPosition
) -> tuple[tuple[FeedEvent, ...], FeedPosition]:
    """The events of `page` in commit order, each with its position, and the position after.

    A side that was not cut at its limit covers every id up to `head`, matching or not, so
    the position after it moves to `head` (the next query starts there). A side that was cut
    stops the merge where it ends: what follows it may precede the other side's rows.
    """
    events: list[FeedEvent] = []
    readings, journal = list(page.readings), list(page.journal)
    i = j = 0
    at_reading, at_journal = start.readings, start.journal
    while True:
        reading = readings[i] if i < len(readings) else None
        row = journal[j] if j < len(journal) else None
        if (reading is None and page.readings_more) or (row is None and page.journal_more):
            break
        if reading is None and row is None:
            break
        if row is None or (reading is not None and reading.rowid <= row.readings_through):
            assert reading is not None  # noqa: S101 - one of the two is left
            at_reading = reading.rowid
            events.append(
                FeedEvent(FeedKind.READING, reading, FeedPosition(at_reading, at_journal))
            )
            i += 1
        else:
            at_journal = row.id
            events.append(FeedEvent(row.kind, row, FeedPosition(at_reading, at_journal)))
            j += 1
    if i == len(readings) and not page.readings_more:
        at_reading = max(at_reading, head.readings)
    if j == len(journal) and not page.journal_more:
        at_journal = max(at_journal, head.journal)
    return tuple(events), FeedPosition(at_reading, at_journal)
