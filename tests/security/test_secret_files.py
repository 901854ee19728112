"""Secrets from files: `token_file` and `password_file` keep secrets out of the YAML.

A missing, unreadable, empty or group/world-readable secret file is a config error naming
file, line and key, before anything starts; a good one is read (one line end dropped).
Collector API tokens, the PostgreSQL password, and the agent's OPC UA password.
"""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from collector.config import parse_collector_config
from edge_agent.config import parse_site_config
from edge_agent.kinds.opcua import OpcUaDevice
from tests.support.config_files import COLLECTOR, OPCUA_LOGIN_DEVICE, SITE, site_head

FILE = "collector.yaml"


def _config(storage: str = '  url: "sqlite:///state/c.db"\n', keys: str = "") -> str:
    return (
        'broker: "mqtt://127.0.0.1:1883"\n'
        "storage:\n"
        f"{storage}"
        "signing: {key_file: keys/c.key}\n"
        "api:\n"
        '  listen: "127.0.0.1:8080"\n'
        "  tokens:\n"
        f"    - {{name: city, {keys}districts: ['360100']}}\n"
    )


def _secret(folder: Path, name: str, text: str, mode: int = 0o600) -> Path:
    path = folder / name
    path.write_text(text, encoding="utf-8")
    path.chmod(mode)
    return path


def test_a_token_file_gives_the_token(tmp_path: Path) -> None:
    _secret(tmp_path, "city.token", "s3cret-from-a-file\n")
    config = parse_collector_config(_config(keys="token_file: city.token, "), FILE, tmp_path)
    [token] = config.api.tokens
    assert token.secret.get_secret_value() == "s3cret-from-a-file"
    assert "s3cret" not in repr(config)


@pytest.mark.parametrize(
    ("mode", "content", "fragment"),
    [
        (0o640, "x", "open to group or others (mode 0640)"),
        (0o604, "x", "open to group or others (mode 0604)"),
        (0o600, "\n", "is empty"),
        (None, "", "does not exist"),
        (0o000, "x", "cannot read"),
    ],
)
def test_a_bad_token_file_is_a_config_error_with_file_line_and_key(
    tmp_path: Path, mode: int | None, content: str, fragment: str
) -> None:
    if mode is not None:
        _secret(tmp_path, "city.token", content, mode)
    if mode == 0o000 and os.geteuid() == 0:
        pytest.skip("root reads any file")
    issue = COLLECTOR.at(tmp_path).only_issue(_config(keys="token_file: city.token, "))
    assert (issue.file, issue.line, issue.path) == (FILE, 8, "api.tokens[0].token_file")
    assert fragment in issue.message


def test_a_token_needs_exactly_one_of_token_and_token_file(tmp_path: Path) -> None:
    _secret(tmp_path, "city.token", "abc")
    both = COLLECTOR.at(tmp_path).only_issue(_config(keys='token: "abc", token_file: city.token, '))
    neither = COLLECTOR.at(tmp_path).only_issue(_config())
    for issue in (both, neither):
        assert (issue.line, issue.path) == (8, "api.tokens[0].token")
        assert "token or token_file" in issue.message


def test_a_password_file_completes_the_postgresql_url(tmp_path: Path) -> None:
    _secret(tmp_path, "db.pass", "p@ss:w/rd\n")
    storage = '  url: "postgresql://ganzhi@db.example:5432/gz"\n  password_file: db.pass\n'
    config = parse_collector_config(_config(storage, 'token: "t", '), FILE, tmp_path)
    assert config.storage.url == "postgresql://ganzhi:p%40ss%3Aw%2Frd@db.example:5432/gz"
    assert config.storage.password_file == tmp_path / "db.pass"


