"""`collector certs`: the province CA and the gateways' client certificates (DESIGN 11)."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from datetime import UTC, datetime
from pathlib import Path
from typing import Final, TypeVar

import click
from cryptography import x509
from cryptography.hazmat.primitives import hashes

from collector.audit.chain import Action
from collector.cli.audited import record_each
from collector.cli.common import (
    CONFIG_ERROR_EXIT,
    config_option,
    gateway_enterprise,
    gateway_option,
    load_or_exit,
    with_storage,
)
from collector.config import CollectorConfig
from collector.pki.certificates import (
    Issued,
    Revoked,
    check_ca_name,
    check_collector_identity,
    common_name,
    create_ca,
    crl_number,
    issue_client,
    revocation_list,
    revoked_in,
    validity_from,
)
from collector.pki.store import (
    CA_CERT,
    CA_CRL,
    PkiError,
    init_ca,
    issued_certificates,
    load_ca,
    load_crl,
    record_issued,
    write_crl,
    write_issued,
)
from collector.storage.base import Storage, StorageError
from specs.records import iso_time

CA_DAYS: Final = 3650
CLIENT_DAYS: Final = 825

FC = TypeVar("FC", bound=Callable[..., object])


def _days_a_certificate_holds(
    _context: click.Context, _param: click.Parameter, days: float
) -> float:
    try:
        validity_from(datetime.now(UTC), days)
    except ValueError as exc:
        raise click.BadParameter(str(exc)) from None
    return days


def _a_ca_name(_context: click.Context, _param: click.Parameter, name: str) -> str:
    try:
        return check_ca_name(name)
    except ValueError as exc:
        raise click.BadParameter(str(exc)) from None


def _days_option(default: float, what: str) -> Callable[[FC], FC]:
    return click.option(
        "--days",
        type=click.FloatRange(min=0, min_open=True),
        callback=_days_a_certificate_holds,
        default=default,
        show_default=True,
        help=f"How long the {what} is valid.",
    )


days_option = _days_option(CLIENT_DAYS, "certificate")


def ca_dir_or_exit(config: CollectorConfig, config_path: Path) -> Path:
    """The config's `certs.ca_dir`, or a message and exit status 2 when it names none."""
    if config.certs is None:
        click.echo(
            f"{config_path}: certs.ca_dir is not set; add `certs: {{ca_dir: pki/ca}}` (the folder"
            " that keeps the province CA)",
            err=True,
        )
        raise click.exceptions.Exit(CONFIG_ERROR_EXIT)
    return config.certs.ca_dir


def load_ca_or_fail(config: CollectorConfig, config_path: Path) -> Issued:
    """The province CA of the config (exit 2 without `certs`, 1 when it cannot be read)."""
    try:
        return load_ca(ca_dir_or_exit(config, config_path))
    except PkiError as exc:
        raise click.ClickException(str(exc)) from None


def fingerprint(certificate: x509.Certificate) -> str:
    """SHA-256 fingerprint, colon-separated hex as `openssl x509 -fingerprint` shows it."""
    return certificate.fingerprint(hashes.SHA256()).hex(":").upper()


def certificate_detail(holder: str, certificate: x509.Certificate, done: str) -> str:
    """An audit row's detail: whose certificate, its serial, fingerprint and end, what was done."""
    not_after = iso_time(certificate.not_valid_after_utc.timestamp())
    return (
        f"{holder} certificate serial {certificate.serial_number:x}"
        f" (SHA-256 {fingerprint(certificate)}, not after {not_after}) {done}"
    )


async def audited(
    storage: Storage, action: Action, rows: Sequence[tuple[str, str | None]], done: str
) -> None:
    """Chain `rows`; if the database fails now, say what was `done` all the same (exit 1).

    The files are written by then, as `gateways revoke` has revoked when it audits; the
    storage was opened before anything was written, so a database that is down stops the
    command first.
    """
    try:
        await record_each(storage, action, rows)
    except StorageError as exc:
        raise click.ClickException(
            f"{done}, but no audit row records it: {exc}; tell the auditors who did it and when"
        ) from None


@click.group()
def certs() -> None:
    """The province CA and the client certificates the broker requires."""


@certs.group()
def ca() -> None:
    """The province CA (kept in certs.ca_dir of the collector config)."""


@ca.command("init")
@config_option
@click.option(
    "--name",
    default="Ganzhi province CA",
    show_default=True,
    callback=_a_ca_name,
    help="CA common name (1 to 64 characters).",
)
@_days_option(CA_DAYS, "CA")
def ca_init(config_path: Path, name: str, days: float) -> None:
    """Create the CA: certs.ca_dir (0700)/ca.crt and ca.key (0600); an existing CA is kept.

    An admin action of the audit chain (`ca_init`), in the database of storage.url.
    """
    config = load_or_exit(config_path)
    ca_dir = ca_dir_or_exit(config, config_path)
    authority = create_ca(name, validity_from(datetime.now(UTC), days))

    async def create(storage: Storage) -> None:
        try:
            init_ca(ca_dir, authority)
        except PkiError as exc:
            raise click.ClickException(str(exc)) from None
        detail = certificate_detail(f"province CA {name}", authority.certificate, "created")
        done = f"created the CA in {ca_dir} (serial {authority.certificate.serial_number:x})"
        await audited(storage, Action.CA_INIT, [(detail, None)], done)

    with_storage(config, create)
    click.echo(f"created {ca_dir / CA_CERT} and its key", err=True)
    click.echo(fingerprint(authority.certificate))


