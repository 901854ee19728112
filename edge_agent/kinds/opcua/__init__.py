"""The `opcua` kind.

Its device model is in `config`; the mapping to the driver's settings and how it builds, shows
and backs off in `kind`.
"""

from edge_agent.kinds.opcua.config import OpcUaDevice, OpcUaSecurityConfig
from edge_agent.kinds.opcua.kind import OPCUA

__all__ = ["OPCUA", "OpcUaDevice", "OpcUaSecurityConfig"]
