"""`edge-agent status` asks a whole running agent (`run_agent`) on its status socket.

The agent polls the project's Modbus RTU bus simulator on a pseudo terminal (slave 1
answering, slave 2 silent) and a Modbus TCP device nobody listens for; slave 1's headcount is
above its rated staffing, so an over-staffing alarm is raised. Blocks go through a real
Mosquitto to the collector's ingest loop (in this process), which ACKs them. The real
`edge-agent status` command (a subprocess) then has to show each device's last good read or
its error, the bus's measured load, the outbox, the clock, the uplink and the alarm; once the
agent has stopped, it has to say so and fall back to the outbox file, with exit status 3.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import json
import os
import stat
import sys
from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import Any, Final

import pytest

from edge_agent.cli.status import NOT_RUNNING_EXIT
from edge_agent.config import SiteConfig, load_site_config
from edge_agent.core.plan_compile import config_fingerprint
from edge_agent.shell import runtime, shutdown
from edge_agent.shell.host import clock_synchronized
from edge_agent.shell.status_server import REQUEST, status_socket_path
from hostkit.tables import display_width
from simulators.rtu_bus import RtuBusSim
from simulators.rtu_slaves import Fault, pattern_slave
from specs.signing import private_pem
from tests.support.answering import ANSWERING_MAP
from tests.support.broker import Broker, free_port
from tests.support.cli_runs import example_site, in_a_process
from tests.support.collector_client import SimGateway, sim_gateway
from tests.support.collector_env import COLLECTOR_KEY, register, running_ingest

GATEWAY: Final = dataclasses.replace(sim_gateway(2), domain="YHBZ")
EDGE_AGENT: Final = Path(sys.executable).parent / "edge-agent"
WAIT: Final = 20.0
Status = dict[str, Any]


def site_map(gateway: SimGateway, *, broker: int, bus: str, nobody: int) -> str:
    # Slave 1's ramp registers hold their own offset: headcount 9 (209) over rated 2 (202).
    rtu = "driver: modbus_rtu, baudrate: 19200, parity: N, stopbits: 2, poll: 300ms"
    # The silent slave's timeout is short, so that its errors (and the bus's timeouts) show
    # soon and its timeouts leave the bus room (utilization < 1); slave 1 answers, and it must
    # never be judged silent because this process's loop, which also runs the simulator,
    # was starved for longer than a short timeout.
    holding = "table: holding, type: uint16, start"
    return (
        gateway.site_head(broker, uplink=", ack_timeout: 1s", outbox=", flush_interval: 100ms")
        + "devices:\n"
        f"  - {{id: slave-1, port: {bus}, unit_id: 1, {rtu}, timeout: {ANSWERING_MAP}, points: [\n"
        f"     {{point: R1-PC, quota: YHBZ-PC, address: {{{holding}: 209}}}},\n"
        f"     {{point: R1-PR, quota: YHBZ-PR, address: {{{holding}: 202}}}}]}}\n"
        f"  - {{id: silent-2, port: {bus}, unit_id: 2, {rtu}, timeout: 150ms, points: [\n"
        f"     {{point: R2-PC, quota: YHBZ-PC, address: {{{holding}: 209}}}}]}}\n"
        f"  - {{id: nobody, driver: modbus_tcp, host: 127.0.0.1, port: {nobody}, poll: 200ms,\n"
        "     points: [{point: R9-PC, quota: YHBZ-PC, address: {table: holding, start: 0,"
        " type: uint16}}]}\n"
        "alarms:\n"
        "  - {kind: over_staff, point: R1-PC, limit_point: R1-PR}\n"
    )


@pytest.fixture
async def rtu_sim() -> AsyncIterator[RtuBusSim]:
    async with RtuBusSim(
        [pattern_slave(1), pattern_slave(2)], baudrate=19200, bits_per_char=11, interval=0.05
    ) as sim:
        sim.slave(2).fault = Fault.SILENT
        yield sim


async def _ask(path: Path) -> Status:
    """One question on the socket, as the command asks it."""
    reader, writer = await asyncio.open_unix_connection(path)
    try:
        writer.write(REQUEST)
        answer: Status = json.loads(await reader.read())
    finally:
        writer.close()
    return answer


async def _ask_until(path: Path, done: Callable[[Status], bool], what: str) -> Status:
    answer: Status = {}
    try:
        async with asyncio.timeout(WAIT):
            while True:
                with contextlib.suppress(FileNotFoundError, ConnectionRefusedError):
                    answer = await _ask(path)
                    if done(answer):
                        return answer
                await asyncio.sleep(0.1)
    except TimeoutError:
        raise AssertionError(f"no {what} after {WAIT}s: {answer}") from None


async def _status(site: Path, *options: str) -> tuple[int, str, str]:
    """Run the real `edge-agent status -c site.yaml [options]`: exit status, stdout, stderr."""
    process = await asyncio.create_subprocess_exec(
        EDGE_AGENT, "status", "-c", str(site), *options,
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE,
    )  # fmt: skip
    out, err = await asyncio.wait_for(process.communicate(), 30)
    assert process.returncode is not None
    return process.returncode, out.decode(), err.decode()


def _devices(answer: Status) -> dict[str, Status]:
    return {device["device"]: device for device in answer["devices"]}


def _settled(answer: Status) -> bool:
    devices = _devices(answer) if answer else {}
    return bool(
        answer
        and answer["uplink"]["connected"]
        and answer["uplink"]["last_ack"] is not None
        and devices["slave-1"]["last_good"] is not None
        and devices["silent-2"]["last_error"] is not None
        and devices["nobody"]["last_error"] is not None
        and answer["alarms"]
        and answer["rtu_buses"][0]["transactions"] > 0
    )


async def test_status_asks_the_running_agent_then_says_it_stopped(
    broker: Broker, rtu_sim: RtuBusSim, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(shutdown, "_SHUTDOWN_DRAIN", 0.05)  # the collector leaves first
    (tmp_path / "keys").mkdir()
    key_file = tmp_path / "keys" / "gateway.key"
    key_file.write_bytes(private_pem(GATEWAY.key))
    key_file.chmod(0o600)
    (tmp_path / "keys" / "collector.pub").write_bytes(COLLECTOR_KEY.public().public_pem())
    site = tmp_path / "site.yaml"
    text = site_map(GATEWAY, broker=broker.port, bus=rtu_sim.path, nobody=free_port())
    site.write_text(text, encoding="utf-8")
    config = load_site_config(site)
    sock = status_socket_path(config)
    assert sock == tmp_path / "state" / "agent.sock"
    stop = asyncio.Event()
    agent = asyncio.create_task(runtime.run_agent(config, stop))
    try:
        async with running_ingest(
            broker.port, f"sqlite:///{tmp_path / 'collector.db'}", COLLECTOR_KEY
        ) as (_, storage):
            await register(storage, GATEWAY)
            await _ask_until(sock, _settled, "good reads, errors, an ACK and the alarm")
            assert stat.S_IMODE(sock.stat().st_mode) == 0o600
            code, out, err = await _status(site, "--json")
        assert (code, err) == (0, "")
        answer = json.loads(out)
        _check_running(answer, config, broker=broker.port, bus=os.path.realpath(rtu_sim.path))

        # The collector is gone: blocks pile up, and the uplink's last ACK stays where it was.
        piling = await _ask_until(
            sock,
            lambda a: (
                a["outbox"]["undelivered_blocks"] >= 3
                and a["outbox"]["oldest_undelivered_age_s"] > 0
            ),
            "undelivered blocks",
        )
        later = await _ask_until(
            sock,
            lambda a: a["outbox"]["undelivered_blocks"] > piling["outbox"]["undelivered_blocks"],
            "more undelivered blocks",
        )
        assert later["uplink"]["last_ack"] == piling["uplink"]["last_ack"] is not None

        code, out, err = await _status(site)
        assert (code, err) == (0, "")
        _check_text(out, broker=broker.port)

        code, out, _ = await _status(site, "--json", "--watch", "0.2", "--count", "2")
        assert code == 0
        looks = [json.loads(line) for line in out.splitlines()]
        assert len(looks) == 2
        assert looks[1]["t"] > looks[0]["t"]
    finally:
        stop.set()
        await asyncio.wait_for(agent, 30)

    assert not sock.exists(), "the socket is removed at stop"
    await _check_stopped(site)


async def _check_stopped(site: Path) -> None:
    """`status` of the stopped agent: it says so, shows the files, exits NOT_RUNNING_EXIT."""
    code, out, err = await _status(site)
    assert code == NOT_RUNNING_EXIT
    assert "the agent is not running" in err
    assert out.startswith(f"gateway      {GATEWAY.gateway}")
    assert "undelivered" in out
    code, out, err = await _status(site, "--json")
    assert code == NOT_RUNNING_EXIT
    fallback = json.loads(out)
    assert fallback["running"] is False
    assert fallback["outbox"]["undelivered_blocks"] >= 3
    assert fallback["clock"] == {"synchronized": clock_synchronized()}


def _check_text(out: str, *, broker: int) -> None:
    """The table view of the running agent."""
    assert "slave-1" in out
    assert "silent-2" in out
    assert "failing" in out
    assert f"uplink    connected to mqtt://127.0.0.1:{broker}" in out
    assert "over_staff" in out
    header = next(line for line in out.splitlines() if line.startswith("device"))
    row = next(line for line in out.splitlines() if line.startswith("slave-1"))
    assert _cell_of(row, "modbus_rtu") == _cell_of(header, "driver")


def _cell_of(line: str, word: str) -> int:
    """The terminal column where `word` starts in `line` (wide characters count two)."""
    return display_width(line[: line.index(word)])


def _check_running(answer: Status, config: SiteConfig, *, broker: int, bus: str) -> None:
    """What `status --json` must show of the agent the test runs."""
    assert answer["running"] is True
    assert answer["gateway"] == GATEWAY.gateway
    assert answer["pid"] == os.getpid()
    assert answer["config"] == config_fingerprint(config)
    assert answer["clock"] == {"synchronized": clock_synchronized()}
    assert answer["uplink"]["broker"] == f"mqtt://127.0.0.1:{broker}"
    assert answer["uplink"]["published"] >= 1
    devices = _devices(answer)
    assert devices["slave-1"]["state"] == "ok"
    assert devices["slave-1"]["driver"] == "modbus_rtu"
    assert devices["slave-1"]["last_error"] is None, "slave 1 answered every read"
    for name, kind in (("silent-2", "timeout"), ("nobody", "connection")):
        assert devices[name]["state"] == "failing"
        assert devices[name]["last_good"] is None
        assert devices[name]["last_error"]["kind"] == kind
        assert devices[name]["last_error"]["message"]
    (measured,) = answer["rtu_buses"]
    assert measured["port"] == bus
    assert 0 < measured["utilization"] < 1
    assert measured["timeouts"] >= 1, "the silent slave costs the bus its timeouts"
    assert 0 < measured["planned"] < 1
    (alarm,) = answer["alarms"]
    assert "R1-PC" in alarm["slot"]
    assert alarm["alarm_id"]
    outbox = answer["outbox"]
    assert outbox["last_seq"] >= 1
    assert outbox["undelivered_blocks"] >= 0


@pytest.mark.parametrize("seconds", ["nan", "inf", "1e300"])
def test_a_watch_period_no_clock_can_wait_is_a_usage_error(tmp_path: Path, seconds: str) -> None:
    """`--watch nan` (or inf, or 1e300) passed the option's check (at least 0.2) and, after
    the first look, ended in a ValueError or OverflowError traceback from time.sleep, exit 1."""
    site = example_site(tmp_path)
    done = in_a_process(
        "edge-agent", "status", "-c", str(site), "--watch", seconds, "--count", "2", cwd=tmp_path
    )
    assert (done.returncode, done.stdout) == (2, ""), done.stderr
    assert "Invalid value for '--watch'" in done.stderr
    assert "Traceback" not in done.stderr
