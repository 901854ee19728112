"""The collector's data model: what it stores and what it answers, as frozen records.

The storage port (`collector.storage.base`) speaks these types, and so do the ingest pipeline
and the API; none of them depends on a database.
"""

from __future__ import annotations

import enum
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Final, NamedTuple

from specs.block import Block
from specs.encoding import MAX_DECODED_BYTES
from specs.meta import GatewayMeta
from specs.records import AlarmEvent, GapReason
from specs.signing import Signature
from specs.topics import GatewayTopics

if TYPE_CHECKING:  # collector.audit.chain imports this module
    from collector.audit.chain import ActionEntry

# --- registry -------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Gateway:
    """A registered gateway: who owns it and where it is."""

    gateway: str
    enterprise: str
    district: str
    registered_at: float


@dataclass(frozen=True, slots=True)
class GatewayKey:
    """A public key of one gateway, kept for good: stored blocks stay verifiable under it.

    `added_at` is when it became valid (registered, or its announcement stored). From
    `retired_at` on (its successor's announcement stored, plus the overlap) and from
    `revoked_at` on, nothing that arrives under it is taken.
    A key a gateway announced itself names the block that carried it: `announced_by` (the
    kid that signed it), `announced_epoch`, `announced_seq`.
    """

    kid: str
    gateway: str
    alg: str
    public_pem: bytes
    added_at: float
    revoked_at: float | None = None
    retired_at: float | None = None
    announced_by: str | None = None
    announced_epoch: str | None = None
    announced_seq: int | None = None


@dataclass(frozen=True, slots=True)
class KeyGrant:
    """A key together with the gateway that owns it (what verification needs)."""

    key: GatewayKey
    owner: Gateway


# --- ingest ---------------------------------------------------------------------------------


class Reason(enum.StrEnum):
    """Why a message was not stored (or stored only once): the audit vocabulary."""

    BAD_ALGORITHM = "bad_algorithm"
    UNKNOWN_KEY = "unknown_key"
    REVOKED_KEY = "revoked_key"
    KEY_NOT_OWNED = "key_not_owned"
    BAD_SIGNATURE = "bad_signature"
    MALFORMED = "malformed"
    TOPIC_MISMATCH = "topic_mismatch"
    UNKNOWN_GATEWAY = "unknown_gateway"
    UNSUPPORTED_TOPIC = "unsupported_topic"
    DUPLICATE = "duplicate"  # a block, readings of a (point, t) or a gap record stored already
    SEQ_CONFLICT = "seq_conflict"
    # Readings of a stored (gateway, point, t) with another value, unit or quality: the first
    # stays, these are not stored (one row per block, naming the first few).
    CONFLICT = "conflict"
    # Readings of a period whose raw readings retention deleted (before the oldest month kept,
    # storage.raw_days): they may have been stored and pruned, so they are not stored nor
    # folded into the rollups again (one row per block, naming the first few; block stored).
    PAST_RETENTION = "past_retention"
    AHEAD_OF_COLLECTOR = "ahead_of_collector"  # stored, flagged: collector.storage.ahead
    # A stored block's `prev` is not the hash of the stored block before it (the block stays
    # stored; its stream is flagged so that every ACK of it says `conflict`).
    CHAIN_BREAK = "chain_break"
    # One record of a stored block was left out of the normalized tables (the block is stored).
    UNKNOWN_QUOTA = "unknown_quota"
    UNKNOWN_UNIT = "unknown_unit"
    # A signed heartbeat whose own time is too far from its arrival (a replay, or a clock
    # far off): it does not count as a sign of life.
    STALE_STATUS = "stale_status"
    # Signed by a key retired after its successor's overlap window (routine rotation).
    RETIRED_KEY = "retired_key"
    # A key record of a stored block that is not taken (the block is stored): a key that does
    # not parse or match its kid, names another signer, or is another gateway's or revoked.
    BAD_KEY_ANNOUNCEMENT = "bad_key_announcement"
    # A message over `ingest.max_message_bytes`: audited unread (never decoded nor parsed).
    TOO_LARGE = "too_large"


MESSAGE_BYTES: Final = MAX_DECODED_BYTES
"""`ingest.max_message_bytes` by default: 16 MiB, what a payload may decode to at most, over 12
times the largest block an agent seals (specs.block.MAX_BLOCK_READINGS: 1.3 MB at the longest
names and flags, ~640 KB as sites name points)."""
AHEAD_ALLOWANCE: Final = 900.0  # `ingest.ahead_allowance` by default (collector.config)
MAX_DETAIL: Final = 500  # audit details quote inputs; keep rows small whatever arrives


