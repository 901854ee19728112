"""The registry's and the API tokens' reads that are one query on every backend, once for both.

Like `collector.storage.queries`, each runs on a backend's `Fetch` (`?` placeholders); the
lookups among many ids stay the dialect's (SQLite's chunked `IN`, PostgreSQL's `ANY`), as do
the writes, which run inside the caller's transaction.
"""

from __future__ import annotations

from collector.model import Gateway, GatewayKey
from collector.storage.queries import Fetch, given, where_all
from collector.storage.records import (
    GATEWAY_COLUMNS,
    KEY_COLUMNS,
    TOKEN_COLUMNS,
    gateway_key,
    stored_token,
)
from collector.storage.records import gateway as gateway_row
from collector.tokens import StoredToken


async def gateways(fetch: Fetch) -> tuple[Gateway, ...]:
    """Every registered gateway, ordered by id."""
    rows = await fetch(f"SELECT {GATEWAY_COLUMNS} FROM gateways ORDER BY gateway", ())
    return tuple(gateway_row(row) for row in rows)


async def keys(fetch: Fetch, gateway: str | None = None) -> tuple[GatewayKey, ...]:
    """Registered keys (of one gateway, or all), revoked ones included."""
    clauses, params = given(("gateway = ?", gateway))
    rows = await fetch(
        f"SELECT {KEY_COLUMNS} FROM gateway_keys WHERE {where_all(clauses)}"
        " ORDER BY gateway, added_at, kid",
        params,
    )
    return tuple(gateway_key(row) for row in rows)


async def api_tokens(fetch: Fetch) -> tuple[StoredToken, ...]:
    """Every stored token, revoked ones too, by name."""
    rows = await fetch(f"SELECT {TOKEN_COLUMNS} FROM api_tokens ORDER BY name", ())
    return tuple(stored_token(row) for row in rows)


async def token_by_hash(fetch: Fetch, digest: str) -> StoredToken | None:
    """The token whose secret hashes to `digest`, revoked or not."""
    rows = await fetch(f"SELECT {TOKEN_COLUMNS} FROM api_tokens WHERE hash = ?", (digest,))
    return next((stored_token(row) for row in rows), None)
