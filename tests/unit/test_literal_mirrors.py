"""The `Literal`s of the site map, the collector config and the API hold exactly the values of
the driver's or the wire's vocabulary they spell out, and each value reaches the driver.

The config keeps its own `Literal` rather than the enum as the field's type: pydantic renders
a `Literal` inline in docs/config-*.md and in its error messages, while an enum field becomes
a `$ref` carrying the enum's docstring and a different error type; and where the config has
`none` (no checksum, no encoding) that is no member of the enum. So the values are written
twice, and this keeps them one set: a value added to an enum only would be unusable in a site
map, one added to the config only would pass `check` and then crash when the driver is built.
"""

from __future__ import annotations

import enum
from collections.abc import Collection
from dataclasses import dataclass
from pathlib import Path
from typing import TypeVar, get_args

import pytest
from pydantic import BaseModel

from collector.api.models import GapOut, ReadingOut
from collector.api.routes.verify import BrokenOut
from collector.config import SigningConfig as CollectorSigning
from collector.readmodel import GapState
from collector.verify.core import BrokenReason
from drivers.modbus import codec
from drivers.modbus.build import RtuSettings, TcpSettings
from drivers.opcua.build import UaSettings
from drivers.opcua.model import ReadMode, SecurityMode, SecurityPolicy
from drivers.serial import checksum
from drivers.serial import settings as serial_settings
from drivers.serial.build import AsciiSettings
from edge_agent.config import address, device_base, parse_site_config
from edge_agent.config.sections import Domain, UplinkConfig
from edge_agent.config.sections import SigningConfig as AgentSigning
from edge_agent.core.points import resolve_points
from edge_agent.kinds import KINDS
from edge_agent.kinds.opcua import OpcUaDevice
from edge_agent.kinds.opcua.config import OpcUaSecurityConfig
from edge_agent.kinds.serial import SerialDevice
from edge_agent.kinds.serial import config as serial_config
from specs.block import DOMAINS
from specs.encoding import Encoding
from specs.records import Quality
from specs.signing import ALLOWED_ALGORITHMS
from tests.support.config_files import site_head

SettingsT = TypeVar("SettingsT")

NONE = "none"
"""The config's word for "no checksum" or "no encoding": None to the driver, no member."""


def field_type(model: type[BaseModel], name: str) -> object:
    """The type a model's field validates with (an `Annotated`'s validators stripped)."""
    return model.model_fields[name].annotation


def values_of(vocabulary: type[enum.StrEnum] | Collection[str]) -> set[str]:
    return {str(member) for member in vocabulary}


@dataclass(frozen=True)
class Mirror:
    """A `Literal` (`spelled`) that restates a vocabulary, plus the values only it has."""

    spelled: object
    vocabulary: type[enum.StrEnum] | Collection[str]
    config_only: frozenset[str] = frozenset()


MIRRORS = {
    "modbus table": Mirror(address.Table, codec.Table),
    "modbus type": Mirror(address.DataType, codec.DataType),
    "modbus byte order": Mirror(field_type(address.Address, "byte_order"), codec.Order),
    "modbus word order": Mirror(field_type(address.Address, "word_order"), codec.Order),
    "serial parity": Mirror(device_base.Parity, serial_settings.Parity),
    "serial checksum": Mirror(serial_config.Checksum, checksum.Checksum, frozenset({NONE})),
    "opcua mode": Mirror(field_type(OpcUaDevice, "mode"), ReadMode),
    "opcua security policy": Mirror(field_type(OpcUaSecurityConfig, "policy"), SecurityPolicy),
    "opcua security mode": Mirror(field_type(OpcUaSecurityConfig, "mode"), SecurityMode),
    "uplink encoding": Mirror(field_type(UplinkConfig, "encoding"), Encoding, frozenset({NONE})),
    "site domain": Mirror(Domain, DOMAINS),
    "agent signing": Mirror(field_type(AgentSigning, "algorithm"), ALLOWED_ALGORITHMS),
    "collector signing": Mirror(field_type(CollectorSigning, "algorithm"), ALLOWED_ALGORITHMS),
    "api reading quality": Mirror(field_type(ReadingOut, "quality"), Quality),
    "api gap state": Mirror(field_type(GapOut, "state"), GapState),
    "api broken reason": Mirror(field_type(BrokenOut, "reason"), BrokenReason),
}


@pytest.mark.parametrize("mirror", MIRRORS.values(), ids=MIRRORS.keys())
def test_a_literal_holds_exactly_the_values_of_the_vocabulary_it_spells(mirror: Mirror) -> None:
    spelled = get_args(mirror.spelled)
    assert spelled, f"{mirror.spelled!r} is no Literal"
    assert len(spelled) == len(set(spelled))
    assert set(spelled) - mirror.config_only == values_of(mirror.vocabulary)
    assert mirror.config_only <= set(spelled)


# --- each value of the site map reaches the driver, which builds ---------------------------


def built(device: str, settings_type: type[SettingsT]) -> SettingsT:
    """The driver settings of the site map's one `device`, after building its driver."""
    config = parse_site_config(site_head() + "devices:\n" + device, "site.yaml", Path("/etc/g"))
    (configured,) = config.devices
    points = resolve_points(config)
    KINDS.bind(configured, points).build()
    settings = KINDS.kind_of(configured).settings(configured, points)
    assert isinstance(settings, settings_type)
    return settings


