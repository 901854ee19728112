"""`collector` commands: keys, gateway registry, config errors, and `serve` end to end.

Commands that open the storage run on SQLite and PostgreSQL (`storage_url`); those that stop
before it (key files, config and argument errors) run once.
"""

from __future__ import annotations

import asyncio
import json
import os
import signal
import stat
import sys
import time
from pathlib import Path

import httpx
import pytest
from click.testing import Result

from collector.config import load_collector_config
from collector.ingest.core import Inbound, plan_batch
from collector.runtime import run_collector
from collector.storage import open_storage
from specs.meta import PointMeta
from specs.records import Quality, Reading, iso_time
from specs.signing import load_verify_key
from tests.support.broker import Broker, free_port
from tests.support.cli_runs import stops_quietly_when_the_reader_goes_away
from tests.support.collector_client import (
    BASE_TIME,
    MINE_CODE,
    SimGateway,
    catalogue_with_coal,
    coal_gateway,
    gateway_link,
    key_grants,
    sim_gateway,
)
from tests.support.collector_env import cli_config, register, write_collector_config
from tests.support.collector_env import collector_cli as run
from tests.support.postgres import hung_server

GW = sim_gateway(1)


@pytest.fixture
def config(tmp_path: Path, storage_url: str) -> Path:
    """A collector.yaml storing into `storage_url` (each backend in turn)."""
    return cli_config(tmp_path, storage_url)


@pytest.fixture
def unopened_config(tmp_path: Path) -> Path:
    """A collector.yaml for commands that never open its storage (the default SQLite URL)."""
    return cli_config(tmp_path)


def _public_key_file(tmp_path: Path, gateway: SimGateway) -> Path:
    path = tmp_path / f"{gateway.gateway}.pub"
    path.write_bytes(gateway.key.public().public_pem())
    return path


def test_keys_init_creates_a_private_0600_key_and_refuses_to_overwrite(
    unopened_config: Path,
) -> None:
    result = run("keys", "init", "-c", str(unopened_config))
    assert result.exit_code == 0, result.output
    key_file = unopened_config.parent / "keys" / "collector.key"
    assert stat.S_IMODE(key_file.stat().st_mode) == 0o600
    public = load_verify_key((unopened_config.parent / "keys" / "collector.key.pub").read_bytes())
    assert result.stdout.strip() == public.kid
    before = key_file.read_bytes()
    again = run("keys", "init", "-c", str(unopened_config))
    assert again.exit_code == 1
    assert "refusing to overwrite" in again.stderr
    assert key_file.read_bytes() == before
    assert {p.name for p in key_file.parent.iterdir()} == {"collector.key", "collector.key.pub"}


def test_config_errors_name_file_line_and_key_and_exit_2(tmp_path: Path) -> None:
    path = tmp_path / "collector.yaml"
    path.write_text(
        'broker: "mqtt://127.0.0.1:1883"\n'
        'storage: {url: "sqlite:///c.db"}\n'
        "signing: {key_file: c.key}\n"
        "api: {listen: '127.0.0.1:8080', tokens: []}\n"
        "ingest: {batch_max: 0}\n",
        encoding="utf-8",
    )
    for command in (["keys", "init"], ["serve"], ["gateways", "list"]):
        result = run(*command, "-c", str(path))
        assert result.exit_code == 2
        assert f"{path}:5: ingest.batch_max:" in result.stderr


def test_gateways_add_list_revoke(config: Path, tmp_path: Path) -> None:
    public = _public_key_file(tmp_path, GW)
    args = ["-c", str(config), "--gateway", GW.gateway, "--public-key", str(public)]
    added = run("gateways", "add", *args, "--district", GW.district, "--kid", GW.key.kid)
    assert added.exit_code == 0, added.output
    assert added.stdout.strip() == (
        f"registered gateway {GW.gateway} enterprise {GW.enterprise} district {GW.district}"
        f" key {GW.key.kid} (ed25519)"
    )
    assert run("gateways", "add", *args, "--district", GW.district).exit_code == 0  # idempotent
    moved = run("gateways", "add", *args, "--district", "110101")
    assert moved.exit_code == 1
    assert "registered in district 360100" in moved.stderr


