"""Config tests share these: parse a text as one program's config file and look at its errors.

`SITE` and `COLLECTOR` parse a text as the named file in a fixed folder (paths resolve against
it), so every test states its expectations as `file:line: key: message`. `site_head` is the
part of a site map every test writes the same way (site, uplink, signing, outbox). A `Mistake`
is one edit that breaks a config text and the one issue it must cause: tests keep tables of
them (`pytest.mark.parametrize`) instead of one copied body per mistake.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Generic, Literal, TypeVar

import pytest

from collector.config import CollectorConfig, parse_collector_config
from edge_agent.config import ConfigError, ConfigIssue, SiteConfig, parse_site_config

ConfigT = TypeVar("ConfigT")

# The example site map (configs/tankfarm.yaml), and its text.
EXAMPLE = Path(__file__).resolve().parents[2] / "configs" / "tankfarm.yaml"
EXAMPLE_TEXT = EXAMPLE.read_text(encoding="utf-8")


@dataclass(frozen=True)
class ConfigFile(Generic[ConfigT]):
    """How one program reads a config text: its parser, the file name and folder it pretends."""

    parser: Callable[[str, str, Path], ConfigT]
    file: str
    base: Path

    def at(self, base: Path) -> ConfigFile[ConfigT]:
        """The same file in `base`: a test's own folder, where the files it names must exist."""
        return replace(self, base=base)

    def parse(self, text: str) -> ConfigT:
        return self.parser(text, self.file, self.base)

    def issues_of(self, text: str) -> tuple[ConfigIssue, ...]:
        """The issues loading `text` reports (the test fails when it loads)."""
        with pytest.raises(ConfigError) as caught:
            self.parse(text)
        return caught.value.issues

    def only_issue(self, text: str) -> ConfigIssue:
        issues = self.issues_of(text)
        assert len(issues) == 1, "\n".join(map(str, issues))
        return issues[0]

    def issues_of_edit(
        self, text: str, old: str, new: str, *expected: tuple[int, str]
    ) -> tuple[ConfigIssue, ...]:
        """Edit `old` -> `new` in `text`: exactly the `expected` issues, in order, each as
        (lines below where `old` began, key). They are returned for their messages."""
        broken, line = edit(text, old, new)
        issues = self.issues_of(broken)
        assert [(i.line, i.path) for i in issues] == [
            (line + below, path) for below, path in expected
        ], "\n".join(map(str, issues))
        return issues

    def check_mistake(self, text: str, mistake: Mistake) -> None:
        """Make `mistake` in `text`: exactly its one issue, at its file, line and key."""
        broken, line = edit(text, mistake.old, mistake.new)
        issue = self.only_issue(broken)
        assert (issue.file, issue.line, issue.path) == (
            self.file,
            line + mistake.below,
            mistake.path,
        ), str(issue)
        mistake.check_message(issue.message)
        assert str(issue) == f"{self.file}:{line + mistake.below}: {mistake.path}: {issue.message}"


@dataclass(frozen=True)
class Mistake:
    """One edit of a config text (`old` -> `new`) and the issue it causes.

    The issue stands `below` lines under the line where `old` began (a key the edit adds).
    `message` is the whole message, how it starts or a part of it, as `match` says: a table
    pins whole sentences where the wording is the point, a part where only the fact is.
    """

    old: str
    new: str
    path: str
    message: str
    match: Literal["whole", "start", "part"] = "whole"
    below: int = 0

    def check_message(self, message: str) -> None:
        if self.match == "whole":
            assert message == self.message
        elif self.match == "start":
            assert message.startswith(self.message), message
        else:
            assert self.message in message, message


def mistake_id(mistake: Mistake) -> str:
    """A test id that names the key and what the message says."""
    return f"{mistake.path}:{mistake.message[:40]}"


SITE = ConfigFile[SiteConfig](parse_site_config, "site.yaml", Path("/etc/ganzhi"))
COLLECTOR = ConfigFile[CollectorConfig](
    parse_collector_config, "collector.yaml", Path("/srv/collector")
)


def edit(text: str, old: str, new: str) -> tuple[str, int]:
    """Replace the only occurrence of `old`; return the text and the 1-based line it starts on."""
    assert text.count(old) == 1, f"{old!r} occurs {text.count(old)} times"
    return text.replace(old, new), line_of(text, old)


def line_of(text: str, fragment: str) -> int:
    """The 1-based line the only occurrence of `fragment` starts on."""
    assert text.count(fragment) == 1, f"{fragment!r} occurs {text.count(fragment)} times"
    return text.count("\n", 0, text.index(fragment)) + 1


