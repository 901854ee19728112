"""SQL pieces the registry, ingest and query modules share."""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from itertools import islice
from sqlite3 import Row
from typing import Final, TypeVar

from collector.model import AlarmState

# Keys per lookup statement: far below SQLite's 32766 host parameters.
CHUNK: Final = 300

# The columns alarm_state decodes, in its order.
ALARM_COLUMNS: Final = (
    "a.gateway, a.alarm_id, a.point, a.quota, a.level, a.raised_at, a.cleared_at, a.value,"
    " a.threshold, a.unit, a.trigger_t, a.related, a.detail, a.raise_epoch, a.raise_seq,"
    " a.raise_idx, a.clear_epoch, a.clear_seq, a.clear_idx"
)

T = TypeVar("T")


def chunks(items: Sequence[T], size: int = CHUNK) -> Iterable[Sequence[T]]:
    """`items` in slices of at most `size`, one per lookup statement."""
    iterator = iter(items)
    while chunk := tuple(islice(iterator, size)):
        yield chunk


def values(width: int, rows: int) -> str:
    """The placeholders of a `VALUES` list: `rows` tuples of `width` parameters."""
    one = "(" + ", ".join("?" * width) + ")"
    return ", ".join([one] * rows)


def alarm_state(row: Row) -> AlarmState:
    """An alarm from a row of ALARM_COLUMNS."""
    raised_in = None if row[13] is None else (str(row[13]), int(row[14]), int(row[15]))
    cleared_in = None if row[16] is None else (str(row[16]), int(row[17]), int(row[18]))
    return AlarmState(
        gateway=row[0],
        alarm_id=row[1],
        point=row[2],
        quota=row[3],
        level=row[4],
        raised_at=row[5],
        cleared_at=row[6],
        value=row[7],
        threshold=row[8],
        unit=row[9],
        trigger_t=row[10],
        related=row[11],
        detail=row[12],
        raised_in=raised_in,
        cleared_in=cleared_in,
    )
