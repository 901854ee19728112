"""`collector broker-config`: a Mosquitto TLS listener with the per-gateway ACL (DESIGN 11)."""

from __future__ import annotations

import os
import pwd
from collections.abc import Sequence
from datetime import UTC, datetime
from pathlib import Path

import click

from collector.audit.chain import Action
from collector.cli.certs import (
    audited,
    ca_dir_or_exit,
    certificate_detail,
    current_crl,
    days_option,
    load_ca_or_fail,
)
from collector.cli.common import config_option, load_or_exit, with_storage
from collector.config import CollectorConfig
from collector.pki.certificates import (
    COLLECTOR_IDENTITY,
    COMMON_NAME_MAX,
    check_collector_identity,
    check_server_name,
    issue_client,
    issue_server,
    validity_from,
)
from collector.pki.mosquitto import BROKER, BrokerLayout, acl_text, mosquitto_conf
from collector.pki.store import PkiError, record_issued, write_crl, write_issued, write_text
from collector.storage.base import Storage
from configkit.network import ListenAddress, parse_listen

_ANY_ADDRESS = frozenset({"0.0.0.0", "::"})  # noqa: S104 - a listen address, not a bind here


def _listen(_ctx: click.Context, _param: click.Parameter, value: str) -> ListenAddress:
    try:
        return parse_listen(value)
    except ValueError as exc:
        raise click.BadParameter(str(exc)) from None


def _collectors(
    _ctx: click.Context, _param: click.Parameter, value: tuple[str, ...]
) -> tuple[str, ...]:
    try:
        return tuple(dict.fromkeys(check_collector_identity(name) for name in value))
    except ValueError as exc:
        raise click.BadParameter(str(exc)) from None


def _server_names(
    given: Sequence[str], listen: ListenAddress, config: CollectorConfig
) -> tuple[str, ...]:
    """What the broker's certificate must be valid for: the names clients reach it by.

    Each must be a name a certificate can hold, and the first, its common name, at most
    64 characters (a usage error, before anything is written).
    """
    found = [] if listen.host in _ANY_ADDRESS else [listen.host]
    names = tuple(dict.fromkeys(given or [*found, config.broker.host]))
    try:
        for name in names:
            check_server_name(name)
    except ValueError as exc:
        raise click.BadParameter(str(exc), param_hint="--server-name") from None
    if len(names[0]) > COMMON_NAME_MAX:
        raise click.BadParameter(
            f"{names[0]!r} is the certificate's common name: at most {COMMON_NAME_MAX}"
            " characters (give a shorter name first)",
            param_hint="--server-name",
        )
    return names


def _holder(stem: str, server_names: Sequence[str]) -> str:
    """Whose certificate an audit row names: the broker by its common name, or a collector."""
    return f"broker {server_names[0]}" if stem == BROKER else f"collector {stem}"


def _account(name: str) -> pwd.struct_passwd:
    try:
        return pwd.getpwnam(name)
    except KeyError:
        raise click.BadParameter(
            f"no user {name!r} on this machine", param_hint="--run-as"
        ) from None


def _hand_over(layout: BrokerLayout, account: pwd.struct_passwd) -> None:
    """Give the broker's key and data folder to the account mosquitto runs as."""
    if account.pw_uid == os.geteuid():
        return
    try:
        for path in (layout.key, layout.data):
            os.chown(path, account.pw_uid, account.pw_gid)
    except OSError as exc:
        raise click.ClickException(
            f"cannot give {path} to {account.pw_name} ({exc.strerror or exc}): run as root,"
            " or --run-as yourself"
        ) from None


@click.command("broker-config")
@config_option
@click.option(
    "--listen",
    default="0.0.0.0:8883",  # the broker serves the sites; --listen narrows it
    show_default=True,
    callback=_listen,
    help="host:port of the broker's TLS listener.",
)
@click.option(
    "--out",
    "out_dir",
    type=click.Path(file_okay=False, path_type=Path),
    help="Folder for the config, ACL, certificates and keys (default: broker/ beside the config).",
)
@click.option(
    "--server-name",
    "server_names",
    multiple=True,
    help="Host name or address clients reach the broker by (repeat for more; default: the"
    " --listen host unless it is a wildcard, and the host of the config's broker).",
)
@click.option(
    "--run-as",
    default=lambda: pwd.getpwuid(os.geteuid()).pw_name,
    show_default="the user running this",
    help="The user mosquitto runs as (it reads the broker's key after dropping to it).",
)
@click.option(
    "--collector",
    "collectors",
    multiple=True,
    default=[COLLECTOR_IDENTITY],
    show_default=True,
    callback=_collectors,
    help="Identity of a collector process: gz-collector or gz-collector-<name>; repeat for"
    " each process sharing the subscription (the broker makes it the client id).",
)
@days_option
def broker_config(  # click passes every option by keyword
    *,
    config_path: Path,
    listen: ListenAddress,
    out_dir: Path | None,
    server_names: tuple[str, ...],
    run_as: str,
    collectors: tuple[str, ...],
    days: float,
) -> None:
    """Write a Mosquitto config that admits only the province CA's certificates, with the ACL.

    Into the folder: mosquitto.conf (run `mosquitto -c` it), mosquitto.acl, ca.crt, the
    CA's revocation list ca.crl, the broker's broker.crt and broker.key, and for each
    collector identity its client certificate <identity>.crt and <identity>.key, for that
    collector's broker_tls. Rerun it to renew them, or to add a collector.
    """
    config = load_or_exit(config_path)
    account = _account(run_as)
    authority = load_ca_or_fail(config, config_path)
    folder = (out_dir or config_path.parent / "broker").absolute()
    layout = BrokerLayout(folder)
    names = _server_names(server_names, listen, config)
    now = datetime.now(UTC)
    validity = validity_from(now, days)
    ca_dir = ca_dir_or_exit(config, config_path)
    issued = {BROKER: issue_server(authority, names, validity)} | {
        name: issue_client(authority, name, validity) for name in collectors
    }

    async def write(storage: Storage) -> None:
        try:
            for stem, certificate in issued.items():
                record_issued(ca_dir, certificate.certificate)
                write_issued(folder, stem, certificate, authority.certificate)
            write_crl(layout.crl, current_crl(ca_dir, authority, now))
            write_text(layout.acl, acl_text(collectors))
            conf = mosquitto_conf(
                layout,
                listen.host,
                listen.port,
                run_as,
                max_message_bytes=config.ingest.max_message_bytes,
            )
            write_text(layout.conf, conf)
            layout.data.mkdir(mode=0o700, exist_ok=True)
        except (PkiError, OSError) as exc:
            raise click.ClickException(str(exc)) from None
        _hand_over(layout, account)  # before the audit: should it fail, the files are the broker's
        rows = [
            (certificate_detail(_holder(stem, names), c.certificate, "issued"), None)
            for stem, c in issued.items()
        ]
        serials = ", ".join(f"{c.certificate.serial_number:x}" for c in issued.values())
        await audited(storage, Action.CERT_ISSUE, rows, f"wrote {folder} (serials {serials})")

    with_storage(config, write)
    click.echo(
        f"wrote {layout.conf} for mqtts://{names[0]}:{listen.port} ({', '.join(names)})",
        err=True,
    )
    for name in collectors:
        click.echo(
            f"collector {name}: broker_tls {{ca: {layout.ca}, cert: {folder / name}.crt,"
            f" key: {folder / name}.key}}",
            err=True,
        )
    click.echo(layout.conf)
