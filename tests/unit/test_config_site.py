"""The site map: the example loads, and every kind of mistake names the right line and key."""

from __future__ import annotations

import re
from pathlib import Path

import pytest
import yaml
from hypothesis import given, settings
from hypothesis import strategies as st

from configkit.durations import format_duration, format_size, parse_duration, parse_size
from configkit.issues import format_path
from configkit.yamllines import StrictLoader, parse_yaml
from edge_agent.config import ConfigError, ConfigIssue
from edge_agent.config import load_site_config as load
from edge_agent.core.points import Limits, resolve_points
from edge_agent.kinds.modbus import ModbusTcpDevice
from tests.support.config_files import (
    EXAMPLE,
    EXAMPLE_TEXT,
    SITE,
    Mistake,
    edit,
    line_of,
    mistake_id,
)

# --- the example -------------------------------------------------------------------------


def test_example_loads_with_resolved_paths_and_defaults() -> None:
    config = load(EXAMPLE)
    folder = EXAMPLE.parent
    assert config.site.gateway == "91360100MA35GW001H-GW01"
    assert config.site.district == "360100"
    assert (config.uplink.broker.host, config.uplink.broker.port) == ("127.0.0.1", 1883)
    assert not config.uplink.broker.tls
    assert config.uplink.collector_key == folder / "keys" / "collector.pub"
    assert config.signing.key_file == folder / "keys" / "gateway.key"
    assert config.outbox.path == folder / "state" / "outbox.db"
    assert config.outbox.max_bytes == 2 * 1024**3
    assert config.outbox.flush_interval == pytest.approx(0.2)
    assert config.uplink.session_expiry == 7 * 86400
    assert [device.id for device in config.devices] == ["tank-plc", "gas-t1"]
    assert config.devices[0].poll == 1.0
    assert isinstance(config.devices[0], ModbusTcpDevice)  # devices are a union of drivers
    assert config.devices[0].unit_id == 1


def test_example_points_expand_the_template_with_the_prefix() -> None:
    points = resolve_points(SITE.parse(EXAMPLE_TEXT))
    codes = [point.point for point in points]
    assert len(codes) == len(set(codes)) == 15
    gas = [point for point in points if point.device_id == "gas-t1"]
    assert [(p.point, p.quota, p.register.table, p.register.start) for p in gas] == [
        ("T001-LEL-01", "WHP-LEL", "input", 0),
        ("T001-TOX-01", "WHP-TOX", "input", 2),
    ]
    level = points[3]
    register = level.register
    assert (level.point, register.table, register.start, register.dtype) == (
        "T002-LT-01",
        "holding",
        10,
        "float32",
    )
    assert (register.byte_order, register.word_order, register.register_count) == ("big", "big", 2)
    assert level.unit == level.canonical_unit == "m"
    assert level.thresholds == Limits(low_low=0.5, low=1.0, high=8.5, high_high=9.0)


def test_one_template_on_two_devices_gives_distinct_codes() -> None:
    text = EXAMPLE_TEXT + (
        "  - {id: gas-2, driver: modbus_tcp, host: 10.0.0.12, poll: 2s,\n"
        "     template: gas-detector, point_prefix: G002-,\n"
        "     points: [{point: G002-WT-01, quota: WHP-WT,"
        " address: {table: input, start: 8, type: int16}, scale: 0.1}]}\n"
    )
    config = SITE.parse(text)
    assert [code for code, _ in config.points_of(config.devices[2])] == [
        "G002-LEL-01",
        "G002-TOX-01",
        "G002-WT-01",
    ]


def test_thresholds_and_deadband_resolve_to_the_canonical_unit() -> None:
    text, _ = edit(
        EXAMPLE_TEXT,
        "        thresholds: {low_low: 0.5, low: 1.0, high: 8.5, high_high: 9.0}\n"
        "        deadband: 0.05\n      - point: T001-TT-01",
        "        thresholds: {low_low: 500, high: 8500}\n"
        "        deadband: 50\n      - point: T001-TT-01",
    )
    text, _ = edit(text, "        scale: 1.0                    #", "        unit: mm\n        #")
    level = resolve_points(SITE.parse(text))[0]
    assert (level.unit, level.canonical_unit) == ("mm", "m")
    assert level.thresholds.low_low == pytest.approx(0.5)
    assert level.thresholds.high == pytest.approx(8.5)
    assert level.thresholds.low is None
    assert level.deadband == pytest.approx(0.05)


