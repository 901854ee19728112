"""What a kind's device model may import (docs/contributing.md, "`config.py`").

The registry of kinds assembles the union of device models `SiteConfig` validates, so each
`edge_agent/kinds/<kind>/config.py` loads before `SiteConfig` and the registry are complete.
Of our code it imports only `configkit`, the pure modules of `drivers/` (the ones
test_purity holds pure), the base pieces of `edge_agent.config` and `edge_agent.kinds.line`.
Everything else of ours is refused: `SiteConfig` and what reads the registry (the package
`edge_agent.config` itself, whose names load it on first use, and its `site`, `devices` and
`loader`), the registry `edge_agent.kinds` and the kinds' other modules, a driver's I/O shell,
the agent's shell and CLI. An import made only for type checking counts too.
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

from tests.support.code_layout import OURS, PURE_DRIVERS

ROOT = Path(__file__).resolve().parents[2]
KIND_CONFIGS = sorted(ROOT.glob("edge_agent/kinds/*/config.py"))

CONFIG_BASE = ("device_base", "fields", "point_source", "points", "serial_port")
MAY_IMPORT = frozenset(
    {
        *(".".join(path.relative_to(ROOT).with_suffix("").parts) for path in PURE_DRIVERS),
        *(f"edge_agent.config.{name}" for name in CONFIG_BASE),
        "edge_agent.kinds.line",
    }
)
MAY_IMPORT_ALL_OF = "configkit"


def _allowed(module: str) -> bool:
    top = module.partition(".")[0]
    return top not in OURS or top == MAY_IMPORT_ALL_OF or module in MAY_IMPORT


def _absolute(node: ast.ImportFrom, package: str) -> str:
    if node.level == 0:
        return node.module or ""
    base = package.rsplit(".", node.level - 1)[0] if node.level > 1 else package
    return f"{base}.{node.module}" if node.module else base


def forbidden_imports(source: str, package: str) -> list[tuple[int, str]]:
    """(line, module) of each import of ours the rule refuses, at any depth of the tree.

    `from P import m` counts as an import of `P.m` when that is a module the rule allows
    (`from drivers.modbus import codec`), else as one of `P`.
    """
    found = []
    for node in ast.walk(ast.parse(source)):
        if isinstance(node, ast.Import):
            found += [(node.lineno, a.name) for a in node.names if not _allowed(a.name)]
        elif isinstance(node, ast.ImportFrom):
            module = _absolute(node, package)
            found += [
                (node.lineno, module)
                for a in node.names
                if not _allowed(f"{module}.{a.name}") and not _allowed(module)
            ]
    return found


def test_every_kind_is_checked() -> None:
    assert len(KIND_CONFIGS) >= 3  # a glob that matches nothing would prove nothing
    assert all(path.is_file() for path in PURE_DRIVERS), "a pure driver module was moved"
    assert all((ROOT / "edge_agent" / "config" / f"{n}.py").is_file() for n in CONFIG_BASE)
    assert (ROOT / "edge_agent" / "kinds" / "line.py").is_file()


@pytest.mark.parametrize("path", KIND_CONFIGS, ids=lambda path: path.parent.name)
def test_a_kind_config_imports_only_what_the_rule_allows(path: Path) -> None:
    package = ".".join(path.parent.relative_to(ROOT).parts)
    problems = [
        f"{path.relative_to(ROOT)}:{line}: imports {module}"
        for line, module in forbidden_imports(path.read_text(encoding="utf-8"), package)
    ]
    assert not problems, "\n".join(problems)


@pytest.mark.parametrize(
    "source",
    [
        "from edge_agent.config import SiteConfig\n",
        "from edge_agent.config.site import SiteConfig\n",
        "from edge_agent.config.devices import DeviceConfig\n",
        "import edge_agent.config.loader\n",
        "from edge_agent.kinds import KINDS\n",
        "from edge_agent import kinds\n",
        "from edge_agent.kinds.descriptor import DriverKind\n",
        "from edge_agent.kinds.serial.config import SerialDevice\n",
        "from .kind import MODBUS_TCP\n",
        "from .. import KINDS\n",
        "from drivers.modbus.tcp import ModbusTcpDriver\n",
        "from drivers.opcua import OpcUaDriver\n",
        "import edge_agent.shell.outbox\n",
        "from specs.catalogue import Catalogue\n",
        "if TYPE_CHECKING:\n    from edge_agent.config import site\n",
    ],
)
def test_the_check_finds(source: str) -> None:
    assert forbidden_imports(source, "edge_agent.kinds.modbus"), source


def test_the_check_leaves_alone_what_the_rule_allows() -> None:
    source = (
        "import re\nfrom pydantic import Field\nfrom configkit.issues import KeyPath\n"
        "from drivers.modbus.codec import Table\nfrom drivers.modbus import plan\n"
        "from drivers.serial.settings import Parity\nfrom drivers.opcua.model import UaPoint\n"
        "from edge_agent.config.device_base import DeviceBase\n"
        "from edge_agent.config.points import PointConfig\n"
        "from edge_agent.kinds.line import serial_line\nfrom ..line import serial_line\n"
    )
    assert forbidden_imports(source, "edge_agent.kinds.modbus") == []
