"""OPC UA: the `OpcUaDriver` and its configuration types (asyncua stays inside this package).

The configuration types (`drivers.opcua.model`) are pure and imported at once; the driver and
the DataValue mapping need asyncua and are imported on first use of their names, so an agent
(or a site map check) without an OPC UA device never loads asyncua (G7).
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING

from drivers.opcua.model import (
    OpcUaSecurityError,
    ReadMode,
    SecurityMode,
    SecurityPolicy,
    UaPoint,
    UaSecurity,
    UaValue,
    check_node_id,
)

if TYPE_CHECKING:
    from drivers.opcua.driver import DEFAULT_PORT, OpcUaDriver
    from drivers.opcua.samples import (
        FLAG_HELD,
        FLAG_LOCAL_TIME,
        FLAG_SERVER_TIME,
        FLAG_TIME_REJECTED,
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

_ON_FIRST_USE = {
    "DEFAULT_PORT": "drivers.opcua.driver",
    "OpcUaDriver": "drivers.opcua.driver",
    "FLAG_HELD": "drivers.opcua.samples",
    "FLAG_LOCAL_TIME": "drivers.opcua.samples",
    "FLAG_SERVER_TIME": "drivers.opcua.samples",
    "FLAG_TIME_REJECTED": "drivers.opcua.samples",
    "quality_of": "drivers.opcua.samples",
    "status_name": "drivers.opcua.samples",
    "to_sample": "drivers.opcua.samples",
}
"""The names that need asyncua, and the module each lives in."""


def __getattr__(name: str) -> object:
    """Import the module of a name that needs asyncua, the first time it is asked for."""
    module = _ON_FIRST_USE.get(name)
    if module is None:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    value = getattr(importlib.import_module(module), name)
    globals()[name] = value
    return value
