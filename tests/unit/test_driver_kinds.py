"""Every driver kind of the site map is registered once, maps its config purely, and builds a
`Driver` (edge_agent.kinds).

A device model added to the config union without a kind fails here, not in the field; so does
a kind whose driver lacks a part of the `Driver` protocol. mypy checks the rest: each kind's
`build` returns a `Driver`, and takes the settings its own `settings` makes.
"""

from __future__ import annotations

import inspect
from pathlib import Path
from typing import get_args

import pytest

from drivers.modbus.build import Slave, TcpSettings, build_rtu
from drivers.modbus.codec import DataType, Order, Table
from drivers.modbus.plan import RegisterPoint
from drivers.opcua.build import UaSettings
from drivers.opcua.model import ReadMode, UaPoint
from drivers.serial.build import AsciiSettings
from drivers.serial.framing import Delimited
from drivers.serial.settings import Parity, SerialSettings
from edge_agent.config import DeviceConfig, SiteConfig, parse_site_config
from edge_agent.config.devices import SUPPORTED_DRIVERS
from edge_agent.config.point_source import point_source_keys
from edge_agent.config.serial_port import SerialPortUse
from edge_agent.core.points import ResolvedPoint, resolve_points
from edge_agent.kinds import KINDS, Kinds
from edge_agent.kinds.descriptor import DriverKind
from edge_agent.kinds.modbus import ModbusTcpDevice
from edge_agent.kinds.modbus.kind import MODBUS_TCP, REGISTERS, rtu_settings
from tests.support import config_files
from tests.support.config_files import site_head

SITE = (
    site_head()
    + """\
devices:
  - {id: plc, driver: modbus_tcp, host: 10.0.0.9, poll: 1s, points: [
     {point: T1, quota: WHP-LT, address: {table: holding, start: 4, type: float32}}]}
  - {id: slave, driver: modbus_rtu, port: /dev/ttyUSB7, baudrate: 19200, parity: N,
     unit_id: 3, poll: 2s, points: [
     {point: R1, quota: WHP-LT, address: {table: input, start: 0, type: uint16}}]}
  - {id: slope, driver: opcua, endpoint: 'opc.tcp://10.0.0.5', keepalive: 4s,
     points: [{point: S1, quota: BP-GX, node: 'ns=2;s=Slope.G1.X'}]}
  - {id: gas, driver: serial, port: /dev/ttyS7, poll: 1s, request: "RD\\r\\n", points: [
     {point: G1, quota: WHP-TOX, pattern: 'H2S=(?P<value>[0-9.]+)'}]}
"""
)


def site() -> tuple[SiteConfig, list[ResolvedPoint]]:
    config = parse_site_config(SITE, "site.yaml", Path("/etc/ganzhi"))
    return config, resolve_points(config)


def points_of(points: list[ResolvedPoint], device_id: str) -> list[ResolvedPoint]:
    return [p for p in points if p.device_id == device_id]


def test_every_device_model_of_the_config_union_has_exactly_one_kind() -> None:
    (union, *_) = get_args(DeviceConfig)
    models = list(get_args(union))
    registered = [kind.config for kind in KINDS]
    assert registered == models, "the union is the registry's, in its order"
    assert len(registered) == len(set(registered))
    assert [kind.name for kind in KINDS] == list(SUPPORTED_DRIVERS)
    assert SiteConfig.model_fields["devices"].annotation == tuple[DeviceConfig, ...]
    # Without its source key a driver's points would go unchecked (no address, no node...).
    assert dict(point_source_keys()) == {
        "modbus_tcp": "address",
        "modbus_rtu": "address",
        "opcua": "node",
        "serial": "pattern",
    }


def test_a_kind_registered_twice_is_refused() -> None:
    with pytest.raises(ValueError, match="registered twice"):
        Kinds(MODBUS_TCP, MODBUS_TCP)


def test_each_kind_builds_a_driver_that_has_the_driver_protocol() -> None:
    config, points = site()
    assert {KINDS.kind_of(d).name for d in config.devices} == set(SUPPORTED_DRIVERS)
    for device in config.devices:
        bound = KINDS.bind(device, points_of(points, device.id))
        for driver in (bound.build(), bound.build_probe()):
            assert driver.device_id == device.id
            for method in ("connect", "read", "close"):
                assert inspect.iscoroutinefunction(getattr(driver, method)), (device.id, method)


