"""Site maps with Modbus RTU, OPC UA and serial ASCII devices: keys, defaults, file:line errors."""

from __future__ import annotations

import json
import math
from pathlib import Path

import pytest
from click.testing import CliRunner

from drivers.modbus.plan import plan_reads
from drivers.modbus.timing import bus_utilization, rtu_timeout_seconds
from drivers.serial.settings import Parity, SerialSettings
from edge_agent.cli import main
from edge_agent.core.plan_compile import bus_plans
from edge_agent.core.points import NodeSource, PatternSource, RegisterSource, resolve_points
from edge_agent.kinds.modbus import ModbusRtuDevice
from edge_agent.kinds.modbus.kind import register_point
from edge_agent.kinds.opcua import OpcUaDevice
from edge_agent.kinds.serial import SerialDevice
from tests.support.config_files import (
    DESIGN_DEVICES,
    SITE,
    Mistake,
    edit,
    line_of,
    mistake_id,
    site_head,
)

HEAD = site_head("BP")

TEXT = HEAD + DESIGN_DEVICES


def with_device(yaml_device: str) -> str:
    return TEXT + yaml_device


# --- what loads ------------------------------------------------------------------------------


def test_the_three_drivers_load_with_their_defaults() -> None:
    config = SITE.parse(TEXT)
    bus1, bus2, slope, gas = config.devices
    assert isinstance(bus1, ModbusRtuDevice)
    assert isinstance(bus2, ModbusRtuDevice)
    assert (bus1.port, bus1.baudrate, bus1.parity, bus1.stopbits, bus1.bytesize) == (
        "/dev/ttyUSB0",
        9600,
        "N",
        1,
        8,
    )
    assert (bus1.unit_id, bus1.poll, bus1.timeout, bus1.max_gap) == (3, 5.0, 1.0, 8)
    assert bus2.timeout == pytest.approx(0.2)
    assert isinstance(slope, OpcUaDevice)
    assert (slope.mode, slope.poll, slope.publishing_interval, slope.keepalive) == (
        "subscribe",
        1.0,
        None,
        10.0,
    )
    # Absent intervals: changes are sent every 20 ms (well inside the flush interval's
    # budget, G6) and each node is sampled every poll.
    assert (slope.publishing, slope.sampling) == (0.02, 1.0)
    assert slope.security is not None
    assert slope.security.cert == SITE.base / "pki" / "agent-cert.pem", "relative to the file"
    assert slope.security.server_cert == Path("/etc/pki/slope-server.der")
    assert isinstance(gas, SerialDevice)
    assert gas.request == "RD\r\n", "double quotes turn \\r\\n into CR LF"
    assert (gas.parity, gas.line_delimiter, gas.checksum, gas.free_running) == (
        "N",
        "\r\n",
        "none",
        False,
    )


def test_modbus_rtu_parity_defaults_to_even() -> None:
    text, _ = edit(TEXT, "    parity: N\n    stopbits: 1\n", "")
    text, _ = edit(text, "    parity: N\n    unit_id: 4", "    parity: E\n    unit_id: 4")
    bus1 = SITE.parse(text).devices[0]
    assert isinstance(bus1, ModbusRtuDevice)
    assert bus1.parity == "E"


def test_points_resolve_to_their_source() -> None:
    points = {p.point: p for p in resolve_points(SITE.parse(TEXT))}
    assert isinstance(points["F01-PC-01"].source, RegisterSource)
    register = points["F01-PC-01"].register
    assert (register.table, register.register_count) == ("input", 1)
    assert points["S01-GX-01"].source == NodeSource("ns=2;s=Slope.G1.X")
    assert points["W01-TOX-01"].source == PatternSource("H2S=(?P<value>-?[0-9.]+)")
    with pytest.raises(TypeError, match="not a Modbus point"):
        _ = points["S01-GX-01"].register


def test_free_running_serial_with_fixed_length_frames_and_a_checksum() -> None:
    text = with_device(
        "  - {id: gas-8, driver: serial, port: /dev/ttyS2, poll: 1s, length: 24, start: '$',\n"
        "     checksum: crc16_modbus, separator: '#', max_age: 5s,\n"
        "     points: [{point: W02-TOX-01, quota: WHP-TOX, pattern: 'CO=(?P<value>[0-9.]+)'}]}\n"
    )
    gas = SITE.parse(text).devices[-1]
    assert isinstance(gas, SerialDevice)
    assert (gas.free_running, gas.length, gas.start, gas.checksum, gas.separator) == (
        True,
        24,
        "$",
        "crc16_modbus",
        "#",
    )
    assert gas.max_age == 5.0


