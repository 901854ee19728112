"""G7: an agent imports the OPC UA and serial libraries only when a device needs them.

Each check is a fresh interpreter (sys.modules of this test process holds everything the
suite imported) that imports what `edge-agent run` imports, parses a site map and builds the
drivers of its devices as the agent's composition does, then says which modules it loaded.
Memory is measured by bench/memory.py; this guards the cause without timing anything.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import textwrap
from pathlib import Path

from specs.signing import generate_signing_key, private_pem
from tests.support.broker import free_port
from tests.support.config_files import OPCUA_POLL_DEVICE, SERIAL_GAS_DEVICE, TCP_SITE, site_head

PROGRAM = """\
import json, sys
from pathlib import Path

import edge_agent.cli.run  # what `edge-agent run` imports
from edge_agent.config import parse_site_config
from edge_agent.core.points import resolve_points
from edge_agent.shell.buses import RtuBuses
from edge_agent.kinds import build_driver

config = parse_site_config(sys.stdin.read(), "site.yaml", Path("/etc/ganzhi"))
points = resolve_points(config)
buses = RtuBuses()
for device in config.devices:
    build_driver(device, [p for p in points if p.device_id == device.id], buses=buses)
print(json.dumps(sorted(sys.modules)))
"""

NEVER = ("fastapi", "uvicorn", "starlette", "asyncpg", "psycopg", "collector")
OPCUA_MODULES = ("asyncua", "drivers.opcua.driver")


def loaded_modules(site_map: str) -> set[str]:
    """Modules an agent holds after building the drivers of `site_map`."""
    done = subprocess.run(
        [sys.executable, "-c", PROGRAM],
        input=site_map,
        capture_output=True,
        text=True,
        check=True,
    )
    return set(json.loads(done.stdout))


def test_a_modbus_tcp_site_loads_no_opcua_no_serial_port_and_no_web_server() -> None:
    modules = loaded_modules(TCP_SITE)
    assert "drivers.modbus.tcp" in modules, "the program did build the Modbus driver"
    for name in (*OPCUA_MODULES, "drivers.serial.port", "drivers.serial.ascii", *NEVER):
        assert name not in modules, f"{name} loaded for a Modbus TCP site"


def test_an_opcua_site_loads_asyncua_and_a_serial_site_its_port() -> None:
    modules = loaded_modules(TCP_SITE + OPCUA_POLL_DEVICE + SERIAL_GAS_DEVICE)
    for name in (*OPCUA_MODULES, "drivers.serial.port", "serial"):
        assert name in modules, f"{name} not loaded for the device that needs it"
    for name in NEVER:
        assert name not in modules


def test_checking_an_opcua_site_map_needs_no_asyncua() -> None:
    program = textwrap.dedent("""\
        import sys
        from pathlib import Path
        from edge_agent.config import parse_site_config
        from edge_agent.core.points import resolve_points
        config = parse_site_config(sys.stdin.read(), "site.yaml", Path("/etc/ganzhi"))
        assert resolve_points(config)
        print("asyncua" in sys.modules)
    """)
    done = subprocess.run(
        [sys.executable, "-c", program],
        input=TCP_SITE + OPCUA_POLL_DEVICE,
        capture_output=True,
        text=True,
        check=True,
    )
    assert done.stdout.strip() == "False"


# A real `edge-agent run` (the command line's `main`, in its own process) on a Modbus TCP map:
# the device and the broker are free ports nobody listens on, so the agent starts, tries
# both, and stops on SIGTERM. `run` checks the map and execs the runner in the same process;
# a `sitecustomize` on PYTHONPATH (which the exec keeps) writes the modules the long-running
# interpreter held at its exit (an exec runs no atexit hook, so only the last one writes).
RUN = """\
from edge_agent.cli import main

main(["--log-format", "json", "run", "-c", "site.yaml"])
"""
LIST_AT_EXIT = """\
import atexit, json, sys
from pathlib import Path

