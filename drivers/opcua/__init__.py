"""OPC UA: the `OpcUaDriver` and its configuration types (asyncua stays inside this package)."""

from drivers.opcua.driver import DEFAULT_PORT, OpcUaDriver, OpcUaSecurityError
from drivers.opcua.model import (
    FLAG_HELD,
    FLAG_LOCAL_TIME,
    FLAG_SERVER_TIME,
    FLAG_TIME_REJECTED,
    ReadMode,
    SecurityMode,
    SecurityPolicy,
    UaPoint,
    UaSecurity,
    UaValue,
    check_node_id,
    quality_of,
    status_name,
    to_sample,
)

__all__ = [
    "DEFAULT_PORT",
    "FLAG_HELD",
    "FLAG_LOCAL_TIME",
    "FLAG_SERVER_TIME",
    "FLAG_TIME_REJECTED",
    "OpcUaDriver",
    "OpcUaSecurityError",
    "ReadMode",
    "SecurityMode",
    "SecurityPolicy",
    "UaPoint",
    "UaSecurity",
    "UaValue",
    "check_node_id",
    "quality_of",
    "status_name",
    "to_sample",
]