# --- one mistake, one issue at its line and key -------------------------------------------------

REQUEST = '    request: "RD\\r\\n"\n'
ENDPOINT = "endpoint '{}' must look like opc.tcp://host:port or opc.tcp://host:port/path"
MISTAKES = [
    # the RTU line and its slaves
    Mistake(
        "    parity: N\n    stopbits: 1\n",
        "    parity: X\n    stopbits: 1\n",
        "devices[0].parity",
        "Input should be 'N', 'E' or 'O', got 'X'",
    ),
    Mistake("    unit_id: 3\n", "    unit_id: 0\n", "devices[0].unit_id", "broadcast", "part"),
    Mistake("    unit_id: 3\n", "    unit_id: 248\n", "devices[0].unit_id", "1..247", "part"),
    Mistake(
        "    unit_id: 3\n",
        "    unit_id: 3\n    bytesize: 7\n",
        "devices[0].bytesize",
        "bytesize must be 8",
        "part",
        below=1,
    ),
    Mistake(
        "    baudrate: 9600\n    parity: N\n    stopbits: 1\n",
        "    baudrate: 9000\n    parity: N\n    stopbits: 1\n",
        "devices[0].baudrate",
        "baudrate 9000 is not a standard rate",
        "start",
    ),
    Mistake(
        "    unit_id: 4\n",
        "    unit_id: 3\n",
        "devices[1].unit_id",
        "already used by devices[0] (bus-1)",
        "part",
    ),
    Mistake(
        "    port: /dev/ttyS1\n",
        "    port: /dev/ttyUSB0\n",
        "devices[3].port",
        "needs its port to itself",
        "part",
    ),
    Mistake(
        "    port: /dev/ttyS1\n",
        "    port: ttyS1\n",
        "devices[3].port",
        "port 'ttyS1' must be a serial device path such as /dev/ttyUSB0",
    ),
    # where a point is read
    Mistake(
        ', node: "ns=2;s=Slope.G1.X"}',
        "}",
        "devices[2].points[0].node",
        "missing required key: opcua points need their OPC UA node",
        "start",
    ),
    Mistake(
        '"ns=2;s=Slope.G1.X"',
        '"ns=2;q=Slope"',
        "devices[2].points[0].node",
        "invalid OPC UA node id 'ns=2;q=Slope'",
        "start",
    ),
    Mistake(
        ', node: "ns=2;s=Slope.G1.X"}',
        ', node: "ns=2;s=Slope.G1.X", address: {table: input, start: 0, type: uint16}}',
        "devices[2].points[0].address",
        "address applies only to modbus_tcp and modbus_rtu points; opcua points are read by `node`",
    ),
    Mistake(
        "'H2S=(?P<value>-?[0-9.]+)'",
        "'H2S=(-?[0-9.]+)'",
        "devices[3].points[0].pattern",
        "has no named group `value`",
        "part",
    ),
    Mistake(
        "'H2S=(?P<value>-?[0-9.]+)'",
        "'H2S=(?P<value>-?[0-9.]+'",
        "devices[3].points[0].pattern",
        "is not a valid regular expression: missing )",
        "part",
    ),
    # OPC UA and serial settings
    *(
        Mistake(
            '"opc.tcp://10.0.0.5:4840"',
            f'"{endpoint}"',
            "devices[2].endpoint",
            ENDPOINT.format(endpoint),
        )
        for endpoint in ("http://10.0.0.5:4840", "opc.tcp://:4840", "opc.tcp://h:99999", "10.0.0.5")
    ),
    Mistake(
        "    request:",
        "    requets: x\n    request:",
        "devices[3].requets",
        "unknown key; did you mean 'request'?",
    ),
    # STX/ETX framing as a gas analyzer's manual writes it: single quotes sent the four
    # characters backslash, x, 0, 2 and the instrument never answered.
    *(
        Mistake(
            REQUEST,
            f"    request: {request}\n",
            "devices[3].request",
            f"{shown} holds a backslash escape: write it in double quotes, as in "
            '"RD\\r\\n", so that YAML turns \\r, \\n, \\t, \\x02 and the like into those '
            "characters",
        )
        for request, shown in [
            ("'\\x02RD\\x03'", "'\\\\x02RD\\\\x03'"),
            ("'RD\\t1'", "'RD\\\\t1'"),
            ("'RD\\r\\n'", "'RD\\\\r\\\\n'"),
        ]
    ),
    Mistake(
        REQUEST, '    request: "RD\\u00e9"\n', "devices[3].request", "must be ASCII text", "part"
    ),
    Mistake(REQUEST, '    request: ""\n', "devices[3].request", "must not be empty", "part"),
    *(
        Mistake(REQUEST, REQUEST + added, f"devices[3].{key}", message, "part", below=1)
        for added, key, message in [
            ('    length: 10\n    delimiter: ";"\n', "length", "not both"),
            ('    start: "$"\n', "start", "applies only with length"),
            ('    separator: "#"\n', "separator", "only with a checksum"),
            ("    max_age: 5s\n", "max_age", "only to free-running"),
            ("    checksum: md5\n", "checksum", "Input should be"),
        ]
    ),
]