@dataclass(frozen=True, slots=True)
class AuditEntry:
    """One rejected (or deduplicated) message, with enough to find it again.

    Stored aggregated (collector.audit.chain): read back, a row stands for `count` messages
    of one source and reason in one minute, and names the first of them.
    """

    at: float
    gateway: str | None
    topic: str
    reason: Reason
    detail: str
    payload_hash: str
    count: int = 1


class ReadingEntry(NamedTuple):
    """A reading as the normalized tables hold it: canonical unit, times as unix seconds.

    `idx` is the record's position in its block, so (gateway, epoch, seq, idx) finds the
    record in the stored block bytes. A NamedTuple, not a frozen dataclass like the other
    core types: one is made per reading on the ingest hot path, and a frozen dataclass costs
    about three times as much to construct (1.2 µs against 0.35 µs here, G3 in bench/).
    """

    idx: int
    point: str
    quota: str
    t: float
    value: float | None
    unit: str
    quality: str
    flags: tuple[str, ...]


@dataclass(frozen=True, slots=True)
class AlarmEntry:
    """An alarm raise or clear event of a block, ready to pair with its counterpart."""

    idx: int
    alarm_id: str
    point: str
    quota: str
    event: AlarmEvent
    t: float
    level: str
    value: float | None
    threshold: float | None
    unit: str
    trigger_t: float
    related: str | None = None
    detail: str | None = None


@dataclass(frozen=True, slots=True)
class GapEntry:
    """A gap record of a block, times as unix seconds.

    `lost` readings (None: unknown) between `t_from` and `t_to`. `epoch` with
    `from_seq`..`to_seq` names the seqs of (gateway, epoch) that will never come: `to_seq`
    None means every seq from `from_seq` on, `epoch` None that no seq range is declared. That
    epoch may differ from the epoch of the block carrying the record.
    """

    idx: int
    t: float
    reason: GapReason
    lost: int | None
    point: str | None
    t_from: float | None = None
    t_to: float | None = None
    epoch: str | None = None
    from_seq: int | None = None
    to_seq: int | None = None


@dataclass(frozen=True, slots=True)
class KeyAnnouncement:
    """A gateway's next key, from a key record checked against the block's signature.

    `key` is the new key as it is to be kept (announced_* filled, `added_at` the block's
    arrival); `replaces` the kid that signed the announcement, to retire after the overlap.
    `audit` is the row to write instead when the registry refuses the key.
    """

    key: GatewayKey
    replaces: str
    audit: AuditEntry


@dataclass(frozen=True, slots=True)
class BlockEntries:
    """What a verified block contributes to the normalized tables.

    `rejected` holds one audit row per record left out (unknown quota or unit); the storage
    writes them when, and only when, it stores the block for the first time.
    """

    readings: tuple[ReadingEntry, ...] = ()
    alarms: tuple[AlarmEntry, ...] = ()
    gaps: tuple[GapEntry, ...] = ()
    rejected: tuple[AuditEntry, ...] = ()
    keys: tuple[KeyAnnouncement, ...] = ()


@dataclass(frozen=True, slots=True)
class IncomingBlock:
    """A block whose signature verified and whose header matches its topic.

    `entries` is the block's content after normalization (the pure core decides it); the
    block's bytes in `block.payload` are stored unchanged beside it.
    """

    topic: str
    block: Block
    signature: Signature
    received_at: float
    entries: BlockEntries

    @property
    def stream(self) -> tuple[str, str]:
        """The (gateway, epoch) sequence this block belongs to."""
        return (self.block.header.gateway, self.block.header.epoch)

    def audit(self, reason: Reason, detail: str) -> AuditEntry:
        """An audit row about this block: its arrival, gateway, topic and digest, and `detail`.

        The detail is cut to MAX_DETAIL: it quotes the header, which may be of any length.
        """
        return AuditEntry(
            at=self.received_at,
            gateway=self.block.header.gateway,
            topic=self.topic,
            reason=reason,
            detail=detail[:MAX_DETAIL],
            payload_hash=self.block.digest,
        )


@dataclass(frozen=True, slots=True)
class MetaPoint:
    """One point of a gateway's meta message, thresholds in the point's stored unit."""

    point: str
    quota: str
    unit: str
    name: str
    device: str
    thresholds: Mapping[str, float]
    poll: float | None = None  # seconds between readings, when the meta says


