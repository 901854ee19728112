"""ThingsBoard IoT Gateway as a newcomer installs it: its own venv, its shipped configuration.

The gateway pins pymodbus 3.9.2 (its Modbus connector force-reinstalls that version at import
when another is present), so it lives in a venv of its own under a git-ignored cache directory
(VENV_DIR), never in the project's. `ensure_venv` creates it once and pip installs the pinned
TB_GATEWAY_VERSION plus what the Modbus connector would otherwise pip install on its first
start (pymodbus==3.9.2, pyserial, pyserial-asyncio), so a measured run installs nothing.

`write_config` copies the package's own config/tb_gateway.json and config/logs.json and changes
only what pointing it at another server needs: host and port (the bench's Mosquitto), an
access token, and one Modbus connector. Everything else stays the shipped default, notably
``storage: {type: memory, max_records_count: 100000, read_records_count: 100}``: polled data
waits in an in-process queue while the platform is unreachable (lost on a gateway restart).
The connector configuration is the shipped config/modbus.json's first slave with its sample
tags replaced by ours: one slave per device, each point a ``32float`` time series read with
function code 3 (holding) or 4 (input), two registers, big-endian bytes and words.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from bench.peers.tb_platform import GATEWAY_USER

TB_GATEWAY_VERSION = "3.8.5"
# What the Modbus connector of that version pins and installs itself when missing.
CONNECTOR_PACKAGES = ("pymodbus==3.9.2", "pyserial==3.5", "pyserial-asyncio==0.6")
VENV_DIR = Path(__file__).resolve().parents[2] / ".bench-venvs" / "tb-gateway"
FUNCTION_CODE = {"holding": 3, "input": 4}


@dataclass(frozen=True)
class TbPoint:
    """One Modbus point as both gateways read it: a float32 at `address` of `table`."""

    key: str
    table: str
    address: int


@dataclass(frozen=True)
class TbDevice:
    """One Modbus TCP device on 127.0.0.1:`port` (unit 1): its name and points."""

    name: str
    port: int
    points: tuple[TbPoint, ...]


def venv_python(venv: Path = VENV_DIR) -> Path:
    return venv / "bin" / "python"


def installed_version(venv: Path = VENV_DIR) -> str | None:
    """The thingsboard-gateway version in the venv, or None when there is none."""
    if not venv_python(venv).exists():
        return None
    done = subprocess.run(
        [str(venv_python(venv)), "-c",
         "from importlib.metadata import version; print(version('thingsboard-gateway'))"],
        capture_output=True, text=True, check=False,
    )  # fmt: skip
    return done.stdout.strip() if done.returncode == 0 else None


def ensure_venv(venv: Path = VENV_DIR) -> str:
    """Create the venv with the pinned gateway unless it is there already; its version."""
    if installed_version(venv) != TB_GATEWAY_VERSION:
        print(f"installing thingsboard-gateway {TB_GATEWAY_VERSION} into {venv}", file=sys.stderr)
        subprocess.run([sys.executable, "-m", "venv", "--clear", str(venv)], check=True)
        subprocess.run(
            [str(venv_python(venv)), "-m", "pip", "install", "--quiet",
             "--disable-pip-version-check", f"thingsboard-gateway=={TB_GATEWAY_VERSION}",
             *CONNECTOR_PACKAGES],
            check=True,
        )  # fmt: skip
    version = installed_version(venv)
    if version != TB_GATEWAY_VERSION:
        raise SystemExit(f"thingsboard-gateway {TB_GATEWAY_VERSION} did not install in {venv}")
    return version


_CONFIG_DIR_CODE = (
    "import thingsboard_gateway, pathlib; "
    "print(pathlib.Path(thingsboard_gateway.__file__).parent / 'config')"
)


def package_config_dir(venv: Path = VENV_DIR) -> Path:
    """The config/ folder shipped inside the installed thingsboard_gateway package."""
    done = subprocess.run(
        [str(venv_python(venv)), "-c", _CONFIG_DIR_CODE],
        capture_output=True, text=True, check=True,
    )  # fmt: skip
    return Path(done.stdout.strip())


def _slave(template: dict[str, Any], device: TbDevice) -> dict[str, Any]:
    timeseries = [
        {
            "tag": point.key,
            "type": "32float",
            "functionCode": FUNCTION_CODE[point.table],
            "objectsCount": 2,
            "address": point.address,
        }
        for point in device.points
    ]
    return template | {
        "host": "127.0.0.1",
        "port": device.port,
        "unitId": 1,
        "deviceName": device.name,
        "byteOrder": "BIG",
        "wordOrder": "BIG",
        "pollPeriod": 1000,
        "attributes": [],
        "timeseries": timeseries,
        "attributeUpdates": [],
        "rpc": [],
    }


def write_config(config_dir: Path, broker_port: int, devices: Sequence[TbDevice]) -> dict[str, Any]:
    """Write tb_gateway.json, logs.json and modbus.json into `config_dir`; the storage used."""
    shipped = package_config_dir()
    config_dir.mkdir(parents=True, exist_ok=True)
    gateway = json.loads((shipped / "tb_gateway.json").read_text(encoding="utf-8"))
    gateway["thingsboard"] |= {"host": "127.0.0.1", "port": broker_port}
    gateway["thingsboard"]["security"] = {"type": "accessToken", "accessToken": GATEWAY_USER}
    gateway["connectors"] = [{"type": "modbus", "name": "Modbus", "configuration": "modbus.json"}]
    (config_dir / "tb_gateway.json").write_text(json.dumps(gateway, indent=2), encoding="utf-8")
    logs = (shipped / "logs.json").read_text(encoding="utf-8")
    (config_dir / "logs.json").write_text(logs, encoding="utf-8")
    example = json.loads((shipped / "modbus.json").read_text(encoding="utf-8"))
    template = example["master"]["slaves"][0]
    modbus = {"master": {"slaves": [_slave(template, d) for d in devices]}}
    (config_dir / "modbus.json").write_text(json.dumps(modbus, indent=2), encoding="utf-8")
    return dict(gateway["storage"])


# The `thingsboard-gateway` entry point, less its update check: TBUpdater posts the version,
# OS and an instance id to the vendor's update service at start and hourly (no setting turns
# it off), and this machine talks to loopback only. Nothing else of the gateway changes.
LAUNCH = """
import thingsboard_gateway.tb_utility.tb_updater as updater
updater.TBUpdater.check_for_new_version = lambda self: None
from thingsboard_gateway.tb_gateway import main
main()
"""


def spawn(work: Path, config_dir: Path) -> subprocess.Popen[bytes]:
    """Start the gateway in `work` (its logs/ and data/ go there) with `config_dir`."""
    env = os.environ | {"TB_GW_CONFIG_DIR": str(config_dir)}
    with (work / "tb-gateway.out").open("ab") as out:
        return subprocess.Popen(
            [str(venv_python()), "-c", LAUNCH],
            cwd=work, env=env, stdout=out, stderr=subprocess.STDOUT,
        )  # fmt: skip
