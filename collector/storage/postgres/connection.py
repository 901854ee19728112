"""How the PostgreSQL backend talks to the server: connection types, URLs, one error boundary.

Every asyncpg and socket error is translated here, once, into a StorageError whose message
names the server by its URL with the password left out (URLs end up in logs and on screens).
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from typing import Final, TypeAlias
from urllib.parse import urlsplit, urlunsplit

import asyncpg
from asyncpg.pool import PoolConnectionProxy

from collector.storage.base import StorageError

Db: TypeAlias = "asyncpg.Connection[asyncpg.Record] | PoolConnectionProxy[asyncpg.Record]"
"""A connection: a pooled one while serving, a direct one for `upgrade`."""

SCHEMES: Final = frozenset({"postgresql", "postgres"})

# Why asyncpg can fail: the server said no (PostgresError), the client side broke or was
# misconfigured (InterfaceError: closed connection, bad DSN option), or the socket failed
# (OSError, which includes TimeoutError and DNS errors).
DRIVER_ERRORS: Final = (asyncpg.PostgresError, asyncpg.InterfaceError, OSError)


def redacted(url: str) -> str:
    """The URL with its password replaced by `***` (user, host, port and database stay)."""
    try:
        parts = urlsplit(url)
        password = parts.password
    except ValueError:  # a port that is not a number: say nothing about the rest
        return f"{url.partition('://')[0]}://***"
    if password is None:
        return url
    user = parts.username or ""
    host = parts.hostname or ""
    if ":" in host:  # an IPv6 literal keeps its brackets
        host = f"[{host}]"
    port = f":{parts.port}" if parts.port is not None else ""
    netloc = f"{user}:***@{host}{port}"
    return urlunsplit((parts.scheme, netloc, parts.path, parts.query, parts.fragment))


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
        raise StorageError(f"{action} on {redacted(url)} failed: {describe(exc)}") from exc


def describe(exc: BaseException) -> str:
    """A one-line account of a driver error (its SQLSTATE when the server sent one)."""
    text = str(exc).strip() or type(exc).__name__
    state = getattr(exc, "sqlstate", None)
    return f"{text} (SQLSTATE {state})" if isinstance(state, str) else text
