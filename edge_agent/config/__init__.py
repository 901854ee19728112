"""The site map: YAML in, a checked, frozen `SiteConfig` out, or a `ConfigError` naming lines.

`load_site_config` reads the file; everything else is pure.
"""

from edge_agent.config.devices import (
    PLANNED_DRIVERS,
    SUPPORTED_DRIVERS,
    DeviceConfig,
    ModbusTcpDevice,
)
from edge_agent.config.loader import load_site_config, parse_site_config
from edge_agent.config.points import (
    LAST_ADDRESS,
    REGISTER_COUNT,
    Address,
    DataType,
    Order,
    PointConfig,
    Table,
    TemplateConfig,
    Thresholds,
)
from edge_agent.config.site import (
    Domain,
    OutboxConfig,
    SigningConfig,
    SiteConfig,
    SiteInfo,
    TlsConfig,
    UplinkConfig,
)
from specs.yamlconf import ConfigError, ConfigIssue

__all__ = [
    "LAST_ADDRESS",
    "PLANNED_DRIVERS",
    "REGISTER_COUNT",
    "SUPPORTED_DRIVERS",
    "Address",
    "ConfigError",
    "ConfigIssue",
    "DataType",
    "DeviceConfig",
    "Domain",
    "ModbusTcpDevice",
    "Order",
    "OutboxConfig",
    "PointConfig",
    "SigningConfig",
    "SiteConfig",
    "SiteInfo",
    "Table",
    "TemplateConfig",
    "Thresholds",
    "TlsConfig",
    "UplinkConfig",
    "load_site_config",
    "parse_site_config",
]
