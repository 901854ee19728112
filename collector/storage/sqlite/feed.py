"""The live feed on SQLite, read side: its statements for `collector.storage.feed`.

Ids are commit-ordered here: one writer at a time, and a new rowid is the highest so far plus
one, so every id up to the head read in one statement is committed and visible. The journal is
written by `journal` inside the ingest transaction.
"""

from __future__ import annotations

from typing import Final

from collector.storage.feed import FeedStatements
from collector.storage.records import READING_COLUMNS

# CROSS JOIN keeps readings (and feed) the outer loop, and `+` keeps the gateway and point
# terms off the series index: a stream walks ids forward, never a gateway's whole history.
STATEMENTS: Final = FeedStatements(
    readings=(
        f"SELECT {READING_COLUMNS}, r.id FROM readings r CROSS JOIN gateways g"
        " ON g.gateway = r.gateway WHERE r.id > ? AND r.id <= ?"
    ),
    journal=(
        "SELECT f.id, f.readings_through, f.kind, f.gateway, f.payload, g.enterprise, g.district,"
        " f.at, f.active"
        " FROM feed f CROSS JOIN gateways g ON g.gateway = f.gateway"
        " WHERE f.id > ? AND f.id <= ?"
    ),
    # AUTOINCREMENT keeps each table's highest id ever handed out in sqlite_sequence.
    issued=(
        "SELECT (SELECT coalesce(max(seq), 0) FROM sqlite_sequence WHERE name = 'readings'),"
        " (SELECT coalesce(max(seq), 0) FROM sqlite_sequence WHERE name = 'feed')"
    ),
    alarm_id="json_extract(f.payload, '$.alarm_id')",
    unindexed="+",
)
