"""Who a presented bearer token belongs to: the config's tokens, then the database's.

Tokens from the collector config (`api.tokens`) are compared with `hmac.compare_digest`
against every candidate (collector.api.core.find_token). Tokens made by `collector tokens
add` are found by the SHA-256 of the presented secret (collector.tokens explains why a
hash lookup is safe), afresh on every request, so that `collector tokens revoke` shuts a
token out of every collector sharing the database from the next request on, no restart.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from collector.api.core import ApiToken, find_token
from collector.readmodel import Scope
from collector.storage.capabilities import TokenStore
from collector.tokens import secret_hash


@dataclass(frozen=True, slots=True)
class Caller:
    """The holder of a valid token: its name (for limits and logs) and what it may see."""

    name: str
    scope: Scope


class TokenCheck:
    """Finds the caller of a presented secret; None when no active token has it."""

    def __init__(self, configured: Sequence[ApiToken], storage: object) -> None:
        self._configured = tuple(configured)
        self._stored = storage if isinstance(storage, TokenStore) else None

    async def caller(self, secret: str) -> Caller | None:
        """The caller whose token is `secret`: a config token, else an active stored one."""
        token = find_token(self._configured, secret)
        if token is not None:
            return Caller(token.name, token.scope)
        if self._stored is None:
            return None
        stored = await self._stored.token_by_hash(secret_hash(secret))
        if stored is None or not stored.active:
            return None
        return Caller(stored.name, stored.scope)
