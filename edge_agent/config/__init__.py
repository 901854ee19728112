"""The site map: YAML in, a checked, frozen `SiteConfig` out, or a `ConfigError` naming lines.

`load_site_config` reads the file; everything else is pure.
"""

from edge_agent.config.alarms import (
    SITE_ALARM_KINDS,
    CompareAlarm,
    Condition,
    EscalationAlarm,
    OvertimeAlarm,
    SiteAlarm,
)
from edge_agent.config.devices import (
    PLANNED_DRIVERS,
    SUPPORTED_DRIVERS,
    DeviceConfig,
    ModbusTcpDevice,
)
from edge_agent.config.loader import load_site_config, parse_site_config
from edge_agent.config.points import (
    COLOURS,
    LAST_ADDRESS,
    RATE_LEVEL,
    RATE_PERIODS,
    REGISTER_COUNT,
    THRESHOLD_FAMILIES,
    THRESHOLD_LEVELS,
    Address,
    DataType,
    Order,
    PointConfig,
    RateConfig,
    Table,
    TemplateConfig,
    Thresholds,
    rate_unit_parts,
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
    "COLOURS",
    "LAST_ADDRESS",
    "PLANNED_DRIVERS",
    "RATE_LEVEL",
    "RATE_PERIODS",
    "REGISTER_COUNT",
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
    "ModbusTcpDevice",
    "Order",
    "OutboxConfig",
    "OvertimeAlarm",
    "PointConfig",
    "RateConfig",
    "SigningConfig",
    "SiteAlarm",
    "SiteConfig",
    "SiteInfo",
    "Table",
    "TemplateConfig",
    "Thresholds",
    "TlsConfig",
    "UplinkConfig",
    "load_site_config",
    "parse_site_config",
    "rate_unit_parts",
]
