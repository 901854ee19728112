"""Key records of a verified block: a gateway's next key, announced under its current one.

Checked here, purely, against the block's own signature: the record must name the signing
key as the one it replaces (a key cannot announce itself), and its public key must parse, be
of an available algorithm and have the kid and algorithm the record claims. A record that
fails is audited (`bad_key_announcement`) and the block is stored all the same, like a reading
of an unknown quota. Whether the registry takes the key (not another gateway's, not revoked)
is decided by the storage in the block's transaction.
"""

from __future__ import annotations

from collector.ingest.normalize import record_audit
from collector.model import AuditEntry, GatewayKey, KeyAnnouncement, Reason
from specs.block import Block
from specs.records import KeyRecord
from specs.signing import Signature, SignatureError, check_algorithm, load_verify_key


class _Refused(Exception):  # noqa: N818 - control flow inside this module only
    pass


def _announced_key(record: KeyRecord, signature: Signature) -> bytes:
    """The record's public key as PEM bytes, or _Refused saying why it is not taken."""
    if record.replaces != signature.kid:
        raise _Refused(
            f"it replaces key {record.replaces} but the block is signed by {signature.kid}"
        )
    if record.kid == signature.kid:
        raise _Refused(f"key {record.kid} announces itself")
    try:
        check_algorithm(record.alg)
        parsed = load_verify_key(record.public_key.encode("utf-8"))
    except SignatureError as exc:
        raise _Refused(str(exc)) from None
    if (parsed.kid, parsed.alg) != (record.kid, record.alg):
        raise _Refused(
            f"its public key is {parsed.alg} key {parsed.kid}, not {record.alg} key {record.kid}"
        )
    return parsed.public_pem()


def _refusal(topic: str, block: Block, at: float, idx: int, *, kid: str, why: str) -> AuditEntry:
    detail = f": key {kid} not taken: {why}"
    return record_audit(topic, block, at, idx, reason=Reason.BAD_KEY_ANNOUNCEMENT, detail=detail)


def key_announcements(
    topic: str, block: Block, signature: Signature, received_at: float
) -> tuple[tuple[KeyAnnouncement, ...], tuple[AuditEntry, ...]]:
    """The block's key records: the keys to offer the registry, and audit rows for the rest."""
    taken: list[KeyAnnouncement] = []
    refused: list[AuditEntry] = []
    for idx, record in enumerate(block.records):
        if not isinstance(record, KeyRecord):
            continue
        try:
            public_pem = _announced_key(record, signature)
        except _Refused as exc:
            refused.append(_refusal(topic, block, received_at, idx, kid=record.kid, why=str(exc)))
            continue
        key = GatewayKey(
            kid=record.kid,
            gateway=block.header.gateway,
            alg=record.alg,
            public_pem=public_pem,
            added_at=received_at,
            announced_by=signature.kid,
            announced_epoch=block.header.epoch,
            announced_seq=block.header.seq,
        )
        refusal = _refusal(
            topic, block, received_at, idx, kid=record.kid, why="the registry refuses it"
        )
        taken.append(KeyAnnouncement(key, record.replaces, refusal))
    return tuple(taken), tuple(refused)
