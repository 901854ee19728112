"""Throwaway PostgreSQL databases on the machine's server (127.0.0.1:5432, user postgres).

A test run migrates one template database once; each test then gets a fresh copy of it with
`CREATE DATABASE ... TEMPLATE` (one statement, no migration per test) and drops it after.
Names carry the test process's pid, so a later run can drop what a killed run left behind.

The helpers are synchronous: each runs its asyncpg calls in a worker thread with a loop of
its own, so that sync fixtures, async fixtures and async tests (whose loop is running) can
all call them. `hung_server` is the other end: a "server" that takes a connection and says
nothing, as a hung box does.
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import os
import re
import secrets
import sqlite3
from collections.abc import AsyncIterator, Callable, Coroutine
from concurrent.futures import ThreadPoolExecutor
from contextlib import closing
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Final, TypeVar

import asyncpg

from collector.storage.postgres import upgrade
from collector.storage.postgres.schema import MIGRATIONS

SERVER: Final = os.environ.get("GZ_TEST_POSTGRES", "postgresql://postgres@127.0.0.1:5432")
"""The server tests use; its `postgres` database is where databases are created from."""
_PREFIX: Final = "gz_test_"
_OWN: Final = re.compile(rf"{_PREFIX}(?:tpl|db)_(\d+)_\w+")

T = TypeVar("T")


def url_of(database: str) -> str:
    """The URL of one database on the test server."""
    return f"{SERVER}/{database}"


def run_sync(work: Callable[[], Coroutine[Any, Any, T]]) -> T:
    """Run a coroutine to completion in a thread of its own, whatever loop the caller runs."""
    with ThreadPoolExecutor(max_workers=1) as pool:
        return pool.submit(asyncio.run, work()).result()


async def admin(statements: list[str]) -> None:
    """Run `statements` on the server's `postgres` database (CREATE, DROP DATABASE)."""
    db = await asyncpg.connect(url_of("postgres"), timeout=10)
    try:
        for statement in statements:
            await db.execute(statement)
    finally:
        await db.close()


def server_problem() -> str | None:
    """Why the test server cannot be used (None when it answers)."""

    async def probe() -> None:
        await admin(["SELECT 1"])

    try:
        run_sync(probe)
    except (OSError, asyncpg.PostgresError, asyncpg.InterfaceError) as exc:
        return f"{type(exc).__name__}: {exc}"
    return None


def _alive(pid: int) -> bool:
    return Path(f"/proc/{pid}").exists()


