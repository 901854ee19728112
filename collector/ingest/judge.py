"""Pure: verify one inbound message and judge it by its kind (block, meta, status, command).

The checks of `collector.ingest.core`'s docstring, in its order, each rejection an audit row
(`audit_row`) with its reason; nothing here touches the network or the database.
"""

from __future__ import annotations

import dataclasses
import functools
import re
from collections.abc import Callable, Iterator, Mapping, Sequence
from typing import TYPE_CHECKING, Concatenate, Final, ParamSpec, TypeVar

from collector.audit.chain import ActionEntry
from collector.ingest.command_results import result_entry
from collector.ingest.keys import key_announcements
from collector.ingest.normalize import block_entries, meta_point
from collector.model import (
    MAX_DETAIL,
    AuditEntry,
    Gateway,
    IncomingBlock,
    IncomingMeta,
    KeyGrant,
    Reason,
    StatusUpdate,
)
from specs.block import DOMAINS, Block, BlockFormatError, block_hash, decode_block
from specs.catalogue import Catalogue
from specs.command import CommandFormatError, decode_result
from specs.identifiers import IdentifierError, check_point_code
from specs.meta import MetaFormatError, decode_meta
from specs.records import (
    AlarmRecord,
    GapRecord,
    Reading,
    RecordFormatError,
    iso_time,
    parse_iso_time,
)
from specs.signing import (
    Signature,
    SignatureError,
    UnsupportedAlgorithmError,
    VerifyKey,
    check_algorithm,
    load_verify_key,
    signature_from_properties,
)
from specs.status import StatusFormatError, decode_status
from specs.topics import GatewayTopics, parse_topic

T = TypeVar("T")
P = ParamSpec("P")

if TYPE_CHECKING:  # collector.ingest.core plans batches with these judges
    from collector.ingest.core import Inbound

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
MAX_ID: Final = 256
"""The longest epoch, point or alarm id taken, in characters (at most 1 KiB of UTF-8): a
PostgreSQL index entry holds at most 2,704 bytes, and a longer one failed the whole batch. The
agent's ids are far shorter (points at most 64 characters, epochs 16 hex digits)."""
# A NUL character in a JSON string, which arrives only as the escape \u0000 (strict JSON has no
# raw control characters in strings): a backslash not itself escaped, then u0000.
_NUL_ESCAPE: Final = re.compile(rb"(?<!\\)(?:\\\\)*\\u0000")


class _Rejected(Exception):  # noqa: N818 - control flow inside this module only
    def __init__(self, reason: Reason, detail: str) -> None:
        super().__init__(detail)
        self.reason = reason
        self.detail = detail


@functools.lru_cache(maxsize=4096)
def _verify_key(pem: bytes) -> VerifyKey:
    """Parse a registered public key once; registered keys never change their bytes."""
    return load_verify_key(pem)


def audit_row(message: Inbound, reason: Reason, detail: str) -> AuditEntry:
    """The audit row rejecting `message`: its topic and gateway cut to what a row keeps."""
    gateway = message.gateway
    return AuditEntry(
        at=message.received_at,
        gateway=None if gateway is None else gateway[:MAX_AUDIT_NAME],
        topic=message.topic[:MAX_AUDIT_TOPIC],
        reason=reason,
        detail=detail[:MAX_DETAIL],
        payload_hash=block_hash(message.payload),
    )


def _or_audit_row(
    judge: Callable[Concatenate[Inbound, P], T],
    message: Inbound,
    /,
    *args: P.args,
    **kwargs: P.kwargs,
) -> T | AuditEntry:
    """What `judge` makes of `message`, or the audit row of its rejection."""
    try:
        return judge(message, *args, **kwargs)
    except _Rejected as rejected:
        return audit_row(message, rejected.reason, rejected.detail)


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


def _block_ids(block: Block) -> Iterator[tuple[str, str | None]]:
    """The texts of a block that database indexes hold, each with its name."""
    yield "epoch", block.header.epoch
    for record in block.records:
        if isinstance(record, Reading):
            yield "point", record.point
        elif isinstance(record, AlarmRecord):
            yield "point", record.point
            yield "alarm id", record.alarm_id
        elif isinstance(record, GapRecord):
            yield "gap epoch", record.epoch
            yield "gap point", record.point


def _block_points(block: Block) -> Iterator[tuple[str, str]]:
    """The point ids a block names, each with where."""
    for record in block.records:
        if isinstance(record, Reading):
            yield "reading point", record.point
        elif isinstance(record, AlarmRecord):
            yield "alarm point", record.point
            if record.related is not None:
                yield "alarm related point", record.related
        elif isinstance(record, GapRecord) and record.point is not None:
            yield "gap point", record.point


def _check_id(what: str, text: str | None) -> None:
    if text is not None and len(text) > MAX_ID:
        raise _Rejected(
            Reason.MALFORMED, f"{what} of {len(text)} characters: ids are at most {MAX_ID}"
        )


