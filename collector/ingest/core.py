"""Pure ingest decisions: verify and classify inbound messages, then build the ACKs.

The per-kind verification and judging is `collector.ingest.judge`.

Nothing here touches the network or the database. The shell (`collector.ingest.service`) hands
in messages plus the registry rows they name, commits the `IngestBatch` this module plans, and
publishes the ACKs this module derives from the committed `BatchResult`.

A message whose payload is over `max_message_bytes` (the config's `ingest.max_message_bytes`)
is audited `too_large` and goes no further: it is neither decoded nor parsed. Every other
message is first decoded as its `enc` user property says (specs.encoding): an unknown
encoding, a zip bomb or a corrupt frame is audited `malformed`; what follows sees only the
canonical bytes the signature covers. Checks on an `up/block` and an `up/meta`, in order, each
with its audit reason: signature properties present (`bad_signature`), algorithm allowed and
available (`bad_algorithm`), key registered (`unknown_key`), not revoked (`revoked_key`) nor
retired (`retired_key`), owned by the topic's gateway (`key_not_owned`), signature valid over
the exact payload bytes (`bad_signature`), payload a block or meta message (`malformed`),
payload and registry agree with the topic (`topic_mismatch`). A verified block is then
normalized against the catalogue (`collector.ingest.normalize`): a record it cannot take is
audited (`unknown_quota`, `unknown_unit`) and left out alone; its key records are checked
(`collector.ingest.keys`).
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Final

from collector.ingest.judge import (
    BLOCK_KIND,
    CMD_KIND,
    META_KIND,
    STATUS_KIND,
    audit_row,
    judge_block,
    judge_command_results,
    judge_meta,
    judge_status,
    keep_or_audit,
)
from collector.ingest.key_notice import key_refusal
from collector.model import (
    MESSAGE_BYTES,
    AuditEntry,
    BatchResult,
    IncomingBlock,
    IncomingMeta,
    IngestBatch,
    KeyGrant,
    KeyRefusal,
    LiveKey,
    Reason,
    StatusUpdate,
    StreamState,
)
from specs.ack import MAX_ACK_KEYS, Ack
from specs.catalogue import Catalogue
from specs.encoding import ENC_PROPERTY, EncodingError, decode_payload, encoding_of
from specs.records import iso_time
from specs.signing import (
    SigningKey,
    signature_properties,
)
from specs.topics import GatewayTopics, TopicError, parse_topic

MAX_ACK_RANGES: Final = 64
"""How many of a stream's holes an ACK lists at most: the lowest (docs/contract.md, ACK)."""


@dataclass(frozen=True, slots=True)
class Inbound:
    """One MQTT message as the shell received it."""

    topic: str
    payload: bytes
    properties: tuple[tuple[str, str], ...]
    received_at: float

    @property
    def kind(self) -> str | None:
        """`up/block`, `status`, ... or None when the topic is not a gz/1 gateway topic."""
        try:
            return parse_topic(self.topic)[1]
        except TopicError:
            return None

    @property
    def gateway(self) -> str | None:
        """The gateway the topic names, if it names one."""
        try:
            return parse_topic(self.topic)[0].gateway
        except TopicError:
            return None

    @property
    def kid(self) -> str | None:
        """The key id the user properties claim, if any (to look the key up)."""
        return dict(self.properties).get("kid")


@dataclass(frozen=True, slots=True)
class Outgoing:
    """A signed message for the shell to publish at QoS 1."""

    topic: str
    payload: bytes
    properties: tuple[tuple[str, str], ...]


def decode_inbound(message: Inbound) -> Inbound | AuditEntry:
    """The message with its canonical payload (decoded per `enc`), or the audit row saying why not.

    Before any other check: the signature covers the decoded bytes. A decoded message carries
    no `enc` any more, so decoding it again changes nothing.
    """
    try:
        encoding = encoding_of(message.properties)
        payload = decode_payload(message.payload, encoding)
    except EncodingError as exc:
        return audit_row(message, Reason.MALFORMED, f"enc: {exc}")
    if encoding is None:
        return message
    properties = tuple((name, value) for name, value in message.properties if name != ENC_PROPERTY)
    return dataclasses.replace(message, payload=payload, properties=properties)


def _sized_and_decoded(message: Inbound, max_bytes: int) -> Inbound | AuditEntry:
    """`decode_inbound`, unless the payload is too large to be read at all."""
    if (size := len(message.payload)) > max_bytes:
        detail = f"payload of {size:,} bytes; at most {max_bytes:,} are taken"
        return audit_row(message, Reason.TOO_LARGE, f"{detail} (ingest.max_message_bytes)")
    return decode_inbound(message)


def _decode_all(
    messages: Sequence[Inbound], max_bytes: int
) -> tuple[list[Inbound], list[AuditEntry]]:
    decoded: list[Inbound] = []
    undecodable: list[AuditEntry] = []
    for message in messages:
        keep_or_audit(_sized_and_decoded(message, max_bytes), decoded, undecodable)
    return decoded, undecodable