def test_relative_paths_resolve_against_the_files_folder(tmp_path: Path) -> None:
    folder = tmp_path / "site"
    folder.mkdir()
    text, _ = edit(
        EXAMPLE_TEXT, "  key_file: keys/gateway.key", "  key_file: /srv/keys/gateway.key"
    )
    (folder / "site.yaml").write_text(text, encoding="utf-8")
    config = load(folder / "site.yaml")
    assert config.uplink.collector_key == folder / "keys" / "collector.pub"
    assert config.outbox.path == folder / "state" / "outbox.db"
    assert config.signing.key_file == Path("/srv/keys/gateway.key")


def test_mqtts_broker_defaults_to_port_8883_with_tls_files() -> None:
    text, _ = edit(EXAMPLE_TEXT, '"mqtt://127.0.0.1:1883"', '"mqtts://broker.example.cn"')
    text, _ = edit(text, "  # tls: {ca:", "  tls: {ca:")
    config = SITE.parse(text)
    assert (config.uplink.broker.host, config.uplink.broker.port) == ("broker.example.cn", 8883)
    assert config.uplink.broker.tls
    assert config.uplink.tls is not None
    assert config.uplink.tls.cert == SITE.base / "keys" / "gateway.crt"


# --- each mistake names its line and key -----------------------------------------------------


MODBUS_PORT = "    port: 5020\n    unit_id: 1\n    poll: 1s"
MISTAKES = [
    Mistake(
        "    timeout: 1s\n",
        "    timeout: 1s\n    tiemout: 2s\n",
        "devices[0].tiemout",
        "unknown key; did you mean 'timeout'?",
        below=1,
    ),
    Mistake(
        "    unit_id: 1\n    poll: 1s",
        "    unit_id: 1\n    port: 5021\n    poll: 1s",
        "devices[0].port",
        f"duplicate key (first at line {line_of(EXAMPLE_TEXT, MODBUS_PORT)})",
        below=1,
    ),
    Mistake(
        MODBUS_PORT,
        MODBUS_PORT.replace("5020", '"abc"'),
        "devices[0].port",
        "Input should be a valid integer, got 'abc'",
    ),
    Mistake(
        "{table: holding, start: 10,",
        "{table: holding, start: 70000,",
        "devices[0].points[3].address.start",
        "65535",
        "part",
    ),
    Mistake(
        "{table: holding, start: 22,",
        "{table: holding, start: 65535,",
        "devices[0].points[7].address.start",
        "float32 needs 2 registers: from 65535 it ends at 65536, past the last address 65535",
    ),
    *(
        Mistake(
            "    poll: 2s\n",
            f"    poll: {poll}\n",
            "devices[1].poll",
            "must be at least 1ms",
            "start",
        )
        for poll in ("0s", "0", "-1", "0ms")
    ),
    Mistake(
        "  enterprise: 91360100MA35GW001H",
        "  enterprise: 91360100MA35GW001J",
        "site.enterprise",
        "enterprise code check character is 'J', GB 32100 gives 'H'",
    ),
    Mistake(
        "  gateway: 91360100MA35GW001H-GW01",
        "  gateway: 914403001922038216-GW01",
        "site.gateway",
        "gateway '914403001922038216-GW01' does not start with enterprise '91360100MA35GW001H'",
    ),
    Mistake(
        "        quota: WHP-TOX ",
        "        quota: WHP-H2S ",
        "templates.gas-detector.points[1].quota",
        "quota WHP-H2S is not in the catalogue",
        "start",
    ),
    Mistake(
        "        quota: WHP-PT                 #",
        "        quota: WHP-PT\n        unit: psi #",
        "devices[0].points[2].unit",
        "unit 'psi' is not accepted for WHP-PT; accepted: MPa, kPa, bar",
        below=1,
    ),
    Mistake(
        "      - point: T003-TT-01",
        "      - point: T001-TT-01",
        "devices[0].points[7].point",
        "point code 'T001-TT-01' is already used by devices[0].points[1]",
    ),
    Mistake(
        "{high: 0.6, high_high: 0.8}\n        deadband: 0.005\n      - point: T002-LT-01",
        "{high: 0.9, high_high: 0.8}\n        deadband: 0.005\n      - point: T002-LT-01",
        "devices[0].points[2].thresholds.high_high",
        "high_high (0.8) is below high (0.9)",
        "start",
    ),
]


@pytest.mark.parametrize("mistake", MISTAKES, ids=mistake_id)
def test_one_mistake_is_one_issue_at_its_line_and_key(mistake: Mistake) -> None:
    SITE.check_mistake(EXAMPLE_TEXT, mistake)


