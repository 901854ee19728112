"""`edge-agent run`: the agent, started again from its site file whenever a command replaced it."""

from __future__ import annotations

from pathlib import Path

import structlog

from edge_agent.config import SiteConfig, load_site_config
from edge_agent.shell.commands import roll_back_failed_start
from edge_agent.shell.runtime import config_fingerprint, run_agent

log = structlog.get_logger("edge_agent.site_runner")


async def run_site(site_file: Path, config: SiteConfig) -> None:
    """Run the agent on `config` (read from `site_file`) until it is stopped.

    A pushed map (or its rollback) ends `run_agent` with True once the file holds the map to
    run; the file is read again, as at a start. The desk checked the exact text written, in
    this folder, so reading it again fails only if a file it names changed meanwhile: then
    the error ends the agent like a bad map at start (systemd restarts it, `check` says why).
    """
    while True:
        try:
            restart = await run_agent(config, site_file=site_file)
        except Exception as exc:
            # Any failure to run a pushed map on probation undoes it (then the agent goes
            # on with the previous map); anything else ends the agent as before.
            if not roll_back_failed_start(config, site_file, exc):
                raise
            restart = True
        if not restart:
            return
        config = load_site_config(site_file)
        log.info(
            "agent_restarting_on_new_map",
            gateway=config.site.gateway,
            config=config_fingerprint(config),
        )
