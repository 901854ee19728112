"""What every command of both programs follows (DESIGN section 6, issue 10.7).

`-h` as well as `--help` on every command (the whole click tree is walked), `--version` on
both programs, `--json` where a script reads the output (`check` on both, `collector gateways
list`; `status`, `outbox`, `verify` have their own tests), and the `GANZHI_` environment
variables: `GANZHI_AGENT_CONFIG` / `GANZHI_COLLECTOR_CONFIG` for `-c`, `GANZHI_LOG_FORMAT`
for `--log-format`.
"""

from __future__ import annotations

import json
import shutil
from collections.abc import Iterator
from importlib.metadata import version
from pathlib import Path

import click
import pytest
import structlog
from click.testing import CliRunner, Result

from collector.cli import main as collector_main
from edge_agent.cli import main as agent_main
from specs.signing import load_verify_key
from tests.support.collector_client import sim_gateway
from tests.support.collector_env import write_collector_config

EXAMPLE_SITE = Path(__file__).resolve().parents[2] / "configs" / "tankfarm.yaml"
PROGRAMS = {"edge-agent": agent_main, "collector": collector_main}


def _invoke(program: str, *args: str, env: dict[str, str] | None = None) -> Result:
    return CliRunner().invoke(PROGRAMS[program], list(args), env=env, prog_name=program)


def _command_paths(command: click.Command, path: tuple[str, ...] = ()) -> Iterator[tuple[str, ...]]:
    yield path
    if isinstance(command, click.Group):
        context = click.Context(command)
        for name in command.list_commands(context):  # imports a lazy group's commands too
            sub = command.get_command(context, name)
            assert sub is not None, f"{name} is listed but cannot be loaded"
            yield from _command_paths(sub, (*path, name))


def _all_command_paths() -> list[tuple[str, tuple[str, ...]]]:
    return [(name, path) for name, main in PROGRAMS.items() for path in _command_paths(main)]


@pytest.mark.parametrize(("program", "path"), _all_command_paths(), ids=" ".join)
def test_every_command_takes_h_for_help(program: str, path: tuple[str, ...]) -> None:
    short, long = _invoke(program, *path, "-h"), _invoke(program, *path, "--help")
    assert (short.exit_code, short.stderr) == (0, ""), short.output
    assert short.stdout.startswith(f"Usage: {' '.join((program, *path))} ")
    assert short.stdout == long.stdout


def test_the_walk_sees_nested_commands() -> None:
    paths = {" ".join((name, *path)) for name, path in _all_command_paths()}
    assert {"edge-agent keys rotate", "edge-agent outbox stats", "collector gateways list"} <= paths


@pytest.mark.parametrize("program", sorted(PROGRAMS))
def test_each_program_tells_its_version(program: str) -> None:
    result = _invoke(program, "--version")
    assert result.exit_code == 0
    assert result.stdout == f"{program}, version {version('ganzhi')}\n"


# --- --json -------------------------------------------------------------------------------


def test_agent_check_json_lists_the_resolved_points_and_buses() -> None:
    result = _invoke("edge-agent", "check", "-c", str(EXAMPLE_SITE), "--json")
    assert (result.exit_code, result.stderr) == (0, ""), result.output
    report = json.loads(result.stdout)
    assert set(report) == {"gateway", "devices", "points", "rtu_buses"}
    assert report["gateway"] == "91360100MA35GW001H-GW01"
    assert len(report["devices"]) == 2
    assert len(report["points"]) == 15
    level = report["points"][0]
    assert level == {
        "device": "tank-plc",
        "point": "T001-LT-01",
        "quota": "WHP-LT",
        "name": "储罐液位",
        "source": {
            "table": "holding",
            "start": 0,
            "bit": None,
            "type": "float32",
            "byte_order": "big",
            "word_order": "big",
        },
        "scale": 1.0,
        "offset": 0.0,
        "unit": "m",
        "canonical_unit": "m",
    }


def test_agent_check_json_describes_an_rtu_bus(tmp_path: Path) -> None:
    """The example's gas detector moved onto an RS-485 bus."""
    tcp = "  - id: gas-t1\n    driver: modbus_tcp\n    host: 127.0.0.1\n    port: 5020\n"
    rtu = "  - id: gas-t1\n    driver: modbus_rtu\n    port: /dev/ttyUSB0\n    baudrate: 9600\n"
    text = EXAMPLE_SITE.read_text(encoding="utf-8")
    assert tcp in text
    site = tmp_path / "site.yaml"
    site.write_text(text.replace(tcp, rtu), encoding="utf-8")
    result = _invoke("edge-agent", "check", "-c", str(site), "--json")
    assert result.exit_code == 0, result.output
    buses = json.loads(result.stdout)["rtu_buses"]
    assert set(buses[0]) == {
        "port",
        "line",
        "devices",
        "requests_per_cycle",
        "utilization",
        "one_silent",
    }
    assert (buses[0]["port"], buses[0]["devices"]) == ("/dev/ttyUSB0", ["gas-t1"])
    assert 0 < buses[0]["utilization"] < 1


@pytest.fixture
def collector_config(tmp_path: Path) -> Path:
    """A collector.yaml on SQLite in tmp, with its key made."""
    config = write_collector_config(tmp_path, broker_port=1, api_port=1)
    assert _invoke("collector", "keys", "init", "-c", str(config)).exit_code == 0
    return config


