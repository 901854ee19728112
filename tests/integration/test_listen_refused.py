"""An address either program cannot listen on is refused at its line before anything starts.

A port another program holds, or an address that is not this host's, used to pass `check`. The
agent's `run` (`metrics.listen`) then opened the outbox and died with an OSError traceback and
exit 1: under systemd (Restart=on-failure), a crash loop every 2 s with no line to fix. The
collector's `serve` (`api.listen`) opened (and created) its database, then stopped with a bare
"[Errno 98] Address already in use" naming neither the address nor the key. Now both try the
address before anything starts and name the line, with exit 1: such a failure may clear by
itself (the other program stops, the address is assigned a moment after boot), and systemd
starts a unit again after 1, not after 2, which is kept for mistakes no restart mends (a name
that does not exist, a port the service may not bind). `check` does not try the address: the
program it checks for may be the one listening there.
"""

from __future__ import annotations

import errno
import socket
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from edge_agent.shell.metrics_server import try_listening
from hostkit.listen_failure import listen_failure_exit
from tests.support.cli_runs import AGENT, COLLECTOR, Program, collector_cli, keyed_example_site

# TEST-NET-1 (RFC 5737): no interface of this host has it; binding to it sends nothing.
NOT_THIS_HOST = "192.0.2.1"


def _site_listening(folder: Path, listen: str) -> tuple[Path, int]:
    """The example site map with `metrics.listen`; the line of its `listen:` key."""
    site = keyed_example_site(folder)
    text = site.read_text(encoding="utf-8") + f'metrics:\n  listen: "{listen}"\n'
    site.write_text(text, encoding="utf-8")
    return site, len(text.splitlines())


def _collector_listening(folder: Path, listen: str) -> tuple[Path, int]:
    """A collector config with its key made and `api.listen`; the line of its `listen:` key."""
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
    return config, 5


@dataclass(frozen=True)
class ListenSetting:
    """One program's listen setting: its key, a port, a config of it listening on an address."""

    program: Program
    setting: str
    port: int
    listening: Callable[[Path, str], tuple[Path, int]]


LISTEN_SETTINGS = {
    "edge-agent": ListenSetting(AGENT, "metrics.listen", 9109, _site_listening),
    "collector": ListenSetting(COLLECTOR, "api.listen", 8080, _collector_listening),
}


@pytest.fixture(params=sorted(LISTEN_SETTINGS))
def listen(request: pytest.FixtureRequest) -> ListenSetting:
    return LISTEN_SETTINGS[request.param]


@pytest.fixture
def taken_port() -> Iterator[int]:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as holder:
        holder.bind(("127.0.0.1", 0))
        holder.listen()
        yield holder.getsockname()[1]


@pytest.mark.timeout(60)  # without the refusal the program would run on: fail, never hang
def test_the_start_refuses_a_port_another_program_holds(
    listen: ListenSetting, tmp_path: Path, taken_port: int
) -> None:
    config, line = listen.listening(tmp_path, f"127.0.0.1:{taken_port}")
    says = f"{config}:{line}: {listen.setting}: cannot listen on 127.0.0.1:{taken_port}:"
    done = listen.program.refused_at_start(config, says, status=1)
    assert "address already in use" in done.stderr.lower()


@pytest.mark.timeout(60)
def test_the_start_refuses_an_address_not_of_this_host(
    listen: ListenSetting, tmp_path: Path
) -> None:
    address = f"{NOT_THIS_HOST}:{listen.port}"
    config, line = listen.listening(tmp_path, address)
    says = f"{config}:{line}: {listen.setting}: cannot listen on {address}:"
    listen.program.refused_at_start(config, says, status=1)


def test_check_leaves_the_address_to_the_start(
    listen: ListenSetting, tmp_path: Path, taken_port: int
) -> None:
    config, _ = listen.listening(tmp_path, f"127.0.0.1:{taken_port}")
    assert listen.program.cli("check", "-c", str(config)).exit_code == 0


def test_the_agent_tries_an_ipv6_address_as_it_binds_it(taken_port: int) -> None:
    # asyncio.start_server binds an IPv6 address IPV6_V6ONLY: the agent can listen on [::]:P
    # while another program holds 127.0.0.1:P, so the trial must not refuse it (it did, as a
    # dual-stack socket, and `run` exited 2 on a map the agent could have run).
    try_listening("::", taken_port)  # raises what the agent would meet


@pytest.mark.parametrize(
    ("failure", "status"),
    [
        (OSError(errno.EADDRINUSE, "Address already in use"), 1),
        (OSError(errno.EADDRNOTAVAIL, "Cannot assign requested address"), 1),
        (socket.gaierror(socket.EAI_AGAIN, "Temporary failure in name resolution"), 1),
        (socket.gaierror(socket.EAI_NONAME, "Name or service not known"), 2),
        (OSError(errno.EACCES, "Permission denied"), 2),
    ],
    ids=["port held", "address not assigned yet", "resolver not up", "no such name", "denied"],
)
def test_only_a_failure_no_restart_mends_stops_the_unit_for_good(
    failure: OSError, status: int
) -> None:
    assert listen_failure_exit(failure) == status


@pytest.mark.timeout(60)
def test_the_agent_names_the_address_with_the_other_start_up_problems(
    tmp_path: Path, taken_port: int
) -> None:
    """A held port beside a key others may read: both named, then 2, as the key needs a fix
    whether or not the port is let go (the port alone is 1, above)."""
    site, line = _site_listening(tmp_path, f"127.0.0.1:{taken_port}")
    key_file = tmp_path / "keys" / "gateway.key"
    key_file.chmod(0o644)
    says = f"{site}:{line}: metrics.listen: cannot listen on 127.0.0.1:{taken_port}:"
    done = AGENT.refused_at_start(site, says, status=2)
    assert f"signing.key_file: {key_file}: private key has mode 0644" in done.stderr
