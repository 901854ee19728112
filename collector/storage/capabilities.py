"""What a storage backend may offer beyond the Storage protocol, one Protocol per capability.

Each is checked at runtime (`isinstance(storage, BlockArchive)`), so that a backend that does
not offer one yet still runs everything else; the API then answers 501 for the routes that
need it, and the CLI says so. SQLite and PostgreSQL offer all of them (CommitRelay only
PostgreSQL: a SQLite file has one collector).

- `BlockArchive`: stored blocks with their stored neighbours, for `GET /v1/audit/verify` and
  `collector verify`.
- `FeedJournal`: the positions and events of `GET /v1/stream` (readings by id, and a journal
  of alarm, gap and status events written in the ingest transaction).
- `AlarmActivations`: an alarm event on the feed for each open alarm raised by an event
  stamped ahead of the collector's clock, once that clock comes within the allowance of it.
- `QualityStats`: the aggregates of `GET /v1/quality` (presence intervals kept at ingest,
  expected readings from the meta's poll periods, received and late readings).
- `AuditTrail`: admin actions and command results appended to the audit hash chain, sealing,
  and the chain read back in order for `collector audit verify` (collector.audit.chain).
- `TokenStore`: API tokens kept as SHA-256 hashes (collector.tokens), for `collector tokens`
  and the API's per-request lookup.
- `CommitRelay`: commits of other processes sharing the database, rung into the runtime's
  `CommitSignal` (collector.feed.wakeup), so that streams wake for them too. Only a backend
  that several collectors share needs it (PostgreSQL: LISTEN/NOTIFY); `relayed_commits`
  gives a no-op for the others.

What a backend must add for each is in the Protocol's docstring; PostgreSQL notes: the feed
needs commit-ordered ids (see FeedJournal).
"""

from __future__ import annotations

from collections.abc import Sequence
from contextlib import AbstractAsyncContextManager, nullcontext
from typing import Protocol, runtime_checkable

from collector.audit.chain import ActionEntry, AuditRow, ChainHead, UnreadableRow
from collector.feed.core import FeedFilter, FeedPage, FeedPosition
from collector.feed.due import ActivationSweep, Announced
from collector.feed.wakeup import CommitSignal
from collector.model import GatewayKey
from collector.quality.core import QualityCounts, QualityFilter, QualityGroup
from collector.readmodel import Page, Scope
from collector.tokens import StoredToken
from collector.verify.core import StoredBlock, StoredBlockAfter


@runtime_checkable
class BlockArchive(Protocol):
    """**Protocol**: stored blocks in (gateway, epoch, seq) order, and the keys to check them."""

    async def keys(self, gateway: str | None = None) -> tuple[GatewayKey, ...]:
        """Registered keys (of one gateway, or all), revoked ones included."""
        ...

    async def stored_blocks(
        self,
        scope: Scope,
        *,
        gateway: str | None,
        t_from: float | None,
        t_to: float | None,
        after: StoredBlockAfter | None,
        limit: int,
    ) -> Page[StoredBlock]:
        """Blocks received in [t_from, t_to), each with the stored block just below it.

        Ordered by (gateway, epoch, seq); `below_seq`/`below_hash` name the highest stored
        seq under each block's seq in its epoch, whatever its time.
        """
        ...


@runtime_checkable
class FeedJournal(Protocol):
    """**Protocol**: the positions and pages of the live feed (`GET /v1/stream`).

    A backend must hand out positions in commit order: every reading id and journal id up to
    the head it reports is committed and visible, and a later commit only adds higher ids.
    The ingest transaction writes the journal (alarm, gap and status events, each with the
    highest reading id at its commit); see `collector.feed.core` for the entries.
    """

    async def feed_head(self) -> FeedPosition:
        """The newest reading id and journal id, from one snapshot."""
        ...

    async def feed_issued(self) -> FeedPosition:
        """The highest reading id and journal id ever handed out, pruned rows included.

        Every position this database made is at most this; the head may be lower once
        retention deleted the rows with the highest ids.
        """
        ...

    async def feed_page(
        self,
        scope: Scope,
        where: FeedFilter,
        *,
        after: FeedPosition,
        upto: FeedPosition,
        limit: int,
    ) -> FeedPage:
        """Readings and journal rows in scope and filter with ids in (after, upto], ascending.

        At most `limit` of each; `readings_more`/`journal_more` say a side was cut.
        """
        ...


