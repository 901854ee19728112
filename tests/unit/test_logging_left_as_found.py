"""A test that runs a program's command line in-process leaves logging as it found it.

`collector` and `edge-agent` configure logging for the whole process on the stream of the
command (e05a09a: stdout or stderr, here the CLI runner's). Left so, every later structlog
event and stdlib record of the same pytest worker went to that runner's stream, gone with its
test: lost without a word. The autouse fixture in tests/conftest.py puts logging back after
every test. Checked in a pytest of its own, so that the two tests run in this order, in one
process, with the suite's conftest.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path
from typing import Final

ROOT: Final = Path(__file__).resolve().parents[2]

_TESTS: Final = """
import structlog
from click.testing import CliRunner

from collector.cli import main


def test_a_command_run_in_process_sets_logging_up() -> None:
    assert CliRunner().invoke(main, ["--log-format", "json", "keys", "--help"]).exit_code == 0


def test_a_later_test_sees_its_log_lines(capsys) -> None:
    structlog.get_logger("later").warning("later_event_logged")
    seen = capsys.readouterr()
    assert "later_event_logged" in seen.out + seen.err
"""


def test_logging_set_up_by_a_command_does_not_outlive_its_test(tmp_path: Path) -> None:
    (tmp_path / "test_order.py").write_text(_TESTS, encoding="utf-8")
    done = subprocess.run(
        [
            sys.executable,
            *("-m", "pytest", "-q", "-p", "no:cacheprovider", "-p", "no:xdist"),
            *("-p", "tests.conftest", "--rootdir", str(tmp_path), "test_order.py"),
        ],
        cwd=tmp_path,
        env={**os.environ, "PYTHONPATH": str(ROOT)},
        capture_output=True,
        text=True,
        check=False,
    )
    assert done.returncode == 0, done.stdout + done.stderr
    assert "2 passed" in done.stdout
