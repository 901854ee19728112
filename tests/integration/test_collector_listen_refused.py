"""An `api.listen` the collector cannot listen on is refused at its line before anything starts.

A port another program holds, or an address that is not this host's, passed `check`; `serve`
opened (and created) its database, then stopped with a bare "[Errno 98] Address already in
use" naming neither the address nor the key. Now `serve` tries the address first and exits 2
naming the line, as the agent does for `metrics.listen`. `check` does not try it: the
collector it checks for may be the one listening there.
"""

from __future__ import annotations

import socket
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.support.cli_runs import collector_cli, in_a_process, refused_before_start

# TEST-NET-1 (RFC 5737): no interface of this host has it; binding to it sends nothing.
NOT_THIS_HOST = "192.0.2.1"
LISTEN_LINE = 5


def _config(folder: Path, listen: str) -> Path:
    config = folder / "collector.yaml"
    config.write_text(
        'broker: "mqtt://127.0.0.1:1"\n'
        'storage: {url: "sqlite:///state/collector.db"}\n'
        "signing: {key_file: keys/collector.key}\n"
        "api:\n"
        f'  listen: "{listen}"\n'
        '  tokens: [{name: p, token: "t", districts: ["*"]}]\n',
        encoding="utf-8",
    )
    assert collector_cli("keys", "init", "-c", str(config)).exit_code == 0
    return config


@pytest.fixture
def taken_port() -> Iterator[int]:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as holder:
        holder.bind(("127.0.0.1", 0))
        holder.listen()
        yield holder.getsockname()[1]


@pytest.mark.timeout(60)  # without the refusal the collector would serve on: fail, never hang
def test_serve_refuses_a_port_another_program_holds(tmp_path: Path, taken_port: int) -> None:
    config = _config(tmp_path, f"127.0.0.1:{taken_port}")
    done = in_a_process("collector", "serve", "-c", str(config), cwd=tmp_path)
    says = f"{config}:{LISTEN_LINE}: api.listen: cannot listen on 127.0.0.1:{taken_port}:"
    refused_before_start(done, says, tmp_path / "state", "database")
    assert "address already in use" in done.stderr.lower()


@pytest.mark.timeout(60)
def test_serve_refuses_an_address_not_of_this_host(tmp_path: Path) -> None:
    config = _config(tmp_path, f"{NOT_THIS_HOST}:8080")
    done = in_a_process("collector", "serve", "-c", str(config), cwd=tmp_path)
    says = f"{config}:{LISTEN_LINE}: api.listen: cannot listen on {NOT_THIS_HOST}:8080:"
    refused_before_start(done, says, tmp_path / "state", "database")


def test_check_does_not_try_the_address(tmp_path: Path, taken_port: int) -> None:
    config = _config(tmp_path, f"127.0.0.1:{taken_port}")
    assert collector_cli("check", "-c", str(config)).exit_code == 0
