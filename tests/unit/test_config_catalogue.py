"""The site map's points are checked against the catalogue the loader is given, not a cache.

The config models read the catalogue from pydantic's validation context; only the loader (a
composition root) picks the shipped one when the caller passes none. So a map checked against
another catalogue answers by that catalogue: its quotas, units and alarm vocabulary.
"""

from __future__ import annotations

import dataclasses
from pathlib import Path

import pytest

from configkit.fields import BASE_DIR
from configkit.validation import validate_document
from configkit.yamllines import parse_yaml
from edge_agent.config import ConfigError, SiteConfig, parse_site_config
from specs.catalogue import Catalogue, default_catalogue
from tests.support.config_files import line_of, site_head

BASE = Path("/etc/ganzhi")

TEXT = site_head("WHP") + (
    "devices:\n"
    "  - id: tank-plc\n"
    "    driver: modbus_tcp\n"
    '    host: "127.0.0.1"\n'
    "    poll: 1s\n"
    "    points:\n"
    "      - point: T001-LT-01\n"
    "        quota: WHP-LT\n"
    "        address: {table: holding, start: 0, type: float32}\n"
    "        thresholds: {high: 18.0}\n"
)


def _shipped_with(**changes: object) -> Catalogue:
    """The shipped catalogue with WHP-LT changed (`changes`) or, given none, left out."""
    shipped = default_catalogue()
    indicators = dict(shipped.indicators)
    if changes:
        indicators["WHP-LT"] = dataclasses.replace(indicators["WHP-LT"], **changes)  # type: ignore[arg-type]
    else:
        del indicators["WHP-LT"]
    return dataclasses.replace(shipped, indicators=indicators)


def test_the_shipped_catalogue_knows_the_quota() -> None:
    config = parse_site_config(TEXT, "site.yaml", BASE)
    (point,) = config.devices[0].points
    assert point.indicator is default_catalogue().indicators["WHP-LT"]


def test_a_catalogue_without_the_indicator_reports_the_quota_unknown() -> None:
    with pytest.raises(ConfigError) as caught:
        parse_site_config(TEXT, "site.yaml", BASE, catalogue=_shipped_with())
    line = line_of(TEXT, "quota: WHP-LT")
    unknown = "quota WHP-LT is not in the catalogue (`edge-agent catalogue` lists them)"
    assert [str(issue) for issue in caught.value.issues] == [
        f"site.yaml:{line}: devices[0].points[0].quota: {unknown}"
    ]


def test_the_given_catalogue_decides_the_alarm_vocabulary() -> None:
    silent = _shipped_with(alarms=())
    with pytest.raises(ConfigError) as caught:
        parse_site_config(TEXT, "site.yaml", BASE, catalogue=silent)
    assert [issue.path for issue in caught.value.issues] == ["devices[0].points[0].thresholds.high"]
    assert "none (it raises no alarms)" in caught.value.issues[0].message


def test_a_point_keeps_the_entry_of_the_catalogue_it_was_checked_against() -> None:
    renamed = _shipped_with(name_en="level in the given catalogue")
    config = parse_site_config(TEXT, "site.yaml", BASE, catalogue=renamed)
    (point,) = config.devices[0].points
    assert point.indicator is renamed.indicators["WHP-LT"]
    assert point.indicator.name_en == "level in the given catalogue"


def test_validating_points_without_a_catalogue_is_a_programming_error() -> None:
    with pytest.raises(TypeError, match="validated against a catalogue"):
        validate_document(SiteConfig, parse_yaml(TEXT, "site.yaml"), context={BASE_DIR: BASE})