def test_gateways_add_takes_the_district_from_the_credit_code(config: Path, tmp_path: Path) -> None:
    public = _public_key_file(tmp_path, GW)
    args = ["-c", str(config), "--gateway", GW.gateway, "--public-key", str(public)]
    added = run("gateways", "add", *args)  # DESIGN section 6 form: no --district
    assert added.exit_code == 0, added.output
    assert f"district {GW.enterprise[2:8]}" in added.stdout

    listed = run("gateways", "list", "-c", str(config))
    assert listed.exit_code == 0
    header, row = listed.stdout.strip().splitlines()
    assert header.split() == [
        "GATEWAY",
        "ENTERPRISE",
        "DISTRICT",
        "KID",
        "ALG",
        "ADDED",
        "ANNOUNCED_BY",
        "RETIRED",
        "REVOKED",
    ]
    assert row.split()[:5] == [GW.gateway, GW.enterprise, GW.district, GW.key.kid, "ed25519"]
    assert row.split()[-1] == "-"

    revoked = run("gateways", "revoke", "-c", str(config), "--gateway", GW.gateway)
    assert revoked.exit_code == 0
    assert revoked.stdout.strip() == f"revoked key {GW.key.kid} of gateway {GW.gateway}"
    assert run("gateways", "list", "-c", str(config)).stdout.splitlines()[1].split()[-1] != "-"
    again = run("gateways", "revoke", "-c", str(config), "--gateway", GW.gateway)
    assert again.exit_code == 1
    readd = run("gateways", "add", *args, "--district", GW.district)
    assert readd.exit_code == 1
    assert "revoked" in readd.stderr


@pytest.mark.parametrize(
    ("option", "value", "hint"),
    [
        ("--gateway", "91360100MA0000001X-GW01", "--gateway"),  # wrong check character
        ("--gateway", "not-a-gateway", "--gateway"),
        ("--district", "36010", "--district"),
        ("--kid", "0123456789abcdef", "--kid"),
    ],
)
def test_gateways_add_refuses_bad_identifiers(
    unopened_config: Path, tmp_path: Path, option: str, value: str, hint: str
) -> None:
    # Refused before the storage is opened: no backend is involved.
    options = {
        "--gateway": GW.gateway,
        "--district": GW.district,
        "--public-key": str(_public_key_file(tmp_path, GW)),
    }
    options[option] = value
    flat = [part for pair in options.items() for part in pair]
    result = run("gateways", "add", "-c", str(unopened_config), *flat)
    assert result.exit_code == 2
    assert hint in result.stderr


async def test_run_collector_ingests_acks_and_serves(
    broker: Broker, tmp_path: Path, storage_url: str
) -> None:
    path = write_collector_config(
        tmp_path, broker_port=broker.port, api_port=free_port(), storage_url=storage_url
    )
    config = load_collector_config(path)
    await asyncio.to_thread(run, "keys", "init", "-c", str(path))
    async with run_collector(config) as collector, gateway_link(broker.port, GW) as link:
        await register(collector.storage, GW)
        await asyncio.wait_for(collector.wait_connected(), 10)
        await link.send(1)
        signed = await link.next_ack()
        collector.public_key.verify(signed.signature, signed.payload)
        async with httpx.AsyncClient(base_url=collector.api_url) as http:
            response = await http.get("/v1/readings", headers={"Authorization": "Bearer s3cret"})
        assert response.status_code == 200
        assert [r["value"] for r in response.json()["items"]] == [1.0]


async def _serve(config: Path) -> asyncio.subprocess.Process:
    """`collector serve -c CONFIG` in a process of its own; its stdout and stderr in one pipe."""
    return await asyncio.create_subprocess_exec(
        sys.executable,
        "-c",
        "from collector.cli import main; main()",
        "serve",
        "-c",
        str(config),
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.STDOUT,
        env={**os.environ, "PYTHONUNBUFFERED": "1"},
    )


