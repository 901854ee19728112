"""The functional core stays pure: no clock, no I/O, no event loop, no logging.

A core module computes from its arguments only, so it is tested with plain values and runs the
same in the agent, the collector, a replay and a test. This test reads every core module's
syntax tree (imports inside functions included) and fails on an import of a module that reads
the clock, does I/O, schedules work or logs: the shells (`edge_agent/shell/`, the collector's
service modules) do that and pass the results in. Process-wide state counts too: a core module
that reads the cached catalogue (`default_catalogue`) computes from more than its arguments, so
it takes a `Catalogue` the composition root loaded.
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]

CORE_MODULES = sorted(
    {
        *ROOT.glob("edge_agent/core/**/*.py"),
        *ROOT.glob("collector/*/core.py"),
        *ROOT.glob("collector/ingest/normalize.py"),
        ROOT / "drivers" / "modbus" / "codec.py",
        ROOT / "drivers" / "modbus" / "rtu_frame.py",
        # The driver kinds: config -> driver settings; `build` only constructs a driver (it
        # imports the driver's module then, G7), the shells connect and poll it.
        *ROOT.glob("edge_agent/kinds/**/*.py"),
        ROOT / "edge_agent" / "core" / "order_guess.py",
    }
)

# The site map's models are pure too: they check quotas against the catalogue the loader (a
# composition root, the one module here that picks the shipped catalogue) passes them.
CONFIG_MODELS = sorted(
    set(ROOT.glob("edge_agent/config/*.py")) - {ROOT / "edge_agent" / "config" / "loader.py"}
)

# Each with why a core module may not have it.
IMPURE = {
    "asyncio": "schedules work",
    "sqlite3": "does I/O",
    "socket": "does I/O",
    "selectors": "does I/O",
    "time": "reads the clock (take `now` as an argument)",
    "logging": "logs (return what happened; the shell logs it)",
    "structlog": "logs (return what happened; the shell logs it)",
    "threading": "schedules work",
    "subprocess": "does I/O",
    "aiosqlite": "does I/O",
    "asyncpg": "does I/O",
    "aiomqtt": "does I/O",
    "paho": "does I/O",
}

# Process-wide caches a core module may not read, each with what to do instead.
PROCESS_WIDE = {
    "default_catalogue": "reads the process-wide catalogue (take a `Catalogue` argument)",
}


def impure_imports(source: str) -> list[tuple[int, str]]:
    """(line, module) of each import of an impure module, at any depth of the tree."""
    found = []
    for node in ast.walk(ast.parse(source)):
        if isinstance(node, ast.Import):
            names = [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            names = [node.module]
        else:
            continue
        found += [(node.lineno, n) for n in names if n.partition(".")[0] in IMPURE]
    return found


def process_wide_reads(source: str) -> list[tuple[int, str]]:
    """(line, name) of each import, call or mention of a process-wide cache."""
    found = []
    for node in ast.walk(ast.parse(source)):
        if isinstance(node, ast.ImportFrom):
            names = [alias.name for alias in node.names]
        elif isinstance(node, ast.Name):
            names = [node.id]
        elif isinstance(node, ast.Attribute):
            names = [node.attr]
        else:
            continue
        found += [(node.lineno, n) for n in names if n in PROCESS_WIDE]
    return found


def test_the_core_is_not_empty() -> None:
    assert len(CORE_MODULES) >= 20  # a glob that matches nothing would prove nothing
    assert ROOT / "edge_agent" / "config" / "points.py" in CONFIG_MODELS


@pytest.mark.parametrize("path", CORE_MODULES, ids=lambda p: str(p.relative_to(ROOT)))
def test_core_module_imports_nothing_impure(path: Path) -> None:
    problems = [
        f"{path.relative_to(ROOT)}:{line}: imports {module}: {IMPURE[module.partition('.')[0]]}"
        for line, module in impure_imports(path.read_text(encoding="utf-8"))
    ]
    assert not problems, "\n".join(problems)


@pytest.mark.parametrize(
    "path", [*CORE_MODULES, *CONFIG_MODELS], ids=lambda p: str(p.relative_to(ROOT))
)
def test_core_module_reads_no_process_wide_cache(path: Path) -> None:
    problems = [
        f"{path.relative_to(ROOT)}:{line}: {name}: {PROCESS_WIDE[name]}"
        for line, name in process_wide_reads(path.read_text(encoding="utf-8"))
    ]
    assert not problems, "\n".join(problems)


@pytest.mark.parametrize(
    "source",
    [
        "from specs.catalogue import default_catalogue\n",
        "import specs.catalogue\ndef f():\n    return specs.catalogue.default_catalogue()\n",
        "def f(point):\n    return default_catalogue().get(point.quota)\n",
    ],
)
def test_the_check_finds_a_process_wide_read(source: str) -> None:
    assert process_wide_reads(source), source


def test_the_check_leaves_a_catalogue_argument_alone() -> None:
    source = "from specs.catalogue import Catalogue\ndef f(catalogue: Catalogue):\n    return 1\n"
    assert process_wide_reads(source) == []


@pytest.mark.parametrize(
    "source",
    [
        "import time\n",
        "from asyncio import sleep\n",
        "import logging.handlers\n",
        "def f():\n    import sqlite3\n",
        "import os, socket\n",
        "from structlog import get_logger\n",
    ],
)
def test_the_check_finds_an_impure_import(source: str) -> None:
    assert impure_imports(source), source


def test_the_check_leaves_pure_imports_alone() -> None:
    assert impure_imports("import math\nfrom dataclasses import dataclass\nfrom . import x\n") == []