def test_strict_loader_rejects_duplicates_through_plain_yaml_load() -> None:
    with pytest.raises(yaml.YAMLError, match="duplicate key a"):
        yaml.load("a: 1\nb: 2\na: 3\n", Loader=StrictLoader)  # noqa: S506 - a SafeLoader subclass


def test_coal_mine_needs_a_mine_code() -> None:
    text, _ = edit(EXAMPLE_TEXT, "  domain: WHP ", "  domain: MK ")
    issue = SITE.only_issue(text)
    assert (issue.line, issue.path) == (line_of(EXAMPLE_TEXT, "site:"), "site.mine_code")
    assert "mine_code" in issue.message
    text, _ = edit(text, "  domain: MK ", "  mine_code: '360100001'\n  domain: MK ")
    assert SITE.parse(text).site.mine_code == "360100001"


@pytest.mark.parametrize("driver", ["bacnet", "OPCUA", "'5'"])
def test_unknown_driver_is_one_clear_error(driver: str) -> None:
    text = EXAMPLE_TEXT + (
        f"  - {{id: other, driver: {driver}, endpoint: 'opc.tcp://10.0.0.5:4840',\n"
        "     points: [{point: S01-GX-01, quota: BP-GX, node: 'ns=2;s=Slope.G1.X'}]}\n"
    )
    issue = SITE.only_issue(text)
    assert (issue.line, issue.path) == (line_of(text, "id: other"), "devices[2].driver")
    assert "is not supported by this version" in issue.message
    assert issue.message.endswith("supported: modbus_tcp, modbus_rtu, opcua, serial")


def test_device_without_a_driver_names_the_choices() -> None:
    text = EXAMPLE_TEXT + "  - {id: other, host: h, poll: 2s, points: []}\n"
    issue = SITE.only_issue(text)
    assert (issue.line, issue.path) == (line_of(text, "id: other"), "devices[2].driver")
    assert issue.message == "missing required key; one of modbus_tcp, modbus_rtu, opcua, serial"


def test_duplicate_point_code_through_a_template() -> None:
    text = EXAMPLE_TEXT + (
        "  - id: gas-2\n"
        "    driver: modbus_tcp\n"
        "    host: 10.0.0.12\n"
        "    poll: 2s\n"
        "    template: gas-detector\n"
        "    point_prefix: T001-\n"
    )
    issues = SITE.issues_of(text)
    line = len(text.splitlines())
    assert [(i.line, i.path) for i in issues] == [(line, "devices[2].point_prefix")] * 2
    assert issues[0].message == (
        "point code 'T001-LEL-01' is already used by devices[1] (template 'gas-detector')"
    )


def test_template_needs_a_prefix_and_must_exist() -> None:
    text = EXAMPLE_TEXT + (
        "  - {id: gas-2, driver: modbus_tcp, host: h, poll: 2s, template: gas-detector}\n"
        "  - {id: gas-3, driver: modbus_tcp, host: h, poll: 2s, template: nope, point_prefix: N-}\n"
    )
    first = SITE.issues_of(text)
    assert [(i.path, i.line) for i in first] == [
        ("devices[2].template", line_of(text, "id: gas-2, driver: modbus_tcp, host: h"))
    ]
    text = text.replace("template: gas-detector}", "template: gas-detector, point_prefix: G2-}")
    second = SITE.only_issue(text)
    assert (second.path, second.line) == ("devices[3].template", line_of(text, "id: gas-3"))
    assert "template 'nope' is not defined" in second.message


def test_prefix_that_makes_template_codes_too_long() -> None:
    prefix = "P" * 60
    issues = SITE.issues_of_edit(
        EXAMPLE_TEXT,
        "    point_prefix: T001-  ",
        f"    point_prefix: {prefix}  ",
        (0, "devices[1].point_prefix"),
        (0, "devices[1].point_prefix"),
    )
    assert issues[0].message.endswith("(point_prefix + template point)")


def test_duplicate_device_id() -> None:
    text = EXAMPLE_TEXT + (
        "  - {id: gas-t1, driver: modbus_tcp, host: h, poll: 2s,\n"
        "     points: [{point: X-1, quota: WHP-WT,\n"
        "                address: {table: input, start: 8, type: int16}}]}\n"
    )
    issue = SITE.only_issue(text)
    assert (issue.path, issue.line) == ("devices[2].id", line_of(text, "{id: gas-t1,"))
    assert issue.message == "device id 'gas-t1' is already used by devices[1]"


