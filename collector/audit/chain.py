"""The audit hash chain, decided purely: what a row is, how rows aggregate, link and verify.

**Aggregation.** A flood of bad messages must not fill the disk, so rejections are not one row
each: they accumulate in an *open* row per (source, reason, minute), with a count, the first
occurrence's topic, detail and payload hash, and the newest occurrence's time. The source is
the gateway the topic names ('' when the topic names none). Registered gateways always get
rows of their own (an admin decides how many there are); past MAX_SOURCES_PER_MINUTE other
sources of one reason in one minute (names anyone can put in a topic), further ones share the
OVERFLOW_SOURCE row. So a minute holds at most (registered + MAX_SOURCES_PER_MINUTE + 1) rows
per reason, whatever arrives.

**Chain.** A row joins the chain when it is *sealed*: a rejection once its minute is over, an
admin action or command result at once. Sealing gives it the next `chain_seq`, the hash of
the row before (`prev`) and its own `hash` = SHA-256 over prev and its canonical content (the
count included), and moves the chain head, which is kept apart from the rows
(`ChainHead`): a changed row fails its hash, a deleted one leaves a hole in the seqs and a
`prev` that names nothing, and a deleted newest row leaves the head pointing past the rows.
Retention drops the oldest rows and moves the head's base (first kept seq and the hash it
chains onto) in the same transaction.

What the chain does not do: whoever can write the database and knows this format can rebuild
the whole chain and its head. Anchoring the head outside the database (signed by the
collector key, or copied to another system) is what would close that; an open row (the
current minute) is not chained yet, so its count can change unseen until it is sealed.
"""

from __future__ import annotations

import enum
import hashlib
import json
import math
from collections.abc import Collection, Iterable, Sequence
from dataclasses import dataclass, field, replace
from typing import Final

from collector.model import AuditEntry
from specs.block import GENESIS

MINUTE: Final = 60.0
MAX_SOURCES_PER_MINUTE: Final = 32
"""Distinct unregistered sources of one reason in one minute that get a row of their own."""
OVERFLOW_SOURCE: Final = "*"
"""The source of the shared row past MAX_SOURCES_PER_MINUTE (its gateway is unknown)."""


class AuditKind(enum.StrEnum):
    """What an audit row records."""

    REJECTION = "rejection"  # a message (or part of one) not stored, collector.model.Reason
    ADMIN = "admin"  # an operator's action
    COMMAND = "command"  # a gateway's result of a signed command (up/cmd)


class Action(enum.StrEnum):
    """The reasons of admin and command rows (rejections use collector.model.Reason)."""

    GATEWAY_ADD = "gateway_add"
    GATEWAY_REVOKE = "gateway_revoke"
    TOKEN_ADD = "token_add"  # noqa: S105 - an action's name, not a secret
    TOKEN_REVOKE = "token_revoke"  # noqa: S105 - an action's name, not a secret
    MAP_PUSH = "map_push"
    CA_INIT = "ca_init"  # the province CA every client certificate rests on (`certs ca init`)
    CERT_ISSUE = "cert_issue"  # a certificate of the province CA (`certs issue`, `broker-config`)
    CERT_REVOKE = "cert_revoke"  # one put on the CA's revocation list (`certs revoke`)
    COMMAND_APPLIED = "command_applied"
    COMMAND_REJECTED = "command_rejected"
    COMMAND_ROLLED_BACK = "command_rolled_back"
    COMMAND_IGNORED = "command_ignored"  # replayed, forged, expired, ...: not taken at all

    @property
    def kind(self) -> AuditKind:
        """Admin action or command result."""
        return AuditKind.COMMAND if self.value.startswith("command_") else AuditKind.ADMIN


@dataclass(frozen=True, slots=True)
class ActionEntry:
    """An admin action or a command result, to be chained at once.

    `actor` is who did it (the operating-system user of a CLI command, or the gateway that
    reported a command result); `gateway` the gateway it concerns, if any.
    """

    at: float
    action: Action
    actor: str
    detail: str
    gateway: str | None = None
    topic: str = ""
    payload_hash: str = ""


