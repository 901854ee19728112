"""The Modbus kinds, `modbus_tcp` and `modbus_rtu`.

Their device models are in `config`; the mapping to the drivers' settings and how they build
and show in `kind`.
"""

from edge_agent.kinds.modbus.config import ModbusRtuDevice, ModbusTcpDevice
from edge_agent.kinds.modbus.kind import MODBUS_RTU, MODBUS_TCP

__all__ = ["MODBUS_RTU", "MODBUS_TCP", "ModbusRtuDevice", "ModbusTcpDevice"]
