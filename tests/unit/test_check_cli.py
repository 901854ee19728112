"""`edge-agent check`: the resolved point table on success, file:line issues and exit 2 on error."""

from __future__ import annotations

import os
import re
import resource
import subprocess
import sys
from pathlib import Path

from click.testing import CliRunner

from edge_agent.cli import main

EXAMPLE = Path(__file__).resolve().parents[2] / "configs" / "tankfarm.yaml"


def test_check_prints_the_point_table() -> None:
    result = CliRunner().invoke(main, ["check", "-c", str(EXAMPLE)])
    assert result.exit_code == 0, result.output
    lines = result.stdout.splitlines()
    assert lines[0].split() == [
        "device",
        "point",
        "quota",
        "name",
        "table",
        "start",
        "type",
        "order",
        "scale",
        "offset",
        "unit",
    ]
    assert lines[1].split() == [
        "tank-plc",
        "T001-LT-01",
        "WHP-LT",
        "储罐液位",
        "holding",
        "0",
        "float32",
        "big/big",
        "1",
        "0",
        "m",
    ]
    assert "T003-TOX-01" in result.stdout
    assert lines[-1] == "2 devices, 15 points, gateway 91360100MA35GW001H-GW01"
    assert result.stderr == ""


def test_check_aligns_columns_with_chinese_names() -> None:
    result = CliRunner().invoke(main, ["check", "--config", str(EXAMPLE)])
    rows = result.stdout.splitlines()[:-1]
    # 'table' starts in the same terminal cell on every row (CJK characters are 2 cells wide).
    starts = {_cells(row[: row.index(word)]) for row, word in zip(rows, _tables(rows), strict=True)}
    assert len(starts) == 1


def test_check_reports_issues_on_stderr_and_exits_2(tmp_path: Path) -> None:
    text = EXAMPLE.read_text(encoding="utf-8")
    text = text.replace("{table: holding, start: 10,", "{table: holding, start: 70000,")
    text = text.replace("    poll: 2s\n", "    poll: 0s\n")
    site = tmp_path / "site.yaml"
    site.write_text(text, encoding="utf-8")
    result = CliRunner().invoke(main, ["check", "-c", str(site)])
    assert result.exit_code == 2
    assert result.stdout == ""
    issues = [line for line in result.stderr.splitlines() if re.match(r"^\S+:\d+: ", line)]
    assert [line.split(": ")[1] for line in issues] == [
        "devices[0].points[3].address.start",
        "devices[1].poll",
    ]
    assert all(line.startswith(f"{site}:") for line in issues)
    assert "2 problems" in result.stderr


def test_check_on_a_missing_file_exits_2(tmp_path: Path) -> None:
    result = CliRunner().invoke(main, ["check", "-c", str(tmp_path / "nope.yaml")])
    assert result.exit_code == 2
    assert "cannot read" in result.stderr


def _at_most_2_gib_of_memory() -> None:
    resource.setrlimit(resource.RLIMIT_AS, (2 << 30, 2 << 30))


def test_check_on_an_endless_file_exits_2_without_reading_it_all() -> None:
    # `-c /dev/zero` (or a disk device): read whole, it took every byte of memory there was.
    # The limit only makes a failing run fail fast instead of starving the machine.
    done = subprocess.run(
        [
            sys.executable,
            "-c",
            "from edge_agent.cli import main; main()",
            "check",
            "-c",
            "/dev/zero",
        ],
        capture_output=True,
        text=True,
        check=False,
        timeout=60,
        preexec_fn=_at_most_2_gib_of_memory,
    )
    assert done.returncode == 2, done.stderr
    assert "/dev/zero: not a file but a character device; give the config file" in done.stderr
    assert "Traceback" not in done.stderr


def _cells(text: str) -> int:
    return sum(2 if "\u4e00" <= char <= "\u9fff" else 1 for char in text)


def _tables(rows: list[str]) -> list[str]:
    return [next(w for w in row.split() if w in {"table", "holding", "input"}) for row in rows]


def test_check_on_a_fifo_nobody_writes_to_is_refused_not_waited_on(tmp_path: Path) -> None:
    # `-c FIFO` with no writer: opening it waited for a writer for ever (the hostile run's
    # `timeout 20` ended it, exit 124). It is refused as no file, before a byte is read.
    fifo = tmp_path / "site.yaml"
    os.mkfifo(fifo)
    done = subprocess.run(
        [sys.executable, "-c", "from edge_agent.cli import main; main()", "check", "-c", str(fifo)],
        capture_output=True,
        text=True,
        check=False,
        timeout=60,
    )
    assert done.returncode == 2, done.stderr
    assert f"{fifo}: not a file but a FIFO (named pipe); give the config file" in done.stderr
    assert "Traceback" not in done.stderr