@pytest.mark.parametrize("mistake", MISTAKES, ids=mistake_id)
def test_one_mistake_is_one_issue_at_its_line_and_key(mistake: Mistake) -> None:
    SITE.check_mistake(TEXT, mistake)


# --- RTU mistakes ------------------------------------------------------------------------------


def test_conflicting_line_settings_on_one_port_name_the_second_device() -> None:
    issues = SITE.issues_of_edit(
        TEXT,
        "    baudrate: 9600\n    parity: N\n    unit_id: 4",
        "    baudrate: 19200\n    parity: E\n    unit_id: 4",
        (0, "devices[1].baudrate"),
        (1, "devices[1].parity"),
    )
    assert issues[0].message == (
        "baudrate 19200 differs from 9600 of devices[0] (bus-1) on the same port /dev/ttyUSB0: "
        "every slave of one RS-485 bus uses the same line settings"
    )


def test_a_timeout_shorter_than_the_longest_read_on_the_wire_is_refused() -> None:
    """At 9600 baud 8N1 a read of 120 registers is 8 bytes out and 245 back, 264 ms on the
    wire: with `timeout: 200ms` every such read timed out (the slave's answer cannot arrive
    in time), the points were BAD for ever and check passed. Measured on the simulated
    9600-baud bus: 3 reads of 120 registers, 3 timeouts."""
    text, _ = edit(TEXT, "start: 40, type: uint16}}", "start: 118, type: float32}}")
    text, _ = edit(text, "    timeout: 200ms\n", "    timeout: 200ms\n    max_gap: 125\n")
    issue = SITE.only_issue(text)
    assert (issue.line, issue.path) == (line_of(text, "    timeout: 200ms"), "devices[1].timeout")
    assert issue.message == (
        "timeout 200ms is shorter than the longest read of this slave takes on the wire at "
        "9600 8N1: 120 registers from input 0, 253 bytes, 264 ms; every such read would "
        "time out: give a timeout of at least 264 ms and the slave's own answer time, or a "
        "smaller max_gap"
    )
    # Left to its default (1 s), the same read fits: no problem.
    SITE.parse(text.replace("    timeout: 200ms\n", ""))


def test_a_setting_left_to_its_default_conflicts_at_the_devices_line() -> None:
    text, _ = edit(TEXT, "    parity: N\n    unit_id: 4", "    unit_id: 4")  # bus-2: default E
    issue = SITE.only_issue(text)
    assert (issue.line, issue.path) == (line_of(text, "  - id: bus-2"), "devices[1].parity")


def test_two_spellings_of_one_port_are_one_bus(tmp_path: Path) -> None:
    """A /dev/serial/by-id link and the device it names are one RS-485 wire (the agent opens
    one bus for both), so the rules of one port hold across them: check passed a map whose
    second slave named the bus's adapter by its link with another baud rate and the first
    slave's unit id, and the agent then stopped at start with a ValueError."""
    adapter = tmp_path / "ttyUSB0"
    adapter.touch()
    link = tmp_path / "usb-FTDI-if00-port0"
    link.symlink_to(adapter)
    text = TEXT.replace("/dev/ttyUSB0", str(adapter), 1).replace("/dev/ttyUSB0", str(link), 1)
    issues = SITE.issues_of_edit(
        text,
        "    baudrate: 9600\n    parity: N\n    unit_id: 4",
        "    baudrate: 19200\n    parity: N\n    unit_id: 3",
        (0, "devices[1].baudrate"),
        (2, "devices[1].unit_id"),
    )
    wire = f"the same port {link} (which is {adapter})"
    assert issues[0].message == (
        f"baudrate 19200 differs from 9600 of devices[0] (bus-1) on {wire}: "
        "every slave of one RS-485 bus uses the same line settings"
    )
    assert issues[1].message == (
        f"unit_id 3 on {link} (which is {adapter}) is already used by devices[0] (bus-1); "
        "every slave on a bus needs its own address"
    )
    serial, _ = edit(text, "    port: /dev/ttyS1", f"    port: {link}")
    issue = SITE.only_issue(serial)
    gas = line_of(serial, "  - id: gas-7")
    assert (issue.line, issue.path) == (gas + 2, "devices[3].port")
    assert issue.message.startswith(f"port {link} (which is {adapter}) is already used by")


