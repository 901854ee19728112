"""G7: an agent imports the OPC UA and serial libraries only when a device needs them.

Each check is a fresh interpreter (sys.modules of this test process holds everything the
suite imported) that imports what `edge-agent run` imports, parses a site map and builds the
drivers of its devices as the agent's composition does, then says which modules it loaded.
Memory is measured by bench/memory.py; this guards the cause without timing anything.
"""

from __future__ import annotations

import json
import subprocess
import sys
import textwrap

from tests.support.config_files import site_head

HEAD = (
    site_head()
    + """\
devices:
  - {id: plc, driver: modbus_tcp, host: 10.0.0.9, poll: 1s, points: [
     {point: T1, quota: WHP-LT, address: {table: holding, start: 0, type: float32}}]}
"""
)
OPCUA = """\
  - {id: slope, driver: opcua, endpoint: 'opc.tcp://10.0.0.5', mode: poll,
     points: [{point: S1, quota: BP-GX, node: 'ns=2;s=Slope.G1.X'}]}
"""
SERIAL = """\
  - {id: gas, driver: serial, port: /dev/ttyS1, baudrate: 9600, poll: 1s, points: [
     {point: G1-TOX, quota: WHP-TOX, pattern: 'H2S=(?P<value>[0-9.]+)'}]}
"""

PROGRAM = """\
import json, sys
from pathlib import Path

import edge_agent.cli  # the `edge-agent` entry point: all that `run` imports
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
    modules = loaded_modules(HEAD)
    assert "drivers.modbus.tcp" in modules, "the program did build the Modbus driver"
    for name in (*OPCUA_MODULES, "drivers.serial.port", "drivers.serial.ascii", *NEVER):
        assert name not in modules, f"{name} loaded for a Modbus TCP site"


def test_an_opcua_site_loads_asyncua_and_a_serial_site_its_port() -> None:
    modules = loaded_modules(HEAD + OPCUA + SERIAL)
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
        input=HEAD + OPCUA,
        capture_output=True,
        text=True,
        check=True,
    )
    assert done.stdout.strip() == "False"