def _gateway_id(gateway: str) -> str:
    gateway_enterprise(gateway)  # checks the code
    return gateway


@certs.command("issue")
@config_option
@gateway_option
@click.option(
    "--out",
    "out_dir",
    required=True,
    type=click.Path(file_okay=False, path_type=Path),
    help="Folder for <gateway>.crt, <gateway>.key (0600) and ca.crt.",
)
@days_option
def issue(config_path: Path, gateway_id: str, out_dir: Path, days: float) -> None:
    """Issue a client certificate for a gateway; its common name is the gateway id.

    An admin action of the audit chain (`cert_issue`), in the database of storage.url.
    """
    config = load_or_exit(config_path)
    gateway = _gateway_id(gateway_id)
    authority = load_ca_or_fail(config, config_path)
    ca_dir = ca_dir_or_exit(config, config_path)
    issued = issue_client(authority, gateway, validity_from(datetime.now(UTC), days))

    async def write(storage: Storage) -> Path:
        try:
            record_issued(ca_dir, issued.certificate)
            cert_path = write_issued(out_dir, gateway, issued, authority.certificate)
        except PkiError as exc:
            raise click.ClickException(str(exc)) from None
        detail = certificate_detail(f"gateway {gateway}", issued.certificate, "issued")
        done = f"issued {cert_path} (serial {issued.certificate.serial_number:x})"
        await audited(storage, Action.CERT_ISSUE, [(detail, gateway)], done)
        return cert_path

    cert_path = with_storage(config, write)
    click.echo(
        f"issued {cert_path}, valid until {issued.certificate.not_valid_after_utc:%Y-%m-%d};"
        f" the site map's uplink.tls names it, {gateway}.key and {CA_CERT}",
        err=True,
    )
    click.echo(cert_path)


def current_crl(ca_dir: Path, authority: Issued, now: datetime) -> x509.CertificateRevocationList:
    """The CA's revocation list; an empty one is published the first time one is needed."""
    crl = load_crl(ca_dir)
    if crl is None:
        crl = revocation_list(authority, (), now, number=1)
        write_crl(ca_dir / CA_CRL, crl)
    return crl


def _collector_identity(
    _context: click.Context, _param: click.Parameter, name: str | None
) -> str | None:
    try:
        return None if name is None else check_collector_identity(name)
    except ValueError as exc:
        raise click.BadParameter(str(exc)) from None


def _holder(gateway_id: str | None, collector: str | None) -> str:
    """The one common name `certs revoke` was given, or a usage error."""
    if (gateway_id is None) == (collector is None):
        raise click.UsageError("name one certificate holder: --gateway G or --collector NAME")
    return _gateway_id(gateway_id) if gateway_id is not None else str(collector)


@certs.command("revoke")
@config_option
@click.option("--gateway", "gateway_id", help="{enterprise}-GW{NN}")
@click.option(
    "--collector",
    callback=_collector_identity,
    help="A collector identity of `broker-config` (gz-collector or gz-collector-<name>).",
)
@click.option(
    "--broker-dir",
    type=click.Path(file_okay=False, exists=True, path_type=Path),
    help="A broker-config folder to update the revocation list of as well.",
)
def revoke(
    config_path: Path, gateway_id: str | None, collector: str | None, broker_dir: Path | None
) -> None:
    """Revoke every certificate issued to a gateway or a collector identity; restart the broker.

    The CA's list is certs.ca_dir/ca.crl; `broker-config` copies it next to the broker's
    config (or give --broker-dir). Exit 1 when there is no certificate to revoke. An admin
    action of the audit chain (`cert_revoke`, a row per certificate).
    """
    holder = _holder(gateway_id, collector)
    config = load_or_exit(config_path)
    authority = load_ca_or_fail(config, config_path)
    ca_dir = ca_dir_or_exit(config, config_path)
    now = datetime.now(UTC)

    async def put_on_the_list(storage: Storage) -> list[x509.Certificate]:
        try:
            crl = current_crl(ca_dir, authority, now)
            listed = revoked_in(crl)
            known = {entry.serial for entry in listed}
            taken = sorted(
                (
                    c
                    for c in issued_certificates(ca_dir)
                    if common_name(c) == holder and c.serial_number not in known
                ),
                key=lambda c: c.serial_number,
            )
            if not taken:
                raise click.ClickException(f"{holder} has no certificate left to revoke")
            entries = [Revoked(c.serial_number, now) for c in taken]
            crl = revocation_list(authority, [*listed, *entries], now, number=crl_number(crl) + 1)
            write_crl(ca_dir / CA_CRL, crl)
            if broker_dir is not None:
                write_crl(broker_dir / CA_CRL, crl)
        except PkiError as exc:
            raise click.ClickException(str(exc)) from None
        whose = f"gateway {holder}" if gateway_id is not None else f"collector {holder}"
        rows = [(certificate_detail(whose, c, "revoked"), gateway_id) for c in taken]
        serials = ", ".join(f"{c.serial_number:x}" for c in taken)
        done = f"revoked {serials} of {holder} in {ca_dir / CA_CRL} (restart mosquitto to apply)"
        await audited(storage, Action.CERT_REVOKE, rows, done)
        return taken

    taken = with_storage(config, put_on_the_list)
    click.echo(
        f"revoked {len(taken)} certificate(s) of {holder}; restart mosquitto to apply", err=True
    )
    for certificate in taken:
        click.echo(f"{certificate.serial_number:x}")
