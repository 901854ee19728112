"""Per-gateway advisory locks: how many collectors share one database without racing.

Every transaction that reads a gateway's ingest state and writes from what it read (ingest,
registration) first takes that gateway's transaction advisory lock. Two collectors handed the
same gateway's blocks (a resend after a lost ACK, a shared subscription rebalanced) then run
one after the other for that gateway, and each sees what the other committed: lookups stay
true until COMMIT, and readings can be written with COPY, which has no ON CONFLICT. The locks
are taken in ascending key order, so two batches of overlapping gateways never deadlock.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterable
from typing import Final

from collector.storage.postgres.connection import Db

# The database-wide advisory locks, each with a key of its own ("gzcoll" and a number): one
# key shared by two of them once deadlocked ingest against partition creation.
MIGRATION_LOCK: Final = 0x677A_636F_6C6C_0001
"""Held (session lock) while migrations run."""
PARTITION_LOCK: Final = 0x677A_636F_6C6C_0002
"""Taken by whoever creates or drops partitions (before ACCESS EXCLUSIVE on the parent)."""
FEED_LOCK: Final = 0x677A_636F_6C6C_0003
"""Orders feed ids by commit: taken by an ingest after its gateway locks, held to COMMIT."""
AUDIT_LOCK: Final = 0x677A_636F_6C6C_0004
"""Serializes appends to the audit hash chain (collector.audit): taken after the gateway
locks and before FEED_LOCK by an ingest, alone by admin actions and retention; held to COMMIT."""
FUTURE_INDEX_LOCK: Final = 0x677A_636F_6C6C_0005
"""Held (session lock, only tried) by the collector building readings_future's index."""
DATABASE_LOCKS: Final = (MIGRATION_LOCK, PARTITION_LOCK, FEED_LOCK, AUDIT_LOCK, FUTURE_INDEX_LOCK)


def gateway_lock_key(gateway: str) -> int:
    """The advisory lock key of a gateway: the first 8 bytes of a SHA-256, signed 64-bit.

    Computed here, not by the server, so that the sort order is known before asking. Two
    gateways sharing a key only wait for each other.
    """
    digest = hashlib.sha256(b"gz-collector-gateway\x00" + gateway.encode()).digest()
    return int.from_bytes(digest[:8], "big", signed=True)


def lock_order(gateways: Iterable[str]) -> list[int]:
    """The distinct lock keys of `gateways`, ascending: the one order every writer uses."""
    return sorted({gateway_lock_key(gateway) for gateway in gateways})


async def lock_gateways(db: Db, gateways: Iterable[str]) -> None:
    """Take the transaction advisory lock of each gateway, in order (inside a transaction)."""
    keys = lock_order(gateways)
    if keys:
        # unnest yields the array in order: the locks are taken one by one, ascending.
        await db.execute("SELECT pg_advisory_xact_lock(k) FROM unnest($1::bigint[]) AS k", keys)
