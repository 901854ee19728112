"""Read a site map: the only file I/O of the config package."""

from __future__ import annotations

from typing import TYPE_CHECKING

from edge_agent.config.site import SiteConfig
from specs.yamlconf import BASE_DIR, parse_yaml, unreadable, validate_document

if TYPE_CHECKING:
    from pathlib import Path


def parse_site_config(text: str, file: str, base_dir: Path) -> SiteConfig:
    """Parse and check a site map; relative paths in it are resolved against `base_dir`."""
    return validate_document(SiteConfig, parse_yaml(text, file), context={BASE_DIR: base_dir})


def load_site_config(path: Path) -> SiteConfig:
    """Read, parse and check the site map at `path`, raising `ConfigError` with every issue."""
    try:
        text = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        raise unreadable(str(path), exc) from None
    return parse_site_config(text, str(path), path.absolute().parent)