@runtime_checkable
class AlarmActivations(Protocol):
    """**Protocol**: the feed's word that an alarm raised ahead of the clock is active now.

    A backend writes, in one transaction that judges again what it read, an alarm journal row
    (`collector.feed.core.alarm_entry` at the sweep's clock) for each open alarm raised by an
    event stamped ahead whose raise came due in the sweep, unless the newest journal row of that
    alarm says it active (`collector.storage.activations`); several collectors
    sweeping one database at once must announce it once (PostgreSQL: the feed lock).
    """

    async def announce_activations(self, sweep: ActivationSweep) -> Announced:
        """Announce the alarms `sweep` finds come due; the journal head read first."""
        ...


@runtime_checkable
class CommitRelay(Protocol):
    """**Protocol**: ring a CommitSignal when any process commits to the live feed."""

    def relay_commits(self, signal: CommitSignal) -> AbstractAsyncContextManager[None]:
        """While entered, `signal.notify()` follows every feed commit, whoever made it.

        Entering waits until commits made afterwards are sure to be relayed.
        """
        ...


def relayed_commits(storage: object, signal: CommitSignal) -> AbstractAsyncContextManager[None]:
    """`storage.relay_commits(signal)` where the backend relays, a no-op where it need not."""
    if isinstance(storage, CommitRelay):
        return storage.relay_commits(signal)
    return nullcontext()


@runtime_checkable
class QualityStats(Protocol):
    """**Protocol**: the aggregates of `GET /v1/quality`.

    A backend keeps presence intervals at ingest (`collector.quality.core.advance_presence`
    over the batch's signs, with the batch's `presence_window`) and the meta's poll period of
    each point, and adds up in the database.
    """

    async def quality_counts(
        self,
        scope: Scope,
        where: QualityFilter,
        *,
        group: QualityGroup,
        start: float,
        end: float,
        after: str | None,
        limit: int,
    ) -> Page[QualityCounts]:
        """Per group key in scope and filter, ascending after `after`: counts over [start, end).

        Online seconds of the group's gateways, readings expected from the poll periods
        (floor((end - start) / poll) per point with one), received (t in the window) and late
        (block received more than LATE_AFTER after t) readings of those points.
        """
        ...


@runtime_checkable
class AuditTrail(Protocol):
    """**Protocol**: the audit hash chain beyond the rejections the ingest writes.

    A backend serializes every append (the chain's head is read and moved in one transaction
    at a time: SQLite's write lock, PostgreSQL's AUDIT_LOCK).
    """

    async def record_actions(self, entries: Sequence[ActionEntry]) -> None:
        """Append admin actions or command results to the chain (sealed at once)."""
        ...

    async def seal_audit(self, now: float) -> int:
        """Chain the open rejection rows whose minute is over at `now`; how many."""
        ...

    async def audit_head(self) -> tuple[ChainHead | None, int]:
        """The stored chain head (None before the first seal) and how many rows are open."""
        ...

    async def audit_rows(
        self, *, after: int | None, limit: int
    ) -> tuple[AuditRow | UnreadableRow, ...]:
        """Sealed rows with chain_seq above `after`, in chain order.

        An UnreadableRow is one changed by hand into what no AuditRow holds.
        """
        ...


@runtime_checkable
class TokenStore(Protocol):
    """**Protocol**: API tokens stored hashed; adding and revoking one is an audited action."""

    async def add_token(self, token: StoredToken, digest: str, actor: str) -> None:
        """Store a token by the hash of its secret (RegistryError: the name is taken)."""
        ...

    async def revoke_token(self, name: str, at: float, actor: str) -> bool:
        """Revoke a token; False when it was revoked already (RegistryError: unknown)."""
        ...

    async def api_tokens(self) -> tuple[StoredToken, ...]:
        """Every stored token, revoked ones too, by name."""
        ...

    async def token_by_hash(self, digest: str) -> StoredToken | None:
        """The token whose secret hashes to `digest`, revoked or not."""
        ...
