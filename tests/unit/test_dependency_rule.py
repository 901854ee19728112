"""The dependency rule (docs/contract.md section 2), read from the imports themselves.

drivers import nothing of ours; the config machinery `configkit` nothing of ours; specs only
configkit (its catalogue is a YAML data file); the host layer `hostkit` specs and configkit;
edge_agent drivers, specs, configkit and hostkit; collector specs, configkit and hostkit; the
simulators drivers and specs, and nothing but tests, benches and the demo imports them. A
module imported only for type checking counts too: it is still a dependency.
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

from tests.support.code_layout import OURS

ROOT = Path(__file__).resolve().parents[2]
MAY_IMPORT = {
    "drivers": frozenset({"drivers"}),
    "configkit": frozenset({"configkit"}),
    "specs": frozenset({"specs", "configkit"}),
    "hostkit": frozenset({"hostkit", "specs", "configkit"}),
    "edge_agent": frozenset({"edge_agent", "hostkit", "drivers", "specs", "configkit"}),
    "collector": frozenset({"collector", "hostkit", "specs", "configkit"}),
    "simulators": frozenset({"simulators", "drivers", "specs"}),
}
MAY_IMPORT_SIMULATORS = frozenset({"simulators", "tests", "bench", "demo"})


def _imported_packages(source: Path) -> set[str]:
    tree = ast.parse(source.read_text(encoding="utf-8"), filename=str(source))
    names: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            names.update(alias.name.split(".")[0] for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module is not None and node.level == 0:
            names.add(node.module.split(".")[0])
    return names & OURS


@pytest.mark.parametrize("package", sorted(MAY_IMPORT))
def test_each_package_imports_only_what_the_rule_allows(package: str) -> None:
    offences = [
        f"{source.relative_to(ROOT)} imports {', '.join(sorted(bad))}"
        for source in sorted((ROOT / package).rglob("*.py"))
        if (bad := _imported_packages(source) - MAY_IMPORT[package])
    ]
    assert offences == []


@pytest.mark.parametrize("package", sorted(OURS - MAY_IMPORT_SIMULATORS))
def test_only_tests_benches_and_the_demo_import_the_simulators(package: str) -> None:
    offences = [
        str(source.relative_to(ROOT))
        for source in sorted((ROOT / package).rglob("*.py"))
        if "simulators" in _imported_packages(source)
    ]
    assert offences == []


def test_the_checker_sees_an_offence(tmp_path: Path) -> None:
    source = tmp_path / "m.py"
    source.write_text(
        "import json\nfrom edge_agent.cli import main\nif True:\n    import collector.cli\n"
    )
    assert _imported_packages(source) == {"edge_agent", "collector"}
