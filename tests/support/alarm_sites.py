"""One-device site maps of any domain and the alarm rules the agent compiles from them.

Each point is given as the inside of a flow mapping without its address (`point: P1, quota:
WHP-LT`); the device is a Modbus TCP PLC, its points read from input registers 0, 2, 4...
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

from edge_agent.config import SiteConfig, parse_site_config
from edge_agent.core.alarms import AlarmRules
from edge_agent.core.alarms.build import rules_for_site
from specs.catalogue import Catalogue, default_catalogue
from tests.support.config_files import PLC_DEVICE, site_head


def _head(domain: str) -> str:
    return site_head(domain, mine_code="360100001" if domain == "MK" else "") + PLC_DEVICE


def one_device_site(
    domain: str,
    points: Sequence[str],
    alarms: Sequence[str] = (),
    type_: str = "float32",
    catalogue: Catalogue | None = None,
) -> SiteConfig:
    """A one-device site; each point is a flow mapping without its address."""
    lines = [_head(domain)]
    for index, point in enumerate(points):
        address = f"address: {{table: input, start: {2 * index}, type: {type_}}}"
        lines.append(f"      - {{{point}, {address}}}\n")
    if alarms:
        lines.append("alarms:\n")
        lines.extend(f"  - {{{alarm}}}\n" for alarm in alarms)
    return parse_site_config("".join(lines), "site.yaml", Path("/srv"), catalogue=catalogue)


def site_rules(
    domain: str,
    points: Sequence[str],
    alarms: Sequence[str] = (),
    catalogue: Catalogue | None = None,
) -> AlarmRules:
    """Rules of a one-device site; each point is a flow mapping without its address."""
    catalogue = catalogue or default_catalogue()
    site = one_device_site(domain, points, alarms, catalogue=catalogue)
    return rules_for_site(site, catalogue)
