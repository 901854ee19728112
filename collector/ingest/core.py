"""Pure ingest decisions: verify and classify inbound messages, then build the ACKs.

Nothing here touches the network or the database. The shell (`collector.ingest.service`) hands
in messages plus the registry rows they name, commits the `IngestBatch` this module plans, and
publishes the ACKs this module derives from the committed `BatchResult`.

Every message is first decoded as its `enc` user property says (specs.encoding): an unknown
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
import functools
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Final

from collector.audit.chain import ActionEntry
from collector.ingest.command_results import result_entry
from collector.ingest.keys import key_announcements
from collector.ingest.normalize import block_entries, meta_point
from collector.model import (
    MAX_DETAIL,
    AuditEntry,
    BatchResult,
    Gateway,
    IncomingBlock,
    IncomingMeta,
    IngestBatch,
    KeyGrant,
    Reason,
    StatusUpdate,
)
from specs.ack import Ack
from specs.block import DOMAINS, Block, BlockFormatError, block_hash, decode_block
from specs.catalogue import Catalogue
from specs.command import CommandFormatError, decode_result
from specs.encoding import ENC_PROPERTY, EncodingError, decode_payload, encoding_of
from specs.meta import MetaFormatError, decode_meta
from specs.records import GapRecord, RecordFormatError, iso_time, parse_iso_time
from specs.signing import (
    Signature,
    SignatureError,
    SigningKey,
    UnsupportedAlgorithmError,
    VerifyKey,
    check_algorithm,
    load_verify_key,
    signature_from_properties,
    signature_properties,
)
from specs.status import StatusFormatError, decode_status
from specs.topics import GatewayTopics, TopicError, parse_topic

BLOCK_KIND: Final = "up/block"
META_KIND: Final = "up/meta"
STATUS_KIND: Final = "status"
CMD_KIND: Final = "up/cmd"
MAX_INTEGER: Final = 2**63 - 1  # SQLite INTEGER and PostgreSQL bigint
# How far a heartbeat's own time may be from its arrival: ten default heartbeat intervals,
# room for an agent clock a few minutes off, and the longest a recorded one can be replayed.
STATUS_TOLERANCE: Final = 300.0
# What an audit row keeps of a rejected message's topic and of the gateway named in it. MQTT
# topics run to 65,535 bytes and anyone who can publish picks them: kept whole, each of the
# (capped) rows of a flood held 180 KB. Contract topics are under 100 characters, ids 23.
MAX_AUDIT_TOPIC: Final = 256
MAX_AUDIT_NAME: Final = 64


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


class _Rejected(Exception):  # noqa: N818 - control flow inside this module only
    def __init__(self, reason: Reason, detail: str) -> None:
        super().__init__(detail)
        self.reason = reason
        self.detail = detail


@functools.lru_cache(maxsize=4096)
def _verify_key(pem: bytes) -> VerifyKey:
    """Parse a registered public key once; registered keys never change their bytes."""
    return load_verify_key(pem)


def _audit(message: Inbound, reason: Reason, detail: str) -> AuditEntry:
    gateway = message.gateway
    return AuditEntry(
        at=message.received_at,
        gateway=None if gateway is None else gateway[:MAX_AUDIT_NAME],
        topic=message.topic[:MAX_AUDIT_TOPIC],
        reason=reason,
        detail=detail[:MAX_DETAIL],
        payload_hash=block_hash(message.payload),
    )


def _check_owner(topics: GatewayTopics, grant: KeyGrant | None, kid: str, at: float) -> KeyGrant:
    if grant is None:
        raise _Rejected(Reason.UNKNOWN_KEY, f"key {kid} is not registered")
    if grant.key.revoked_at is not None:
        raise _Rejected(
            Reason.REVOKED_KEY, f"key {kid} was revoked at {iso_time(grant.key.revoked_at)}"
        )
    # Retired by a rotation: its successor's announcement was stored, and the overlap is over.
    if grant.key.retired_at is not None and at >= grant.key.retired_at:
        raise _Rejected(
            Reason.RETIRED_KEY, f"key {kid} was retired at {iso_time(grant.key.retired_at)}"
        )
    if grant.key.gateway != topics.gateway:
        raise _Rejected(
            Reason.KEY_NOT_OWNED,
            f"key {kid} belongs to gateway {grant.key.gateway}, not {topics.gateway}",
        )
    return grant


def _check_storable(block: Block) -> None:
    """Integers a database column can hold: a huge seq must be rejected, not crash a batch."""
    counts = [block.header.seq]
    for record in block.records:
        if isinstance(record, GapRecord):
            counts.extend((record.lost or 0, record.from_seq or 0, record.to_seq or 0))
    if any(count > MAX_INTEGER for count in counts):
        raise _Rejected(Reason.MALFORMED, f"an integer in the block exceeds {MAX_INTEGER}")


def _registered(owner: Gateway) -> GatewayTopics:
    return GatewayTopics(owner.district, owner.enterprise, owner.gateway)


def _check_place(topics: GatewayTopics, place: GatewayTopics, what: str) -> None:
    """Raise topic_mismatch unless `place` (payload or registry) names the topic's gateway."""
    for field, want, got in (
        ("gateway", topics.gateway, place.gateway),
        ("enterprise", topics.enterprise, place.enterprise),
        ("district", topics.district, place.district),
    ):
        if want != got:
            raise _Rejected(
                Reason.TOPIC_MISMATCH,
                f"{what} {field} {got} is not the topic's {want}",
            )


