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
from collections.abc import Callable
from pathlib import Path

import pytest

from tests.support.code_layout import PURE_DRIVERS

ROOT = Path(__file__).resolve().parents[2]

_STORAGE_PURE = (
    "alarms",
    "gap_records",
    "ingest_rows",
    "keys",
    "months",
    "readings",
    "retention",
    "rollups",
    "urls",
)

CORE_MODULES = sorted(
    {
        *ROOT.glob("edge_agent/core/**/*.py"),
        *ROOT.glob("collector/*/core.py"),
        ROOT / "collector" / "feed" / "due.py",
        *ROOT.glob("collector/ingest/normalize.py"),
        # The wire contract: pure functions and data, no I/O (specs/__init__.py).
        *ROOT.glob("specs/**/*.py"),
        *PURE_DRIVERS,
        # Retry delays, used by both programs (issue 12.3 moved them out of drivers/modbus).
        ROOT / "hostkit" / "backoff.py",
        # The collector's storage decisions both backends make, and its audit chain.
        *(ROOT / "collector" / "storage" / f"{name}.py" for name in _STORAGE_PURE),
        ROOT / "collector" / "audit" / "chain.py",
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
    """(line, what is wrong) of each import of an impure module, at any depth of the tree."""
    found = []
    for node in ast.walk(ast.parse(source)):
        if isinstance(node, ast.Import):
            names = [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            names = [node.module]
        else:
            continue
        found += [
            (node.lineno, f"imports {n}: {IMPURE[n.partition('.')[0]]}")
            for n in names
            if n.partition(".")[0] in IMPURE
        ]
    return found


def process_wide_reads(source: str) -> list[tuple[int, str]]:
    """(line, what is wrong) of each import, call or mention of a process-wide cache."""
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
        found += [(node.lineno, f"{n}: {PROCESS_WIDE[n]}") for n in names if n in PROCESS_WIDE]
    return found


Check = Callable[[str], list[tuple[int, str]]]


def test_the_core_is_not_empty() -> None:
    assert len(CORE_MODULES) >= 20  # a glob that matches nothing would prove nothing
    assert all(path.is_file() for path in CORE_MODULES), "a listed module was moved or renamed"
    assert ROOT / "specs" / "block.py" in CORE_MODULES
    assert ROOT / "edge_agent" / "config" / "points.py" in CONFIG_MODELS


# Each check with the modules it holds to it: the site map's models read no process-wide cache.
CHECKED = [
    *((impure_imports, path) for path in CORE_MODULES),
    *((process_wide_reads, path) for path in [*CORE_MODULES, *CONFIG_MODELS]),
]


@pytest.mark.parametrize(
    ("check", "path"),
    [pytest.param(*c, id=f"{c[0].__name__}:{c[1].relative_to(ROOT)}") for c in CHECKED],
)
def test_core_module_passes_the_check(check: Check, path: Path) -> None:
    problems = [
        f"{path.relative_to(ROOT)}:{line}: {problem}"
        for line, problem in check(path.read_text(encoding="utf-8"))
    ]
    assert not problems, "\n".join(problems)


@pytest.mark.parametrize(
    ("check", "source"),
    [
        (process_wide_reads, "from specs.catalogue import default_catalogue\n"),
        (
            process_wide_reads,
            "import specs.catalogue\ndef f():\n    return specs.catalogue.default_catalogue()\n",
        ),
        (process_wide_reads, "def f(point):\n    return default_catalogue().get(point.quota)\n"),
        (impure_imports, "import time\n"),
        (impure_imports, "from asyncio import sleep\n"),
        (impure_imports, "import logging.handlers\n"),
        (impure_imports, "def f():\n    import sqlite3\n"),
        (impure_imports, "import os, socket\n"),
        (impure_imports, "from structlog import get_logger\n"),
    ],
)
def test_the_check_finds(check: Check, source: str) -> None:
    assert check(source), source


@pytest.mark.parametrize(
    ("check", "source"),
    [
        pytest.param(
            process_wide_reads,
            "from specs.catalogue import Catalogue\ndef f(catalogue: Catalogue):\n    return 1\n",
            id="a catalogue argument",
        ),
        pytest.param(
            impure_imports,
            "import math\nfrom dataclasses import dataclass\nfrom . import x\n",
            id="pure imports",
        ),
    ],
)
def test_the_check_leaves_alone(check: Check, source: str) -> None:
    assert check(source) == []
