"""The running agent: `edge-agent run` checks the site map, then execs this on its plan.

`python -m edge_agent.runner --plan-fd N --log-format F` reads the run plan
(`edge_agent.core.plan`, as `plan_codec` JSON) from the inherited file descriptor N and runs
it. The exec keeps the process (its PID, systemd's NOTIFY_SOCKET and watchdog, signals), so
the unit files and Type=notify see one agent; what the exec drops is everything only checking
the map needed: pydantic, the config models, YAML, click and the catalogue's parser, 11-13 MiB
of the 60 MiB an agent may hold (G7). Nothing here imports them.

When a pushed map replaced the site file (or was rolled back), the agent execs
`edge-agent run` on the file again: the new map is checked exactly as at a start.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import sys
from pathlib import Path
from typing import TYPE_CHECKING

import structlog

from edge_agent.core.plan import AgentPlan
from edge_agent.core.plan_codec import decode_plan
from edge_agent.shell.agent_lock import AgentLockError, sole_agent
from edge_agent.shell.commands import roll_back_failed_start
from edge_agent.shell.host import keep_large_allocations_mapped
from edge_agent.shell.outbox_epoch_lock import OpeningStoppedError
from edge_agent.shell.outbox_recovery import NotAnOutboxError, OutboxUnavailableError
from edge_agent.shell.runtime import run_plan
from edge_agent.shell.stop_signals import hold_stop_signals, stop_signal_held
from hostkit.logs import LOG_FORMATS, configure_logging
from hostkit.signal_mask import executor_leaving_signals

if TYPE_CHECKING:
    from hostkit.logs import LogFormat

log = structlog.get_logger("edge_agent.runner")

NOT_AN_OUTBOX_EXIT = 2
"""Another program's database at `outbox.path`: a mistake in the map (hostkit's
CONFIG_ERROR_EXIT, not imported: it comes with click), which no restart mends."""


def read_plan(fd: int) -> AgentPlan:
    """The plan in the file `fd` (read from its start, then closed)."""
    with os.fdopen(fd, "rb") as file:
        file.seek(0)
        return decode_plan(file.read(), AgentPlan)


async def run_until_replaced(plan: AgentPlan) -> bool:
    """Run `plan` until it is stopped (False) or its map was replaced (True).

    A pushed map (or its rollback) ends `run_plan` with True once the file holds the map to
    run. Any failure to start a pushed map on probation undoes it, and the previous map runs;
    not another agent on the outbox or an outbox that could not be opened (a full disk under
    it, another process's lock), which say nothing of the map.
    """
    site_file = plan.site_file
    # The executor's threads leave the stop signals to the main thread, as every thread of the
    # agent does (edge_agent.shell.stop_signals); asyncio.run shuts it down at the end.
    asyncio.get_running_loop().set_default_executor(executor_leaving_signals("agent-worker"))
    # Outside the rollback: another agent on the outbox says nothing about the map.
    with sole_agent(plan.outbox.path):
        try:
            try:
                return await run_plan(plan)
            finally:
                # Blocked until the exit (or across the restart's exec): the loop's close gives
                # the signals back their default, which would kill a stopped agent with -15.
                hold_stop_signals()
        except (OutboxUnavailableError, OpeningStoppedError):
            # An outbox that could not be checked or opened (a full disk, another process's
            # lock), or a stop while waiting for that lock, says nothing about the map either:
            # it stays on probation for the next start, and main() names the cause (exit 1)
            # or logs the stop.
            raise
        except Exception as exc:
            # A pushed map on probation that failed to start is undone; anything else ends
            # the agent as before (systemd restarts it, `check` says why).
            if site_file is None or not roll_back_failed_start(plan, site_file, exc):
                raise
            return True


def restart_argv(site_file: Path, log_format: str) -> list[str]:
    """`edge-agent run` on `site_file` again, with the same interpreter and log format."""
    return [
        sys.executable,
        "-m",
        "edge_agent.cli",
        "--log-format",
        log_format,
        "run",
        "--restarted",
        "-c",
        str(site_file),
    ]


def main(argv: list[str] | None = None) -> None:
    """Run the plan on the inherited descriptor `--plan-fd`."""
    keep_large_allocations_mapped()  # per process: the exec reset it
    parser = argparse.ArgumentParser(prog="edge_agent.runner")
    parser.add_argument("--plan-fd", type=int, required=True)
    parser.add_argument("--log-format", choices=LOG_FORMATS, default="auto")
    args = parser.parse_args(argv)
    log_format: LogFormat = args.log_format
    configure_logging(log_format, stream=sys.stdout)  # as `edge-agent run` that execed it
    plan = read_plan(args.plan_fd)
    if stop_signal_held():  # a stop since `edge-agent run` execed this: nothing to start
        log.info("agent_stopped", gateway=plan.identity.gateway, while_starting=True)
        return
    try:
        replaced = asyncio.run(run_until_replaced(plan))
    except (AgentLockError, OutboxUnavailableError) as exc:
        # Its message on stderr and exit 1, not 2: under systemd the unit starts again once
        # the other agent stops, or on the same outbox once what kept it from it is gone.
        raise SystemExit(str(exc)) from None
    except OpeningStoppedError:  # stopped while the opening waited for another's lock
        log.info("agent_stopped", gateway=plan.identity.gateway, while_starting=True)
        return
    except NotAnOutboxError as exc:  # `edge-agent run` refuses it before the exec, as a rule
        sys.stderr.write(f"{exc}\n")
        raise SystemExit(NOT_AN_OUTBOX_EXIT) from None
    if not replaced or plan.site_file is None:
        return
    sys.stdout.flush()
    sys.stderr.flush()
    argv = restart_argv(plan.site_file, log_format)
    os.execv(argv[0], argv)  # noqa: S606 - our own interpreter and command


if __name__ == "__main__":
    main()
