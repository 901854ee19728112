"""No shipped Python module over 400 lines (issue 12 point 8; docs/contributing.md).

A module that long holds more than one reason to change: split it where those reasons part (a
cohesive group of functions, named for what it does), not into a helpers module. The packages
checked are the ones pyproject.toml ships, read from it, so a new package is checked too;
tests, benches, the demo and devtools do not ship and are not checked.
"""

from __future__ import annotations

import tomllib
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
MOST_LINES = 400


def shipped_packages() -> list[str]:
    """Top-level packages pyproject.toml's setuptools `include` patterns name."""
    config = tomllib.loads((ROOT / "pyproject.toml").read_text(encoding="utf-8"))
    patterns = config["tool"]["setuptools"]["packages"]["find"]["include"]
    return sorted({pattern.rstrip("*").rstrip(".") for pattern in patterns})


def oversized(root: Path, packages: list[str], most: int) -> list[str]:
    """'path: N lines' for each module of `packages` under `root` longer than `most` lines."""
    found = []
    for package in packages:
        for source in sorted((root / package).rglob("*.py")):
            path = source.relative_to(root).as_posix()
            lines = len(source.read_text(encoding="utf-8").splitlines())
            if lines > most:
                found.append(f"{path}: {lines} lines")
    return found


def test_the_checked_packages_are_the_shipped_ones() -> None:
    assert shipped_packages() == [
        "collector",
        "configkit",
        "drivers",
        "edge_agent",
        "hostkit",
        "simulators",
        "specs",
    ]


def test_a_module_over_the_limit_is_named_with_its_length(tmp_path: Path) -> None:
    (tmp_path / "pkg" / "sub").mkdir(parents=True)
    (tmp_path / "pkg" / "sub" / "long.py").write_text("x = 1\n" * 401, encoding="utf-8")
    (tmp_path / "pkg" / "short.py").write_text("x = 1\n" * 400, encoding="utf-8")
    assert oversized(tmp_path, ["pkg"], MOST_LINES) == ["pkg/sub/long.py: 401 lines"]


def test_no_shipped_module_is_over_400_lines() -> None:
    too_long = oversized(ROOT, shipped_packages(), MOST_LINES)
    assert not too_long, (
        f"modules over {MOST_LINES} lines (split each where its reasons to change part,"
        " docs/contributing.md): " + "; ".join(too_long)
    )
