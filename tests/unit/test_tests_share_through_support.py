"""Tests share through tests/support/, never by importing another test module.

Issue 12.6: a helper, constant or fixture two test modules use lives in a module of
`tests/support/` named for what it is, with its docstring. Imported from the test module that
happened to write it first, it reads as private to that test (often `_named`), changes with
it, and ties one test's collection to another's. So no module of the tests or the benches
imports a test module (a `test_*.py` file under tests/), at any depth of its syntax tree, for
type checking too; nor does a program a test runs from a string (`python -c PROGRAM`), unless
it is its own module it imports.
"""

from __future__ import annotations

import ast
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
# This module's own examples of imports are strings it holds on purpose.
IMPORTERS = sorted(
    {*ROOT.glob("tests/**/*.py"), *ROOT.glob("bench/**/*.py")} - {Path(__file__).resolve()}
)


def _is_test_module(module: str) -> bool:
    parts = module.split(".")
    return parts[0] == "tests" and any(part.startswith("test_") for part in parts[1:])


def _module_of(path: Path) -> str:
    return ".".join(path.relative_to(ROOT).with_suffix("").parts)


def _programs(tree: ast.AST) -> list[tuple[int, ast.Module]]:
    """(line, syntax tree) of each string in `tree` that is a Python program importing `tests`."""
    found = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Constant) and isinstance(node.value, str):
            if "import tests." not in node.value and "from tests." not in node.value:
                continue
            try:
                found.append((node.lineno, ast.parse(node.value)))
            except SyntaxError:  # prose that names an import, not a program
                continue
    return found


def imports_of_test_modules(source: str, importer: str = "") -> list[tuple[int, str]]:
    """(line, module) of each statement of `source` that imports a test module, and of each
    string in it holding a program that does (at the string's line); `importer`, the module
    `source` is, may import itself from such a program.

    `from tests.unit import test_x` counts as an import of `tests.unit.test_x`.
    """
    tree = ast.parse(source)
    found = _imports(tree)
    for line, program in _programs(tree):
        found += [(line, module) for _, module in _imports(program) if module != importer]
    return found


def _imports(tree: ast.AST) -> list[tuple[int, str]]:
    found = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            found += [(node.lineno, a.name) for a in node.names if _is_test_module(a.name)]
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            modules = [node.module, *(f"{node.module}.{a.name}" for a in node.names)]
            found += [(node.lineno, m) for m in modules if _is_test_module(m)][:1]
    return found


def test_the_rule_finds_each_form_of_import() -> None:
    source = """\
import tests.unit.test_a
from tests.integration.test_b import _helper, CONSTANT
from tests.e2e import test_c
from tests.support.outbox_file import committed_records
from tests.faults.conftest import MakeSite
import typing
if typing.TYPE_CHECKING:
    from tests.unit.test_d import Thing
def late():
    from tests.unit.test_e import other
PROGRAM = '''
from tests.unit.test_f import helper
from tests.unit.test_own import KEY
'''
"""
    assert imports_of_test_modules(source, "tests.unit.test_own") == [
        (1, "tests.unit.test_a"),
        (2, "tests.integration.test_b"),
        (3, "tests.e2e.test_c"),
        (8, "tests.unit.test_d"),
        (10, "tests.unit.test_e"),
        (11, "tests.unit.test_f"),
    ]


def test_the_tests_and_benches_were_found() -> None:
    assert ROOT / "tests" / "support" / "outbox_file.py" in IMPORTERS
    assert ROOT / "bench" / "rig.py" in IMPORTERS
    assert len(IMPORTERS) > 300, "a glob that matches nothing proves nothing"


def test_no_module_imports_a_test_module() -> None:
    found = [
        f"{path.relative_to(ROOT)}:{line}: imports {module}"
        for path in IMPORTERS
        for line, module in imports_of_test_modules(
            path.read_text(encoding="utf-8"), _module_of(path)
        )
    ]
    assert not found, "\n".join([f"{len(found)} imports of test modules:", *found])
