"""What every `edge-agent` command that reads the site map shares: the option and the loader.

Both are the host layer's (`hostkit.configfile`); the agent names its file and its variable.
"""

from __future__ import annotations

from pathlib import Path
from typing import Final

from edge_agent.config import SiteConfig, load_site_config
from hostkit import configfile
from hostkit.configfile import CONFIG_ERROR_EXIT

__all__ = ["CONFIG_ENV", "CONFIG_ERROR_EXIT", "LOG_FORMAT", "config_option", "load_or_exit"]

CONFIG_ENV: Final = "GANZHI_AGENT_CONFIG"
"""The site map's path when `-c` is not given (a unit file's `Environment=`)."""

LOG_FORMAT: Final = "log_format"
"""Where `main` leaves --log-format for `run` (click context meta), which passes it on."""

config_option = configfile.config_option("The site map", CONFIG_ENV)


def load_or_exit(path: Path) -> SiteConfig:
    """Load the site map, or print every issue to stderr and exit with status 2."""
    return configfile.load_or_exit(path, load_site_config)
