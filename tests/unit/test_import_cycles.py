"""Each shipped package reads one way: no module imports, however late, one that imports it back.

Issue 12.8 asks for the agent's config -> drivers path to read in one direction. A cycle hidden
by an import inside a function is still one: it runs, but a reader following the path finds
the data types of the plan reaching back into the code that makes them. So imports inside
functions count here; imports only for type checking do not (they never run), and neither
does a package's `__init__` importing its own modules (that re-exports, it does not depend).
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
PACKAGES = ("edge_agent", "collector", "drivers", "specs", "configkit", "hostkit", "simulators")


def _module_name(path: Path, root: Path) -> str:
    parts = path.relative_to(root).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


class _RunImports(ast.NodeVisitor):
    """Every import statement that can run: at any depth, outside `if TYPE_CHECKING:`."""

    def __init__(self) -> None:
        self.found: list[ast.Import | ast.ImportFrom] = []

    def visit_If(self, node: ast.If) -> None:
        if "TYPE_CHECKING" in ast.unparse(node.test):
            for statement in node.orelse:
                self.visit(statement)
            return
        self.generic_visit(node)

    def visit_Import(self, node: ast.Import) -> None:
        self.found.append(node)

    def visit_ImportFrom(self, node: ast.ImportFrom) -> None:
        self.found.append(node)


def _imported(node: ast.Import | ast.ImportFrom, importer: str, is_package: bool) -> list[str]:
    """The module names `node` may import (a `from m import x` may import module m.x)."""
    if isinstance(node, ast.Import):
        return [alias.name for alias in node.names]
    base = node.module or ""
    if node.level:
        package = importer if is_package else importer.rpartition(".")[0]
        for _ in range(node.level - 1):
            package = package.rpartition(".")[0]
        base = f"{package}.{base}" if base else package
    return [base, *(f"{base}.{alias.name}" for alias in node.names)]


def import_graph(root: Path, package: str) -> dict[str, set[str]]:
    """Module -> the modules of `package` it imports at run time, re-exports left out."""
    paths = {_module_name(path, root): path for path in sorted((root / package).rglob("*.py"))}
    graph: dict[str, set[str]] = {}
    for name, path in paths.items():
        visitor = _RunImports()
        visitor.visit(ast.parse(path.read_text(encoding="utf-8"), filename=str(path)))
        is_package = path.name == "__init__.py"
        targets = {t for node in visitor.found for t in _imported(node, name, is_package)}
        graph[name] = {
            t for t in targets if t in paths and t != name and not t.startswith(f"{name}.")
        }
    return graph


def cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """The strongly connected components of more than one module (Tarjan), each sorted."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    found: list[list[str]] = []

    def visit(module: str) -> None:
        index[module] = low[module] = len(index)
        stack.append(module)
        on_stack.add(module)
        for target in sorted(graph[module]):
            if target not in index:
                visit(target)
                low[module] = min(low[module], low[target])
            elif target in on_stack:
                low[module] = min(low[module], index[target])
        if low[module] == index[module]:
            component: list[str] = []
            while not component or component[-1] != module:
                component.append(stack.pop())
                on_stack.discard(component[-1])
            if len(component) > 1:
                found.append(sorted(component))

    for module in sorted(graph):
        if module not in index:
            visit(module)
    return found


def _describe(graph: dict[str, set[str]], component: list[str]) -> str:
    edges = [f"  {m} -> {', '.join(sorted(graph[m] & set(component)))}" for m in component]
    return "\n".join(["a cycle:", *edges])


@pytest.mark.parametrize("package", PACKAGES)
def test_no_module_imports_its_own_importer(package: str) -> None:
    graph = import_graph(ROOT, package)
    assert len(graph) > 1, "a glob that matches nothing proves nothing"
    assert not (found := cycles(graph)), "\n".join(_describe(graph, c) for c in found)


def _tree(root: Path, files: dict[str, str]) -> None:
    for name, text in files.items():
        path = root / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text, encoding="utf-8")


def test_a_cycle_through_an_import_inside_a_function_is_found(tmp_path: Path) -> None:
    _tree(
        tmp_path,
        {
            "pkg/__init__.py": "from pkg.plan import Plan\n",
            "pkg/plan.py": "def buses():\n    from pkg.kinds import rtu\n",
            "pkg/kinds/__init__.py": "",
            "pkg/kinds/rtu.py": "from pkg import plan\n",
        },
    )
    assert cycles(import_graph(tmp_path, "pkg")) == [["pkg.kinds.rtu", "pkg.plan"]]


def test_type_checking_imports_and_re_exports_are_no_cycle(tmp_path: Path) -> None:
    _tree(
        tmp_path,
        {
            "pkg/__init__.py": "from pkg.a import A\n",
            "pkg/a.py": "import typing\nif typing.TYPE_CHECKING:\n    from pkg.b import B\n",
            "pkg/b.py": "from pkg import a\nfrom . import a as again\n",
        },
    )
    graph = import_graph(tmp_path, "pkg")
    assert graph == {"pkg": set(), "pkg.a": set(), "pkg.b": {"pkg", "pkg.a"}}
    assert cycles(graph) == []