def test_a_kind_refuses_a_device_of_another_kind() -> None:
    config, points = site()
    with pytest.raises(TypeError, match="slope is a OpcUaDevice, not a ModbusTcpDevice"):
        MODBUS_TCP.bind(config.devices[2], points)


def test_config_maps_to_driver_settings_without_building_anything() -> None:
    config, points = site()
    plc, slave, slope, gas = (KINDS.kind_of(d) for d in config.devices)
    tcp = plc.settings(config.devices[0], points_of(points, "plc"))
    assert tcp == TcpSettings(
        Slave(
            device_id="plc",
            unit_id=1,
            points=(
                RegisterPoint("T1", Table.HOLDING, 4, DataType.FLOAT32, Order.BIG, Order.BIG, None),
            ),
            timeout=1.0,
            max_gap=8,
        ),
        host="10.0.0.9",
        port=502,
    )
    rtu = slave.settings(config.devices[1], points_of(points, "slave"))
    assert rtu.line == SerialSettings("/dev/ttyUSB7", 19200, Parity.NONE, 1, 8)
    ua = slope.settings(config.devices[2], points_of(points, "slope"))
    assert isinstance(ua, UaSettings)
    assert (ua.points, ua.mode, ua.publishing_interval, ua.sampling_interval) == (
        (UaPoint("S1", "ns=2;s=Slope.G1.X"),),
        ReadMode.SUBSCRIBE,
        0.02,  # absent: 20 ms, so a change waits at the server well inside the flush budget
        1.0,  # absent: the device's poll
    )
    probe = slope.probe_settings(ua)
    assert probe.mode is ReadMode.POLL, "probe reads, never subscribes"
    ascii_ = gas.settings(config.devices[3], points_of(points, "gas"))
    assert isinstance(ascii_, AsciiSettings)
    assert (ascii_.request, ascii_.framing) == (b"RD\r\n", Delimited(b"\r\n"))


def test_what_each_kind_tells_the_agent_and_probe() -> None:
    config, points = site()
    bound = {d.id: KINDS.bind(d, points_of(points, d.id)) for d in config.devices}
    assert {k: (b.kind, b.requests, b.listen) for k, b in bound.items()} == {
        "plc": ("modbus_tcp", 1, None),
        "slave": ("modbus_rtu", 1, None),
        "slope": ("opcua", 1, None),
        "gas": ("serial", 1, None),
    }
    assert (bound["slope"].backoff.initial, bound["slope"].backoff.cap) == (0.5, 4.0)
    assert bound["plc"].backoff.cap == 30.0
    assert bound["plc"].view is bound["slave"].view, "Modbus kinds share one check table"
    assert [v.columns for v in KINDS.views()] == [
        ("table", "start", "type", "order"),
        ("node",),
        ("pattern",),
    ]


def test_a_kind_whose_parts_do_not_fit_is_a_type_error() -> None:
    # The check is mypy's (strict, so an ignore that is no longer needed is an error itself):
    # a kind reading ModbusTcpDevice cannot take the RTU mapping, which reads ModbusRtuDevice.
    mismatched = DriverKind(
        config=ModbusTcpDevice,
        settings=rtu_settings,  # type: ignore[arg-type]
        build=build_rtu,
        view=REGISTERS,
    )
    assert mismatched.name == "modbus_tcp"


def test_port_rules_follow_each_models_serial_port_use() -> None:
    # SiteConfig names no kind: a slave of a shared bus and an instrument that needs its port
    # to itself say so in their models (`serial_port`), and the rules read that.
    rtu = (
        "  - {id: r1, driver: modbus_rtu, port: /dev/ttyS7, unit_id: 1, poll: 1s, points: [\n"
        "     {point: R1, quota: WHP-LT, address: {table: input, start: 0, type: uint16}}]}\n"
    )
    gas = SITE.split("devices:\n")[1].split("  - {id: gas")[1]
    text = SITE.split("devices:\n")[0] + "devices:\n  - {id: gas" + gas + rtu
    issue = config_files.SITE.only_issue(text)
    assert (issue.path, issue.message) == (
        "devices[1].port",
        (
            "port /dev/ttyS7 is already used by devices[0] (gas); a serial ASCII instrument "
            "(gas) needs its port to itself"
        ),
    )
    assert [k.config.serial_port for k in KINDS] == [
        None,
        SerialPortUse(shared=True),
        None,
        SerialPortUse(shared=False, named="a serial ASCII instrument"),
    ]
