"""`collector sites push|history`: signed remote device maps (DESIGN section 11)."""

from __future__ import annotations

import asyncio
import json
import time
from pathlib import Path
from typing import Final

import aiomqtt
import click

from collector.audit.chain import Action, AuditRow
from collector.cli.audited import operator, record_action
from collector.cli.check import private_keys_or_exit, refuse_bad_broker_tls
from collector.cli.common import (
    USAGE_ERROR_EXIT,
    config_option,
    gateway_option,
    load_or_exit,
    with_storage,
)
from collector.config import CollectorConfig
from collector.pki.tls import client_context
from collector.sites import PushHistory, publish_command, push_command, push_detail, site_history
from collector.storage.base import Storage
from collector.storage.capabilities import AuditTrail
from configkit.durations import parse_duration
from configkit.issues import ConfigError, read_config_text
from hostkit.tables import render_row
from specs.records import LATEST_TIME, iso_time
from specs.signing import SigningKey
from specs.topics import GatewayTopics

_PAGE: Final = 1000
_WIDTHS: Final = (16, 24, 16, 11, 0)
_DONE_WITH_REJECTIONS: Final = 1


@click.group()
def sites() -> None:
    """Signed remote device maps: push one to a gateway, see what became of each."""


def _push_inputs(
    config_path: Path, config: CollectorConfig, valid_for: str, site_file: Path
) -> tuple[float, SigningKey, str]:
    try:
        seconds = parse_duration(valid_for)
    except ValueError as exc:
        raise click.BadParameter(str(exc), param_hint="--valid-for") from None
    # A command expired on arrival is ignored by the gateway; one past gz/1's last time
    # cannot be shown (nor audited) as a time.
    if seconds <= 0:
        raise click.BadParameter("must be longer than 0 s", param_hint="--valid-for")
    if time.time() + seconds > LATEST_TIME:
        raise click.BadParameter("must end by 2999-12-31", param_hint="--valid-for")
    # The key files and broker_tls as `serve` checks them: a push reaches the broker as it does.
    key = private_keys_or_exit(config)
    refuse_bad_broker_tls(config_path, config)
    try:
        text = read_config_text(site_file)  # at most a config file's size: not /dev/zero whole
    except ConfigError as exc:
        raise click.BadParameter(str(exc), param_hint="SITE_FILE") from None
    return seconds, key, text


@sites.command("push")
@config_option
@gateway_option
@click.option(
    "--valid-for",
    default="10m",
    show_default=True,
    help="How long the gateway may take the command (its not_after): 30s, 10m, 1h.",
)
@click.option("--json", "as_json", is_flag=True, help="Print the command's nonce and version.")
@click.argument("site_file", type=click.Path(exists=True, dir_okay=False, path_type=Path))
def sites_push(
    config_path: Path, gateway_id: str, valid_for: str, as_json: bool, site_file: Path
) -> None:
    """Send SITE_FILE to a gateway as a signed command; the gateway checks and applies it.

    Its result (applied, rejected with errors, rolled back, ignored) comes back on up/cmd
    and shows in `collector sites history`.
    """
    config = load_or_exit(config_path)
    seconds, key, text = _push_inputs(config_path, config, valid_for, site_file)

    async def place(storage: Storage) -> GatewayTopics | None:
        for gateway in await storage.gateways():
            if gateway.gateway == gateway_id:
                return GatewayTopics(gateway.district, gateway.enterprise, gateway.gateway)
        return None

    topics = with_storage(config, place)
    if topics is None:
        raise click.BadParameter(f"gateway {gateway_id} is not registered", param_hint="--gateway")
    command = push_command(gateway_id, text, now=time.time(), valid_for=seconds, by=operator())
    try:
        asyncio.run(
            publish_command(
                host=config.broker.host,
                port=config.broker.port,
                tls=client_context(config.broker_tls) if config.broker.tls else None,
                topics=topics,
                command=command,
                key=key,
            )
        )
    except aiomqtt.MqttError as exc:
        click.echo(f"broker {config.broker}: {exc}; nothing sent", err=True)
        raise click.exceptions.Exit(_DONE_WITH_REJECTIONS) from None

    async def audit(storage: Storage) -> None:
        detail = push_detail(command, str(site_file))
        await record_action(storage, Action.MAP_PUSH, detail, gateway_id)

    with_storage(config, audit)
    if as_json:
        click.echo(
            json.dumps({"gateway": gateway_id, "nonce": command.nonce, "version": command.version})
        )
    else:
        click.echo(
            f"pushed map {command.version} to {gateway_id} (nonce {command.nonce},"
            f" valid until {iso_time(command.not_after)})"
        )


async def _audit_rows(storage: Storage, gateway: str) -> list[AuditRow] | None:
    """The audit trail's rows; None when `gateway` is not registered."""
    if not await storage.find_gateways([gateway]):
        return None
    if not isinstance(storage, AuditTrail):
        return []
    rows: list[AuditRow] = []
    after: int | None = None
    while page := await storage.audit_rows(after=after, limit=_PAGE):
        # A row changed by hand into nonsense says nothing here (`audit verify` names it).
        rows.extend(row for row in page if isinstance(row, AuditRow))
        after = page[-1].chain_seq
    return rows


def _why(reported: dict[str, object]) -> str:
    errors = reported.get("errors")
    listed = "; ".join(str(e) for e in errors) if isinstance(errors, list) else ""
    return str(reported.get("reason") or listed)


def _line(entry: PushHistory) -> str:
    pushed = "-" if entry.pushed_at is None else iso_time(entry.pushed_at)
    why = _why(entry.results[-1]) if entry.results else ""
    cells = (entry.version or "-", pushed, entry.by or "-", entry.result, why)
    return render_row(cells, _WIDTHS)


@sites.command("history")
@config_option
@gateway_option
@click.option("--json", "as_json", is_flag=True, help="One JSON object: the pushes and results.")
def sites_history(config_path: Path, gateway_id: str, as_json: bool) -> None:
    """The maps pushed to a gateway, oldest first, with the result the gateway reported."""
    config = load_or_exit(config_path)
    rows = with_storage(config, lambda storage: _audit_rows(storage, gateway_id))
    if rows is None:  # as `export` and `verify` say it
        click.echo(f"Error: gateway {gateway_id} is not registered", err=True)
        raise click.exceptions.Exit(USAGE_ERROR_EXIT)
    history = site_history(rows, gateway_id)
    if as_json:
        body = {"gateway": gateway_id, "pushes": [entry.as_json() for entry in history]}
        click.echo(json.dumps(body, ensure_ascii=False))
        return
    header = ("VERSION", "PUSHED", "BY", "RESULT", "DETAIL")
    click.echo(render_row(header, _WIDTHS))
    for entry in history:
        click.echo(_line(entry))
