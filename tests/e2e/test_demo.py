"""`make demo DURATION=N [STORAGE=postgresql]` runs headless; exit 0 only once readings arrive."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

import pytest

from demo.__main__ import DEMO_DATABASE
from demo.postgres import drop_database

ROOT = Path(__file__).resolve().parents[2]


@pytest.mark.timeout(180)
@pytest.mark.parametrize("storage", ["sqlite", "postgresql"])
def test_demo_with_a_duration_exits_zero_after_readings_arrive(storage: str) -> None:
    done = subprocess.run(
        [sys.executable, "-m", "demo", "--duration", "8", "--storage", storage],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=170,
        check=False,
    )
    if storage == "postgresql":
        drop_database(DEMO_DATABASE)  # the demo keeps it for a look afterwards; a test does not
    assert done.returncode == 0, done.stdout + done.stderr
    assert '"readings_at_collector": ' in done.stdout
    assert '"readings_at_collector": 0}' not in done.stdout
    assert "T001-LT-01" in done.stdout, "the live table shows the tank-farm points"
    assert re.search(r"status page on http://127\.0\.0\.1:\d+/ ", done.stdout), done.stdout