def _check_point(what: str, point: str) -> None:
    """The contract's point rule (specs.identifiers, as the agent's site map is checked)."""
    try:
        check_point_code(point)
    except IdentifierError as exc:
        raise _Rejected(Reason.MALFORMED, f"{what} {point!r}: {exc}") from None


def _check_storable(block: Block) -> None:
    """Only what database columns and indexes hold, and points the contract names.

    A huge seq or a long id failed the whole batch in the database; a point id outside the
    contract's rule (a line break, a quote, an RTL override) went on into the API and exports.
    The block is refused whole, as one any of whose records is malformed.
    """
    counts = [block.header.seq]
    for record in block.records:
        if isinstance(record, GapRecord):
            counts.extend((record.lost or 0, record.from_seq or 0, record.to_seq or 0))
    if any(count > MAX_INTEGER for count in counts):
        raise _Rejected(Reason.MALFORMED, f"an integer in the block exceeds {MAX_INTEGER}")
    for what, text in _block_ids(block):
        _check_id(what, text)
    checked: set[str] = set()
    for what, point in _block_points(block):
        if point not in checked:
            _check_point(what, point)
            checked.add(point)


def registered_topics(owner: Gateway) -> GatewayTopics:
    """The topics of a gateway at the place the registry holds it."""
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


def _verify_registered(message: Inbound, grants: Mapping[str, KeyGrant]) -> GatewayTopics:
    """Check a status or command result's signature and key; return its topic.

    These payloads name no place of their own: the topic must be where the key's gateway is
    registered.
    """
    topics, _, owner = _verify(message, grants)
    _check_place(topics, registered_topics(owner), "registered")
    return topics


def _decoded(decode: Callable[[bytes], T], payload: bytes, error: type[Exception]) -> T:
    """`decode(payload)`, its `error` (or a nesting too deep to parse) rejected as malformed.

    So is text holding a NUL character: PostgreSQL's text columns refuse it, and one such block
    or meta failed every batch it came in (audited nowhere, resent by its agent for good).
    """
    try:
        decoded = decode(payload)
    except error as exc:
        raise _Rejected(Reason.MALFORMED, str(exc)) from None
    except RecursionError:
        raise _Rejected(Reason.MALFORMED, "payload nests too deep") from None
    if b"\\u0000" in payload and _NUL_ESCAPE.search(payload):
        raise _Rejected(
            Reason.MALFORMED, "payload holds a NUL character (\\u0000), which no text may hold"
        )
    return decoded


def _judge_block(
    message: Inbound, grants: Mapping[str, KeyGrant], catalogue: Catalogue
) -> IncomingBlock:
    topics, signature, owner = _verify(message, grants)
    block = _decoded(decode_block, message.payload, BlockFormatError)
    _check_storable(block)
    header = block.header
    _check_place(topics, GatewayTopics(header.district, header.enterprise, header.gateway), "block")
    _check_place(topics, registered_topics(owner), "registered")
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
    return _or_audit_row(_judge_block, message, grants, catalogue)


def _judge_meta(
    message: Inbound, grants: Mapping[str, KeyGrant], catalogue: Catalogue
) -> IncomingMeta:
    topics, signature, owner = _verify(message, grants)
    meta = _decoded(decode_meta, message.payload, MetaFormatError)
    if meta.domain not in DOMAINS:
        raise _Rejected(Reason.MALFORMED, f"meta domain {meta.domain!r} is unknown")
    try:
        issued_at = parse_iso_time(meta.issued_at)
    except RecordFormatError as exc:
        raise _Rejected(Reason.MALFORMED, f"meta issued_at: {exc}") from None
    for point in meta.points:
        _check_id("meta point", point.point)
        _check_point("meta point", point.point)
    _check_place(topics, GatewayTopics(meta.district, meta.enterprise, meta.gateway), "meta")
    _check_place(topics, registered_topics(owner), "registered")
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
    return _or_audit_row(_judge_meta, message, grants, catalogue)


def _judge_status(
    message: Inbound, grants: Mapping[str, KeyGrant], tolerance: float
) -> StatusUpdate:
    # Signed like a block: whoever can publish on the topic could otherwise keep a dead
    # gateway online (or, replaying a recorded heartbeat, keep it online later).
    topics = _verify_registered(message, grants)
    status = _decoded(decode_status, message.payload, StatusFormatError)
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
    return _or_audit_row(_judge_status, message, grants, tolerance)


def _judge_command_result(message: Inbound, grants: Mapping[str, KeyGrant]) -> ActionEntry:
    topics = _verify_registered(message, grants)
    result = _decoded(decode_result, message.payload, CommandFormatError)
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
        keep_or_audit(_or_audit_row(_judge_command_result, message, grants), actions, audits)
    return actions, audits


def keep_or_audit(verdict: T | AuditEntry | None, kept: list[T], audits: list[AuditEntry]) -> None:
    """File a judge's verdict: a rejection's audit row in `audits`, anything else in `kept`.

    None (nothing to store, as for a cleared retained status) goes nowhere.
    """
    if isinstance(verdict, AuditEntry):
        audits.append(verdict)
    elif verdict is not None:
        kept.append(verdict)
