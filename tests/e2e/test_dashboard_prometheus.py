"""docs/grafana/ganzhi.json against a real Prometheus scraping a real collector and agent.

A whole collector (`run_collector`, as `collector serve` runs it: ingest and API, SQLite) on a
real Mosquitto, and a whole agent (`run_agent`, its `metrics.listen` on) polling the project's
Modbus RTU bus simulator (one slave answering, one silent) and a Modbus TCP device nobody
listens for, sending its blocks to that collector. Debian's Prometheus (`make test` installs
it; it runs from the test's directory on a free port, never as a service) scrapes both every
second, the collector's /metrics with a bearer token file as a deployment would.

Then every query of every panel of the dashboard, with Grafana's variables substituted as
`bench.dashboard_preview.grafana_variables` says, is evaluated through Prometheus' HTTP API:
each must parse and answer at least one series with a finite value, and the template
variable's `label_values` must list the agent. So the dashboard is shown to work on what the
exporters really serve, not only to name their metrics (tests/unit/test_grafana_dashboard.py).

With GZ_DASHBOARD_PREVIEW=<file.png> the run goes on for GZ_DASHBOARD_PREVIEW_SECONDS (default
40) and the panels are drawn from `query_range` over it into that file (bench.dashboard_preview);
docs/grafana/ganzhi-preview.png is made by `GZ_DASHBOARD_PREVIEW=docs/grafana/ganzhi-preview.png
pytest tests/e2e/test_dashboard_prometheus.py`.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import math
import os
import shutil
import time
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Final

import httpx
import pytest
from click.testing import CliRunner

from bench.dashboard_preview import (
    Panel,
    Series,
    grafana_variables,
    load_panels,
    query_range,
    render,
    series_of,
    substitute,
)
from collector.cli import main
from collector.config import load_collector_config
from collector.runtime import RunningCollector, run_collector
from edge_agent.config import parse_site_config
from edge_agent.shell import runtime, shutdown
from hostkit.keyfiles import write_key_pair
from simulators.rtu_bus import RtuBusSim
from simulators.rtu_slaves import Fault, pattern_slave
from tests.support.broker import Broker, free_port
from tests.support.collector_client import SimGateway, sim_gateway
from tests.support.collector_env import register, write_collector_config
from tests.support.metrics_site import metrics_site_map
from tests.support.prometheus import (
    PROMETHEUS,
    SCRAPE_INTERVAL,
    Prometheus,
    ScrapeTarget,
    api_get,
)

GATEWAY: Final = dataclasses.replace(sim_gateway(1), domain="YHBZ")
TOKEN: Final = "prometheus-scrape-token"  # noqa: S105 (a test-only API token)
WAIT: Final = 25.0  # seconds for every panel to have data: rates need two scrapes in their window


def site_map(gateway: SimGateway, *, broker: int, bus: str, nobody: int, metrics: int) -> str:
    return metrics_site_map(
        gateway,
        broker=broker,
        bus=bus,
        slaves=(("slave-1", 1), ("silent-2", 2)),
        nobody=nobody,
        metrics=metrics,
    )


@pytest.fixture
async def rtu_sim() -> AsyncIterator[RtuBusSim]:
    async with RtuBusSim([pattern_slave(1), pattern_slave(2)], baudrate=19200) as sim:
        sim.slave(2).fault = Fault.SILENT
        yield sim


@pytest.fixture
async def collector(broker: Broker, tmp_path: Path) -> AsyncIterator[RunningCollector]:
    folder = tmp_path / "collector"
    folder.mkdir()
    path = write_collector_config(
        folder,
        broker_port=broker.port,
        api_port=free_port(),
        tokens=(("prometheus", TOKEN, ("*",)),),
        storage_url=f"sqlite:///{folder / 'collector.db'}",
    )
    keys = await asyncio.to_thread(
        CliRunner().invoke, main, ["keys", "init", "-c", str(path)], catch_exceptions=False
    )
    assert keys.exit_code == 0, keys.output
    async with run_collector(load_collector_config(path)) as running:
        await asyncio.wait_for(running.wait_connected(), 10)
        await register(running.storage, GATEWAY)
        yield running


@contextlib.asynccontextmanager
async def running_agent(
    folder: Path, broker: Broker, bus: str, collector: RunningCollector
) -> AsyncIterator[str]:
    """Run an agent in `folder` sending to `collector`; yield its metrics address."""
    (folder / "keys").mkdir(parents=True)
    write_key_pair(folder / "keys" / "gateway.key", GATEWAY.key)
    (folder / "keys" / "collector.pub").write_bytes(collector.public_key.public_pem())
    port = free_port()
    text = site_map(GATEWAY, broker=broker.port, bus=bus, nobody=free_port(), metrics=port)
    stop = asyncio.Event()
    agent = asyncio.create_task(
        runtime.run_agent(parse_site_config(text, "site.yaml", folder), stop, bus_report_every=0.5)
    )
    try:
        yield f"127.0.0.1:{port}"
    finally:
        stop.set()
        await asyncio.wait_for(agent, 30)


@contextlib.asynccontextmanager
async def scraping(folder: Path, targets: list[ScrapeTarget]) -> AsyncIterator[Prometheus]:
    """Run Prometheus scraping `targets`; fail (never skip) when it is not installed."""
    if shutil.which(PROMETHEUS) is None:
        pytest.fail("prometheus is not installed: run `make test` (it installs it) or apt-get")
    folder.mkdir()
    prometheus = Prometheus(folder, targets)
    await asyncio.to_thread(prometheus.start)
    try:
        yield prometheus
    finally:
        await asyncio.to_thread(prometheus.stop)


def _has_data(series: tuple[Series, ...]) -> bool:
    return any(math.isfinite(value) for s in series for _, value in s.samples)


async def _evaluate_all(
    http: httpx.AsyncClient, panels: tuple[Panel, ...], variables: dict[str, str]
) -> dict[str, tuple[Series, ...]]:
    """Every panel query, evaluated now, by 'panel title / refId: query'."""
    answers: dict[str, tuple[Series, ...]] = {}
    for panel in panels:
        for query in panel.queries:
            promql = substitute(query.expr, variables)
            data = await api_get(http, "/api/v1/query", {"query": promql})
            answers[f"{panel.title} / {query.ref_id}: {promql}"] = series_of(data)
    return answers


async def test_every_panel_of_the_dashboard_answers_from_the_real_exporters(
    broker: Broker,
    rtu_sim: RtuBusSim,
    collector: RunningCollector,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(shutdown, "_SHUTDOWN_DRAIN", 0.05)
    dashboard, panels = load_panels()
    queries = [q for p in panels for q in p.queries]
    assert len(queries) >= 10, "the dashboard lost its panels"
    variables = grafana_variables(dashboard, scrape_interval=SCRAPE_INTERVAL, step=SCRAPE_INTERVAL)
    token_file = tmp_path / "collector.token"
    token_file.write_text(TOKEN, encoding="utf-8")
    collector_address = collector.api_url.removeprefix("http://").rstrip("/")

    async with running_agent(tmp_path / "agent", broker, rtu_sim.path, collector) as agent:
        targets = [
            ScrapeTarget("ganzhi-collector", collector_address, token_file),
            ScrapeTarget("ganzhi-agent", agent),
        ]
        async with (
            scraping(tmp_path / "prometheus", targets) as prometheus,
            httpx.AsyncClient(base_url=prometheus.url, timeout=5) as http,
        ):
            started = time.time()
            answers: dict[str, tuple[Series, ...]] = {}
            try:
                async with asyncio.timeout(WAIT):
                    while not answers or not all(map(_has_data, answers.values())):
                        await asyncio.sleep(0.5)
                        answers = await _evaluate_all(http, panels, variables)
            except TimeoutError:
                empty = [name for name, series in answers.items() if not _has_data(series)]
                active = await api_get(http, "/api/v1/targets", {"state": "active"})
                health = [
                    (t["scrapeUrl"], t["health"], t["lastError"]) for t in active["activeTargets"]
                ]
                raise AssertionError(
                    f"no data after {WAIT}s from: {empty}; targets: {health}"
                ) from None
            print(f"every panel answered {time.time() - started:.1f} s after Prometheus started")

            # The template variable lists the agent (Grafana's label_values on the first panel).
            instances = await api_get(
                http,
                "/api/v1/label/instance/values",
                {"match[]": "gz_agent_outbox_undelivered_blocks"},
            )
            assert instances == [agent]
            # The agent's devices show as the panels describe them.
            bad = next(v for k, v in answers.items() if k.startswith("Share of bad readings"))
            share = {s.labels["device"]: s.samples[-1][1] for s in bad}
            assert share["slave-1"] == 0
            assert share["silent-2"] == 1
            assert share["nobody"] == 1

            shot = os.environ.get("GZ_DASHBOARD_PREVIEW")
            if shot:
                await asyncio.sleep(float(os.environ.get("GZ_DASHBOARD_PREVIEW_SECONDS", "40")))
                window = (started, time.time())
                results = await asyncio.to_thread(
                    query_range, prometheus.url, panels, variables, window, SCRAPE_INTERVAL
                )
                subtitle = (
                    f"{window[1] - window[0]:.0f} s of one collector (SQLite, Mosquitto) and one"
                    " agent (Modbus RTU simulator: slave-1 answers, silent-2 does not; Modbus TCP"
                    f" 'nobody' refuses), scraped every {SCRAPE_INTERVAL:g} s"
                )
                render(panels, results, Path(shot), subtitle=subtitle)
                print(f"dashboard preview: {shot}")
