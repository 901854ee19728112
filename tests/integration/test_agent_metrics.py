"""The agent's `metrics.listen`: a whole agent (`run_agent`) scraped over HTTP while it works.

The agent polls the project's Modbus RTU bus simulator on a pseudo terminal (two slaves
answering, one silent) and a Modbus TCP device nobody listens for, and sends its blocks
through a real Mosquitto to the collector's ingest loop (in this process), which ACKs them.
The scrapes are parsed with prometheus_client's own parser and checked against what the
devices did: readings by quality, errors by kind, the bus's measured utilization, and the
outbox gauges while ACKs come and after the collector went away.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import os
from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import Final

import httpx
import pytest

from edge_agent.config import parse_site_config
from edge_agent.shell import runtime, shutdown
from hostkit.keyfiles import write_key_pair
from simulators.rtu_bus import RtuBusSim
from tests.support.broker import Broker, free_port
from tests.support.collector_client import SimGateway, sim_gateway
from tests.support.collector_env import COLLECTOR_KEY, register, running_ingest
from tests.support.metric_samples import Samples, samples_of, value_of
from tests.support.metrics_site import metrics_site_map

GATEWAY: Final = dataclasses.replace(sim_gateway(1), domain="YHBZ")
WAIT: Final = 15.0


def site_map(gateway: SimGateway, *, broker: int, bus: str, nobody: int, metrics: int) -> str:
    return metrics_site_map(
        gateway,
        broker=broker,
        bus=bus,
        slaves=(("slave-1", 1), ("silent-2", 2), ("slave-3", 3)),
        nobody=nobody,
        metrics=metrics,
        uplink=", ack_timeout: 1s",
        nobody_poll="200ms",
    )


async def _scrape_until(url: str, done: Callable[[Samples], bool], what: str) -> Samples:
    """Scrape every 100 ms until `done` holds; fail naming `what` and the last scrape."""
    samples: Samples = {}
    try:
        async with httpx.AsyncClient() as http, asyncio.timeout(WAIT):
            while not done(samples):
                await asyncio.sleep(0.1)
                response = await http.get(url)
                assert response.status_code == 200, response.text
                content_type = response.headers["content-type"]
                assert content_type == "text/plain; version=0.0.4; charset=utf-8"
                samples = samples_of(response.text)
    except TimeoutError:
        raise AssertionError(f"no {what} after {WAIT}s: {samples}") from None
    return samples


@contextlib.asynccontextmanager
async def running_agent(folder: Path, text: str) -> AsyncIterator[None]:
    config = parse_site_config(text, "site.yaml", folder)
    stop = asyncio.Event()
    agent = asyncio.create_task(runtime.run_agent(config, stop, bus_report_every=0.3))
    try:
        yield
    finally:
        stop.set()
        await asyncio.wait_for(agent, 30)


async def test_a_running_agent_serves_its_figures(
    broker: Broker, rtu_sim: RtuBusSim, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # The collector goes away before the agent stops: do not wait for the last ACKs.
    monkeypatch.setattr(shutdown, "_SHUTDOWN_DRAIN", 0.05)
    (tmp_path / "keys").mkdir()
    write_key_pair(tmp_path / "keys" / "gateway.key", GATEWAY.key)
    (tmp_path / "keys" / "collector.pub").write_bytes(COLLECTOR_KEY.public().public_pem())
    port = free_port()
    url = f"http://127.0.0.1:{port}/metrics"
    text = site_map(GATEWAY, broker=broker.port, bus=rtu_sim.path, nobody=free_port(), metrics=port)
    wire = os.path.realpath(rtu_sim.path)
    storage_url = f"sqlite:///{tmp_path / 'collector.db'}"
    async with running_agent(tmp_path, text):
        async with running_ingest(broker.port, storage_url, COLLECTOR_KEY) as (_, storage):
            await register(storage, GATEWAY)

            def working(s: Samples) -> bool:
                return (
                    value_of(s, "gz_agent_readings_total", device="slave-1", quality="good") >= 10
                    and value_of(s, "gz_agent_rtu_bus_utilization", port=wire) > 0
                    and value_of(s, "gz_agent_outbox_undelivered_blocks") <= 1
                )

            samples = await _scrape_until(url, working, "readings and ACKs")
        for device in ("slave-1", "slave-3"):
            assert value_of(samples, "gz_agent_readings_total", device=device, quality="good") >= 9
            assert value_of(samples, "gz_agent_readings_total", device=device, quality="bad") == 0
            errors = [
                value
                for (name, labels), value in samples.items()
                if name == "gz_agent_device_errors_total" and ("device", device) in labels
            ]
            assert errors == [], f"{device} answered every read"
        for device in ("silent-2", "nobody"):  # BAD every cycle, never a good reading
            assert value_of(samples, "gz_agent_readings_total", device=device, quality="good") == 0
            assert value_of(samples, "gz_agent_readings_total", device=device, quality="bad") >= 1
        assert (
            value_of(samples, "gz_agent_device_errors_total", device="silent-2", kind="timeout")
            >= 1
        )
        assert (
            value_of(samples, "gz_agent_device_errors_total", device="nobody", kind="connection")
            >= 1
        )
        assert 0 < value_of(samples, "gz_agent_rtu_bus_utilization", port=wire) < 1
        # Every device of the site map shows, at 0 where nothing happened.
        assert (
            value_of(samples, "gz_agent_readings_total", device="slave-3", quality="uncertain") == 0
        )

        # The collector is gone: blocks pile up in the outbox and the oldest ages.
        def piling_up(s: Samples) -> bool:
            return (
                value_of(s, "gz_agent_outbox_undelivered_blocks") >= 3
                and value_of(s, "gz_agent_outbox_oldest_undelivered_seconds") >= 0.5
            )

        await _scrape_until(url, piling_up, "undelivered blocks")
    with pytest.raises(httpx.ConnectError):  # the agent stopped: so did its endpoint
        httpx.get(url)
