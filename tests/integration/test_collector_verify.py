"""Re-verifying stored blocks: `GET /v1/audit/verify` and `collector verify`, on each backend.

Every test runs on a SQLite file and on a PostgreSQL database. Blocks are stored through the
ingest core; tampering is done with direct SQL on the database, the way someone with access to
it would do it.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest
from click.testing import CliRunner, Result

from collector.api.app import create_app
from collector.cli import main
from collector.ingest.core import Inbound, plan_batch
from collector.model import KeyGrant
from collector.storage import open_storage
from collector.storage.capabilities import BlockArchive
from specs.block import GENESIS, block_hash
from specs.catalogue import default_catalogue
from specs.records import iso_time
from tests.support.broker import free_port
from tests.support.collector_api import BEIJING, NANCHANG, TOKEN_ROWS, TOKENS
from tests.support.collector_client import BASE_TIME, SimGateway, sim_gateway
from tests.support.collector_env import register, write_collector_config
from tests.support.postgres import sql_execute, sql_rows

NANCHANG_SEQS = 6
BEIJING_SEQS = 3


def _received(seq: int) -> float:
    """Block `seq` of either gateway arrives 10 s after the one before."""
    return BASE_TIME + 10 * seq


def _chained(gateway: SimGateway, count: int) -> list[bytes]:
    payloads: list[bytes] = []
    prev = GENESIS
    for seq in range(1, count + 1):
        payloads.append(gateway.block(seq, prev=prev))
        prev = block_hash(payloads[-1])
    return payloads


async def _fill(url: str) -> None:
    async with open_storage(url) as storage:
        grants = {}
        messages: list[Inbound] = []
        for gateway, count in ((NANCHANG, NANCHANG_SEQS), (BEIJING, BEIJING_SEQS)):
            await register(storage, gateway)
            owner, key = gateway.registration()
            grants[key.kid] = KeyGrant(key, owner)
            messages.extend(
                Inbound(gateway.topics.block, p, tuple(gateway.sign(p)), _received(seq))
                for seq, p in enumerate(_chained(gateway, count), start=1)
            )
        batch = plan_batch(messages, grants, default_catalogue())
        assert not batch.audits
        await storage.ingest(batch)


@dataclass(frozen=True)
class Collector:
    """A collector config and the database it stores into (SQLite or PostgreSQL)."""

    path: Path
    url: str


@pytest.fixture
def config(tmp_path: Path, storage_url: str) -> Collector:
    path = write_collector_config(
        tmp_path, broker_port=1, api_port=free_port(), tokens=TOKEN_ROWS, storage_url=storage_url
    )
    asyncio.run(_fill(storage_url))
    return Collector(path, storage_url)


async def _stored(config: Collector, gateway: SimGateway, seq: int) -> tuple[bytes, bytes]:
    (row,) = await sql_rows(
        config.url,
        "SELECT payload, sig FROM blocks WHERE gateway = ? AND seq = ?",
        gateway.gateway,
        seq,
    )
    return bytes(row[0]), bytes(row[1])


async def _set(config: Collector, gateway: SimGateway, at_seq: int, **columns: object) -> None:
    assignments = ", ".join(f"{name} = ?" for name in columns)
    changed = await sql_execute(
        config.url,
        f"UPDATE blocks SET {assignments} WHERE gateway = ? AND seq = ?",
        *columns.values(),
        gateway.gateway,
        at_seq,
    )
    assert changed == 1


@contextlib.asynccontextmanager
async def _api(config: Collector) -> AsyncIterator[httpx.AsyncClient]:
    async with open_storage(config.url) as storage:
        assert isinstance(storage, BlockArchive)
        app = create_app(storage, TOKENS, offline_after=60, clock=lambda: BASE_TIME + 100)
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://collector") as http:
            yield http


async def _verify(
    config: Collector, bearer: str = "all-token", status: int = 200, **params: str
) -> dict[str, Any]:
    async with _api(config) as http:
        response = await http.get(
            "/v1/audit/verify",
            params={k.rstrip("_"): v for k, v in params.items()},
            headers={"Authorization": f"Bearer {bearer}"},
        )
    assert response.status_code == status, response.text
    body: dict[str, Any] = response.json()
    if status != 200:
        assert response.headers["content-type"] == "application/problem+json"
        assert set(body) == {"type", "title", "status", "detail"}
    return body


def _invoke(config: Collector, *args: str) -> Result:
    return CliRunner().invoke(
        main,
        ["--log-format", "json", "verify", "-c", str(config.path), *args],
        catch_exceptions=False,
    )


async def _cli(config: Collector, *args: str) -> Result:
    """The command, in a thread: it runs an event loop of its own."""
    return await asyncio.to_thread(_invoke, config, *args)


async def _cli_json(config: Collector, *args: str, exit_code: int = 0) -> object:
    """The command with --json: it exits `exit_code`; what it printed, parsed."""
    result = await _cli(config, *args, "--json")
    assert result.exit_code == exit_code, result.output
    return json.loads(result.stdout)


def _found(body: dict[str, Any]) -> set[tuple[str, int, str]]:
    return {(b["gateway"], b["seq"], b["reason"]) for b in body["broken"]}


async def test_a_clean_store_verifies_over_the_api_and_the_cli(config: Collector) -> None:
    body = await _verify(config)
    assert body == {
        "blocks": NANCHANG_SEQS + BEIJING_SEQS,
        "verified": NANCHANG_SEQS + BEIJING_SEQS,
        "broken": [],
        "holes": [],
        "truncated": False,
    }
    one = await _verify(config, gateway=NANCHANG.gateway)
    assert (one["blocks"], one["verified"]) == (NANCHANG_SEQS, NANCHANG_SEQS)
    result = await _cli(config, "--gateway", NANCHANG.gateway)
    assert result.exit_code == 0, result.output
    assert result.stdout == ""
    assert f"{NANCHANG_SEQS} of {NANCHANG_SEQS} stored blocks verified, 0 broken" in result.stderr
    assert await _cli_json(config, "--gateway", NANCHANG.gateway) == one


async def test_a_tampered_byte_signature_and_prev_are_each_reported_exactly(
    config: Collector,
) -> None:
    payload, _ = await _stored(config, NANCHANG, 2)
    forged = payload.replace(b'"value":2', b'"value":9')
    assert forged != payload
    await _set(config, NANCHANG, 2, payload=forged)  # the stored hash stays the original's
    _, signature = await _stored(config, NANCHANG, 4)
    await _set(config, NANCHANG, 4, sig=bytes([signature[0] ^ 1]) + signature[1:])
    # The last block, re-signed with the gateway's own key but chained onto nothing.
    wrong_prev = NANCHANG.block(NANCHANG_SEQS, prev="ab" * 32)
    await _set(
        config,
        NANCHANG,
        NANCHANG_SEQS,
        payload=wrong_prev,
        sig=NANCHANG.key.sign(wrong_prev).sig,
        hash=block_hash(wrong_prev),
        prev="ab" * 32,
    )
    body = await _verify(config, gateway=NANCHANG.gateway)
    assert _found(body) == {
        (NANCHANG.gateway, 2, "hash_mismatch"),
        (NANCHANG.gateway, 2, "bad_signature"),
        (NANCHANG.gateway, 4, "bad_signature"),
        (NANCHANG.gateway, NANCHANG_SEQS, "chain_break"),
    }
    assert (body["blocks"], body["verified"], body["holes"]) == (NANCHANG_SEQS, 3, [])
    assert all(set(b) == {"gateway", "epoch", "seq", "reason", "detail"} for b in body["broken"])
    assert all(b["epoch"] == "epoch-1" for b in body["broken"])
    # The other gateway is untouched.
    other = await _verify(config, gateway=BEIJING.gateway)
    assert (other["verified"], other["broken"]) == (BEIJING_SEQS, [])
    result = await _cli(config, "--gateway", NANCHANG.gateway)
    assert result.exit_code == 1
    table = result.stdout.splitlines()
    assert table[0].split() == ["EPOCH", "SEQ", "REASON", "DETAIL"]
    assert [line.split()[1:3] for line in table[1:]] == [
        ["2", "hash_mismatch"],
        ["2", "bad_signature"],
        ["4", "bad_signature"],
        [str(NANCHANG_SEQS), "chain_break"],
    ]
    assert "3 of 6 stored blocks verified, 3 broken, 0 holes" in result.stderr
    assert await _cli_json(config, "--gateway", NANCHANG.gateway, exit_code=1) == body


async def test_bytes_rewritten_with_their_hash_break_the_signature_and_the_next_link(
    config: Collector,
) -> None:
    payload, _ = await _stored(config, NANCHANG, 3)
    forged = payload.replace(b'"value":3', b'"value":4')
    await _set(config, NANCHANG, 3, payload=forged, hash=block_hash(forged))
    body = await _verify(config, gateway=NANCHANG.gateway)
    assert _found(body) == {
        (NANCHANG.gateway, 3, "bad_signature"),
        (NANCHANG.gateway, 4, "chain_break"),
    }


async def test_keys_must_be_the_gateways_own_and_revoked_ones_still_verify(
    config: Collector,
) -> None:
    async with open_storage(config.url) as storage:
        assert await storage.revoke(NANCHANG.gateway, None, BASE_TIME + 500)
    assert (await _verify(config, gateway=NANCHANG.gateway))["broken"] == []
    await _set(config, NANCHANG, 1, kid="0123456789abcdef")
    await _set(config, NANCHANG, 5, kid=BEIJING.key.kid)  # registered, but another gateway's
    body = await _verify(config, gateway=NANCHANG.gateway)
    assert _found(body) == {
        (NANCHANG.gateway, 1, "unknown_key"),
        (NANCHANG.gateway, 5, "unknown_key"),
    }
    details = {b["seq"]: b["detail"] for b in body["broken"]}
    assert "not registered" in details[1]
    assert BEIJING.gateway in details[5]


def _as_text(config: Collector) -> str:
    """A parameter written as text into a bytes column: SQLite keeps the text (as someone's
    hand-typed `UPDATE ... SET payload = '...'` does); PostgreSQL stores its UTF-8."""
    return "?" if config.url.startswith("sqlite") else "convert_to(?, 'UTF8')"


async def test_bytes_rewritten_as_text_are_reported_not_a_crash(config: Collector) -> None:
    """Found by a hostile tester: on SQLite a payload, signature or registered key typed in
    as text ended `collector verify` and the API's verify with a TypeError traceback ('string
    argument without an encoding'); a key typed in as text made the grants lookup every ingest
    batch starts with raise the same."""
    payload, _ = await _stored(config, NANCHANG, 2)
    forged = payload.replace(b'"value":2', b'"value":9').decode()
    as_text = _as_text(config)
    await sql_execute(
        config.url,
        f"UPDATE blocks SET payload = {as_text} WHERE gateway = ? AND seq = 2",
        forged,
        NANCHANG.gateway,
    )
    await sql_execute(
        config.url,
        f"UPDATE gateway_keys SET public_pem = {as_text} WHERE gateway = ?",
        BEIJING.key.public().public_pem().decode(),
        BEIJING.gateway,
    )
    body = await _verify(config)
    # Beijing's key, typed back in as its own PEM text, still verifies its blocks.
    assert _found(body) == {
        (NANCHANG.gateway, 2, "hash_mismatch"),
        (NANCHANG.gateway, 2, "bad_signature"),
    }
    assert (body["blocks"], body["verified"]) == (NANCHANG_SEQS + BEIJING_SEQS, 8)
    result = await _cli(config, "--gateway", NANCHANG.gateway)
    assert result.exit_code == 1, result.output


@pytest.mark.parametrize("storage_urls", ["sqlite"], indirect=True)  # bytea refuses numbers
async def test_a_number_typed_into_a_bytes_column_is_reported_not_a_crash(
    config: Collector,
) -> None:
    """SQLite keeps a number typed into a bytes column as a number (PostgreSQL's bytea refuses
    it): a payload set to 2.5 ended the check with a TypeError ('cannot convert 'float'
    object to bytes'), and an integer n was read as n zero bytes (10^12 of them for 1e12)."""
    await sql_execute(
        config.url,
        "UPDATE blocks SET payload = 2.5 WHERE gateway = ? AND seq = 2",
        NANCHANG.gateway,
    )
    await sql_execute(
        config.url, "UPDATE blocks SET sig = 7 WHERE gateway = ? AND seq = 3", NANCHANG.gateway
    )
    body = await _verify(config, gateway=NANCHANG.gateway)
    assert (NANCHANG.gateway, 2, "hash_mismatch") in _found(body)
    assert (NANCHANG.gateway, 3, "bad_signature") in _found(body)
    result = await _cli(config, "--gateway", NANCHANG.gateway)
    assert result.exit_code == 1, result.output


async def test_missing_seqs_are_holes_not_breaks(config: Collector) -> None:
    deleted = await sql_execute(
        config.url, "DELETE FROM blocks WHERE gateway = ? AND seq = 3", NANCHANG.gateway
    )
    assert deleted == 1
    body = await _verify(config, gateway=NANCHANG.gateway)
    assert body["broken"] == []
    assert body["holes"] == [
        {"gateway": NANCHANG.gateway, "epoch": "epoch-1", "from_seq": 3, "to_seq": 3}
    ]
    assert (body["blocks"], body["verified"]) == (NANCHANG_SEQS - 1, NANCHANG_SEQS - 1)
    result = await _cli(config, "--gateway", NANCHANG.gateway)
    assert result.exit_code == 0
    assert "3..3" in result.stdout
    assert "1 holes" in result.stderr


async def test_a_block_moved_to_another_seq_is_misplaced(config: Collector) -> None:
    await _set(config, NANCHANG, 3, seq=9)
    body = await _verify(config, gateway=NANCHANG.gateway)
    assert _found(body) == {(NANCHANG.gateway, 9, "misplaced")}
    assert [(h["from_seq"], h["to_seq"]) for h in body["holes"]] == [(3, 3), (7, 8)]


async def test_from_and_to_pick_blocks_by_arrival(config: Collector) -> None:
    start, end = iso_time(_received(2)), iso_time(_received(5))  # seqs 2, 3 and 4
    body = await _verify(config, gateway=NANCHANG.gateway, from_=start, to=end)
    assert (body["blocks"], body["verified"]) == (3, 3)
    everywhere = await _verify(config, from_=start, to=end)
    assert everywhere["blocks"] == 3 + 2  # and Beijing's seqs 2 and 3
    window = ("--from", start, "--to", end)
    assert await _cli_json(config, "--gateway", NANCHANG.gateway, *window) == body


async def test_a_token_verifies_only_its_districts(config: Collector) -> None:
    mine = await _verify(config, "nc-token")
    assert (mine["blocks"], mine["verified"]) == (NANCHANG_SEQS, NANCHANG_SEQS)
    await _verify(config, "nc-token", 404, gateway=BEIJING.gateway)
    nothing = await _verify(config, "sz-token")
    assert (nothing["blocks"], nothing["broken"]) == (0, [])
    # Out of scope and unknown look the same.
    outside = await _verify(config, "sz-token", 404, gateway=NANCHANG.gateway)
    unknown = await _verify(config, "all-token", 404, gateway=sim_gateway(7).gateway)
    assert outside["detail"].replace(NANCHANG.gateway, "G") == unknown["detail"].replace(
        sim_gateway(7).gateway, "G"
    )


async def test_bad_parameters_are_problems(config: Collector) -> None:
    bad_from = await _verify(config, status=400, from_="yesterday")
    assert bad_from["detail"].startswith("from:")
    await _verify(config, status=400, from_="2026-05-28T08:00:00+08:00", to="2026-05-28T08:00:00")
    backwards = await _verify(
        config, status=400, from_="2026-05-28T08:00:00+08:00", to="2026-05-28T07:00:00+08:00"
    )
    assert "later than from" in backwards["detail"]
    await _verify(config, "wrong-token", status=401)


async def test_the_cli_refuses_unknown_gateways_and_bad_times_with_status_2(
    config: Collector,
) -> None:
    unknown = await _cli(config, "--gateway", sim_gateway(7).gateway)
    assert unknown.exit_code == 2
    assert "is not registered" in unknown.stderr
    assert (await _cli(config, "--gateway", NANCHANG.gateway, "--from", "yesterday")).exit_code == 2
    backwards = await _cli(
        config,
        "--gateway",
        NANCHANG.gateway,
        "--from",
        "2026-05-28T08:00:00+08:00",
        "--to",
        "2026-05-28T07:00:00+08:00",
    )
    assert backwards.exit_code == 2
    assert "must be later than --from" in backwards.stderr
