"""What bench/load.py reads from outside its own process: CPU of the broker, the collectors and
PostgreSQL's backends (from /proc), and the bytes a stored reading takes in each database."""

from __future__ import annotations

import sqlite3
from dataclasses import dataclass
from pathlib import Path

import asyncpg

from bench.procfs import cpu_seconds
from demo.postgres import ADMIN_URL


def cpu_seconds_or_zero(pid: int) -> float:
    """User + system CPU seconds of process `pid` so far; 0 when it has exited."""
    try:
        return cpu_seconds(pid)
    except FileNotFoundError:
        return 0.0


@dataclass(frozen=True)
class Backends:
    """PostgreSQL server processes serving one database: their CPU seconds by pid.

    Only the backends of the bench's database are counted: the WAL writer, checkpointer and
    background writer serve every database on the server (other runs share it), so their
    share cannot be told apart; the figure is a lower bound of PostgreSQL's CPU per reading.
    """

    database: str | None

    async def cpu_by_pid(self) -> dict[int, float]:
        """CPU seconds of every backend connected to the database now."""
        if self.database is None:
            return {}
        connection = await asyncpg.connect(ADMIN_URL)
        try:
            rows = await connection.fetch(
                "SELECT pid FROM pg_stat_activity WHERE datname = $1", self.database
            )
        finally:
            await connection.close()
        return {int(r["pid"]): cpu_seconds_or_zero(int(r["pid"])) for r in rows}


@dataclass(frozen=True)
class StoredBytes:
    """Bytes on disk: the readings table with its indexes, and the whole database."""

    readings_table: int
    database: int


async def postgres_bytes(url: str) -> StoredBytes:
    """Sizes of `readings` (every partition, with indexes) and of the database."""
    connection = await asyncpg.connect(url)
    try:
        table = await connection.fetchval(
            "SELECT coalesce(sum(pg_total_relation_size(i.inhrelid)), 0) FROM pg_inherits i"
            " WHERE i.inhparent = 'readings'::regclass"
        )
        database = await connection.fetchval("SELECT pg_database_size(current_database())")
    finally:
        await connection.close()
    return StoredBytes(int(table), int(database))


def sqlite_bytes(path: Path) -> StoredBytes:
    """Sizes of `readings` (table and indexes, from dbstat) and of the file with its WAL."""
    with sqlite3.connect(path) as db:
        db.execute("PRAGMA wal_checkpoint(TRUNCATE)")
        names = [
            r[0] for r in db.execute("SELECT name FROM sqlite_master WHERE tbl_name = 'readings'")
        ]
        marks = ",".join("?" * len(names))
        table = db.execute(
            f"SELECT coalesce(sum(pgsize), 0) FROM dbstat WHERE name IN ({marks})",
            names,
        ).fetchone()[0]
    wal = path.with_name(path.name + "-wal")
    return StoredBytes(
        int(table), path.stat().st_size + (wal.stat().st_size if wal.exists() else 0)
    )


async def count_stored(url: str, work: Path) -> tuple[int, int]:
    """(readings, blocks) the database holds."""
    if url.startswith("sqlite"):
        with sqlite3.connect(work / url.removeprefix("sqlite:///")) as db:
            readings = db.execute("SELECT count(*) FROM readings").fetchone()[0]
            blocks = db.execute("SELECT count(*) FROM blocks").fetchone()[0]
        return int(readings), int(blocks)
    connection = await asyncpg.connect(url)
    try:
        readings = await connection.fetchval("SELECT count(*) FROM readings")
        blocks = await connection.fetchval("SELECT count(*) FROM blocks")
    finally:
        await connection.close()
    return int(readings), int(blocks)
