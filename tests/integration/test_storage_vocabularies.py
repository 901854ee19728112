"""The value lists the storage's CHECK constraints hold are the enums the collector writes.

`audit.kind` and `feed.kind` are written from `AuditKind` and `FeedKind`; their CHECKs restate
the values in SQL (SQLite's schema, its upgrade to 10, PostgreSQL's migrations). A member added
to the enum alone passes every type check and then fails its first insert, at run time; this
fails first, on each backend's schema as a fresh database gets it.
(`test_audit_schema` holds a SQLite file upgraded from schema 9 to the same.)
"""

from __future__ import annotations

from collector.audit.chain import AuditKind
from collector.feed.core import FeedKind
from collector.storage import open_storage
from tests.support.postgres import check_values


async def test_the_kind_checks_allow_exactly_the_kinds_the_collector_writes(
    storage_url: str,
) -> None:
    async with open_storage(storage_url):
        pass
    assert await check_values(storage_url, "audit", "kind") == {k.value for k in AuditKind}
    # Readings are read from their own table; the journal holds the other kinds.
    journal = {k.value for k in FeedKind} - {FeedKind.READING.value}
    assert await check_values(storage_url, "feed", "kind") == journal