async def test_serve_runs_until_sigterm_and_logs_json(
    broker: Broker, tmp_path: Path, storage_url: str
) -> None:
    api_port = free_port()
    path = write_collector_config(
        tmp_path, broker_port=broker.port, api_port=api_port, storage_url=storage_url
    )
    await asyncio.to_thread(run, "keys", "init", "-c", str(path))
    public = _public_key_file(tmp_path, GW)
    await asyncio.to_thread(
        run, "gateways", "add", "-c", str(path), "--gateway", GW.gateway,
        "--public-key", str(public), "--district", GW.district,
    )  # fmt: skip
    process = await _serve(path)
    try:
        async with httpx.AsyncClient(base_url=f"http://127.0.0.1:{api_port}") as http:
            deadline = time.monotonic() + 20
            while True:
                try:
                    if (await http.get("/healthz")).status_code == 200:
                        break
                except httpx.TransportError:
                    pass
                assert time.monotonic() < deadline, "collector serve did not come up"
                await asyncio.sleep(0.05)
            async with gateway_link(broker.port, GW) as link:
                # The API is up before the subscription: resend until the first ACK, as an
                # agent does.
                for _ in range(100):
                    await link.send(1)
                    try:
                        ack = await link.next_ack(timeout=0.2)
                        break
                    except TimeoutError:
                        continue
                assert ack.ack.acked_through == 1
    finally:
        if process.returncode is None:  # one that ended by itself says why below
            process.send_signal(signal.SIGTERM)
        output, _ = await asyncio.wait_for(process.communicate(), 15)
    assert process.returncode == 0, output.decode()
    events = [json.loads(line)["event"] for line in output.decode().splitlines() if line]
    assert "collector_started" in events
    assert "broker_subscribed" in events
    assert events[-1] == "collector_stopped"


@pytest.mark.parametrize("stop_signal", [signal.SIGTERM, signal.SIGINT], ids=["TERM", "INT"])
async def test_serve_stops_at_once_while_its_database_server_says_nothing(
    tmp_path: Path, stop_signal: signal.Signals
) -> None:
    """A PostgreSQL server that takes the connection and never answers (a hung box) held
    a stop for the whole connect timeout (10 s), then ended it as a storage error (exit 1)."""
    async with hung_server() as hung:
        path = write_collector_config(
            tmp_path, broker_port=free_port(), api_port=free_port(), storage_url=hung.url
        )
        assert (await asyncio.to_thread(run, "keys", "init", "-c", str(path))).exit_code == 0
        process = await _serve(path)
        try:
            async with asyncio.timeout(20):
                await hung.took_connection.wait()  # serve is opening its storage now
            process.send_signal(stop_signal)
            # Well under the 10 s connect timeout: the stop does not wait for the server.
            output, _ = await asyncio.wait_for(process.communicate(), 5)
        finally:
            if process.returncode is None:
                process.kill()
                await process.wait()
    assert process.returncode == 0, output.decode()  # as any stop by a signal
    assert "Traceback" not in output.decode()


# --- export --------------------------------------------------------------------------------

MINE = coal_gateway()
METHANE = f"{MINE_CODE}-000001-001046"


def _methane(dt: float, value: float | None, quality: Quality = Quality.GOOD) -> Reading:
    return Reading(METHANE, "MK-M0101", iso_time(BASE_TIME + dt), value, "%CH4", quality)


async def _fill(config: Path) -> None:
    """Store, through the ingest core, a coal mine's two blocks and meta and a tank farm's block."""
    async with open_storage(load_collector_config(config).storage.url) as storage:
        messages = []
        for gateway, seq, records in (
            (MINE, 1, [_methane(0, 0.52), _methane(30, None, Quality.BAD)]),
            (MINE, 2, [_methane(60, 0.61), _methane(3600, 0.7)]),  # the last is after --to
            (GW, 1, None),
        ):
            await register(storage, gateway)
            payload = gateway.block(seq, records=records)
            messages.append(Inbound(gateway.topics.block, payload, tuple(gateway.sign(payload)), 0))
        meta = MINE.meta(
            [PointMeta(METHANE, "MK-M0101", "%CH4", "回风甲烷", "1201回风巷", {"alarm": 0.75})]
        )
        messages.append(Inbound(MINE.topics.meta, meta, tuple(MINE.sign(meta)), 0))
        grants = key_grants(MINE, GW)
        batch = plan_batch(messages, grants, catalogue_with_coal())
        assert not batch.audits
        await storage.ingest(batch)


