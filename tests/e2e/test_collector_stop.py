"""`collector serve` stopped by SIGTERM exits 0, however many come and whichever thread is up.

The collector takes SIGINT and SIGTERM in its event loop (the main thread), but the kernel gives
a process's signal to any of its threads that does not block it, and once the loop had closed
and given the signals their default back (or removed its handlers) the default acts for the
whole process: a signal taken by the SQLite storage's worker thread (aiosqlite's, which outlives
the connection's close by a moment) or by the executor's, or by the main thread after the stop,
killed a finished stop with -15. As the agent (tests/e2e/test_shutdown.py), on both backends.
"""

from __future__ import annotations

import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.support.broker import Broker, free_port
from tests.support.collector_env import collector_cli, write_collector_config
from tests.support.stop_signals import (
    main_thread_blocked,
    signal_mask,
    signalled_until_it_exits,
    threads_taking,
)

BIN = Path(sys.executable).parent
STOP_SIGNALS = (signal.SIGTERM, signal.SIGINT)  # what stops `collector serve`
STOP_WITHIN = 10.0  # generous: a loaded 2-core machine; the point here is the exit status


def log_of(work: Path) -> str:
    return (work / "collector.log").read_text(encoding="utf-8", errors="replace")


def wait_for_log(work: Path, event: str, timeout: float) -> None:
    deadline = time.monotonic() + timeout
    while event not in log_of(work):
        assert time.monotonic() < deadline, f"no {event} within {timeout} s:\n{log_of(work)}"
        time.sleep(0.05)


@pytest.fixture
def collector(
    tmp_path: Path, broker: Broker, storage_url: str
) -> Iterator[subprocess.Popen[bytes]]:
    """`collector serve` on `storage_url`, subscribed at the broker (collector_ready logged)."""
    config = write_collector_config(
        tmp_path, broker_port=broker.port, api_port=free_port(), storage_url=storage_url
    )
    made = collector_cli("keys", "init", "-c", str(config))
    assert made.exit_code == 0, made.output
    with (tmp_path / "collector.log").open("ab") as log:
        process = subprocess.Popen(
            [str(BIN / "collector"), "serve", "-c", str(config)],
            cwd=tmp_path,
            stdout=log,
            stderr=subprocess.STDOUT,
        )
    try:
        wait_for_log(tmp_path, "collector_ready", 60)
        yield process
    finally:
        if process.poll() is None:
            process.kill()
            process.wait()


def test_only_the_main_thread_takes_the_stop_signals(
    collector: subprocess.Popen[bytes], tmp_path: Path
) -> None:
    """Every thread but the main one blocks SIGTERM and SIGINT from birth (the SQLite worker,
    the executor's that resolved the broker's address); the main thread takes them for all."""
    taking = threads_taking(collector.pid, STOP_SIGNALS)
    main = main_thread_blocked(collector.pid)
    collector.send_signal(signal.SIGTERM)
    code = collector.wait(timeout=60)
    assert not taking, f"threads that take a stop signal: {taking}"
    assert main & signal_mask(STOP_SIGNALS) == 0, "the main thread blocks a stop signal"
    assert code == 0, log_of(tmp_path)[-3000:]
    assert "collector_stopped" in log_of(tmp_path)


def test_sigterms_until_the_collector_exits_are_one_clean_stop(
    collector: subprocess.Popen[bytes], tmp_path: Path
) -> None:
    """A second SIGTERM (an operator's kill after systemctl stop) is the same stop, and one
    after the loop has closed, while the interpreter exits, is dropped: exit 0."""
    signals, took = signalled_until_it_exits(collector, signal.SIGTERM)
    assert collector.returncode == 0, f"exit {collector.returncode}:\n{log_of(tmp_path)[-3000:]}"
    assert signals > 1
    assert took < STOP_WITHIN, f"{took:.2f} s to stop"
    assert "collector_stopped" in log_of(tmp_path)
