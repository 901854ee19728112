"""The layout the import-rule tests read: our packages, and the modules of drivers/ held pure.

docs/contract.md section 2 says which of our packages may import which (test_dependency_rule)
and which parts of the protocol library are pure (test_purity); a kind's device model may
import those and no other part of drivers (test_kind_config_imports).
"""

from __future__ import annotations

from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
# Every top-level package of ours, shipped or not.
OURS = frozenset(
    {
        "drivers",
        "configkit",
        "specs",
        "hostkit",
        "edge_agent",
        "collector",
        "simulators",
        "tests",
        "bench",
        "demo",
        "devtools",
    }
)

_MODBUS_PURE = ("codec", "plan", "reply", "rtu_frame", "timing")
_SERIAL_PURE = ("checksum", "framing", "parse", "settings")

# The protocol library's pure parts, as docs/contract.md section 2 lists them: the register
# codec, read planner, reply decoding, RTU frames and timing; serial framing, checksums,
# parsing and line settings; the OPC UA configuration types; the driver protocol itself. Its
# shells (tcp, rtu, rtu_bus, opcua driver/link, serial port/ascii) do the I/O. A kind's device
# model may import these and no other part of drivers (test_kind_config_imports).
PURE_DRIVERS = (
    ROOT / "drivers" / "base.py",
    *(ROOT / "drivers" / "modbus" / f"{name}.py" for name in _MODBUS_PURE),
    *(ROOT / "drivers" / "serial" / f"{name}.py" for name in _SERIAL_PURE),
    ROOT / "drivers" / "opcua" / "model.py",
)
