"""Sealing blocks: pure functions from chain state and records to signed bytes."""

from __future__ import annotations

from dataclasses import dataclass

from specs.block import GENESIS, BlockHeader, block_hash, encode_block
from specs.records import Record, iso_time
from specs.signing import Signature, SigningKey


@dataclass(frozen=True, slots=True)
class Identity:
    """Who seals: the site's identifiers as they go on every block."""

    gateway: str
    enterprise: str
    district: str
    domain: str
    mine_code: str | None = None


@dataclass(frozen=True, slots=True)
class ChainState:
    """Where the chain of one epoch stands after its last sealed block."""

    epoch: str
    last_seq: int
    last_hash: str

    @classmethod
    def genesis(cls, epoch: str) -> ChainState:
        """The state of an epoch before its first block."""
        return cls(epoch=epoch, last_seq=0, last_hash=GENESIS)


@dataclass(frozen=True, slots=True)
class SealedBlock:
    """A block's exact bytes with its signature and position."""

    epoch: str
    seq: int
    payload: bytes
    digest: str
    signature: Signature
    records: int


def seal(
    state: ChainState,
    identity: Identity,
    records: tuple[Record, ...],
    *,
    now: float,
    clock_synced: bool,
    key: SigningKey,
) -> tuple[SealedBlock, ChainState]:
    """Seal `records` as the next block of the chain and return it with the new state."""
    header = BlockHeader(
        gateway=identity.gateway,
        enterprise=identity.enterprise,
        district=identity.district,
        domain=identity.domain,
        epoch=state.epoch,
        seq=state.last_seq + 1,
        prev=state.last_hash,
        sealed_at=iso_time(now),
        clock="synced" if clock_synced else "unsynced",
        mine_code=identity.mine_code,
    )
    payload = encode_block(header, records)
    digest = block_hash(payload)
    block = SealedBlock(
        epoch=state.epoch,
        seq=header.seq,
        payload=payload,
        digest=digest,
        signature=key.sign(payload),
        records=len(records),
    )
    return block, ChainState(state.epoch, header.seq, digest)