def test_device_without_points_or_template() -> None:
    text = EXAMPLE_TEXT + "  - {id: empty, driver: modbus_tcp, host: h, poll: 2s}\n"
    issue = SITE.only_issue(text)
    assert (issue.path, issue.line) == ("devices[2].points", line_of(text, "{id: empty,"))


def test_address_rules_for_bits_and_coils() -> None:
    SITE.issues_of_edit(
        EXAMPLE_TEXT,
        "{table: input, start: 2, type: float32}",
        "{table: coil, start: 2, type: float32, bit: 3}",
        (0, "templates.gas-detector.points[1].address.bit"),
        (0, "templates.gas-detector.points[1].address.type"),
    )
    text, _ = edit(
        EXAMPLE_TEXT,
        "{table: input, start: 2, type: float32}",
        "{table: input, start: 2, type: bool, bit: 15}",
    )
    assert resolve_points(SITE.parse(text))[-1].register.bit == 15


def test_yaml_syntax_error_names_line_and_column() -> None:
    text, line = edit(
        EXAMPLE_TEXT, "  gateway: 91360100MA35GW001H-GW01", "  gateway: 91360100MA35GW001H-GW01: x"
    )
    column = text.splitlines()[line - 1].index(": x") + 1
    issue = SITE.only_issue(text)
    assert str(issue) == f"{SITE.file}:{line}:{column}: mapping values are not allowed here"


def test_unreadable_file_is_a_config_error(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="cannot read"):
        load(tmp_path / "missing.yaml")
    (tmp_path / "latin1.yaml").write_bytes("site: \xe9\n".encode("latin-1"))
    with pytest.raises(ConfigError, match="not UTF-8"):
        load(tmp_path / "latin1.yaml")


def test_every_issue_is_reported_at_once() -> None:
    text, enterprise = edit(EXAMPLE_TEXT, "91360100MA35GW001H      #", "91360100MA35GW001J      #")
    text, broker = edit(text, '"mqtt://127.0.0.1:1883"', '"http://127.0.0.1:1883"')
    text, size = edit(text, "max_bytes: 2GiB", "max_bytes: 2GB")
    text, start = edit(text, "{table: holding, start: 20,", "{table: holding, start: 70000,")
    text, poll = edit(text, "    poll: 2s\n", "    poll: 0s\n")
    issues = SITE.issues_of(text)
    assert [(i.line, i.path) for i in issues] == [
        (enterprise, "site.enterprise"),
        (broker, "uplink.broker"),
        (size, "outbox.max_bytes"),
        (start, "devices[0].points[6].address.start"),
        (poll, "devices[1].poll"),
    ]
    assert str(ConfigError(issues)).count("\n") == len(issues) - 1


def test_missing_key_points_at_its_parent() -> None:
    text, _ = edit(EXAMPLE_TEXT, "  key_file: keys/gateway.key          #", "  #")
    issue = SITE.only_issue(text)
    assert (issue.line, issue.path, issue.message) == (
        line_of(EXAMPLE_TEXT, "signing:"),
        "signing.key_file",
        "missing required key",
    )


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("", "the file is empty"),
        ("- a\n- b\n", "the file holds a list"),
        ("a: &x [*x]\n", "recursive data is not allowed"),
        ("a: 2001-02-30\n", "cannot read '2001-02-30' as timestamp"),
        ("a: 0b_\n", "cannot read '0b_' as int"),
        ("a: \x00\n", "character U+0000 is not allowed"),
        ("[" * 5000, "nested too deeply"),
    ],
)
def test_odd_documents_are_config_errors(text: str, message: str) -> None:
    assert message in str(SITE.issues_of(text)[0])


def test_line_index_records_every_key_path() -> None:
    parsed = parse_yaml(EXAMPLE_TEXT, SITE.file)
    assert parsed.line_of(("devices", 0, "points", 2, "address", "start")) == line_of(
        EXAMPLE_TEXT, "{table: holding, start: 4,"
    )
    assert parsed.line_of(("devices", 1, "point_prefix")) == line_of(
        EXAMPLE_TEXT, "    point_prefix: T001-"
    )
    assert parsed.line_of(("devices", 1, "no-such-key")) == line_of(EXAMPLE_TEXT, "  - id: gas-t1")
    assert format_path(("devices", 0, "points", 2, "address", "start")) == (
        "devices[0].points[2].address.start"
    )


# --- fuzzing: nothing but ConfigError ever escapes ----------------------------------------------


