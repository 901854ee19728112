"""Kill a writer process with SIGKILL at a chosen depth, for the crash-safety tests.

A writer is a small Python program (run with `python -c` from the repository root, so that
`tests.` and the packages import) that commits in a loop and prints `sealed <seq>` after each
commit returns; other lines (the agent's log) are passed over. The harness kills it without
warning once it has reported the wanted seq, so a test can check that everything reported
survived and nothing half-written did. `kill_in_rounds` gives a writer several lives, each
killed at a different depth.

The writer does not wait for the harness: between the line that says the wanted seq and the
kill it goes on sealing (under load, dozens of blocks were measured), so "reported" is every
`sealed` line it wrote before it died, the ones still in the pipe at the kill included. Those
lines are read after the kill; what the harness read before it only decides when to kill.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Final

ROOT: Final = Path(__file__).resolve().parents[2]
SEALED: Final = b"sealed "
TIMEOUT: Final = 20.0  # seconds one life may take to reach its seq before it is killed anyway


def kill_when_sealed(script: str, *args: str, wanted: int, sealed: int) -> int:
    """Run the writer `script` with `args`; SIGKILL it once it reports seq `wanted` sealed.

    It is killed as well when its output ends or TIMEOUT passes. Returns the last seq it
    reported before it died (the lines left unread at the kill included), or `sealed` (what
    earlier lives reported) when it reported none.
    """
    writer = subprocess.Popen(
        [sys.executable, "-c", script, *args], stdout=subprocess.PIPE, cwd=ROOT
    )
    assert writer.stdout is not None
    deadline = time.monotonic() + TIMEOUT
    try:
        while time.monotonic() < deadline:
            line = writer.stdout.readline()
            if not line:
                break
            sealed = _last_sealed([line], sealed)
            if sealed >= wanted:
                break
    finally:
        os.kill(writer.pid, signal.SIGKILL)
        writer.wait()
        unread = writer.stdout.read().splitlines(keepends=True)
        writer.stdout.close()
    return _last_sealed(unread, sealed)


def _last_sealed(lines: list[bytes], sealed: int) -> int:
    """The seq of the last whole `sealed <seq>` line in `lines`, else `sealed`; the writer's
    log lines are passed over."""
    for line in lines:
        if line.startswith(SEALED) and line.endswith(b"\n"):
            sealed = int(line.split()[1])
    return sealed


def kill_in_rounds(
    script: str, rounds: int, step: int, args: Callable[[int], tuple[str, ...]] = lambda _: ()
) -> int:
    """`rounds` lives of `script`, round n killed `3 + n * step` seqs past what the lives
    before it reported (so always after at least one new commit); round n's writer gets
    `args(n)`. Returns the last seq reported."""
    sealed = 0
    for round_number in range(rounds):
        wanted = sealed + 3 + round_number * step
        sealed = kill_when_sealed(script, *args(round_number), wanted=wanted, sealed=sealed)
    return sealed
