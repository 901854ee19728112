"""The site map: YAML in, a checked, frozen `SiteConfig` out, or a `ConfigError` naming lines.

`load_site_config` reads the file; everything else is pure.
"""

from configkit.issues import ConfigError, ConfigIssue
from configkit.network import TlsConfig
from edge_agent.config.address import LAST_ADDRESS, REGISTER_COUNT, Address, DataType, Order, Table
from edge_agent.config.alarms import (
    SITE_ALARM_KINDS,
    CompareAlarm,
    Condition,
    EscalationAlarm,
    OvertimeAlarm,
    SiteAlarm,
)
from edge_agent.config.device_base import MODBUS_SERIAL_PARITY
from edge_agent.config.devices import SUPPORTED_DRIVERS, DeviceConfig
from edge_agent.config.limits import (
    COLOURS,
    RATE_LEVEL,
    RATE_PERIODS,
    THRESHOLD_FAMILIES,
    THRESHOLD_LEVELS,
    RateConfig,
    Thresholds,
    rate_unit_parts,
)
from edge_agent.config.loader import load_site_config, parse_site_config
from edge_agent.config.modbus_devices import ModbusRtuDevice, ModbusTcpDevice
from edge_agent.config.opcua_device import OpcUaDevice, OpcUaSecurityConfig
from edge_agent.config.point_source import SourceKey
from edge_agent.config.points import PointConfig, TemplateConfig
from edge_agent.config.sections import (
    Domain,
    OutboxConfig,
    SigningConfig,
    SiteInfo,
    UplinkConfig,
)
from edge_agent.config.serial_device import SerialDevice
from edge_agent.config.site import SiteConfig

__all__ = [
    "COLOURS",
    "LAST_ADDRESS",
    "MODBUS_SERIAL_PARITY",
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
    "ModbusRtuDevice",
    "ModbusTcpDevice",
    "OpcUaDevice",
    "OpcUaSecurityConfig",
    "Order",
    "OutboxConfig",
    "OvertimeAlarm",
    "PointConfig",
    "RateConfig",
    "SerialDevice",
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
