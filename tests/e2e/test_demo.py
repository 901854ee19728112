"""`make demo DURATION=N` runs without a terminal and exits 0 only if readings arrived."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]


@pytest.mark.timeout(180)
def test_demo_with_a_duration_exits_zero_after_readings_arrive() -> None:
    done = subprocess.run(
        [sys.executable, "-m", "demo", "--duration", "8"],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=170,
        check=False,
    )
    assert done.returncode == 0, done.stdout + done.stderr
    assert '"readings_at_collector": ' in done.stdout
    assert '"readings_at_collector": 0}' not in done.stdout
    assert "T001-LT-01" in done.stdout, "the live table shows the tank-farm points"
