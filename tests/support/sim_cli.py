"""`python -m simulators` as the demo and the benches start it: a real process on a free port.

`serving(...)` starts it, reads the port from the line it logs once it listens (the test's
`banner` pattern, its group 1), and kills it if the test ends without stopping it;
`sigterm` stops it as an operator does and returns what it logged meanwhile.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import re
import signal
import sys
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
# What the tank farm logs once it listens (the port is group 1).
TANK_FARM_BANNER = r"tank farm: .* on [\d.]+:(\d+)"


def simulator_env() -> dict[str, str]:
    """This environment with the checkout on PYTHONPATH, so `-m simulators` is this tree's."""
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(ROOT), env.get("PYTHONPATH")]))
    return env


async def simulator(
    *argv: str,
    module: str = "simulators",
    stdout: int = asyncio.subprocess.DEVNULL,
    stderr: int | None = asyncio.subprocess.PIPE,
) -> asyncio.subprocess.Process:
    """Start `python -m <module> *argv` (stderr piped unless `stderr` says otherwise)."""
    return await asyncio.create_subprocess_exec(
        sys.executable, "-m", module, *argv, env=simulator_env(), stdout=stdout, stderr=stderr
    )


@dataclass(frozen=True)
class Served:
    """A running simulator process, the port it listens on and what it logged until then."""

    process: asyncio.subprocess.Process
    port: int
    log: str


@contextlib.asynccontextmanager
async def serving(*argv: str, banner: str) -> AsyncIterator[Served]:
    """The simulator started with `argv`, once its stderr matched `banner` (port: group 1)."""
    process = await simulator(*argv)
    assert process.stderr is not None
    try:
        port, log = 0, ""
        async with asyncio.timeout(15):
            while not port:
                line = (await process.stderr.readline()).decode()
                log += line
                assert line, f"simulator exited before listening: {log}"
                if match := re.search(banner, line):
                    port = int(match.group(1))
        yield Served(process, port, log)
    finally:
        if process.returncode is None:
            process.kill()
            await process.wait()


async def sigterm(process: asyncio.subprocess.Process) -> str:
    """SIGTERM the simulator: it must exit 0 within 10 s. What it logged on stderr since."""
    assert process.stderr is not None
    process.send_signal(signal.SIGTERM)
    async with asyncio.timeout(10):
        rest = (await process.stderr.read()).decode()
        assert await process.wait() == 0, rest
    return rest
