"""Gateways and their keys in PostgreSQL: the same rules as SQLite's registry."""

from __future__ import annotations

from collections.abc import Collection, Mapping, Sequence
from dataclasses import replace

from collector.model import AuditEntry, Gateway, GatewayKey, IncomingBlock, KeyGrant
from collector.storage.keys import check_same_gateway, check_same_key, refusal, retire_at
from collector.storage.postgres.connection import Db
from collector.storage.postgres.locks import lock_gateways
from collector.storage.postgres.rows import numbered
from collector.storage.records import (
    GATEWAY_COLUMNS,
    GRANT_SELECT,
    INSERT_ANNOUNCED_KEY,
    KEY_COLUMNS,
    announced_key_values,
    gateway_key,
    grant,
)
from collector.storage.records import gateway as gateway_row


async def register(db: Db, gateway: Gateway, key: GatewayKey) -> None:
    """Register a gateway (or find it registered identically) and add a key to it.

    Runs inside the caller's transaction, which has checked the key's owner (`check_owner`);
    the gateway's lock makes a concurrent registration of the same gateway wait and then see
    this one.
    """
    await lock_gateways(db, [gateway.gateway])
    row = await db.fetchrow(
        f"SELECT {GATEWAY_COLUMNS} FROM gateways WHERE gateway = $1", gateway.gateway
    )
    if row is not None:
        check_same_gateway(gateway_row(row), gateway)
    else:
        await db.execute(
            "INSERT INTO gateways (gateway, enterprise, district, registered_at)"
            " VALUES ($1, $2, $3, $4)",
            gateway.gateway,
            gateway.enterprise,
            gateway.district,
            gateway.registered_at,
        )
    # The key may belong to another gateway, whose lock this transaction does not hold: a
    # registration of the same kid there can commit between a lookup and an insert, so the
    # insert yields to it and the stored key is judged like one found at once.
    added = await db.fetchval(
        "INSERT INTO gateway_keys (kid, gateway, alg, public_pem, added_at, revoked_at)"
        " VALUES ($1, $2, $3, $4, $5, NULL) ON CONFLICT (kid) DO NOTHING RETURNING kid",
        key.kid,
        key.gateway,
        key.alg,
        key.public_pem,
        key.added_at,
    )
    if added is None:
        found = await db.fetchrow(f"SELECT {KEY_COLUMNS} FROM gateway_keys WHERE kid = $1", key.kid)
        if found is None:
            raise AssertionError(f"key {key.kid} conflicted on insert yet is not stored")
        check_same_key(gateway_key(found), key)


async def revoke(db: Db, gateway: str, kid: str | None, at: float) -> tuple[str, ...]:
    """Revoke one key (or every active key) of a gateway; return the kids revoked."""
    await lock_gateways(db, [gateway])
    found = await db.fetch(
        "UPDATE gateway_keys SET revoked_at = $2 WHERE gateway = $1 AND revoked_at IS NULL"
        " AND ($3::text IS NULL OR kid = $3) RETURNING kid",
        gateway,
        at,
        kid,
    )
    return tuple(sorted(row[0] for row in found))


async def find_gateways(db: Db, ids: Collection[str]) -> Mapping[str, Gateway]:
    """The registered gateways among `ids`."""
    found = await db.fetch(
        f"SELECT {GATEWAY_COLUMNS} FROM gateways WHERE gateway = ANY($1::text[])",
        sorted(set(ids)),
    )
    return {row[0]: gateway_row(row) for row in found}


async def grants(db: Db, kids: Collection[str]) -> Mapping[str, KeyGrant]:
    """The registered keys among `kids`, each with its owning gateway."""
    found = await db.fetch(f"{GRANT_SELECT} WHERE k.kid = ANY($1::text[])", sorted(set(kids)))
    return {row[0]: grant(row) for row in found}


async def adopt_keys(db: Db, blocks: Sequence[IncomingBlock], overlap: float) -> list[AuditEntry]:
    """Keep the keys the newly stored `blocks` announce, retire the keys they replace.

    Inside the batch's transaction, which holds the announcing gateways' locks; a kid of
    another gateway is judged as stored (an insert yields to a concurrent registration).
    Returns an audit row per key the registry refuses.
    """
    refused: list[AuditEntry] = []
    for announced in (a for block in blocks for a in block.entries.keys):
        key = announced.key
        await db.execute(
            numbered(f"{INSERT_ANNOUNCED_KEY} ON CONFLICT (kid) DO NOTHING"),
            *announced_key_values(key),
        )
        found = await db.fetchrow(f"SELECT {KEY_COLUMNS} FROM gateway_keys WHERE kid = $1", key.kid)
        # This announcement's own row reads back as this gateway's key: nothing refused.
        why = refusal(None if found is None else gateway_key(found), announced)
        if why is not None:
            refused.append(replace(announced.audit, detail=f"{announced.audit.detail}: {why}"))
            continue
        await db.execute(
            "UPDATE gateway_keys SET retired_at = $1"
            " WHERE kid = $2 AND gateway = $3 AND retired_at IS NULL",
            retire_at(announced, overlap),
            announced.replaces,
            key.gateway,
        )
    return refused