def plan_batch(
    messages: Sequence[Inbound],
    grants: Mapping[str, KeyGrant],
    catalogue: Catalogue,
    *,
    max_message_bytes: int = MESSAGE_BYTES,
) -> IngestBatch:
    """Sort one batch of messages into blocks and metas to store, statuses, and audit rows."""
    blocks: list[IncomingBlock] = []
    metas: list[IncomingMeta] = []
    statuses: list[StatusUpdate] = []
    decoded, undecodable = _decode_all(messages, max_message_bytes)
    actions, audits = judge_command_results(decoded, grants)
    audits = undecodable + audits
    refusals: list[KeyRefusal] = []
    for message in decoded:
        kind = message.kind
        if kind == BLOCK_KIND:
            verdict = judge_block(message, grants, catalogue)
            keep_or_audit(verdict, blocks, audits)
            if isinstance(verdict, AuditEntry):
                refusal = key_refusal(message.topic, message.payload, verdict.reason)
                refusals.extend(() if refusal is None else (refusal,))
        elif kind == META_KIND:
            keep_or_audit(judge_meta(message, grants, catalogue), metas, audits)
        elif kind == STATUS_KIND:
            keep_or_audit(judge_status(message, grants), statuses, audits)
        elif kind != CMD_KIND:  # command results are judged above
            audits.append(
                audit_row(message, Reason.UNSUPPORTED_TOPIC, f"topic kind {kind!r} is not ingested")
            )
    return IngestBatch(
        tuple(blocks),
        tuple(audits),
        tuple(statuses),
        tuple(metas),
        actions=tuple(actions),
        key_refusals=tuple(refusals),
    )


def ack_keys(keys: Sequence[LiveKey], now: float) -> tuple[str, ...]:
    """The kids an ACK issued at `now` names: not retired by then, the newest MAX_ACK_KEYS.

    A gateway rotating often could otherwise make every ACK grow; the key it announced last
    is among the newest (its `added_at` is the announcement's arrival).
    """
    live = [key for key in keys if key.retired_at is None or key.retired_at > now]
    live.sort(key=lambda key: (key.added_at, key.kid), reverse=True)
    return tuple(key.kid for key in live[:MAX_ACK_KEYS])


def build_acks(
    blocks: Sequence[IncomingBlock],
    result: BatchResult,
    key: SigningKey,
    now: float,
    *,
    max_message_bytes: int = MESSAGE_BYTES,
) -> tuple[Outgoing, ...]:
    """One signed ACK per distinct (gateway, epoch, seq) of the committed batch.

    Every block is answered, a SEQ_CONFLICT too, so that the agent learns at once. Each ACK
    carries its stream's state: the lowest MAX_ACK_RANGES of its holes, `acked_hash` (the
    stored block at acked_through, for the agent to compare with its own) and `conflict`.
    A conflicting block's ACK names its seq but its bytes are not stored: `conflict` is true
    in it (and in every later ACK of the stream), which tells the agent to release nothing
    and start a new epoch. And the gateway's `keys` (`ack_keys`): an agent switches to a key
    it announced only once an ACK names it, never on a refused announcement. And
    `max_message_bytes`, the largest payload this collector takes (`ingest.max_message_bytes`):
    a larger one is audited `too_large` unread and answered by no ACK, so the agent splits a
    block over it before sending (edge_agent.shell.outbox_oversize).
    """
    acks: list[Outgoing] = []
    seen: set[tuple[str, str, int]] = set()
    issued_at = iso_time(now)
    kids = {gateway: ack_keys(keys, now) for gateway, keys in result.keys.items()}
    for incoming in blocks:
        header = incoming.block.header
        if (header.gateway, header.epoch, header.seq) in seen:
            continue
        seen.add((header.gateway, header.epoch, header.seq))
        topics = GatewayTopics(header.district, header.enterprise, header.gateway)
        state = result.streams[incoming.stream]
        ack = _stream_ack(
            state, header.seq, issued_at, kids.get(header.gateway, ()), max_message_bytes
        )
        acks.append(_signed(topics, ack, key))
    return tuple(acks)


def notice_ack(
    refusal: KeyRefusal,
    state: StreamState | None,
    keys: Sequence[LiveKey],
    key: SigningKey,
    now: float,
    *,
    max_message_bytes: int = MESSAGE_BYTES,
) -> Outgoing:
    """The key notice to a registered gateway whose block was refused for its key.

    An ACK of the refused block's epoch as stored (`state`; None: nothing of it is), with
    `seq` null: it answers no block, so an agent releases nothing it had not been told was
    stored (collector.ingest.key_notice). Its `keys` leaves the refused key out.
    """
    topics = refusal.topics
    stored = StreamState(topics.gateway, refusal.epoch) if state is None else state
    ack = _stream_ack(stored, None, iso_time(now), ack_keys(keys, now), max_message_bytes)
    return _signed(topics, ack, key)


def _stream_ack(
    state: StreamState, seq: int | None, issued_at: str, keys: tuple[str, ...], limit: int
) -> Ack:
    return Ack(
        gateway=state.gateway,
        epoch=state.epoch,
        acked_through=state.acked_through,
        # The lowest holes only: the agent resends what is listed and leaves the rest to
        # its ACK timeout, never taking an unlisted seq for stored; unbounded, a gateway
        # sending every other seq made every ACK grow (5,000 holes: 58 KiB).
        missing=state.missing[:MAX_ACK_RANGES],
        seq=seq,
        issued_at=issued_at,
        acked_hash=state.acked_hash,
        conflict=state.conflict,
        keys=keys,
        max_message_bytes=limit,
    )


def _signed(topics: GatewayTopics, ack: Ack, key: SigningKey) -> Outgoing:
    payload = ack.encode()
    return Outgoing(topics.ack, payload, tuple(signature_properties(key.sign(payload))))
