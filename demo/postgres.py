"""A fresh PostgreSQL database for the demo and the benchmarks (PostgreSQL on 127.0.0.1:5432).

`PGADMIN_URL` names the server and a role allowed to create databases (default: the local
server's `postgres` role, trust authentication on loopback, as the test machine has it).
"""

from __future__ import annotations

import asyncio
import os
import re

import asyncpg

ADMIN_URL = os.environ.get("PGADMIN_URL", "postgresql://postgres@127.0.0.1:5432/postgres")
_NAME = re.compile(r"[a-z_][a-z0-9_]{0,62}")


class PostgresUnavailableError(RuntimeError):
    """The PostgreSQL server cannot be reached or refuses the admin role."""


def _checked(name: str) -> str:
    if not _NAME.fullmatch(name):
        raise ValueError(f"database name {name!r} is not a plain identifier")
    return name


def database_url(name: str) -> str:
    """The URL of database `name` on the admin URL's server, with its credentials."""
    base, _, _ = ADMIN_URL.rpartition("/")
    return f"{base}/{_checked(name)}"


async def _admin(statement: str) -> None:
    try:
        connection = await asyncpg.connect(ADMIN_URL, timeout=10)
    except (OSError, asyncpg.PostgresError) as exc:
        raise PostgresUnavailableError(
            f"PostgreSQL is not reachable as {ADMIN_URL.split('@')[-1]}: {exc}."
            " Install and start it (apt-get install postgresql) and allow the role, or set"
            " PGADMIN_URL=postgresql://USER:PASSWORD@HOST:PORT/postgres"
        ) from exc
    try:
        await connection.execute(statement)
    finally:
        await connection.close()


def create_database(name: str) -> str:
    """Create database `name` afresh (dropping an old one); return its URL."""
    asyncio.run(_admin(f'DROP DATABASE IF EXISTS "{_checked(name)}" WITH (FORCE)'))
    asyncio.run(_admin(f'CREATE DATABASE "{name}"'))
    return database_url(name)


def drop_database(name: str) -> None:
    """Drop database `name` if it exists, even with sessions still open."""
    asyncio.run(_admin(f'DROP DATABASE IF EXISTS "{_checked(name)}" WITH (FORCE)'))
