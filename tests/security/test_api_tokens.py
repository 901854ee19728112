"""API tokens made by `collector tokens`: stored hashed, scoped, revoked without a restart.

The secret is printed once and never stored: the database holds its SHA-256 only. `list`
shows names, districts and state, never a secret. `revoke` shuts the token out from the next
request of an API already serving (tokens are looked up per request), and an open live stream
ends. Adding and revoking a
token are admin rows of the audit chain. On SQLite and PostgreSQL.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import json
import socket
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
import uvicorn

from collector.api.app import create_app
from collector.audit.verify import verify_chain
from collector.storage import open_storage
from collector.storage.capabilities import AuditTrail, TokenStore
from collector.tokens import PREFIX, StoredToken, new_secret, secret_hash
from tests.support.collector_api import BEIJING, NANCHANG, NOW, auth, serve, store_blocks
from tests.support.collector_env import cli_config, intact_audit_rows, register
from tests.support.collector_env import collector_cli as run
from tests.support.postgres import sql_rows


@pytest.fixture
def config(tmp_path: Path, storage_url: str) -> Path:
    return cli_config(tmp_path, storage_url)


def test_tokens_add_prints_the_secret_once_and_stores_only_its_hash(
    config: Path, storage_url: str
) -> None:
    added = run("tokens", "add", "-c", str(config), "--name", "city", "--district", "360100")
    assert added.exit_code == 0, added.output
    secret = added.stdout.strip()
    assert secret.startswith(PREFIX)
    assert len(secret) > 40  # 256 random bits
    rows = asyncio.run(sql_rows(storage_url, "SELECT name, hash, districts FROM api_tokens"))
    assert rows == [("city", secret_hash(secret), '["360100"]')]
    listed = run("tokens", "list", "-c", str(config), "--json")
    assert secret not in listed.output
    [item] = json.loads(listed.stdout)["tokens"]
    assert (item["name"], item["districts"], item["active"]) == ("city", ["360100"], True)
    again = run("tokens", "add", "-c", str(config), "--name", "city", "--district", "*")
    assert again.exit_code == 2
    assert "exists already" in again.stderr
    revoked = run("tokens", "revoke", "-c", str(config), "--name", "city")
    assert (revoked.exit_code, revoked.stdout) == (0, "revoked token city\n")
    [item] = json.loads(run("tokens", "list", "-c", str(config), "--json").stdout)["tokens"]
    assert (item["active"], item["revoked_at"] is not None) == (False, True)
    unknown = run("tokens", "revoke", "-c", str(config), "--name", "nobody")
    assert unknown.exit_code == 2
    bad = run("tokens", "add", "-c", str(config), "--name", "x", "--district", "12345")
    assert bad.exit_code == 2


def test_tokens_add_refuses_every_district_beside_others(config: Path) -> None:
    """`*` is every district: beside named ones it was stored as `*,360100` (exit 0)."""
    result = run(
        "tokens", "add", "-c", str(config), "--name", "x", "--district", "*",
        "--district", "360100",
    )  # fmt: skip
    assert result.exit_code == 2, result.output
    assert "Invalid value for --district: * (every district) cannot be combined with other" in (
        result.stderr
    )
    assert json.loads(run("tokens", "list", "-c", str(config), "--json").stdout)["tokens"] == []


def test_tokens_add_refuses_a_name_the_config_uses(config: Path) -> None:
    result = run("tokens", "add", "-c", str(config), "--name", "province", "--district", "*")
    assert result.exit_code == 2
    assert "api.tokens already names" in result.stderr


@pytest.mark.parametrize("name", ["city\nforged row", "city\x1b[2J", "city\ttab"])
def test_tokens_add_refuses_a_name_that_is_not_one_line_of_text(config: Path, name: str) -> None:
    """Found by a hostile tester: a name with a line break was stored, and `tokens list` then
    showed a row of its own making (and a terminal control sequence would run on the admin's
    screen)."""
    result = run("tokens", "add", "-c", str(config), "--name", name, "--district", "*")
    assert result.exit_code == 2, result.output
    assert "--name" in result.stderr
    assert "printable" in result.stderr
    listed = json.loads(run("tokens", "list", "-c", str(config), "--json").stdout)
    assert listed["tokens"] == []


def test_tokens_add_refuses_a_name_past_256_characters_on_either_backend(config: Path) -> None:
    """Found by a hostile tester: on PostgreSQL a name of 4,000 varied characters failed in the
    database (exit 1, 'index row size 4016 exceeds btree version 4 maximum 2704 for index
    api_tokens_pkey', with PostgreSQL's hint to index an MD5 hash); SQLite took it."""
    name = "".join(hashlib.sha256(b"%d" % n).hexdigest() for n in range(63))[:4000]
    result = run("tokens", "add", "-c", str(config), "--name", name, "--district", "*")
    assert result.exit_code == 2, result.output
    assert "--name" in result.stderr
    assert "at most 256 characters, not 4000" in result.stderr
    longest = run("tokens", "add", "-c", str(config), "--name", "n" * 256, "--district", "*")
    assert longest.exit_code == 0, longest.output
    listed = json.loads(run("tokens", "list", "-c", str(config), "--json").stdout)
    assert [token["name"] for token in listed["tokens"]] == ["n" * 256]


def test_token_admin_actions_are_audited(config: Path, storage_url: str) -> None:
    run("tokens", "add", "-c", str(config), "--name", "city", "--district", "360100")
    run("tokens", "revoke", "-c", str(config), "--name", "city")

    async def chained() -> list[tuple[str, str, str]]:
        async with open_storage(storage_url) as storage:
            assert isinstance(storage, AuditTrail)
            report = await verify_chain(storage)
            assert report.intact
            rows = await intact_audit_rows(storage, limit=10)
        return [(r.kind, r.reason, r.detail) for r in rows]

    rows = asyncio.run(chained())
    assert [row[:2] for row in rows] == [("admin", "token_add"), ("admin", "token_revoke")]
    assert "city" in rows[0][2]


async def test_a_stored_token_sees_its_districts_and_a_revoked_one_nothing(
    storage_url: str,
) -> None:
    async with open_storage(storage_url) as storage, serve(storage) as http:
        assert isinstance(storage, TokenStore)
        await register(storage, NANCHANG, BEIJING)
        await store_blocks(storage, NANCHANG, [[]])
        secret = new_secret()
        token = StoredToken("city", (NANCHANG.district,), created_at=NOW)
        await storage.add_token(token, secret_hash(secret), "test")
        seen = await http.get("/v1/gateways", headers=auth(secret))
        assert seen.status_code == 200
        assert [g["gateway"] for g in seen.json()["items"]] == [NANCHANG.gateway]
        # Revoked through the storage (another collector's `collector tokens revoke`): the
        # running API refuses the token from the next request on.
        assert await storage.revoke_token("city", NOW + 1, "test") is True
        refused = await http.get("/v1/gateways", headers=auth(secret))
        assert refused.status_code == 401
        # A secret that only resembles a stored one, and its hash presented as a token, fail.
        for wrong in (secret[:-1], secret_hash(secret)):
            assert (await http.get("/v1/gateways", headers=auth(wrong))).status_code == 401


class _Server(uvicorn.Server):
    @contextlib.contextmanager
    def capture_signals(self) -> Iterator[None]:
        yield


async def test_an_open_stream_ends_once_its_token_is_revoked(storage_url: str) -> None:
    """The stream re-checks its token each time it wakes (here every 0.1 s of heartbeat)."""
    async with open_storage(storage_url) as storage:
        assert isinstance(storage, TokenStore)
        secret = new_secret()
        await storage.add_token(StoredToken("city", ("*",), NOW), secret_hash(secret), "test")
        app = create_app(storage, (), stream_heartbeat=0.1)
        server = _Server(uvicorn.Config(app, log_config=None, access_log=False, lifespan="off"))
        with socket.create_server(("127.0.0.1", 0)) as sock:
            task = asyncio.create_task(server.serve(sockets=[sock]))
            while not server.started:
                await asyncio.sleep(0.01)
            base = f"http://127.0.0.1:{sock.getsockname()[1]}"
            try:
                async with (
                    httpx.AsyncClient(base_url=base, timeout=httpx.Timeout(10, read=10)) as http,
                    http.stream("GET", "/v1/stream", headers=auth(secret)) as response,
                ):
                    assert response.status_code == 200
                    lines = response.aiter_lines()
                    assert (await anext(lines)).startswith(("id:", "retry:"))
                    await storage.revoke_token("city", NOW + 1, "test")
                    # The server ends the response: the lines run out (pings would go on).
                    async with asyncio.timeout(5):
                        rest = [line async for line in lines]
                    assert all(not line.startswith("data:") for line in rest)
            finally:
                server.should_exit = True
                await task