def test_collector_check_json_names_the_signing_key(collector_config: Path) -> None:
    result = _invoke("collector", "check", "-c", str(collector_config), "--json")
    assert result.exit_code == 0, result.output
    report = json.loads(result.stdout)
    key_file = collector_config.parent / "keys" / "collector.key"
    assert report["config"] == str(collector_config)
    assert report["signing_key"]["file"] == str(key_file)
    assert report["signing_key"]["alg"] == "ed25519"
    public = load_verify_key((key_file.parent / "collector.key.pub").read_bytes())
    assert report["signing_key"]["kid"] == public.kid


def test_gateways_list_json_has_each_gateway_with_its_keys(
    collector_config: Path, tmp_path: Path
) -> None:
    gateway = sim_gateway(3)
    public = tmp_path / "gw.pub"
    public.write_bytes(gateway.key.public().public_pem())
    added = _invoke(
        "collector", "gateways", "add", "-c", str(collector_config),
        "--gateway", gateway.gateway, "--public-key", str(public),
    )  # fmt: skip
    assert added.exit_code == 0, added.output
    result = _invoke("collector", "gateways", "list", "-c", str(collector_config), "--json")
    assert (result.exit_code, result.stderr) == (0, ""), result.output
    (listed,) = json.loads(result.stdout)["gateways"]
    assert {k: listed[k] for k in ("gateway", "enterprise", "district")} == {
        "gateway": gateway.gateway,
        "enterprise": gateway.enterprise,
        "district": gateway.district,
    }
    (key,) = listed["keys"]
    assert (key["kid"], key["alg"], key["announced_by"]) == (gateway.key.kid, "ed25519", None)
    assert (key["retired_at"], key["revoked_at"]) == (None, None)
    assert key["added_at"] == listed["registered_at"]


# --- GANZHI_ environment variables --------------------------------------------------------


def test_the_agent_reads_its_site_map_from_ganzhi_agent_config() -> None:
    from_env = _invoke("edge-agent", "check", env={"GANZHI_AGENT_CONFIG": str(EXAMPLE_SITE)})
    from_option = _invoke("edge-agent", "check", "-c", str(EXAMPLE_SITE))
    assert from_env.exit_code == 0, from_env.output
    assert from_env.stdout == from_option.stdout


def test_c_on_the_command_line_beats_the_environment(tmp_path: Path) -> None:
    missing = tmp_path / "missing.yaml"
    result = _invoke(
        "edge-agent", "check", "-c", str(EXAMPLE_SITE), env={"GANZHI_AGENT_CONFIG": str(missing)}
    )
    assert result.exit_code == 0, result.output


def test_the_collector_reads_its_config_from_ganzhi_collector_config(
    collector_config: Path,
) -> None:
    env = {"GANZHI_COLLECTOR_CONFIG": str(collector_config)}
    result = _invoke("collector", "check", env=env)
    assert result.exit_code == 0, result.output
    assert result.stdout.startswith(f"config {collector_config}: ok\n")


@pytest.mark.parametrize("program", sorted(PROGRAMS))
def test_help_names_the_config_variable(program: str) -> None:
    variable = {"edge-agent": "GANZHI_AGENT_CONFIG", "collector": "GANZHI_COLLECTOR_CONFIG"}
    check_help = " ".join(_invoke(program, "check", "-h").stdout.split())
    program_help = " ".join(_invoke(program, "-h").stdout.split())
    assert f"env var: {variable[program]}" in check_help
    assert "env var: GANZHI_LOG_FORMAT" in program_help


# Each --log-format and the structlog renderer it ends in.
LOG_FORMATS = [
    ("json", structlog.processors.JSONRenderer),
    ("console", structlog.dev.ConsoleRenderer),
]


def _renderer() -> object:
    return structlog.get_config()["processors"][-1]


@pytest.mark.parametrize(("log_format", "renderer"), LOG_FORMATS)
def test_ganzhi_log_format_chooses_the_collector_log_format(
    collector_config: Path, log_format: str, renderer: type
) -> None:
    env = {"GANZHI_LOG_FORMAT": log_format}
    assert _invoke("collector", "check", "-c", str(collector_config), env=env).exit_code == 0
    assert isinstance(_renderer(), renderer)


@pytest.mark.parametrize(("log_format", "renderer"), LOG_FORMATS)
def test_edge_agent_run_logs_as_log_format_or_ganzhi_log_format_say(
    tmp_path: Path, log_format: str, renderer: type
) -> None:
    """`run` sets logging up before it finds the gateway key missing (exit 2)."""
    site = tmp_path / "site.yaml"
    shutil.copyfile(EXAMPLE_SITE, site)
    by_option = _invoke("edge-agent", "--log-format", log_format, "run", "-c", str(site))
    assert by_option.exit_code == 2
    assert isinstance(_renderer(), renderer)
    structlog.reset_defaults()
    by_env = _invoke("edge-agent", "run", "-c", str(site), env={"GANZHI_LOG_FORMAT": log_format})
    assert by_env.exit_code == 2
    assert isinstance(_renderer(), renderer)


def test_an_unknown_log_format_is_a_usage_error() -> None:
    result = _invoke(
        "edge-agent", "check", "-c", str(EXAMPLE_SITE), env={"GANZHI_LOG_FORMAT": "xml"}
    )
    assert result.exit_code == 2
    assert "--log-format" in result.stderr