@dataclass(frozen=True, slots=True)
class IncomingMeta:
    """A signed `up/meta` message that verified like a block and names its topic's gateway.

    `points` are the message's points normalized like readings (canonical unit where the
    catalogue knows the quota and unit, as sent otherwise).
    """

    topic: str
    meta: GatewayMeta
    payload: bytes
    signature: Signature
    issued_at: float
    received_at: float
    points: tuple[MetaPoint, ...]


@dataclass(frozen=True, slots=True)
class StatusUpdate:
    """A gateway's retained status message (heartbeat or last will)."""

    gateway: str
    online: bool
    at: float


@dataclass(frozen=True, slots=True)
class KeyRefusal:
    """A block refused for its key: its topic's place (its header agrees), its header's epoch."""

    topics: GatewayTopics
    epoch: str


@dataclass(frozen=True, slots=True)
class IngestBatch:
    """Everything one batch of MQTT messages asks the storage to commit, in one transaction.

    `presence_window` is how long a sign of life keeps its gateway live (the collector's
    `offline_after`), for the presence intervals of GET /v1/quality. `key_overlap` is how long
    a gateway's old key still signs after its successor's announcement is stored.
    """

    blocks: Sequence[IncomingBlock] = ()
    audits: Sequence[AuditEntry] = ()
    statuses: Sequence[StatusUpdate] = ()
    metas: Sequence[IncomingMeta] = ()
    # Command results from `up/cmd` (collector.ingest.command_results): audit rows of their
    # own, appended in the batch's transaction.
    actions: Sequence[ActionEntry] = ()
    presence_window: float = 60.0
    key_overlap: float = 7 * 86400.0
    ahead_allowance: float = AHEAD_ALLOWANCE  # a reading's t past arrival, still current
    key_refusals: Sequence[KeyRefusal] = ()  # for collector.ingest.key_notice; never stored


class Outcome(enum.StrEnum):
    """What storing one incoming block did."""

    STORED = "stored"
    DUPLICATE = "duplicate"
    SEQ_CONFLICT = "seq_conflict"
    # A STORED block may have records left out (its `entries.rejected`, audited when stored).

    @property
    def acknowledged(self) -> bool:
        """Whether the block's bytes are in the database (so the agent may forget them).

        A SEQ_CONFLICT block is answered too (its ACK says `conflict`), but never acknowledged.
        """
        return self is not Outcome.SEQ_CONFLICT


@dataclass(frozen=True, slots=True)
class StreamState:
    """How far one (gateway, epoch) sequence is stored or closed.

    A seq is *closed* when its block is stored or a stored gap record declared it lost.
    `declared` holds those declarations, ascending, disjoint and merged, as (from_seq, to_seq)
    with to_seq None for "every seq from from_seq on". `max_seq` is the highest seq known to
    exist: stored, or the end of a declared range (the seq before an open-ended one). Every seq
    in 1..max_seq is closed or listed in `missing` (ascending, disjoint holes, never declared
    ones), and every seq in 1..acked_through is closed.

    `acked_hash` is the hash of the stored block at acked_through (None when acked_through
    is 0 or declared, not stored). `conflict` is set for good once the stream saw a seq with
    other bytes than stored, or a stored block whose `prev` is not its stored neighbour's hash.
    `pruned_through` is the highest seq whose stored block retention deleted (always below
    acked_through; `collector.storage.block_retention`).
    """

    gateway: str
    epoch: str
    acked_through: int = 0
    max_seq: int = 0
    missing: tuple[tuple[int, int], ...] = ()
    declared: tuple[tuple[int, int | None], ...] = ()
    acked_hash: str | None = None
    conflict: bool = False
    pruned_through: int = 0


@dataclass(frozen=True, slots=True)
class LiveKey:
    """A gateway key not revoked, as an ACK's `keys` is made of it.

    Valid from `added_at` on, until `retired_at` when a rotation retires it.
    """

    kid: str
    added_at: float
    retired_at: float | None


@dataclass(frozen=True, slots=True)
class BatchResult:
    """The committed outcome of one batch: one Outcome per block, and each touched stream.

    `keys` holds, for each gateway of the batch's blocks, its keys not revoked, read after
    the batch's announcements were taken or refused. `past_retention` holds, per block, how
    many of its readings were left out as before retention's mark (Reason.PAST_RETENTION;
    empty: none of any block); `ahead` likewise its readings stored ahead of the clock.
    """

    outcomes: tuple[Outcome, ...]
    streams: Mapping[tuple[str, str], StreamState] = field(default_factory=dict)
    keys: Mapping[str, tuple[LiveKey, ...]] = field(default_factory=dict)
    past_retention: tuple[int, ...] = ()
    ahead: tuple[int, ...] = ()