# --- where a point is read ---------------------------------------------------------------------


def test_modbus_point_without_address_and_with_a_pattern() -> None:
    SITE.issues_of_edit(
        TEXT,
        "{point: F01-PC-01, quota: YHBZ-PC, address: {table: input, start: 0, type: uint16}}",
        "{point: F01-PC-01, quota: YHBZ-PC, pattern: 'x(?P<value>1)'}",
        (0, "devices[0].points[0].address"),
        (0, "devices[0].points[0].pattern"),
    )


def test_source_problems_show_with_field_problems_at_once() -> None:
    text, node = edit(TEXT, ', node: "ns=2;s=Slope.G1.X"}', "}")
    text, keepalive = edit(text, "    mode: subscribe\n", "    mode: subscribe\n    poll: 0s\n")
    issues = SITE.issues_of(text)
    assert [(i.line, i.path) for i in issues] == [
        (keepalive + 1, "devices[2].poll"),
        (node + 1, "devices[2].points[0].node"),
    ]


def test_template_points_must_suit_every_device_that_uses_them() -> None:
    text = TEXT.replace(
        "devices:\n",
        "templates:\n"
        "  gnss:\n"
        "    points:\n"
        '      - {point: GX, quota: BP-GX, node: "ns=2;s=X"}\n'
        "devices:\n",
    ) + ("  - {id: gas-9, driver: serial, port: /dev/ttyS3, poll: 1s, template: gnss,\n"
         "     point_prefix: S09-}\n")  # fmt: skip
    issues = SITE.issues_of(text)
    line = line_of(text, '{point: GX, quota: BP-GX, node: "ns=2;s=X"}')
    assert [(i.line, i.path) for i in issues] == [
        (line, "templates.gnss.points[0].node"),
        (line, "templates.gnss.points[0].pattern"),
    ]
    assert issues[0].message.endswith("(device 'gas-9' uses this template)")
    text = text.replace(
        "driver: serial, port: /dev/ttyS3", "driver: opcua, endpoint: 'opc.tcp://h'"
    )
    assert [code for code, _ in SITE.parse(text).points_of(SITE.parse(text).devices[-1])] == [
        "S09-GX"
    ]


# --- OPC UA and serial settings ----------------------------------------------------------------


def test_opcua_settings_that_contradict_each_other() -> None:
    issues = SITE.issues_of_edit(
        TEXT,
        "    mode: subscribe\n",
        "    mode: subscribe\n    password: x\n    publishing_interval: 5s\n    keepalive: 2s\n",
        (1, "devices[2].password"),
        (3, "devices[2].keepalive"),
    )
    assert issues[0].message == "a password needs a username"


def test_security_policy_and_mode_are_checked_and_an_unknown_key_gets_a_hint() -> None:
    issues = SITE.issues_of_edit(
        TEXT,
        "      mode: SignAndEncrypt\n",
        "      mode: None\n      polcy: x\n",
        (0, "devices[2].security.mode"),
        (1, "devices[2].security.polcy"),
    )
    assert issues[1].message == "unknown key; did you mean 'policy'?"


# --- planned bus load and `edge-agent check` -----------------------------------------------------


def test_bus_plans_match_the_timing_model() -> None:
    config = SITE.parse(TEXT)
    points = resolve_points(config)
    (plan,) = bus_plans(config, points)
    assert (plan.port, plan.devices, plan.line) == ("/dev/ttyUSB0", ("bus-1", "bus-2"), "9600 8N1")
    reads = [
        plan_reads([register_point(p) for p in points if p.device_id == d], max_gap=8)
        for d in ("bus-1", "bus-2")
    ]
    assert plan.requests_per_cycle == 3, "bus-2's two points are 40 registers apart"
    line = SerialSettings("/dev/ttyUSB0", 9600, Parity.NONE, 1)
    assert plan.utilization == pytest.approx(bus_utilization(reads, [5.0, 1.0], line))
    # A silent slave costs one timeout per cycle instead of its reads; the worst one counts:
    # bus-1 (1 s every 5 s) beats bus-2 (200 ms every second).
    bus1_only = bus_utilization(reads[:1], [5.0], line)
    bus2_only = bus_utilization(reads[1:], [1.0], line)
    bus1_silent = bus2_only + rtu_timeout_seconds(1.0, line) / 5.0
    bus2_silent = bus1_only + rtu_timeout_seconds(0.2, line) / 1.0
    assert bus1_silent > bus2_silent
    assert plan.one_silent == pytest.approx(bus1_silent)