def _verify(
    message: Inbound, grants: Mapping[str, KeyGrant]
) -> tuple[GatewayTopics, Signature, Gateway]:
    """Check a signed message's signature and key; return its topic, signature and owner."""
    topics, _ = parse_topic(message.topic)
    try:
        signature = signature_from_properties(list(message.properties))
    except SignatureError as exc:
        raise _Rejected(Reason.BAD_SIGNATURE, str(exc)) from None
    try:
        check_algorithm(signature.alg)
    except UnsupportedAlgorithmError as exc:
        raise _Rejected(Reason.BAD_ALGORITHM, str(exc)) from None
    grant = _check_owner(topics, grants.get(signature.kid), signature.kid, message.received_at)
    try:
        _verify_key(grant.key.public_pem).verify(signature, message.payload)
    except UnsupportedAlgorithmError as exc:
        raise _Rejected(Reason.BAD_ALGORITHM, str(exc)) from None
    except SignatureError as exc:
        raise _Rejected(Reason.BAD_SIGNATURE, str(exc)) from None
    return topics, signature, grant.owner


def _judge_block(
    message: Inbound, grants: Mapping[str, KeyGrant], catalogue: Catalogue
) -> IncomingBlock:
    topics, signature, owner = _verify(message, grants)
    try:
        block = decode_block(message.payload)
    except BlockFormatError as exc:
        raise _Rejected(Reason.MALFORMED, str(exc)) from None
    except RecursionError:
        raise _Rejected(Reason.MALFORMED, "payload nests too deep") from None
    _check_storable(block)
    header = block.header
    _check_place(topics, GatewayTopics(header.district, header.enterprise, header.gateway), "block")
    _check_place(topics, _registered(owner), "registered")
    entries = block_entries(message.topic, block, message.received_at, catalogue)
    keys, refused = key_announcements(message.topic, block, signature, message.received_at)
    if keys or refused:
        entries = dataclasses.replace(entries, keys=keys, rejected=entries.rejected + refused)
    return IncomingBlock(message.topic, block, signature, message.received_at, entries)


def judge_block(
    message: Inbound, grants: Mapping[str, KeyGrant], catalogue: Catalogue
) -> IncomingBlock | AuditEntry:
    """Verify an `up/block` message: the block to store, or the audit row saying why not.

    The block's records are normalized against `catalogue`.
    """
    try:
        return _judge_block(message, grants, catalogue)
    except _Rejected as rejected:
        return _audit(message, rejected.reason, rejected.detail)