def _export(config: Path, gateway: str, *extra: str) -> Result:
    window = ["--from", iso_time(BASE_TIME), "--to", iso_time(BASE_TIME + 600)]
    return run(
        "export", "-c", str(config), "--format", "aqss", "--gateway", gateway, *window, *extra
    )


def _left_beside(out: Path) -> list[str]:
    """What an export's writes to `out` left beside it (its partial files)."""
    return sorted(p.name for p in out.parent.iterdir() if p.name.startswith(f".{out.name}."))


EXPECTED_AQSS = (
    "KJ;AQSS|"
    "610631015;2026-05-29 04:26:40;000001;001046;0.52;;0~"
    "610631015;2026-05-29 04:27:10;000001;001046;;;2~"
    "610631015;2026-05-29 04:27:40;000001;001046;0.61;;0~"
    "‖"
)


def test_export_aqss_writes_the_window_as_coal_text(config: Path, tmp_path: Path) -> None:
    asyncio.run(_fill(config))
    out = tmp_path / "mine.txt"
    result = _export(config, MINE.gateway, "--out", str(out))
    assert result.exit_code == 0, result.output
    aqmc, aqss = out.read_text(encoding="utf-8").splitlines()
    assert aqss == EXPECTED_AQSS
    assert aqmc.startswith("KJ;AQMC|610631015;2026-05-29 04:26:40;001046;000001;M0101;回风甲烷;")
    fields = aqmc.removeprefix("KJ;AQMC|").removesuffix("~‖").split(";")
    assert fields[7] == "%CH4"
    assert fields[12:] == ["-0.01", "0.75", "-0.01", "-0.01", "-0.01", "-0.01"]
    assert "exported 3 readings of 1 points" in result.stderr
    assert _left_beside(out) == []
    to_stdout = _export(config, MINE.gateway)
    assert to_stdout.exit_code == 0
    assert to_stdout.stdout == out.read_text(encoding="utf-8")


@pytest.mark.parametrize(
    ("gateway", "extra", "message"),
    [
        (GW.gateway, [], "not a coal mine (domain WHP)"),
        (sim_gateway(7).gateway, [], "is not registered"),
        (MINE.gateway, ["--from", "yesterday"], "--from"),
        (MINE.gateway, ["--to", iso_time(BASE_TIME - 1)], "must be later than --from"),
    ],
)
def test_export_refuses_what_it_cannot_export_with_status_2(
    config: Path, tmp_path: Path, gateway: str, extra: list[str], message: str
) -> None:
    asyncio.run(_fill(config))
    out = tmp_path / "out.txt"
    result = _export(config, gateway, "--out", str(out), *extra)
    assert result.exit_code == 2
    assert message in result.stderr
    assert not out.exists()
    assert _left_beside(out) == []


async def _kill_an_export_to(out: Path, folder: Path) -> None:
    """Start `export --out OUT` on a database server that never answers, and SIGKILL it there.

    The export has made its partial file by then (it waits on the connect timeout, 10 s).
    """
    folder.mkdir()
    window = ["--from", iso_time(BASE_TIME), "--to", iso_time(BASE_TIME + 600)]
    async with hung_server() as hung:
        config = cli_config(folder, hung.url)
        process = await asyncio.create_subprocess_exec(
            sys.executable, "-c", "from collector.cli import main; main()",
            "export", "-c", str(config), "--format", "aqss", "--gateway", MINE.gateway, *window,
            "--out", str(out),
        )  # fmt: skip
        try:
            async with asyncio.timeout(20):
                await hung.took_connection.wait()
        finally:
            process.kill()
            await process.wait()


