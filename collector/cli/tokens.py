"""`collector tokens add|list|revoke`: API bearer tokens kept in the database, hashed.

`add` prints the new token once, on stdout: only its SHA-256 is stored (collector.tokens).
`revoke` takes effect on every running collector of the database at their next request
(the API looks tokens up per request). Both are admin actions in the audit chain.
"""

from __future__ import annotations

import json
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Final, NoReturn

import click

from collector.api.config import ALL_DISTRICTS, refuse_all_beside_codes
from collector.cli.audited import operator
from collector.cli.common import USAGE_ERROR_EXIT, config_option, load_or_exit, with_storage
from collector.storage.base import RegistryError, Storage, StorageError
from collector.storage.capabilities import TokenStore
from collector.tokens import StoredToken, new_secret, secret_hash
from hostkit.tables import render_table
from specs.identifiers import IdentifierError, check_district_code
from specs.records import iso_time, optional_iso_time

MAX_NAME: Final = 256
"""The longest token name `tokens add` takes (characters; at most 1 KiB of UTF-8)."""
_LIST_COLUMNS: Final = ("NAME", "DISTRICTS", "CREATED", "REVOKED")


@click.group()
def tokens() -> None:
    """API bearer tokens, stored hashed and scoped by district."""


def _store(storage: Storage) -> TokenStore:
    if not isinstance(storage, TokenStore):
        raise StorageError("this storage backend keeps no API tokens")
    return storage


def _districts(values: Sequence[str]) -> tuple[str, ...]:
    for value in values:
        if value != ALL_DISTRICTS:
            try:
                check_district_code(value)
            except IdentifierError as exc:
                raise click.BadParameter(str(exc), param_hint="--district") from None
    scope = tuple(dict.fromkeys(values))
    try:
        refuse_all_beside_codes(scope)
    except ValueError as exc:
        raise click.BadParameter(str(exc), param_hint="--district") from None
    return scope


def _refuse(message: str) -> NoReturn:
    click.echo(f"Error: {message}", err=True)
    raise click.exceptions.Exit(USAGE_ERROR_EXIT)


@tokens.command("add")
@config_option
@click.option(
    "--name",
    required=True,
    help="Who the token is for (shown in lists and audit; at most 256 characters).",
)
@click.option(
    "--district",
    "districts",
    multiple=True,
    required=True,
    help='A 6-digit district the token may see; repeat for more; "*" for every district.',
)
def tokens_add(config_path: Path, name: str, districts: tuple[str, ...]) -> None:
    """Make a token; it is printed once, here, and stored only as its SHA-256."""
    config = load_or_exit(config_path)
    if not name.strip():
        raise click.BadParameter("must not be empty", param_hint="--name")
    # Shown in `tokens list` and the audit trail: a line break would forge a row there, a
    # control sequence would act on the terminal of whoever lists them.
    if not name.isprintable():
        raise click.BadParameter(
            "must be printable text on one line (no tabs, line breaks or control characters)",
            param_hint="--name",
        )
    # PostgreSQL's index of names holds at most 2,704 bytes: a longer name failed there only.
    if len(name) > MAX_NAME:
        raise click.BadParameter(
            f"must be at most {MAX_NAME} characters, not {len(name)}", param_hint="--name"
        )
    if name in {token.name for token in config.api.tokens}:
        _refuse(f"{config_path}: api.tokens already names a token {name!r}")
    scope = _districts(districts)
    secret = new_secret()
    token = StoredToken(name, scope, created_at=time.time())

    async def add(storage: Storage) -> str | None:
        try:
            await _store(storage).add_token(token, secret_hash(secret), operator())
        except RegistryError as exc:
            return str(exc)
        return None

    refused = with_storage(config, add)
    if refused is not None:
        _refuse(refused)
    click.echo(secret)
    click.echo(
        f"token {name} added for districts {', '.join(scope)}: the line above is the only"
        " time it is shown",
        err=True,
    )


@tokens.command("list")
@config_option
@click.option("--json", "as_json", is_flag=True, help="Print the tokens as JSON.")
def tokens_list(config_path: Path, as_json: bool) -> None:
    """List stored tokens: names, districts and state, never secrets."""
    config = load_or_exit(config_path)

    async def read(storage: Storage) -> tuple[StoredToken, ...]:
        return await _store(storage).api_tokens()

    stored = with_storage(config, read)
    if as_json:
        items = [
            {
                "name": t.name,
                "districts": list(t.districts),
                "created_at": iso_time(t.created_at),
                "revoked_at": optional_iso_time(t.revoked_at),
                "active": t.active,
            }
            for t in stored
        ]
        click.echo(json.dumps({"tokens": items}, ensure_ascii=False))
        return
    rows: list[tuple[str, ...]] = [_LIST_COLUMNS]
    rows.extend(
        (
            t.name,
            ",".join(t.districts),
            iso_time(t.created_at),
            "-" if t.revoked_at is None else iso_time(t.revoked_at),
        )
        for t in stored
    )
    click.echo(render_table(rows[1:], rows[0]))
    active = sum(t.active for t in stored)
    click.echo(f"{len(stored)} tokens, {active} active", err=True)


@tokens.command("revoke")
@config_option
@click.option("--name", required=True, help="The token to revoke.")
def tokens_revoke(config_path: Path, name: str) -> None:
    """Revoke a token: every collector of this database refuses it from its next request."""
    config = load_or_exit(config_path)

    async def revoke(storage: Storage) -> bool | str:
        try:
            return await _store(storage).revoke_token(name, time.time(), operator())
        except RegistryError as exc:
            return str(exc)

    outcome = with_storage(config, revoke)
    if isinstance(outcome, str):
        _refuse(outcome)
    elif outcome:
        click.echo(f"revoked token {name}")
    else:
        click.echo(f"token {name} was revoked already")
