"""The leak check itself: a test that leaves a task or a thread behind fails, naming it."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]

LEAKY_TESTS = """
import asyncio
import threading

from tests.support.leaks import no_leaks, no_task_leaks


async def _forever() -> None:
    await asyncio.Event().wait()


async def test_forgets_a_task() -> None:
    asyncio.get_running_loop().create_task(_forever(), name="forgotten-poller")


def test_forgets_a_thread() -> None:
    stop = threading.Event()
    threading.Thread(target=stop.wait, name="forgotten-worker", daemon=True).start()


async def test_cleans_up() -> None:
    task = asyncio.get_running_loop().create_task(_forever())
    task.cancel()
    await asyncio.gather(task, return_exceptions=True)
"""


def test_a_left_task_or_thread_fails_its_own_test(tmp_path: Path) -> None:
    (tmp_path / "test_leaky.py").write_text(LEAKY_TESTS, encoding="utf-8")
    result = subprocess.run(
        [
            sys.executable,
            "-m",
            "pytest",
            "-q",
            "-p",
            "no:cacheprovider",
            str(tmp_path),
            "-o",
            "asyncio_mode=auto",
            "-o",
            "asyncio_default_fixture_loop_scope=function",
            "--rootdir",
            str(tmp_path),
            "-o",
            "timeout=60",
        ],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    output = result.stdout + result.stderr
    assert "the test left tasks running: forgotten-poller" in output, output
    assert "the test left threads running: forgotten-worker" in output, output
    assert "3 passed, 2 errors" in output, output  # the calls pass; each leak errs at teardown