class PostgresDatabases:
    """The databases one test run creates: a migrated template and copies of it."""

    def __init__(self) -> None:
        self._tag = f"{os.getpid()}_{secrets.token_hex(3)}"
        self._counter = itertools.count(1)
        self.template = f"{_PREFIX}tpl_{self._tag}"
        self._created: list[str] = []

    def prepare(self) -> None:
        """Drop what dead runs left behind, then create and migrate the template."""

        async def work() -> None:
            db = await asyncpg.connect(url_of("postgres"), timeout=10)
            try:
                names = await db.fetch(
                    "SELECT datname FROM pg_database WHERE datname LIKE $1", f"{_PREFIX}%"
                )
                for row in names:
                    found = _OWN.fullmatch(row[0])
                    if found is not None and not _alive(int(found[1])):
                        await db.execute(f'DROP DATABASE IF EXISTS "{row[0]}" WITH (FORCE)')
                await db.execute(f'CREATE DATABASE "{self.template}"')
            finally:
                await db.close()
            await upgrade(url_of(self.template))

        run_sync(work)

    def create(self, *, migrated: bool = True) -> str:
        """A fresh database copied from the template (empty unless `migrated`); its URL."""
        name = f"{_PREFIX}db_{self._tag}_{next(self._counter)}"
        source = f' TEMPLATE "{self.template}"' if migrated else ""

        async def work() -> None:
            await admin([f'CREATE DATABASE "{name}"{source}'])

        run_sync(work)
        self._created.append(name)
        return url_of(name)

    def drop(self, url: str) -> None:
        """Drop a database `create` made (connections still open to it are ended)."""
        name = url.rsplit("/", 1)[1]

        async def work() -> None:
            await admin([f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'])

        run_sync(work)
        if name in self._created:
            self._created.remove(name)

    def drop_all(self) -> None:
        """Drop every database of this run, the template last."""
        names = [*self._created, self.template]

        async def work() -> None:
            await admin([f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)' for name in names])

        run_sync(work)
        self._created.clear()


class StorageUrls:
    """Storage URLs of one backend for one test: `new` makes another empty database."""

    def __init__(self, backend: str, folder: Path, databases: PostgresDatabases | None) -> None:
        self.backend = backend
        self._folder = folder
        self._databases = databases
        self._made: list[str] = []

    def new(self, name: str = "collector") -> str:
        """The URL of a new, empty (migrated) database; `name` names a SQLite file."""
        if self._databases is None:
            return f"sqlite:///{self._folder / f'{name}.db'}"
        url = self._databases.create()
        self._made.append(url)
        return url

    def drop_all(self) -> None:
        """Drop the PostgreSQL databases `new` made (SQLite files go with tmp_path)."""
        if self._databases is not None:
            for url in self._made:
                self._databases.drop(url)
        self._made.clear()


@contextlib.asynccontextmanager
async def postgres_connection(url: str) -> AsyncIterator[asyncpg.Connection[asyncpg.Record]]:
    """One connection to the PostgreSQL database at `url`, closed on the way out."""
    server = await asyncpg.connect(url)
    try:
        yield server
    finally:
        await server.close()


async def sql_rows(url: str, query: str, *args: object) -> list[tuple[Any, ...]]:
    """The rows of one read-only query (`?` placeholders), on either backend.

    To look at tables directly.
    """
    if url.startswith("sqlite:///"):
        with closing(sqlite3.connect(url.removeprefix("sqlite:///"))) as file:
            return [tuple(row) for row in file.execute(query, args).fetchall()]
    async with postgres_connection(url) as server:
        return [tuple(row) for row in await server.fetch(_numbered(query), *args)]


async def check_values(url: str, table: str, column: str) -> set[str]:
    """The values a `CHECK (column IN (...))` of `table` allows, as the database holds it.

    The effective constraint, on either backend: SQLite's table definition (as created, or as
    an upgrade's ALTER left it), PostgreSQL's constraint as its migrations left it.
    """
    if url.startswith("sqlite:///"):
        definitions = await sql_rows(
            url, "SELECT sql FROM sqlite_master WHERE type = 'table' AND name = ?", table
        )
    else:
        definitions = await sql_rows(
            url,
            "SELECT pg_get_constraintdef(oid) FROM pg_constraint"
            " WHERE conrelid::regclass::text = ? AND contype = 'c'",
            table,
        )
    # SQLite: `column TEXT ... CHECK (column IN ('a', 'b'))`; PostgreSQL: `CHECK ((column =
    # ANY (ARRAY['a'::text, 'b'::text])))`.
    found = [
        set(re.findall(r"'([^']*)'", match))
        for (definition,) in definitions
        for match in re.findall(
            rf"CHECK \(\(?{column}(?: IN \(| = ANY \(ARRAY\[)([^)\]]*)", definition
        )
    ]
    assert len(found) == 1, f"{table}.{column}: {len(found)} CHECKs of a value list"
    return found[0]


def _numbered(query: str) -> str:
    """`?` placeholders as asyncpg's `$1, $2, ...` (the queries given here quote no `?`)."""
    count = itertools.count(1)
    return re.sub(r"\?", lambda _: f"${next(count)}", query)


def _sqlite_execute(path: str, query: str, args: tuple[object, ...]) -> int:
    with closing(sqlite3.connect(path)) as file, file:
        return max(file.execute(query, args).rowcount, 0)  # -1: a statement without rows


async def _postgres_execute(url: str, query: str, args: tuple[object, ...]) -> int:
    async with postgres_connection(url) as server:
        status = await server.execute(_numbered(query), *args)
    # A command tag such as "UPDATE 1" counts the rows in its last word; "DROP TABLE" none.
    last = status.rsplit(" ", 1)[-1]
    return int(last) if last.isdigit() else 0


def sqlite_file(path: Path, script: str) -> str:
    """A SQLite file made by `script` (an older collector's schema and rows); its storage URL."""
    with closing(sqlite3.connect(path)) as file:
        file.executescript(script)
    return f"sqlite:///{path}"


async def sql_execute(url: str, query: str, *args: object) -> int:
    """Run one writing statement (`?` placeholders) directly on either backend; rows changed.

    (0 for a statement that changes no rows, such as DDL.)

    For tests that tamper with stored rows the way someone with database access would.
    """
    if url.startswith("sqlite:///"):
        return _sqlite_execute(url.removeprefix("sqlite:///"), query, args)
    return await _postgres_execute(url, query, args)


async def apply_first_migrations(db: asyncpg.Connection, count: int) -> None:
    """Leave an empty database as a collector of schema version `count` did.

    The first `count` migrations run and are recorded, for upgrade tests that then write
    rows the way that version did.
    """
    await db.execute(
        "CREATE TABLE schema_migrations (version integer PRIMARY KEY,"
        " applied_at timestamptz NOT NULL DEFAULT now())"
    )
    for migration in MIGRATIONS[:count]:
        await db.execute(migration.sql)
        await db.execute("INSERT INTO schema_migrations VALUES ($1)", migration.version)


@dataclass(frozen=True)
class HungServer:
    """A PostgreSQL URL whose server takes the connection and never answers."""

    url: str
    took_connection: asyncio.Event
    """Set once a client has connected (and is now waiting for an answer)."""


@contextlib.asynccontextmanager
async def hung_server() -> AsyncIterator[HungServer]:
    """A loopback server that accepts and says nothing, until the block ends.

    Its connections are held open (a closed one would be an answer) and closed on leaving.
    """
    took_connection = asyncio.Event()
    held: list[asyncio.StreamWriter] = []

    async def say_nothing(_reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        held.append(writer)
        took_connection.set()

    server = await asyncio.start_server(say_nothing, "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    try:
        yield HungServer(f"postgresql://u@127.0.0.1:{port}/db", took_connection)
    finally:
        for writer in held:
            writer.close()
        server.close()