@pytest.mark.parametrize(
    ("storage", "line", "key", "fragment"),
    [
        (
            '  url: "postgresql://ganzhi@db/gz"\n  password_file: db.pass\n',
            4,
            "storage.password_file",
            "open to group or others",
        ),
        (
            '  url: "sqlite:///state/c.db"\n  password_file: ok.pass\n',
            4,
            "storage.password_file",
            "goes with a postgresql:// url",
        ),
        (
            '  url: "postgresql://ganzhi:inline@db/gz"\n  password_file: ok.pass\n',
            3,
            "storage.url",
            "keep it in password_file only",
        ),
        (
            '  url: "postgresql://db/gz"\n  password_file: ok.pass\n',
            3,
            "storage.url",
            "needs a user",
        ),
        (
            '  url: "postgresql://ganzhi@db/gz"\n  password_file: missing.pass\n',
            4,
            "storage.password_file",
            "does not exist",
        ),
    ],
)
def test_a_bad_password_file_is_a_config_error_with_file_line_and_key(
    tmp_path: Path, storage: str, line: int, key: str, fragment: str
) -> None:
    _secret(tmp_path, "db.pass", "pw", 0o644)
    _secret(tmp_path, "ok.pass", "pw")
    issue = COLLECTOR.at(tmp_path).only_issue(_config(storage, 'token: "t", '))
    assert (issue.file, issue.line, issue.path) == (FILE, line, key)
    assert fragment in issue.message


_SITE = site_head("BP") + OPCUA_LOGIN_DEVICE


def test_the_agent_reads_an_opc_ua_password_from_a_private_file(tmp_path: Path) -> None:
    _secret(tmp_path, "opcua.pass", "opc-secret\n")
    site = parse_site_config(_SITE, "site.yaml", tmp_path)
    [device] = site.devices
    assert isinstance(device, OpcUaDevice)
    assert device.login_password == "opc-secret"  # noqa: S105 - the test file's content
    assert "opc-secret" not in repr(site)


@pytest.mark.parametrize(
    ("text", "mode", "fragment"),
    [
        (_SITE, 0o644, "open to group or others (mode 0644)"),
        (_SITE.replace("    username: agent\n", ""), 0o600, "needs a username"),
        (
            _SITE.replace("    username: agent\n", "    username: agent\n    password: x\n"),
            0o600,
            "not both",
        ),
    ],
)
def test_a_bad_opc_ua_password_file_names_file_line_and_key(
    tmp_path: Path, text: str, mode: int, fragment: str
) -> None:
    _secret(tmp_path, "opcua.pass", "opc-secret", mode)
    issue = SITE.at(tmp_path).only_issue(text)
    line = text.splitlines().index("    password_file: opcua.pass") + 1
    assert (issue.file, issue.line, issue.path) == ("site.yaml", line, "devices[0].password_file")
    assert fragment in issue.message


@pytest.mark.parametrize(
    ("keys", "key", "secret"),
    [
        ('token: " padded ", ', "token", None),
        ('token: "令牌", ', "token", None),
        ('token: "tab\\tin", ', "token", None),
        ("token_file: city.token, ", "token_file", "two\nlines"),
    ],
)
def test_a_token_no_bearer_header_can_carry_is_a_config_error(
    tmp_path: Path, keys: str, key: str, secret: str | None
) -> None:
    """Found by a hostile tester: these passed `check`, then no request could present them.

    A header's value loses the spaces at its ends, carries no line break, and reaches the
    API as Latin-1, so `Authorization: Bearer 令牌` is never the token 令牌.
    """
    if secret is not None:
        _secret(tmp_path, "city.token", secret)
    issue = COLLECTOR.at(tmp_path).only_issue(_config(keys=keys))
    assert (issue.file, issue.line, issue.path) == (FILE, 8, f"api.tokens[0].{key}")
    assert "printable ASCII" in issue.message
    assert "令牌" not in issue.message
    assert "padded" not in issue.message


def test_a_token_name_that_is_not_one_line_of_text_is_a_config_error(tmp_path: Path) -> None:
    """As `collector tokens add --name` refuses it: the name is shown in logs and the audit."""
    text = _config(keys='token: "t", ').replace("name: city,", 'name: "city\\nforged row",')
    issue = COLLECTOR.at(tmp_path).only_issue(text)
    assert (issue.line, issue.path) == (8, "api.tokens[0].name")
    assert "printable text on one line" in issue.message