def _parse_or_config_error(text: str) -> None:
    issues: tuple[ConfigIssue, ...] = ()
    try:
        SITE.parse(text)
    except ConfigError as exc:
        issues = exc.issues or (ConfigIssue("", None, "", "a ConfigError without issues"),)
    assert all(re.match(rf"^{SITE.file}(:\d+){{0,2}}: ", str(issue)) for issue in issues)


@settings(max_examples=300)
@given(st.text())
def test_fuzzed_text_raises_only_config_errors(text: str) -> None:
    _parse_or_config_error(text)


_LINES = EXAMPLE_TEXT.splitlines(keepends=True)
_TOKENS = st.sampled_from(
    [
        "",
        " ",
        ":",
        "-",
        "{",
        "}",
        "[",
        "]",
        "&a ",
        "*a",
        "!!binary ",
        "0",
        "-1",
        "1e999",
        ".nan",
        "null",
        "yes",
        "70000",
        "\t",
        "'",
        '"',
        "<<: ",
        "?",
        "\n",
        "point",
        "template: gas-detector",
        "driver: opcua",
        "2001-02-30",
        "0b_",
    ]
)


@st.composite
def mutated_examples(draw: st.DrawFn) -> str:
    lines = list(_LINES)
    for _ in range(draw(st.integers(min_value=1, max_value=4))):
        index = draw(st.integers(min_value=0, max_value=len(lines) - 1))
        action = draw(st.sampled_from(["drop", "repeat", "splice", "indent", "dedent"]))
        line = lines[index]
        if action == "drop":
            del lines[index]
        elif action == "repeat":
            lines.insert(index, line)
        elif action == "splice":
            at = draw(st.integers(min_value=0, max_value=len(line)))
            lines[index] = line[:at] + draw(_TOKENS) + line[at:]
        elif action == "indent":
            lines[index] = "  " + line
        else:
            lines[index] = line.removeprefix("  ")
    return "".join(lines)


@settings(max_examples=300)
@given(mutated_examples())
def test_mutated_examples_raise_only_config_errors(text: str) -> None:
    _parse_or_config_error(text)


# --- value syntaxes -----------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "seconds"),
    [("500ms", 0.5), ("1s", 1.0), ("5m", 300.0), ("1h", 3600.0), ("7d", 604800.0), ("1.5s", 1.5)],
)
def test_durations(text: str, seconds: float) -> None:
    assert parse_duration(text) == pytest.approx(seconds)
    assert parse_duration(format_duration(seconds)) == pytest.approx(seconds)


@pytest.mark.parametrize("text", ["", "5", "s", "-1s", "1 week", "1e3s", "5M", "1.s"])
def test_bad_durations(text: str) -> None:
    with pytest.raises(ValueError, match="500ms, 1s, 5m"):
        parse_duration(text)


@pytest.mark.parametrize(
    ("value", "size"),
    [("64MiB", 64 << 20), ("2GiB", 2 << 30), ("512KiB", 512 << 10), (4096, 4096), ("100", 100)],
)
def test_sizes(value: str | int, size: int) -> None:
    assert parse_size(value) == size
    assert parse_size(format_size(size)) == size


@pytest.mark.parametrize("value", ["2GB", "64MB", "1.5", "-1", "lots", True, -5])
def test_bad_sizes(value: str | int) -> None:
    with pytest.raises(ValueError, match="size"):
        parse_size(value)


# --- alarm thresholds (edge alarms) ------------------------------------------------------------


def test_example_gas_points_use_gas_levels() -> None:
    points = {p.point: p for p in resolve_points(SITE.parse(EXAMPLE_TEXT))}
    lel = points["T001-LEL-01"].thresholds
    assert (lel.level1, lel.level2, lel.high) == (20.0, 50.0, None)
    assert points["T003-TOX-01"].thresholds.level1 == 10.0


def test_threshold_outside_the_indicators_alarm_vocabulary() -> None:
    text, line = edit(
        EXAMPLE_TEXT,
        "{high: 0.6, high_high: 0.8}\n        deadband: 0.005\n      - point: T002-LT-01",
        "{level1: 0.6, high_high: 0.8}\n        deadband: 0.005\n      - point: T002-LT-01",
    )
    issue = SITE.only_issue(text)
    assert (issue.line, issue.path) == (line, "devices[0].points[2].thresholds.level1")
    assert issue.message.startswith("threshold level1 (alarm level L1) is not in the alarm")
    assert issue.message.endswith("of WHP-PT: LL, L, H, HH")
