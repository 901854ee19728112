"""A `metrics.listen` the agent cannot listen on is refused at its line before anything starts.

A port another program holds, or an address that is not this host's, used to pass `check`; `run`
opened the outbox, then died with an OSError traceback and exit 1: under systemd
(Restart=on-failure), a crash loop every 2 s with no line to fix. Now `run` tries the address
before anything starts and exits 2 (which the unit does not restart) naming the line. `check`
does not try it: the agent it checks for may be the one listening there.
"""

from __future__ import annotations

import socket
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.support.cli_runs import (
    agent_cli,
    in_a_process,
    keyed_example_site,
    refused_before_start,
)

# TEST-NET-1 (RFC 5737): no interface of this host has it; binding to it sends nothing.
NOT_THIS_HOST = "192.0.2.1"


@pytest.fixture
def site(tmp_path: Path) -> Path:
    return keyed_example_site(tmp_path)


@pytest.fixture
def taken_port() -> Iterator[int]:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as holder:
        holder.bind(("127.0.0.1", 0))
        holder.listen()
        yield holder.getsockname()[1]


def _with_metrics_on(site: Path, listen: str) -> int:
    """Give the site map `metrics.listen`; the line number of its `listen:` key."""
    text = site.read_text(encoding="utf-8") + f'metrics:\n  listen: "{listen}"\n'
    site.write_text(text, encoding="utf-8")
    return len(text.splitlines())


@pytest.mark.timeout(60)  # without the refusal the agent would run on: fail, never hang
def test_run_refuses_a_port_another_program_holds(
    site: Path, tmp_path: Path, taken_port: int
) -> None:
    line = _with_metrics_on(site, f"127.0.0.1:{taken_port}")
    done = in_a_process("edge-agent", "run", "-c", str(site), cwd=tmp_path)
    says = f"{site}:{line}: metrics.listen: cannot listen on 127.0.0.1:{taken_port}:"
    refused_before_start(done, says, tmp_path / "state", "outbox")
    assert "address already in use" in done.stderr.lower()


@pytest.mark.timeout(60)
def test_run_refuses_an_address_not_of_this_host(site: Path, tmp_path: Path) -> None:
    line = _with_metrics_on(site, f"{NOT_THIS_HOST}:9109")
    done = in_a_process("edge-agent", "run", "-c", str(site), cwd=tmp_path)
    says = f"{site}:{line}: metrics.listen: cannot listen on {NOT_THIS_HOST}:9109:"
    refused_before_start(done, says, tmp_path / "state", "outbox")


def test_check_leaves_the_port_to_run(site: Path, taken_port: int) -> None:
    _with_metrics_on(site, f"127.0.0.1:{taken_port}")
    assert agent_cli("check", "-c", str(site)).exit_code == 0
