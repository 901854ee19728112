"""Read a site map: the only file I/O of the config package."""

from __future__ import annotations

from typing import TYPE_CHECKING

from configkit.fields import BASE_DIR
from configkit.issues import ConfigError, ConfigIssue, KeyPath, format_path, unreadable
from configkit.validation import validate_document
from configkit.yamllines import parse_yaml
from edge_agent.config.site import SiteConfig

if TYPE_CHECKING:
    from collections.abc import Iterable
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


def problems_at(path: Path, problems: Iterable[tuple[KeyPath, str]]) -> ConfigError:
    """Place problems found after loading (in files the map names) at their keys' lines."""
    try:
        parsed = parse_yaml(path.read_text(encoding="utf-8"), str(path))
    except (OSError, UnicodeDecodeError) as exc:
        return unreadable(str(path), exc)
    return ConfigError(
        ConfigIssue(str(path), parsed.line_of(key_path), format_path(key_path), message)
        for key_path, message in problems
    )