def modbus_tcp(address_yaml: str) -> TcpSettings:
    return built(
        "  - {id: plc, driver: modbus_tcp, host: 10.0.0.9, poll: 1s, points: [\n"
        f"     {{point: T1, quota: WHP-LT, address: {{{address_yaml}}}}}]}}\n",
        TcpSettings,
    )


@pytest.mark.parametrize("table", get_args(address.Table))
def test_every_modbus_table_reaches_the_driver(table: str) -> None:
    (point,) = modbus_tcp(f"table: {table}, start: 3, type: bool").slave.points
    assert (type(point.table), point.table) == (codec.Table, table)


@pytest.mark.parametrize("dtype", get_args(address.DataType))
def test_every_modbus_type_reaches_the_driver(dtype: str) -> None:
    (point,) = modbus_tcp(f"table: holding, start: 3, type: {dtype}").slave.points
    assert (type(point.dtype), point.dtype) == (codec.DataType, dtype)


@pytest.mark.parametrize("order", get_args(address.Order))
def test_every_modbus_order_reaches_the_driver(order: str) -> None:
    (point,) = modbus_tcp(
        f"table: holding, start: 3, type: float32, byte_order: {order}, word_order: {order}"
    ).slave.points
    assert (type(point.byte_order), point.byte_order) == (codec.Order, order)
    assert (type(point.word_order), point.word_order) == (codec.Order, order)


@pytest.mark.parametrize("parity", get_args(device_base.Parity))
@pytest.mark.parametrize("stopbits", get_args(device_base.StopBits))
def test_every_rtu_line_setting_reaches_the_driver(parity: str, stopbits: int) -> None:
    settings = built(
        "  - {id: slave, driver: modbus_rtu, port: /dev/ttyUSB7, unit_id: 3, poll: 2s,\n"
        f"     parity: {parity}, stopbits: {stopbits}, points: [\n"
        "     {point: R1, quota: WHP-LT, address: {table: input, start: 0, type: uint16}}]}\n",
        RtuSettings,
    )
    assert (type(settings.line.parity), settings.line.parity) == (serial_settings.Parity, parity)
    assert (settings.line.stopbits, settings.line.bytesize) == (stopbits, 8)


def serial(settings_yaml: str) -> AsciiSettings:
    return built(
        f"  - {{id: gas, driver: serial, port: /dev/ttyS7, poll: 1s, {settings_yaml}, points: [\n"
        "     {point: G1, quota: WHP-TOX, pattern: 'H2S=(?P<value>[0-9.]+)'}]}\n",
        AsciiSettings,
    )


@pytest.mark.parametrize("parity", get_args(device_base.Parity))
@pytest.mark.parametrize("bytesize", get_args(field_type(SerialDevice, "bytesize")))
def test_every_serial_line_setting_reaches_the_driver(parity: str, bytesize: int) -> None:
    line = serial(f"parity: {parity}, bytesize: {bytesize}").line
    assert (type(line.parity), line.parity, line.bytesize) == (
        serial_settings.Parity,
        parity,
        bytesize,
    )


@pytest.mark.parametrize("kind", get_args(serial_config.Checksum))
def test_every_serial_checksum_reaches_the_driver(kind: str) -> None:
    spec = serial(f"checksum: {kind}").checksum
    if kind == NONE:
        assert spec is None
    else:
        assert spec is not None
        assert (type(spec.kind), spec.kind) == (checksum.Checksum, kind)


def opcua(settings_yaml: str) -> UaSettings:
    return built(
        f"  - {{id: slope, driver: opcua, endpoint: 'opc.tcp://10.0.0.5', {settings_yaml},\n"
        "     points: [{point: S1, quota: BP-GX, node: 'ns=2;s=Slope.G1.X'}]}\n",
        UaSettings,
    )


@pytest.mark.parametrize("mode", get_args(field_type(OpcUaDevice, "mode")))
def test_every_opcua_mode_reaches_the_driver(mode: str) -> None:
    settings = opcua(f"mode: {mode}")
    assert (type(settings.mode), settings.mode) == (ReadMode, mode)


@pytest.mark.parametrize("policy", get_args(field_type(OpcUaSecurityConfig, "policy")))
@pytest.mark.parametrize("mode", get_args(field_type(OpcUaSecurityConfig, "mode")))
def test_every_opcua_security_reaches_the_driver(policy: str, mode: str) -> None:
    security = opcua(
        f"security: {{policy: {policy}, mode: {mode}, cert: ua/agent.der, key: ua/agent.pem}}"
    ).security
    assert security is not None
    assert (type(security.policy), security.policy) == (SecurityPolicy, policy)
    assert (type(security.mode), security.mode) == (SecurityMode, mode)


@pytest.mark.parametrize("encoding", get_args(field_type(UplinkConfig, "encoding")))
def test_every_uplink_encoding_reaches_the_publisher(encoding: str) -> None:
    uplink = UplinkConfig.model_validate(
        {"broker": "mqtt://127.0.0.1:1883", "collector_key": "c.pub", "encoding": encoding}
    )
    wire = uplink.wire_encoding
    assert (type(wire), wire) == ((type(None), None) if encoding == NONE else (Encoding, encoding))