def test_check_prints_node_and_pattern_columns_and_the_bus_load(tmp_path: Path) -> None:
    site = tmp_path / "site.yaml"
    site.write_text(TEXT, encoding="utf-8")
    result = CliRunner().invoke(main, ["check", "-c", str(site)])
    assert result.exit_code == 0, result.output
    blocks = result.stdout.split("\n\n")
    assert blocks[0].splitlines()[0].split()[4:7] == ["table", "start", "type"]
    node_table = blocks[1].splitlines()
    assert node_table[0].split() == [
        "device", "point", "quota", "name", "node", "scale", "offset", "unit",
    ]  # fmt: skip
    assert "ns=2;s=Slope.G1.X" in node_table[1]
    pattern_table = blocks[2].splitlines()
    assert pattern_table[0].split()[4] == "pattern"
    assert "H2S=(?P<value>-?[0-9.]+)" in pattern_table[1]
    assert pattern_table[-2].startswith("rtu bus /dev/ttyUSB0 (9600 8N1): 2 slaves, 3 requests")
    assert pattern_table[-1] == "4 devices, 5 points, gateway 91360100MA35GW001H-GW01"


@pytest.mark.parametrize(
    ("old", "new"), [("poll: 1s", "poll: 0.0009"), ("poll: 5s", "poll: 5s\n    timeout: 2d")]
)
def test_device_durations_are_a_millisecond_to_a_day(old: str, new: str) -> None:
    """A hostile tester's `poll: 1e-310` (a subnormal, above 0 so taken) made `check` print
    `planned utilization inf%` and `check --json` print `Infinity` (not JSON); a poll of 1 ms
    with a timeout of 1e308 s overflows alike. Device durations are 1 ms (the finest unit a
    duration is written in) to one day."""
    issue = SITE.only_issue(TEXT.replace(old, new, 1))
    key = new.rpartition("\n")[2].strip().partition(":")[0]
    assert issue.path.endswith(f".{key}")
    bound = "at least 1ms" if key == "poll" else "at most 1d"
    assert issue.message.startswith(f"must be {bound}, got "), issue.message


def test_check_shows_finite_bus_figures_at_the_duration_bounds(tmp_path: Path) -> None:
    site = tmp_path / "site.yaml"
    text = TEXT.replace("    poll: 1s\n    timeout: 200ms\n", "    poll: 1ms\n    timeout: 1d\n")
    site.write_text(text, encoding="utf-8")
    shown = CliRunner().invoke(main, ["check", "-c", str(site)])
    assert shown.exit_code == 0, shown.output
    [bus] = [line for line in shown.stdout.splitlines() if line.startswith("rtu bus ")]
    assert "inf" not in bus, bus
    assert "nan" not in bus, bus
    as_json = CliRunner().invoke(main, ["check", "--json", "-c", str(site)])
    assert as_json.exit_code == 0, as_json.output
    [plan] = json.loads(as_json.stdout, parse_constant=_no_constant)["rtu_buses"]
    assert math.isfinite(plan["utilization"])
    assert math.isfinite(plan["one_silent"])
    assert plan["one_silent"] > plan["utilization"] > 1  # 1 ms cannot be kept; it says so


def _no_constant(name: str) -> float:
    raise AssertionError(f"check --json printed {name}, which is not JSON")


def test_check_plans_one_bus_for_two_paths_of_one_port(tmp_path: Path) -> None:
    """The planned load of a bus whose slaves name its port by two paths (a by-id link and
    the device) is one bus's: check showed two buses of one slave each, each at its own
    part of the load, so an overloaded bus looked fine."""
    adapter = tmp_path / "ttyUSB0"
    adapter.touch()
    link = tmp_path / "usb-FTDI-if00-port0"
    link.symlink_to(adapter)
    site = tmp_path / "site.yaml"
    text = TEXT.replace("/dev/ttyUSB0", str(link), 1).replace("/dev/ttyUSB0", str(adapter), 1)
    site.write_text(text, encoding="utf-8")
    result = CliRunner().invoke(main, ["check", "-c", str(site)])
    assert result.exit_code == 0, result.output
    buses = [line for line in result.stdout.splitlines() if line.startswith("rtu bus ")]
    assert len(buses) == 1, buses
    assert buses[0].startswith(f"rtu bus {link} (9600 8N1): 2 slaves, 3 requests")
