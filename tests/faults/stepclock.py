"""Run a Python program with a wall clock the test can step; the monotonic clock stays put.

    python tests/faults/stepclock.py PROGRAM [ARGS...]
    python tests/faults/stepclock.py -m MODULE [ARGS...]

PROGRAM (a Python script, such as the `edge-agent` console script) runs in this interpreter
after `time.time` and `time.time_ns` have been replaced: SIGUSR1 steps the wall clock one
hour forward, SIGUSR2 one hour back, as an NTP step or an admin's `date -s` does to a real
process, while `time.monotonic` (all scheduling, asyncio's loop) does not move. Everything the
program imports afterwards sees the stepped clock, default arguments bound at import
included. The program may replace itself with a new interpreter (`edge-agent run` re-executes
itself as the runner, `python -m edge_agent.runner`): `os.execv` of this interpreter is
wrapped so the new one runs under this file again, with the clock as stepped so far
(GZ_STEPCLOCK_OFFSET), as a real clock step would still be in force. libfaketime is not
installed on the test machines, and it would move the monotonic
clock too unless told not to.

Only the standard library is imported here, so this file runs by path from any directory.
"""

from __future__ import annotations

import os
import runpy
import signal
import sys
import time
from collections.abc import Callable
from pathlib import Path
from types import FrameType

STEP = 3600.0
OFFSET_VARIABLE = "GZ_STEPCLOCK_OFFSET"

_real_time = time.time
_real_time_ns = time.time_ns
_real_execv = os.execv
_offset = [float(os.environ.get(OFFSET_VARIABLE, "0"))]


def _stepped_time() -> float:
    return _real_time() + _offset[0]


def _stepped_time_ns() -> int:
    return _real_time_ns() + round(_offset[0] * 1e9)


def _step_by(seconds: float) -> Callable[[int, FrameType | None], None]:
    def step(signum: int, frame: FrameType | None) -> None:
        _offset[0] += seconds

    return step


def _execv_under_this_file(path: str, args: list[str]) -> None:
    """`os.execv`, with a new interpreter of ours started under this file and its offset."""
    if path == sys.executable:
        os.environ[OFFSET_VARIABLE] = repr(_offset[0])
        args = [args[0], str(Path(__file__).resolve()), *args[1:]]
    _real_execv(path, args)


def main() -> None:
    """Install the stepped clock and the signal handlers, then run the program."""
    if len(sys.argv) < 2:
        sys.exit("usage: stepclock.py PROGRAM [ARGS...]")
    time.time = _stepped_time
    time.time_ns = _stepped_time_ns
    signal.signal(signal.SIGUSR1, _step_by(STEP))
    signal.signal(signal.SIGUSR2, _step_by(-STEP))
    os.execv = _execv_under_this_file  # type: ignore[assignment]
    here = str(Path(__file__).resolve().parent)
    sys.path[:] = [p for p in sys.path if p != here]
    if sys.argv[1] == "-m" and len(sys.argv) > 2:
        module = sys.argv[2]
        sys.argv = sys.argv[2:]
        runpy.run_module(module, run_name="__main__", alter_sys=True)
        return
    program = sys.argv[1]
    sys.argv = sys.argv[1:]
    runpy.run_path(program, run_name="__main__")


if __name__ == "__main__":
    main()
