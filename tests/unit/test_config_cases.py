"""Every folder under tests/config_cases/: a config mistake and what `check` says about it.

Data, not code (as Telegraf's `testcases/`): a case is a config file and the lines `check`
must print, file:line: key: message, with exit status 2 and nothing started.
"""

from __future__ import annotations

from pathlib import Path

import click
import pytest
from click.testing import CliRunner

from collector.cli import main as collector_main
from edge_agent.cli import main as agent_main

CASES = Path(__file__).resolve().parents[1] / "config_cases"
PROGRAMS: dict[str, tuple[click.Command, str]] = {
    "site": (agent_main, "site.yaml"),
    "collector": (collector_main, "collector.yaml"),
}
CONFIG_ERROR_EXIT = 2


def _cases() -> list[Path]:
    return sorted(p for kind in PROGRAMS for p in (CASES / kind).iterdir() if p.is_dir())


def test_there_are_cases_of_both_programs() -> None:
    kinds = {case.parent.name for case in _cases()}
    assert kinds == set(PROGRAMS)


@pytest.mark.parametrize("case", _cases(), ids=lambda p: f"{p.parent.name}/{p.name}")
def test_check_reports_the_mistake_with_file_line_and_key(
    case: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    program, config = PROGRAMS[case.parent.name]
    monkeypatch.chdir(case)  # so the messages name the file as the user gave it
    result = CliRunner().invoke(program, ["check", "-c", config])
    assert result.exit_code == CONFIG_ERROR_EXIT, result.output
    assert result.stderr == (case / "expected.txt").read_text(encoding="utf-8")
    assert result.stdout == "", "nothing is shown as checked when the file is wrong"


@pytest.mark.parametrize("case", sorted((CASES / "site").iterdir()), ids=lambda p: p.name)
def test_run_refuses_the_mistake_before_anything_starts_as_check_does(
    case: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(case)
    result = CliRunner().invoke(agent_main, ["run", "-c", "site.yaml"])
    assert result.exit_code == CONFIG_ERROR_EXIT, result.output
    assert result.stderr == (case / "expected.txt").read_text(encoding="utf-8")
    assert not (case / "state").exists(), "run started something"