def _judge_meta(
    message: Inbound, grants: Mapping[str, KeyGrant], catalogue: Catalogue
) -> IncomingMeta:
    topics, signature, owner = _verify(message, grants)
    try:
        meta = decode_meta(message.payload)
    except MetaFormatError as exc:
        raise _Rejected(Reason.MALFORMED, str(exc)) from None
    except RecursionError:
        raise _Rejected(Reason.MALFORMED, "payload nests too deep") from None
    if meta.domain not in DOMAINS:
        raise _Rejected(Reason.MALFORMED, f"meta domain {meta.domain!r} is unknown")
    try:
        issued_at = parse_iso_time(meta.issued_at)
    except RecordFormatError as exc:
        raise _Rejected(Reason.MALFORMED, f"meta issued_at: {exc}") from None
    _check_place(topics, GatewayTopics(meta.district, meta.enterprise, meta.gateway), "meta")
    _check_place(topics, _registered(owner), "registered")
    return IncomingMeta(
        topic=message.topic,
        meta=meta,
        payload=message.payload,
        signature=signature,
        issued_at=issued_at,
        received_at=message.received_at,
        points=tuple(meta_point(p, catalogue) for p in meta.points),
    )


def judge_meta(
    message: Inbound, grants: Mapping[str, KeyGrant], catalogue: Catalogue
) -> IncomingMeta | AuditEntry:
    """Verify an `up/meta` message exactly like a block: the meta to store, or the audit row."""
    try:
        return _judge_meta(message, grants, catalogue)
    except _Rejected as rejected:
        return _audit(message, rejected.reason, rejected.detail)


def _judge_status(
    message: Inbound, grants: Mapping[str, KeyGrant], tolerance: float
) -> StatusUpdate:
    # Signed like a block: whoever can publish on the topic could otherwise keep a dead
    # gateway online (or, replaying a recorded heartbeat, keep it online later).
    topics, _, owner = _verify(message, grants)
    _check_place(topics, _registered(owner), "registered")
    try:
        status = decode_status(message.payload)
    except StatusFormatError as exc:
        raise _Rejected(Reason.MALFORMED, str(exc)) from None
    if status.online and abs(message.received_at - status.t) > tolerance:
        raise _Rejected(
            Reason.STALE_STATUS,
            f"heartbeat made at {iso_time(status.t)} is more than {tolerance:g} s from its"
            f" arrival at {iso_time(message.received_at)}",
        )
    return StatusUpdate(topics.gateway, status.online, message.received_at)


def judge_status(
    message: Inbound, grants: Mapping[str, KeyGrant], tolerance: float = STATUS_TOLERANCE
) -> StatusUpdate | AuditEntry | None:
    """Verify a retained status message; None for an empty payload (a retained one cleared).

    A heartbeat (`online: true`) counts only within `tolerance` seconds of its own `t`; a
    last will counts whatever its age (it was signed when the session connected).
    """
    if not message.payload:
        return None
    try:
        return _judge_status(message, grants, tolerance)
    except _Rejected as rejected:
        return _audit(message, rejected.reason, rejected.detail)


def _judge_command_result(message: Inbound, grants: Mapping[str, KeyGrant]) -> ActionEntry:
    topics, _, owner = _verify(message, grants)
    _check_place(topics, _registered(owner), "registered")
    try:
        result = decode_result(message.payload)
    except CommandFormatError as exc:
        raise _Rejected(Reason.MALFORMED, str(exc)) from None
    if result.gateway != topics.gateway:
        detail = f"result of {result.gateway} on {message.topic}"
        raise _Rejected(Reason.TOPIC_MISMATCH, detail)
    return result_entry(result, message.topic, message.payload, message.received_at)


def judge_command_results(
    messages: Sequence[Inbound], grants: Mapping[str, KeyGrant]
) -> tuple[list[ActionEntry], list[AuditEntry]]:
    """Verify the command results (`up/cmd`) among `messages` like blocks.

    Their audit rows (collector.ingest.command_results), and the rejections of the others.
    """
    actions: list[ActionEntry] = []
    audits: list[AuditEntry] = []
    for message in messages:
        if message.kind != CMD_KIND:
            continue
        try:
            actions.append(_judge_command_result(message, grants))
        except _Rejected as rejected:
            audits.append(_audit(message, rejected.reason, rejected.detail))
    return actions, audits