@dataclass(frozen=True, slots=True)
class AuditRow:
    """One stored audit row; `chain_seq`, `prev` and `hash` are None while it is open."""

    kind: AuditKind
    at: float
    last_at: float
    minute: float | None
    source: str
    gateway: str | None
    topic: str
    reason: str
    detail: str
    payload_hash: str
    count: int
    chain_seq: int | None = None
    prev: str | None = None
    hash: str | None = None

    def content(self, seq: int) -> bytes:
        """The bytes the link hash covers besides `prev`: everything the row says, and its seq.

        JSON floats are Python's shortest round-trip form, so a float read back from either
        database hashes the same.
        """
        return json.dumps(
            [
                seq,
                self.kind.value,
                self.at,
                self.last_at,
                self.minute,
                self.source,
                self.gateway,
                self.topic,
                self.reason,
                self.detail,
                self.payload_hash,
                self.count,
            ],
            ensure_ascii=False,
            separators=(",", ":"),
            allow_nan=False,
        ).encode("utf-8")


@dataclass(frozen=True, slots=True)
class UnreadableRow:
    """A sealed row whose stored columns no AuditRow can hold: one changed by hand.

    SQLite keeps text in a number column, either database Infinity. Verification reports such
    a row as changed; nothing else reads it.
    """

    chain_seq: int
    hash: str | None
    prev: str | None
    why: str


def link_hash(prev: str, row: AuditRow, seq: int) -> str:
    """The hash of `row` as link `seq` chained onto `prev`."""
    return hashlib.sha256(prev.encode("ascii") + b"\n" + row.content(seq)).hexdigest()


@dataclass(frozen=True, slots=True)
class ChainHead:
    """Where the stored chain starts (after retention) and ends.

    `base_seq` is the first kept row's seq and `base_prev` the hash it chains onto;
    `head_seq`/`head_hash` the newest row's (head_seq = base_seq - 1: no rows kept).
    """

    base_seq: int = 1
    base_prev: str = GENESIS
    head_seq: int = 0
    head_hash: str = GENESIS


def minute_of(t: float) -> float:
    """The start of the minute `t` falls in (unix seconds)."""
    return math.floor(t / MINUTE) * MINUTE


BucketKey = tuple[str, str, float]
"""(source, reason, minute): the identity of an open rejection row."""


def rejection_rows(
    entries: Iterable[AuditEntry],
    open_keys: Collection[BucketKey],
    registered: Collection[str] = (),
) -> list[AuditRow]:
    """The rejections as open rows: one per (source, reason, minute), counts added up.

    `open_keys` are the open rows stored already; a row here with one of their keys adds to
    it (the storage upserts). A source that is not among the `registered` gateways, beyond
    MAX_SOURCES_PER_MINUTE such sources of its (reason, minute) counting the stored ones,
    goes to the OVERFLOW_SOURCE row.
    """
    known = frozenset((*registered, OVERFLOW_SOURCE))
    # The unregistered sources with a row of their own, per (reason, minute).
    strangers: dict[tuple[str, float], set[str]] = {}
    for source, reason, minute in open_keys:
        if source not in known:
            strangers.setdefault((reason, minute), set()).add(source)
    rows: dict[BucketKey, AuditRow] = {}
    for entry in entries:
        minute = minute_of(entry.at)
        reason = entry.reason.value
        source = entry.gateway or ""
        if source not in known:
            others = strangers.setdefault((reason, minute), set())
            if source in others or len(others) < MAX_SOURCES_PER_MINUTE:
                others.add(source)
            else:
                source = OVERFLOW_SOURCE
        key = (source, reason, minute)
        held = rows.get(key)
        if held is None:
            rows[key] = AuditRow(
                kind=AuditKind.REJECTION,
                at=entry.at,
                last_at=entry.at,
                minute=minute,
                source=source,
                gateway=None if source == OVERFLOW_SOURCE else entry.gateway,
                topic=entry.topic,
                reason=reason,
                detail=entry.detail,
                payload_hash=entry.payload_hash,
                count=entry.count,
            )
        else:
            rows[key] = replace(
                held, last_at=max(held.last_at, entry.at), count=held.count + entry.count
            )
    return list(rows.values())


def action_row(entry: ActionEntry) -> AuditRow:
    """An admin action or command result as a row (never aggregated: sealed at once)."""
    return AuditRow(
        kind=entry.action.kind,
        at=entry.at,
        last_at=entry.at,
        minute=None,
        source=entry.actor,
        gateway=entry.gateway,
        topic=entry.topic,
        reason=entry.action.value,
        detail=entry.detail,
        payload_hash=entry.payload_hash,
        count=1,
    )


