"""Read a site map: the only file I/O of the config package, and where its catalogue is picked.

The models check each point's quota against the catalogue in the validation context; this
module passes the one its caller gives, or the one shipped with the agent.
"""

from __future__ import annotations

import dataclasses
import os
from typing import TYPE_CHECKING

from configkit.fields import BASE_DIR
from configkit.issues import read_config_text
from configkit.validation import validate_document
from configkit.yamllines import parse_yaml
from edge_agent.config.misread_numbers import misread_numbers
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
    parsed = parse_yaml(text, file)
    misread = misread_numbers(text, file)
    if misread:  # 0010 read as 8 and 1:30 as 90 are not what the map says
        parsed = dataclasses.replace(parsed, issues=(*parsed.issues, *misread))
    return validate_document(SiteConfig, parsed, context=context)


def load_site_config(path: Path, *, catalogue: Catalogue | None = None) -> SiteConfig:
    """Read, parse and check the site map at `path`, raising `ConfigError` with every issue.

    Quotas are checked against `catalogue`, by default the one shipped with the agent.
    """
    text = read_config_text(path)
    return parse_site_config(text, str(path), path.absolute().parent, catalogue=catalogue)
