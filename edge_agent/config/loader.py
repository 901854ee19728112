"""Read a site map: the only file I/O of the config package, and where its catalogue is picked.

The models check each point's quota against the catalogue in the validation context; this
module passes the one its caller gives, or the one shipped with the agent.
"""

from __future__ import annotations

import os
from typing import TYPE_CHECKING

from configkit.fields import BASE_DIR
from configkit.issues import KeyPath, read_config_text
from configkit.misread_numbers import parse_yaml_as_written
from configkit.validation import validate_document
from edge_agent.config.points import CATALOGUE
from edge_agent.config.serial_port import SERIAL_WIRE
from edge_agent.config.site import SiteConfig
from specs.catalogue import default_catalogue

if TYPE_CHECKING:
    from pathlib import Path

    from specs.catalogue import Catalogue


def parse_site_config(
    text: str, file: str, base_dir: Path, *, catalogue: Catalogue | None = None
) -> SiteConfig:
    """Parse and check a site map; relative paths in it are resolved against `base_dir`.

    Quotas are checked against `catalogue`, by default the one shipped with the agent: the
    loader is where a program picks it, the config models read only the one they are given.
    """
    context = {
        BASE_DIR: base_dir,
        CATALOGUE: default_catalogue() if catalogue is None else catalogue,
        # The agent opens a port by where its path leads (`RtuBuses`): judge ports so too.
        SERIAL_WIRE: os.path.realpath,
    }
    # 0010 read as 8 and 1:30 as 90 are not what the map says
    parsed = parse_yaml_as_written(text, file, is_code=is_site_code)
    return validate_document(SiteConfig, parsed, context=context)


# Keys whose values are codes: text, though digits (`PointCode`, the site's codes).
_CODE_KEYS = frozenset({"point", "limit_point", "enterprise", "district", "mine_code"})


def is_site_code(path: KeyPath) -> bool:
    """Whether the value at `path` of a site map is a code (text, though it may be all digits)."""
    if not path:
        return False
    escalation_point = len(path) > 2 and path[0] == "alarms" and path[-2] == "points"  # noqa: PLR2004
    return path[-1] in _CODE_KEYS or escalation_point


def load_site_config(path: Path, *, catalogue: Catalogue | None = None) -> SiteConfig:
    """Read, parse and check the site map at `path`, raising `ConfigError` with every issue.

    Quotas are checked against `catalogue`, by default the one shipped with the agent.
    """
    text = read_config_text(path)
    return parse_site_config(text, str(path), path.absolute().parent, catalogue=catalogue)