def seal(head: ChainHead, rows: Sequence[AuditRow]) -> tuple[ChainHead, list[AuditRow]]:
    """Chain `rows` (open, in the order given) after `head`; the new head and the rows."""
    sealed: list[AuditRow] = []
    seq, prev = head.head_seq, head.head_hash
    for row in rows:
        seq += 1
        digest = link_hash(prev, row, seq)
        sealed.append(replace(row, chain_seq=seq, prev=prev, hash=digest))
        prev = digest
    return replace(head, head_seq=seq, head_hash=prev), sealed


def prune_head(head: ChainHead, first_kept: AuditRow | UnreadableRow | None) -> ChainHead:
    """The head once every row before `first_kept` is deleted (None: every row is)."""
    if first_kept is None or first_kept.chain_seq is None or first_kept.prev is None:
        return replace(head, base_seq=head.head_seq + 1, base_prev=head.head_hash)
    return replace(head, base_seq=first_kept.chain_seq, base_prev=first_kept.prev)


# --- verification -------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class ChainProblem:
    """One thing wrong with the stored chain, at link `seq`."""

    seq: int
    problem: str


@dataclass(frozen=True, slots=True)
class ChainReport:
    """What `collector audit verify` found: rows checked, rows that hold, open rows, problems."""

    rows: int
    verified: int
    open: int
    head_seq: int
    broken: tuple[ChainProblem, ...] = ()

    @property
    def intact(self) -> bool:
        """Whether nothing is wrong."""
        return not self.broken

    def as_json(self) -> dict[str, object]:
        """The report as `collector audit verify --json` prints it."""
        return {
            "rows": self.rows,
            "verified": self.verified,
            "open": self.open,
            "head_seq": self.head_seq,
            "broken": [{"seq": p.seq, "problem": p.problem} for p in self.broken],
        }


@dataclass
class ChainVerifier:
    """Checks sealed rows fed in `chain_seq` order, page by page (memory stays flat).

    `head` is the stored head; None when there is none (a database with no sealed rows has
    none either; sealed rows without one mean it was deleted).
    """

    head: ChainHead | None
    rows: int = 0
    verified: int = 0
    problems: list[ChainProblem] = field(default_factory=list)
    _next_seq: int = 0
    _prev: str | None = GENESIS  # None: the row before lost its hash (reported there)

    def __post_init__(self) -> None:
        start = self.head if self.head is not None else ChainHead()
        self._next_seq, self._prev = start.base_seq, start.base_prev

    def feed(self, rows: Iterable[AuditRow | UnreadableRow]) -> None:
        """Check the next rows of the chain."""
        for row in rows:
            self._check(row)

    def _check(self, row: AuditRow | UnreadableRow) -> None:
        seq = row.chain_seq
        if seq is None:
            raise ValueError("only sealed rows are verified")
        self.rows += 1
        if seq > self._next_seq:
            self._problem(
                seq, f"rows {self._next_seq}..{seq - 1} are missing (deleted or never written)"
            )
        elif isinstance(row, UnreadableRow):
            self._problem(seq, f"the row was changed: {row.why}")
        elif row.hash is None or row.prev is None:
            removed = "hash" if row.hash is None else "prev"
            self._problem(seq, f"the row was changed: its {removed} was removed")
        elif self._prev is not None and row.prev != self._prev:
            self._problem(seq, f"prev {row.prev} is not the hash {self._prev} of the row before")
        elif link_hash(row.prev, row, seq) != row.hash:
            self._problem(seq, "the row was changed: its content does not hash to its hash")
        else:
            self.verified += 1
        # Go on from what is stored: one change is reported once, not at every later row.
        self._next_seq, self._prev = seq + 1, row.hash

    def _problem(self, seq: int, problem: str) -> None:
        self.problems.append(ChainProblem(seq, problem))

    def finish(self, open_rows: int) -> ChainReport:
        """The report, once every sealed row has been fed."""
        last = self._next_seq - 1
        head = self.head
        if head is None:
            if self.rows:
                self._problem(last, "the chain head is missing (deleted)")
            return self._report(open_rows, last)
        if head.head_seq > last:
            self._problem(
                head.head_seq,
                f"rows {last + 1}..{head.head_seq} are missing: the chain head says"
                f" {head.head_seq} rows were written",
            )
        elif head.head_seq < last:
            self._problem(last, f"rows past the chain head {head.head_seq} were added")
        elif self._prev is not None and head.head_hash != self._prev:
            self._problem(last, "the newest row's hash is not the chain head's")
        return self._report(open_rows, head.head_seq)

    def _report(self, open_rows: int, head_seq: int) -> ChainReport:
        return ChainReport(self.rows, self.verified, open_rows, head_seq, tuple(self.problems))
