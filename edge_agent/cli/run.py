"""`edge-agent run`: check the site map, then poll, seal and forward until stopped."""

from __future__ import annotations

import os
import sys
from pathlib import Path
from typing import TYPE_CHECKING

import click
import structlog

from edge_agent.cli.options import LOG_FORMAT, config_option, load_or_exit
from edge_agent.cli.refusals import refuse_to_start
from edge_agent.core.plan_codec import write_plan
from edge_agent.core.plan_compile import compile_plan
from edge_agent.shell.host import keep_large_allocations_mapped
from edge_agent.shell.stop_signals import exit_on_stop_signals, hold_stop_signals
from specs.catalogue import default_catalogue

if TYPE_CHECKING:
    from edge_agent.core.plan import AgentPlan

log = structlog.get_logger("edge_agent.run")


def plan_memfd(plan: AgentPlan) -> int:
    """An anonymous in-memory file holding the plan's JSON, inherited across the exec.

    Nothing on disk to clean up or to be read by another user; the runner reads it from the
    start and closes it.
    """
    fd = os.memfd_create("ganzhi-run-plan", 0)  # no MFD_CLOEXEC: the runner inherits it
    os.set_inheritable(fd, True)  # noqa: FBT003 - positional only
    with open(fd, "w", encoding="ascii", closefd=False) as out:  # json.dump writes ASCII
        write_plan(plan, out)
    return fd


@click.command()
@config_option
@click.option("--restarted", is_flag=True, hidden=True, help="Started again on a pushed map.")
def run(config_path: Path, *, restarted: bool) -> None:
    """Run until stopped (SIGTERM, SIGINT or SIGHUP); systemd Type=notify is supported."""
    exit_on_stop_signals()  # a stop while the map is checked: nothing polled yet, exit 0
    keep_large_allocations_mapped()  # from the start: reading the map frees large buffers too
    config = load_or_exit(config_path)
    log_format = click.get_current_context().meta.get(LOG_FORMAT, "auto")  # logging set by `main`
    # The text the map was parsed from: a pushed map is checked against the running one, and
    # one on probation may start where its address is taken (its failed start rolls back).
    site_text = config_path.read_text(encoding="utf-8")
    refuse_to_start(config_path, config, site_text)
    plan = compile_plan(
        config,
        default_catalogue(),
        site_file=config_path,
        site_text=site_text,
        wire_of=os.path.realpath,
    )
    # The map's models go before the plan is encoded, or the encoding stacks on them: the
    # start-up peak at 1,000 points was 61.8 MiB with them, 58.7 without (G7).
    del config
    if restarted:
        log.info(
            "agent_restarting_on_new_map",
            gateway=plan.identity.gateway,
            config=plan.config_hash,
        )
    fd = plan_memfd(plan)
    sys.stdout.flush()
    sys.stderr.flush()
    # Held across the exec until the runner's loop handles them (edge_agent.shell.stop_signals).
    hold_stop_signals()
    # The same process goes on as the runner, without what only checking the map needed.
    argv = [sys.executable, "-m", "edge_agent.runner", "--plan-fd", str(fd)]
    os.execv(sys.executable, [*argv, "--log-format", log_format])  # noqa: S606 - our interpreter