atexit.register(lambda: Path("modules.json").write_text(json.dumps(sorted(sys.modules))))
"""
# What a Modbus-only agent without `metrics:` and with an Ed25519 key never needs.
NOT_FOR_MODBUS_ONLY = (
    *OPCUA_MODULES,
    "drivers.serial.port",
    "drivers.modbus.rtu",
    "prometheus_client",  # only with metrics.listen
    "tongsuopy",  # the SM2 backend, only for an sm2-sm3 key
    "edge_agent.cli.probe",  # the other commands' modules: imported when they run
    "edge_agent.backfill",
    *NEVER,
)
# What only checking the site map needs (G7: 11-13 MiB): the running agent has its plan.
NOT_FOR_RUNNING = (
    "pydantic",
    "pydantic_core",
    "yaml",
    "click",
    "edge_agent.config",
    "edge_agent.kinds",
    "specs.catalogue.schema",
    "specs.catalogue.checks",
)


def _write_site(folder: Path) -> None:
    (folder / "keys").mkdir()
    key_file = folder / "keys" / "gateway.key"
    key_file.write_bytes(private_pem(generate_signing_key()))
    key_file.chmod(0o600)
    collector = generate_signing_key().public().public_pem()
    (folder / "keys" / "collector.pub").write_bytes(collector)
    device = f"""\
  - {{id: plc, driver: modbus_tcp, host: 127.0.0.1, port: {free_port()}, poll: 1s, points: [
     {{point: T1, quota: WHP-LT, address: {{table: holding, start: 0, type: float32}}}}]}}
"""
    site = site_head(broker_port=free_port()) + "devices:\n" + device
    (folder / "site.yaml").write_text(site, encoding="utf-8")


def test_a_running_modbus_only_agent_holds_no_opcua_serial_port_sm2_or_prometheus(
    tmp_path: Path,
) -> None:
    _write_site(tmp_path)
    hook = tmp_path / "hook"
    hook.mkdir()
    (hook / "sitecustomize.py").write_text(LIST_AT_EXIT, encoding="utf-8")
    path = os.pathsep.join(filter(None, [str(hook), os.environ.get("PYTHONPATH")]))
    agent = subprocess.Popen(
        [sys.executable, "-c", RUN],
        cwd=tmp_path,
        stdout=subprocess.PIPE,
        text=True,
        env={**os.environ, "PYTHONPATH": path},
    )
    try:
        assert agent.stdout is not None
        # The log's lines until the agent says it started (or the log ends: it exited).
        started = any('"agent_started"' in line for line in agent.stdout)
        assert started, f"the agent did not start (exit status {agent.poll()})"
    finally:
        agent.send_signal(signal.SIGTERM)
        agent.communicate(timeout=60)
    assert agent.returncode == 0
    modules = set(json.loads((tmp_path / "modules.json").read_text(encoding="utf-8")))
    assert {"drivers.modbus.tcp", "pymodbus", "aiomqtt"} <= modules, "the agent ran"
    held = sorted(name for name in NOT_FOR_MODBUS_ONLY if name in modules)
    assert held == [], f"a Modbus-only agent imported {held}"
    checking = sorted(name for name in NOT_FOR_RUNNING if name in modules)
    assert checking == [], f"the running agent holds what checking its map needed: {checking}"


def test_verifying_an_ed25519_signature_leaves_the_sm2_library_unimported() -> None:
    # The agent verifies every ACK the collector signs; tongsuopy is for sm2-sm3 keys only.
    program = textwrap.dedent("""\
        import sys
        from specs.signing import generate_signing_key
        key = generate_signing_key()
        key.public().verify(key.sign(b"ack"), b"ack")
        print("tongsuopy" in sys.modules)
    """)
    done = subprocess.run(
        [sys.executable, "-c", program], capture_output=True, text=True, check=True
    )
    assert done.stdout.strip() == "False"
