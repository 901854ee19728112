"""`collector gateways`: the registry of gateways and their public keys."""

from __future__ import annotations

import json
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Final

import click

from collector.audit.chain import Action
from collector.cli.audited import record_action
from collector.cli.common import (
    config_option,
    gateway_enterprise,
    gateway_option,
    load_or_exit,
    not_empty,
    with_storage,
)
from collector.model import Gateway, GatewayKey
from collector.storage.base import Storage
from hostkit.keyfiles import KeyFileError, read_public_key
from hostkit.tables import render_table
from specs.identifiers import (
    IdentifierError,
    check_district_code,
)
from specs.records import iso_time, optional_iso_time


@click.group()
def gateways() -> None:
    """The registry of gateways and their public keys."""


def _gateway_identity(gateway: str, district: str | None) -> Gateway:
    enterprise = gateway_enterprise(gateway)
    if district is None:
        # GB 32100: characters 3-8 of the credit code are the registering authority's
        # GB/T 2260 district, the usual (not guaranteed) place of the site.
        district = enterprise[2:8]
    try:
        check_district_code(district)
    except IdentifierError as exc:
        raise click.BadParameter(str(exc), param_hint="--district") from None
    return Gateway(gateway, enterprise, district, registered_at=time.time())


@gateways.command("add")
@config_option
@gateway_option
@click.option(
    "--public-key",
    required=True,
    type=click.Path(exists=True, dir_okay=False, path_type=Path),
    help="The gateway's public key PEM (its <key_file>.pub).",
)
@click.option(
    "--district",
    help="6-digit GB/T 2260 district of the site (default: the one in the credit code).",
)
@click.option("--kid", help="Expected key id; refused unless the key has it.")
def gateways_add(
    config_path: Path, gateway_id: str, public_key: Path, district: str | None, kid: str | None
) -> None:
    """Register a gateway (enterprise taken from its id) and add a public key to it."""
    config = load_or_exit(config_path)
    gateway = _gateway_identity(gateway_id, district)
    try:
        verify_key = read_public_key(public_key)
    except KeyFileError as exc:
        raise click.BadParameter(str(exc), param_hint="--public-key") from None
    if kid is not None and kid != verify_key.kid:
        raise click.BadParameter(f"the key's id is {verify_key.kid}, not {kid}", param_hint="--kid")
    key = GatewayKey(
        kid=verify_key.kid,
        gateway=gateway.gateway,
        alg=verify_key.alg,
        public_pem=verify_key.public_pem(),
        added_at=gateway.registered_at,
    )

    async def register(storage: Storage) -> None:
        await storage.register(gateway, key)
        detail = (
            f"gateway {gateway.gateway} (district {gateway.district}) key {key.kid}"
            f" ({key.alg}) added"
        )
        await record_action(storage, Action.GATEWAY_ADD, detail, gateway.gateway)

    with_storage(config, register)
    click.echo(
        f"registered gateway {gateway.gateway} enterprise {gateway.enterprise}"
        f" district {gateway.district} key {key.kid} ({key.alg})"
    )


_LIST_COLUMNS: Final = (
    "GATEWAY",
    "ENTERPRISE",
    "DISTRICT",
    "KID",
    "ALG",
    "ADDED",
    "ANNOUNCED_BY",
    "RETIRED",
    "REVOKED",
)


def _gateways_json(
    registered: Sequence[Gateway], by_gateway: dict[str, list[GatewayKey]]
) -> dict[str, object]:
    """`{"gateways": [{"gateway", "enterprise", "district", "registered_at", "keys": [...]}]}`."""
    return {
        "gateways": [
            {
                "gateway": gateway.gateway,
                "enterprise": gateway.enterprise,
                "district": gateway.district,
                "registered_at": iso_time(gateway.registered_at),
                "keys": [
                    {
                        "kid": key.kid,
                        "alg": key.alg,
                        "added_at": iso_time(key.added_at),
                        "announced_by": key.announced_by,
                        "retired_at": optional_iso_time(key.retired_at),
                        "revoked_at": optional_iso_time(key.revoked_at),
                    }
                    for key in by_gateway.get(gateway.gateway, [])
                ],
            }
            for gateway in registered
        ]
    }


@gateways.command("list")
@config_option
@click.option("--json", "as_json", is_flag=True, help="Gateways with their keys, as JSON.")
def gateways_list(config_path: Path, as_json: bool) -> None:
    """List registered gateways and every key each ever had (announced, retired, revoked)."""
    config = load_or_exit(config_path)

    async def read(storage: Storage) -> tuple[tuple[Gateway, ...], tuple[GatewayKey, ...]]:
        return await storage.gateways(), await storage.keys()

    registered, keys_held = with_storage(config, read)
    by_gateway: dict[str, list[GatewayKey]] = {}
    for key in keys_held:
        by_gateway.setdefault(key.gateway, []).append(key)
    if as_json:
        click.echo(json.dumps(_gateways_json(registered, by_gateway), ensure_ascii=False))
        return
    rows = [
        (
            gateway.gateway,
            gateway.enterprise,
            gateway.district,
            key.kid,
            key.alg,
            iso_time(key.added_at),
            key.announced_by or "-",
            "-" if key.retired_at is None else iso_time(key.retired_at),
            "-" if key.revoked_at is None else iso_time(key.revoked_at),
        )
        for gateway in registered
        for key in by_gateway.get(gateway.gateway, [])
    ]
    click.echo(render_table(rows, _LIST_COLUMNS))
    click.echo(f"{len(registered)} gateways, {len(keys_held)} keys", err=True)


@gateways.command("revoke")
@config_option
@click.option(
    "--gateway",
    "gateway_id",
    required=True,
    callback=not_empty,
    help="The gateway whose key to revoke.",
)
@click.option(
    "--kid",
    callback=not_empty,
    help="The key to revoke; without it, every active key of the gateway.",
)
def gateways_revoke(config_path: Path, gateway_id: str, kid: str | None) -> None:
    """Revoke a gateway's key: blocks signed with it are rejected from now on."""
    config = load_or_exit(config_path)
    # Checked as add checks it: a mistyped id is a usage error, not "no active key to revoke".
    gateway_enterprise(gateway_id)

    async def revoke(storage: Storage) -> tuple[str, ...]:
        kids = await storage.revoke(gateway_id, kid, time.time())
        if kids:
            detail = f"gateway {gateway_id} key(s) {', '.join(kids)} revoked"
            await record_action(storage, Action.GATEWAY_REVOKE, detail, gateway_id)
        return kids

    revoked = with_storage(config, revoke)
    if not revoked:
        which = f"key {kid}" if kid else "active key"
        raise click.ClickException(f"gateway {gateway_id} has no {which} to revoke")
    for revoked_kid in revoked:
        click.echo(f"revoked key {revoked_kid} of gateway {gateway_id}")
