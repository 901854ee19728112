"""README.md and docs/*.md link only to files inside the repository, and those files exist.

Checked: markdown links and images `[text](target)`, reference definitions `[name]: target`,
and backticked paths that start with `../` (a path a reader is told to open). Fenced code
blocks are commands and examples, not references, so they are skipped. URLs with a scheme
(`https:`, `mailto:`) and in-page anchors (`#section`) are not files and are skipped too.
"""

from __future__ import annotations

import re
import urllib.parse
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
DOCS = [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]

_FENCE = re.compile(r"^ {0,3}(`{3,}|~{3,})")
_INLINE_LINK = re.compile(r"!?\[[^\]]*\]\(\s*(<[^>]*>|[^)\s]+)")
_REFERENCE = re.compile(r"^ {0,3}\[[^\]]+\]:\s*(<[^>]*>|\S+)")
_CODE_SPAN = re.compile(r"(`+)(.+?)\1")
_SCHEME = re.compile(r"^[A-Za-z][A-Za-z0-9+.-]*:")


def _prose_lines(text: str) -> list[tuple[int, str]]:
    """The lines outside fenced code blocks, numbered from 1."""
    lines: list[tuple[int, str]] = []
    fence: str | None = None
    for number, line in enumerate(text.splitlines(), start=1):
        match = _FENCE.match(line)
        if fence is None and match:
            fence = match.group(1)[0] * len(match.group(1))
        elif fence is not None and line.strip().startswith(fence):
            fence = None
        elif fence is None:
            lines.append((number, line))
    return lines


def _targets(line: str) -> list[str]:
    """Every file reference on one line of prose."""
    found = [m.group(1).strip("<>") for m in _INLINE_LINK.finditer(line)]
    found += [m.group(1).strip("<>") for m in _REFERENCE.finditer(line)]
    for span in _CODE_SPAN.finditer(line):
        content = span.group(2).strip()
        if content.startswith("../"):
            found.append(content.split()[0])
    return found


def broken_links(doc: Path, root: Path) -> list[str]:
    """`doc:line: target: why` for each reference outside `root` or to a missing file."""
    problems: list[str] = []
    where = doc.relative_to(root)
    for number, line in _prose_lines(doc.read_text(encoding="utf-8")):
        for target in _targets(line):
            if not target or target.startswith("#") or _SCHEME.match(target):
                continue
            path = urllib.parse.unquote(re.split(r"[#?]", target, maxsplit=1)[0])
            if not path:
                continue
            base = root if path.startswith("/") else doc.parent
            resolved = (base / path.lstrip("/")).resolve()
            if not resolved.is_relative_to(root):
                problems.append(f"{where}:{number}: {target}: points outside the repository")
            elif not resolved.exists():
                problems.append(f"{where}:{number}: {target}: no such file")
    return problems


def test_readme_and_docs_are_checked() -> None:
    names = {doc.relative_to(ROOT).as_posix() for doc in DOCS}
    assert {"README.md", "docs/README.md", "docs/contract.md"} <= names


@pytest.mark.parametrize("doc", DOCS, ids=lambda doc: doc.relative_to(ROOT).as_posix())
def test_links_stay_inside_the_repository(doc: Path) -> None:
    assert broken_links(doc, ROOT) == []


def _write(root: Path, text: str) -> Path:
    (root / "docs").mkdir()
    (root / "docs" / "here.md").write_text("exists\n", encoding="utf-8")
    (root / "specs").mkdir()
    readme = root / "README.md"
    readme.write_text(text, encoding="utf-8")
    return readme


@pytest.mark.parametrize(
    ("text", "why"),
    [
        ("The contract is [DESIGN](../shared/DESIGN.md).\n", "points outside the repository"),
        ("The contract is `../shared/DESIGN.md`.\n", "points outside the repository"),
        ("See [figures][perf].\n\n[perf]: ../shared/reference/performance.md\n", "outside"),
        ("See ![chart](docs/chart.png).\n", "no such file"),
        ("See [the page](docs/missing.md#part).\n", "no such file"),
        ("See [root](/docs/gone.md).\n", "no such file"),
    ],
)
def test_checker_finds_bad_references(tmp_path: Path, text: str, why: str) -> None:
    root = tmp_path / "repo"
    root.mkdir()
    problems = broken_links(_write(root, text), root)
    assert len(problems) == 1
    assert why in problems[0]
    assert problems[0].startswith("README.md:")


def test_checker_accepts_good_references(tmp_path: Path) -> None:
    root = tmp_path / "repo"
    root.mkdir()
    text = (
        "[page](docs/here.md#top), [dir](specs/), [anchor](#layout), [web](https://example.org),\n"
        "`specs/records.py`, [mail](mailto:a@example.org), [spaced](<docs/here.md>)\n"
        "```sh\ncat `../shared/DESIGN.md` [x](../y.md)   # in a fence: not a reference\n```\n"
    )
    assert broken_links(_write(root, text), root) == []