def decode_inbound(message: Inbound) -> Inbound | AuditEntry:
    """The message with its canonical payload (decoded per `enc`), or the audit row saying why not.

    Before any other check: the signature covers the decoded bytes. A decoded message carries
    no `enc` any more, so decoding it again changes nothing.
    """
    try:
        encoding = encoding_of(message.properties)
        payload = decode_payload(message.payload, encoding)
    except EncodingError as exc:
        return _audit(message, Reason.MALFORMED, f"enc: {exc}")
    if encoding is None:
        return message
    properties = tuple((name, value) for name, value in message.properties if name != ENC_PROPERTY)
    return dataclasses.replace(message, payload=payload, properties=properties)


def _decode_all(messages: Sequence[Inbound]) -> tuple[list[Inbound], list[AuditEntry]]:
    decoded: list[Inbound] = []
    undecodable: list[AuditEntry] = []
    for message in messages:
        verdict = decode_inbound(message)
        if isinstance(verdict, Inbound):
            decoded.append(verdict)
        else:
            undecodable.append(verdict)
    return decoded, undecodable


def plan_batch(
    messages: Sequence[Inbound],
    grants: Mapping[str, KeyGrant],
    catalogue: Catalogue,
) -> IngestBatch:
    """Sort one batch of messages into blocks and metas to store, statuses, and audit rows."""
    blocks: list[IncomingBlock] = []
    metas: list[IncomingMeta] = []
    statuses: list[StatusUpdate] = []
    decoded, undecodable = _decode_all(messages)
    actions, audits = judge_command_results(decoded, grants)
    audits = undecodable + audits
    for message in decoded:
        kind = message.kind
        if kind == BLOCK_KIND:
            verdict = judge_block(message, grants, catalogue)
            if isinstance(verdict, IncomingBlock):
                blocks.append(verdict)
            else:
                audits.append(verdict)
        elif kind == META_KIND:
            described = judge_meta(message, grants, catalogue)
            if isinstance(described, IncomingMeta):
                metas.append(described)
            else:
                audits.append(described)
        elif kind == STATUS_KIND:
            status = judge_status(message, grants)
            if isinstance(status, StatusUpdate):
                statuses.append(status)
            elif status is not None:
                audits.append(status)
        elif kind != CMD_KIND:  # command results are judged above
            audits.append(
                _audit(message, Reason.UNSUPPORTED_TOPIC, f"topic kind {kind!r} is not ingested")
            )
    return IngestBatch(
        tuple(blocks), tuple(audits), tuple(statuses), tuple(metas), actions=tuple(actions)
    )


def build_acks(
    blocks: Sequence[IncomingBlock], result: BatchResult, key: SigningKey, now: float
) -> tuple[Outgoing, ...]:
    """One signed ACK per distinct (gateway, epoch, seq) of the committed batch.

    Every block is answered, a SEQ_CONFLICT too, so that the agent learns at once. Each ACK
    carries its stream's state: `acked_hash` (the stored block at acked_through, for the
    agent to compare with its own) and `conflict`. A conflicting block's ACK names its seq
    but its bytes are not stored: `conflict` is true in it (and in every later ACK of the
    stream), which tells the agent to release nothing and start a new epoch.
    """
    acks: list[Outgoing] = []
    seen: set[tuple[str, str, int]] = set()
    issued_at = iso_time(now)
    for incoming in blocks:
        header = incoming.block.header
        if (header.gateway, header.epoch, header.seq) in seen:
            continue
        seen.add((header.gateway, header.epoch, header.seq))
        state = result.streams[incoming.stream]
        payload = Ack(
            gateway=header.gateway,
            epoch=header.epoch,
            acked_through=state.acked_through,
            missing=state.missing,
            seq=header.seq,
            issued_at=issued_at,
            acked_hash=state.acked_hash,
            conflict=state.conflict,
        ).encode()
        topic = GatewayTopics(header.district, header.enterprise, header.gateway).ack
        acks.append(Outgoing(topic, payload, tuple(signature_properties(key.sign(payload)))))
    return tuple(acks)
