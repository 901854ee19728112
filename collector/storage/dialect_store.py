"""What the SQLite and PostgreSQL stores do alike, once: which connection a call runs on.

A registry, token or audit call of the Storage protocol and its capabilities is the same on
both backends but for its statements: it takes the store's write transaction (`_writing`), a
connection for reads (`_connection`) or one snapshot (`_snapshot`), and hands it to the
backend's module for it (`Dialect`: its `registry` and `tokens`, its audit chain's connection).
A store gives those connections and its `Dialect`; how it makes them (SQLite's one writer and
one reader, PostgreSQL's pool) and the statements stay the backend's.
"""

from __future__ import annotations

import abc
from collections.abc import Callable, Collection, Mapping, Sequence
from contextlib import AbstractAsyncContextManager
from dataclasses import dataclass
from typing import Generic, Protocol, TypeVar

from collector.audit.chain import ActionEntry, AuditRow, ChainHead, UnreadableRow
from collector.feed.due import ActivationSweep, Announced
from collector.model import Gateway, GatewayKey, KeyGrant
from collector.storage import activations, audit
from collector.storage.activations import WriteEntries
from collector.storage.audit import ChainDb
from collector.storage.base import Storage
from collector.storage.keys import check_owner
from collector.storage.queries import Fetch
from collector.storage.reads import CapabilityReads
from collector.tokens import StoredToken

Db = TypeVar("Db")
Db_contra = TypeVar("Db_contra", contravariant=True)


class RegistryStatements(Protocol[Db_contra]):
    """A backend's registry module (`collector.storage.sqlite.registry`, `...postgres.registry`)."""

    async def register(self, db: Db_contra, gateway: Gateway, key: GatewayKey, /) -> None:
        """Inside the write transaction, once the key's owner is checked (`check_owner`)."""

    async def revoke(
        self, db: Db_contra, gateway: str, kid: str | None, at: float, /
    ) -> tuple[str, ...]:
        """Inside the write transaction: the kids revoked."""

    async def find_gateways(self, db: Db_contra, ids: Collection[str], /) -> Mapping[str, Gateway]:
        """The registered gateways among `ids`."""

    async def grants(self, db: Db_contra, kids: Collection[str], /) -> Mapping[str, KeyGrant]:
        """The registered keys among `kids`, each with its owning gateway."""


class TokenStatements(Protocol[Db_contra]):
    """A backend's API token module (`collector.storage.sqlite.tokens`, `...postgres.tokens`)."""

    async def add(self, db: Db_contra, token: StoredToken, digest: str, actor: str, /) -> None:
        """Inside the write transaction: the token and its audit row."""

    async def revoke(self, db: Db_contra, name: str, at: float, actor: str, /) -> bool:
        """Inside the write transaction: whether it was revoked now, with its audit row."""


@dataclass(frozen=True, slots=True)
class Dialect(Generic[Db]):
    """A backend's statements for the calls `DialectStore` makes, each on the connection given."""

    chain: Callable[[Db], ChainDb]
    """The audit chain's steps on a connection (`collector.storage.audit`)."""
    registry: RegistryStatements[Db]
    tokens: TokenStatements[Db]


class DialectStore(CapabilityReads, Storage, Generic[Db]):
    """The Storage protocol's and the capabilities' calls that a backend's `Dialect` answers."""

    dialect: Dialect[Db]
    """The backend's statements for these calls."""

    @abc.abstractmethod
    def _writing(self, action: str) -> AbstractAsyncContextManager[Db]:
        """A write transaction that commits when the block ends; `action` names it in errors.

        Where the backend's audit chain lock does nothing (SQLite's `SqliteChain.lock`), this
        transaction must hold the database's write lock from its BEGIN (`BEGIN IMMEDIATE`): a
        chain step reads the head and appends after it, and no other writer may move the
        head between the two.
        """

    @abc.abstractmethod
    def _connection(self, action: str) -> AbstractAsyncContextManager[Db]:
        """A connection for reads; its errors become StorageError naming `action`."""

    @abc.abstractmethod
    def _snapshot(self, action: str) -> AbstractAsyncContextManager[Db]:
        """A read connection whose reads all see one committed state."""

    @abc.abstractmethod
    def _feed_writing(self) -> AbstractAsyncContextManager[tuple[Fetch, WriteEntries]]:
        """A write transaction for the feed: its Fetch, and how it writes journal rows."""

    async def announce_activations(self, sweep: ActivationSweep) -> Announced:
        """The feed's alarm events for alarms raised ahead that came due (AlarmActivations)."""
        return await activations.announce(
            sweep,
            reading=self._reading,
            writing=self._feed_writing,
            statements=self.feed_statements,
        )

    # --- registry ---------------------------------------------------------------------------

    async def register(self, gateway: Gateway, key: GatewayKey) -> None:
        """Register a gateway (or find it registered identically) and add a key to it."""
        check_owner(gateway, key)
        async with self._writing("registering a gateway") as db:
            await self.dialect.registry.register(db, gateway, key)

    async def revoke(self, gateway: str, kid: str | None, at: float) -> tuple[str, ...]:
        """Revoke one key (or every active key) of a gateway; return the kids revoked."""
        async with self._writing("revoking keys") as db:
            return await self.dialect.registry.revoke(db, gateway, kid, at)

    async def find_gateways(self, ids: Collection[str]) -> Mapping[str, Gateway]:
        """The registered gateways among `ids`."""
        async with self._connection("reading gateways") as db:
            return await self.dialect.registry.find_gateways(db, ids)

    async def grants(self, kids: Collection[str]) -> Mapping[str, KeyGrant]:
        """The registered keys among `kids`, each with its owning gateway."""
        async with self._connection("reading keys") as db:
            return await self.dialect.registry.grants(db, kids)

    # --- audit chain and API tokens (AuditTrail, TokenStore) -------------------------------

    async def record_actions(self, entries: Sequence[ActionEntry]) -> None:
        """Append admin actions or command results to the chain (sealed at once)."""
        if entries:
            async with self._writing("recording an audited action") as db:
                chain = self.dialect.chain(db)
                await audit.append(chain, actions=entries, now=max(e.at for e in entries))

    async def seal_audit(self, now: float) -> int:
        """Chain the open rejection rows whose minute is over at `now`; how many."""
        async with self._writing("sealing the audit chain") as db:
            return await audit.seal_due(self.dialect.chain(db), now)

    async def audit_head(self) -> tuple[ChainHead | None, int]:
        """The stored chain head and how many rows are open, from one snapshot."""
        async with self._snapshot("reading the audit chain's head") as db:
            chain = self.dialect.chain(db)
            return await audit.head(chain), await audit.open_rows(chain)

    async def audit_rows(
        self, *, after: int | None, limit: int
    ) -> tuple[AuditRow | UnreadableRow, ...]:
        """Sealed rows with chain_seq above `after`, in chain order.

        An UnreadableRow is one changed by hand into what no AuditRow holds.
        """
        async with self._connection("reading the audit chain's rows") as db:
            chain = self.dialect.chain(db)
            return tuple(await audit.sealed_rows(chain, after=after, limit=limit))

    async def add_token(self, token: StoredToken, digest: str, actor: str) -> None:
        """Store a token by the hash of its secret, with its audit row."""
        async with self._writing("adding an API token") as db:
            await self.dialect.tokens.add(db, token, digest, actor)

    async def revoke_token(self, name: str, at: float, actor: str) -> bool:
        """Revoke a token, with its audit row; False when it was revoked already."""
        async with self._writing("revoking an API token") as db:
            return await self.dialect.tokens.revoke(db, name, at, actor)