def site_head(
    domain: str = "WHP",
    *,
    enterprise: str = "91360100MA35GW001H",
    district: str = "360100",
    gateway: str = "91360100MA35GW001H-GW01",
    broker_port: int = 1883,
    mine_code: str = "",
    uplink: str = "",
    outbox: str = "",
) -> str:
    """The first eight lines of a site map, up to where `devices:` begins.

    `uplink` and `outbox` are more `, key: value` pairs for those sections' flow mappings;
    `mine_code` is a coal mine's (domain MK needs one).
    """
    mine = f"  mine_code: '{mine_code}'\n" if mine_code else ""
    return (
        "site:\n"
        f"  enterprise: {enterprise}\n"
        f'  district: "{district}"\n'
        f"  domain: {domain}\n"
        f"  gateway: {gateway}\n"
        f"{mine}"
        f'uplink: {{broker: "mqtt://127.0.0.1:{broker_port}", collector_key: keys/collector.pub'
        f"{uplink}}}\n"
        "signing: {key_file: keys/gateway.key}\n"
        f"outbox: {{path: state/outbox.db{outbox}}}\n"
    )


# The smallest collector.yaml: broker, storage, signing and the API's listen address; a test
# adds its own `api:` keys below it.
COLLECTOR_HEAD = """\
broker: "mqtt://127.0.0.1:1883"
storage: {url: "sqlite:///state/collector.db"}
signing: {key_file: keys/collector.key}
api:
  listen: "127.0.0.1:8080"
"""

# The device most unit tests read their points from: one Modbus TCP PLC; its points follow.
PLC_DEVICE = """\
devices:
  - id: plc
    driver: modbus_tcp
    host: 127.0.0.1
    poll: 1s
    points:
"""

# One OPC UA device that logs in with a password kept in a file of its own (opcua.pass).
OPCUA_LOGIN_DEVICE = """\
devices:
  - id: slope-1
    driver: opcua
    endpoint: "opc.tcp://10.0.0.5:4840"
    username: agent
    password_file: opcua.pass
    points:
      - {point: S01-GX-01, quota: BP-GX, node: "ns=2;s=Slope.G1.X"}
"""

# A site map whose one device is a Modbus TCP PLC; the two devices below are items to add to it.
TCP_SITE = (
    site_head()
    + """\
devices:
  - {id: plc, driver: modbus_tcp, host: 10.0.0.9, poll: 1s, points: [
     {point: T1, quota: WHP-LT, address: {table: holding, start: 0, type: float32}}]}
"""
)
OPCUA_POLL_DEVICE = """\
  - {id: slope, driver: opcua, endpoint: 'opc.tcp://10.0.0.5', mode: poll,
     points: [{point: S1, quota: BP-GX, node: 'ns=2;s=Slope.G1.X'}]}
"""
SERIAL_GAS_DEVICE = """\
  - {id: gas, driver: serial, port: /dev/ttyS1, baudrate: 9600, poll: 1s, points: [
     {point: G1-TOX, quota: WHP-TOX, pattern: 'H2S=(?P<value>[0-9.]+)'}]}
"""
# The three drivers as DESIGN section 7 writes them, plus a second slave on the bus.
DESIGN_DEVICES = """\
devices:
  - id: bus-1
    driver: modbus_rtu
    port: /dev/ttyUSB0
    baudrate: 9600
    parity: N
    stopbits: 1
    unit_id: 3
    poll: 5s
    points:
      - {point: F01-PC-01, quota: YHBZ-PC, address: {table: input, start: 0, type: uint16}}
  - id: bus-2
    driver: modbus_rtu
    port: /dev/ttyUSB0
    baudrate: 9600
    parity: N
    unit_id: 4
    poll: 1s
    timeout: 200ms
    points:
      - {point: F02-PC-01, quota: YHBZ-PC, address: {table: input, start: 0, type: uint16}}
      - {point: F02-PC-02, quota: YHBZ-PC, address: {table: input, start: 40, type: uint16}}
  - id: slope-1
    driver: opcua
    endpoint: "opc.tcp://10.0.0.5:4840"
    mode: subscribe
    security:
      policy: Basic256Sha256
      mode: SignAndEncrypt
      cert: pki/agent-cert.pem
      key: pki/agent-key.pem
      server_cert: /etc/pki/slope-server.der
    points:
      - {point: S01-GX-01, quota: BP-GX, node: "ns=2;s=Slope.G1.X"}
  - id: gas-7
    driver: serial
    port: /dev/ttyS1
    baudrate: 9600
    request: "RD\\r\\n"
    poll: 2s
    points:
      - {point: W01-TOX-01, quota: WHP-TOX, pattern: 'H2S=(?P<value>-?[0-9.]+)'}
"""


def tcp_device_site(
    host: str, port: int, points: str, *, poll: str = "100ms", timeout: str = "1s"
) -> str:
    """A site map with one Modbus TCP device, `tank-plc` (unit 1); `points` are its YAML items.

    `points` is indented for the device's `points:` list (six spaces, one item a line).
    """
    return (
        site_head()
        + f"""\
devices:
  - id: tank-plc
    driver: modbus_tcp
    host: {host}
    port: {port}
    unit_id: 1
    poll: {poll}
    timeout: {timeout}
    points:
{points}"""
    )


def at_gateway_key_line(site: Path) -> str:
    """How a refusal of the gateway key begins: `<site>:<line>: signing.key_file: `."""
    line = line_of(site.read_text(encoding="utf-8"), "  key_file:")
    return f"{site}:{line}: signing.key_file: "
