"""What a storage backend may offer beyond the Storage protocol, one Protocol per capability.

Each is checked at runtime (`isinstance(storage, BlockArchive)`), so that a backend that does
not offer one yet still runs everything else; the API then answers 501 for the routes that
need it, and the CLI says so. SQLite offers all of them.

- `BlockArchive`: stored blocks with their stored neighbours, for `GET /v1/audit/verify` and
  `collector verify`.
- `FeedJournal`: the positions and events of `GET /v1/stream` (readings by id, and a journal
  of alarm, gap and status events written in the ingest transaction).
- `QualityStats`: the aggregates of `GET /v1/quality` (presence intervals kept at ingest,
  expected readings from the meta's poll periods, received and late readings).
"""

from __future__ import annotations

from typing import Protocol, runtime_checkable

from collector.model import GatewayKey, Page, Scope
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