async def test_an_export_after_a_killed_one_replaces_what_it_left(
    config: Path, tmp_path: Path
) -> None:
    await asyncio.to_thread(asyncio.run, _fill(config))
    out = tmp_path / "mine.txt"
    await _kill_an_export_to(out, tmp_path / "hung")
    assert _left_beside(out)  # a killed export leaves its partial file
    assert not out.exists()
    result = await asyncio.to_thread(_export, config, MINE.gateway, "--out", str(out))
    assert result.exit_code == 0, result.output
    assert out.read_text(encoding="utf-8").splitlines()[1] == EXPECTED_AQSS
    assert _left_beside(out) == []


async def test_an_export_that_fails_leaves_no_partial_file(tmp_path: Path) -> None:
    out = tmp_path / "mine.txt"
    await _kill_an_export_to(out, tmp_path / "hung")
    assert _left_beside(out)
    refused = cli_config(tmp_path, "postgresql://u@127.0.0.1:1/db")  # nothing listens there
    result = await asyncio.to_thread(_export, refused, MINE.gateway, "--out", str(out))
    assert result.exit_code == 1, result.output
    assert "connecting failed" in result.stderr
    assert not out.exists()
    assert _left_beside(out) == []  # its own partial file, and the killed export's


# --- a reader that goes away ------------------------------------------------------------------


def _many_methane_readings(count: int) -> list[Reading]:
    return [_methane(index * 0.25, 0.5) for index in range(count)]


async def _fill_many(config: Path, count: int) -> None:
    async with open_storage(load_collector_config(config).storage.url) as storage:
        await register(storage, MINE)
        payload = MINE.block(1, records=_many_methane_readings(count))
        inbound = Inbound(MINE.topics.block, payload, tuple(MINE.sign(payload)), 0)
        batch = plan_batch([inbound], key_grants(MINE), catalogue_with_coal())
        assert not batch.audits
        await storage.ingest(batch)


def test_export_to_a_reader_that_goes_away_stops_quietly(config: Path) -> None:
    asyncio.run(_fill_many(config, 2000))
    window = ["--from", iso_time(BASE_TIME), "--to", iso_time(BASE_TIME + 600)]
    csv = ["--format", "csv", "--gateway", MINE.gateway, *window]
    stops_quietly_when_the_reader_goes_away("collector", "export", "-c", str(config), *csv)


@pytest.mark.parametrize("option", ["--gateway", "--kid"])
@pytest.mark.parametrize("value", ["", " "])
def test_gateways_revoke_refuses_an_empty_option_as_usage(
    unopened_config: Path, option: str, value: str
) -> None:
    options = {"--gateway": GW.gateway, "--kid": GW.key.kid, option: value}
    args = [item for pair in options.items() for item in pair]
    result = run("gateways", "revoke", "-c", str(unopened_config), *args)
    assert result.exit_code == 2, result.output
    assert f"'{option}'" in result.stderr
    assert "must not be empty" in result.stderr
    assert not (unopened_config.parent / "state").exists()  # refused before the storage opened


@pytest.mark.parametrize(
    "gateway",
    [
        "91360100MA0000001X-GW01",  # wrong check character
        "not-a-gateway",
        f"{GW.enterprise}-GW1",  # one digit
    ],
)
def test_gateways_revoke_refuses_a_malformed_gateway_as_add_does(
    unopened_config: Path, gateway: str
) -> None:
    result = run("gateways", "revoke", "-c", str(unopened_config), "--gateway", gateway)
    assert result.exit_code == 2, result.output
    assert "Error: Invalid value for --gateway: " in result.stderr
    added = run(
        "gateways",
        "add",
        "-c",
        str(unopened_config),
        "--gateway",
        gateway,
        "--public-key",
        str(unopened_config),
    )
    # The same reason as add gives (the line after "Usage" and "Try").
    assert result.stderr.splitlines()[-1] == added.stderr.splitlines()[-1]
    assert not (unopened_config.parent / "state").exists()  # refused before the storage opened
