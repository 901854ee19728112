"""An agent's command desk on the site map in a folder (tests of what arrives on down/cmd)."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable
from pathlib import Path

from edge_agent.config import parse_site_config
from edge_agent.core.plan_compile import compile_plan
from edge_agent.core.trusted_keys import TrustedKeys
from edge_agent.shell.commands import CommandDesk
from hostkit.log_limit import LineLimit
from specs.catalogue import default_catalogue
from specs.signing import Signature


def command_desk(
    folder: Path,
    good: asyncio.Event,
    trusted: TrustedKeys,
    sign: Callable[[bytes], Signature],
    *,
    clock: Callable[[], float] = time.time,
    lines: LineLimit | None = None,
) -> CommandDesk:
    """The desk of the map `folder`/site.yaml (its state beside the map's outbox)."""
    site_file = folder / "site.yaml"
    text = site_file.read_text(encoding="utf-8")
    config = parse_site_config(text, str(site_file), folder)
    return CommandDesk(
        site_file=site_file,
        plan=compile_plan(config, default_catalogue(), site_file=site_file, site_text=text),
        trusted=trusted,
        sign=sign,
        good=good,
        clock=clock,
        lines=lines,
    )
