"""How the PostgreSQL backend talks to the server: connection types, URLs, one error boundary.

Every asyncpg and socket error is translated here, once, into a StorageError whose message
names the server by its URL with the password left out (URLs end up in logs and on screens).
"""

from __future__ import annotations

import asyncio
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from typing import Final, TypeAlias

import asyncpg
from asyncpg.pool import PoolConnectionProxy

from collector.storage.base import StorageError
from collector.storage.urls import redacted

Db: TypeAlias = "asyncpg.Connection[asyncpg.Record] | PoolConnectionProxy[asyncpg.Record]"
"""A connection: a pooled one while serving, a direct one for `upgrade`."""

SCHEMES: Final = frozenset({"postgresql", "postgres"})

# Why asyncpg can fail: the server said no (PostgresError), the client side broke or was
# misconfigured (InterfaceError: closed connection, bad DSN option), the protocol is in a state
# the statement cannot start from (InternalClientError: a connection the server ended while
# idle, whose FATAL message was read before the end of its stream, fails its next statement
# with 'another operation is in progress'), or the socket failed (OSError, which includes
# TimeoutError and DNS errors).
DRIVER_ERRORS: Final = (
    asyncpg.PostgresError,
    asyncpg.InterfaceError,
    asyncpg.InternalClientError,
    OSError,
)


def check_url(url: str) -> None:
    """Raise StorageError unless `url` is a postgresql:// (or postgres://) URL."""
    scheme, separator, rest = url.partition("://")
    if scheme not in SCHEMES or not separator or not rest:
        raise StorageError(f"storage url {redacted(url)!r} is not postgresql://[user@]host/db")


@contextmanager
def translated(action: str, url: str) -> Iterator[None]:
    """Turn a driver or socket error inside the block into a StorageError naming `action`."""
    try:
        yield
    except DRIVER_ERRORS as exc:
        if isinstance(exc.__context__, asyncio.CancelledError) and _being_cancelled():
            # A cancellation that closed the connection (`execute_many`) makes the
            # transaction's exit raise InterfaceError in its place: it stays a cancellation,
            # or a stopping collector's sealing and retention loops would retry it for ever.
            # A timeout's own cancellation (asyncpg's connect timeout) is no such thing: the
            # TimeoutError it became is the error to report.
            raise asyncio.CancelledError from exc
        raise StorageError(f"{action} failed ({redacted(url)}): {describe(exc)}") from exc


def _being_cancelled() -> bool:
    """Whether the running task has a cancellation requested (and not taken back)."""
    task = asyncio.current_task()
    return task is not None and task.cancelling() > 0


@contextmanager
def connecting(url: str) -> Iterator[None]:
    """`translated` for opening connections, where a malformed URL raises ValueError too."""
    with translated("connecting", url):
        try:
            yield
        # asyncpg's URL parser: a port that is not a number, ...; the socket: a port it takes
        # but no socket can (99999), OverflowError.
        except (ValueError, OverflowError) as exc:
            raise StorageError(f"storage url {redacted(url)} is malformed: {exc}") from exc


def describe(exc: BaseException) -> str:
    """A one-line account of a driver error (its SQLSTATE when the server sent one)."""
    text = str(exc).strip() or type(exc).__name__
    state = getattr(exc, "sqlstate", None)
    return f"{text} (SQLSTATE {state})" if isinstance(state, str) else text


async def execute_many(db: Db, statement: str, rows: Sequence[Sequence[object]]) -> None:
    """`db.executemany(statement, rows)`, which a cancellation ends (the connection with it).

    asyncpg 0.32's executemany swallows a cancellation that lands while it waits for the
    socket to drain (a `return` in the `finally` of its `bind_execute_many`), then waits for
    a reply the server never sends: the server still expects the rest of the rows. So it
    runs as a task of its own; a cancellation of the caller closes the connection (the
    server rolls the transaction back), which ends the task, and then goes on.
    """
    sending = asyncio.ensure_future(db.executemany(statement, rows))
    try:
        await asyncio.shield(sending)
    except asyncio.CancelledError:
        db.terminate()
        sending.cancel()
        await asyncio.wait({sending})
        if not sending.cancelled():
            sending.exception()  # retrieved: it is the closed connection's, not news
        raise
