"""API tokens in PostgreSQL: SQLite's rules (collector.storage.sqlite.tokens), audited alike.

Writes run inside the caller's transaction; their audit rows take AUDIT_LOCK.
"""

from __future__ import annotations

import json

from collector.audit.chain import Action, ActionEntry
from collector.storage import audit
from collector.storage.base import RegistryError
from collector.storage.postgres.audit import PostgresChain
from collector.storage.postgres.connection import Db
from collector.tokens import StoredToken


async def add(db: Db, token: StoredToken, digest: str, actor: str) -> None:
    """Store a new token by its hash; RegistryError when its name is taken."""
    added = await db.fetchval(
        "INSERT INTO api_tokens (name, hash, districts, created_at) VALUES ($1, $2, $3, $4)"
        " ON CONFLICT (name) DO NOTHING RETURNING name",
        token.name,
        digest,
        json.dumps(list(token.districts)),
        token.created_at,
    )
    if added is None:
        raise RegistryError(f"a token named {token.name!r} exists already (revoked ones too)")
    detail = f"token {token.name} added for districts {', '.join(token.districts)}"
    entry = ActionEntry(token.created_at, Action.TOKEN_ADD, actor, detail)
    await audit.append(PostgresChain(db), actions=[entry], now=token.created_at)


async def revoke(db: Db, name: str, at: float, actor: str) -> bool:
    """Revoke a token; False when it was revoked already, RegistryError when unknown."""
    found = await db.fetchrow("SELECT revoked_at FROM api_tokens WHERE name = $1 FOR UPDATE", name)
    if found is None:
        raise RegistryError(f"no token is named {name!r}")
    if found[0] is not None:
        return False
    await db.execute("UPDATE api_tokens SET revoked_at = $1 WHERE name = $2", at, name)
    entry = ActionEntry(at, Action.TOKEN_REVOKE, actor, f"token {name} revoked")
    await audit.append(PostgresChain(db), actions=[entry], now=at)
    return True
