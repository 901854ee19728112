"""Instrument simulators for tests, benches, the demo and training; not device protocols.

Each simulator is a site model times a transport: `profiles` holds one physics model per
domain (tailings, fireworks, slope, coal mine; `tankfarm` keeps its own), served on Modbus TCP
(`modbus_server`, ``python -m simulators --profile NAME``); the slope is also served on OPC UA
(`opcua_server`, ``python -m simulators.slope_opcua``). Serial devices sit on a pseudo
terminal (`pty`): an RTU bus (`rtu_bus`, `rtu_slaves`) and a gas analyzer (`gas_analyzer`).
`faults` makes the Modbus servers misbehave; `pki` writes test certificates.

They may import `drivers` and `specs`; only tests, benches and the demo import them.
"""
