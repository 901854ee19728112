"""The site map: YAML in, a checked, frozen `SiteConfig` out, or a `ConfigError` naming lines.

`load_site_config` reads the file; everything else is pure.

The package holds the pieces every device model builds on (`device_base`, `fields`, `points`,
`point_source`) and the sections of the map; the device models themselves live with their
driver kinds (`edge_agent/kinds/<kind>/config.py`), and `SiteConfig` reads the union the
registry of kinds assembles (`devices`). So the names that need the registry are loaded on
first use (`__getattr__`): a kind's model imports `edge_agent.config.device_base`, which runs
this file, and the registry is not complete until every model is.
"""

import importlib
from typing import TYPE_CHECKING

from configkit.issues import ConfigError, ConfigIssue
from configkit.network import TlsConfig
from edge_agent.config.address import LAST_ADDRESS, Address, DataType, Order, Table
from edge_agent.config.alarms import (
    SITE_ALARM_KINDS,
    CompareAlarm,
    Condition,
    EscalationAlarm,
    OvertimeAlarm,
    SiteAlarm,
)
from edge_agent.config.limits import (
    COLOURS,
    RATE_PERIODS,
    THRESHOLD_FAMILIES,
    THRESHOLD_LEVELS,
    RateConfig,
    Thresholds,
    rate_unit_parts,
)
from edge_agent.config.point_source import SourceKey
from edge_agent.config.points import PointConfig, TemplateConfig
from edge_agent.config.sections import (
    Domain,
    OutboxConfig,
    SigningConfig,
    SiteInfo,
    UplinkConfig,
)

if TYPE_CHECKING:
    from edge_agent.config.devices import SUPPORTED_DRIVERS, DeviceConfig
    from edge_agent.config.loader import load_site_config, parse_site_config
    from edge_agent.config.site import SiteConfig

__all__ = [
    "COLOURS",
    "LAST_ADDRESS",
    "RATE_PERIODS",
    "SITE_ALARM_KINDS",
    "SUPPORTED_DRIVERS",
    "THRESHOLD_FAMILIES",
    "THRESHOLD_LEVELS",
    "Address",
    "CompareAlarm",
    "Condition",
    "ConfigError",
    "ConfigIssue",
    "DataType",
    "DeviceConfig",
    "Domain",
    "EscalationAlarm",
    "Order",
    "OutboxConfig",
    "OvertimeAlarm",
    "PointConfig",
    "RateConfig",
    "SigningConfig",
    "SiteAlarm",
    "SiteConfig",
    "SiteInfo",
    "SourceKey",
    "Table",
    "TemplateConfig",
    "Thresholds",
    "TlsConfig",
    "UplinkConfig",
    "load_site_config",
    "parse_site_config",
    "rate_unit_parts",
]

# The names assembled from the registry of driver kinds, by the module that defines each.
_FROM_REGISTRY = {
    "SUPPORTED_DRIVERS": "devices",
    "DeviceConfig": "devices",
    "SiteConfig": "site",
    "load_site_config": "loader",
    "parse_site_config": "loader",
}


def __getattr__(name: str) -> object:
    module = _FROM_REGISTRY.get(name)
    if module is None:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    value = getattr(importlib.import_module(f"{__name__}.{module}"), name)
    globals()[name] = value  # once loaded, a plain attribute
    return value
