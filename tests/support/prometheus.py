"""A real Prometheus (Debian's `prometheus` binary) on a free loopback port, for one test.

It scrapes the targets it is given every second, keeps its TSDB in the test's directory and
is stopped with the test; nothing runs as a system service. `make test` installs the package.
"""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx

from tests.support.broker import free_port

PROMETHEUS = shutil.which("prometheus") or "/usr/bin/prometheus"
SCRAPE_INTERVAL = 1.0  # seconds: short, so rates have two samples a few seconds in


@dataclass(frozen=True)
class ScrapeTarget:
    """One scrape job: `host:port` of a /metrics endpoint, with a bearer token file or none."""

    job: str
    address: str
    token_file: Path | None = None


class PrometheusError(RuntimeError):
    """Prometheus refused a query or did not come up."""


def _config(targets: Sequence[ScrapeTarget]) -> str:
    jobs = "".join(
        f"  - job_name: {target.job}\n"
        + (
            f"    authorization: {{credentials_file: {target.token_file}}}\n"
            if target.token_file is not None
            else ""
        )
        + f'    static_configs: [{{targets: ["{target.address}"]}}]\n'
        for target in targets
    )
    interval = f"{SCRAPE_INTERVAL:g}s"
    return (
        f"global: {{scrape_interval: {interval}, scrape_timeout: {interval},"
        f" evaluation_interval: {interval}}}\n"
        f"scrape_configs:\n{jobs}"
    )


@dataclass
class Prometheus:
    """A Prometheus process scraping `targets`; `start`, query, `stop`."""

    workdir: Path
    targets: Sequence[ScrapeTarget]
    port: int = 0
    process: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        """The base URL of its HTTP API."""
        return f"http://127.0.0.1:{self.port}"

    def start(self, timeout: float = 15.0) -> None:
        """Start prometheus and wait until it says it is ready."""
        self.port = self.port or free_port()
        config = self.workdir / "prometheus.yml"
        config.write_text(_config(self.targets), encoding="utf-8")
        args = [
            PROMETHEUS,
            f"--config.file={config}",
            f"--storage.tsdb.path={self.workdir / 'tsdb'}",
            f"--web.listen-address=127.0.0.1:{self.port}",
            "--log.level=warn",
        ]
        with (self.workdir / "prometheus.log").open("ab") as log:
            self.process = subprocess.Popen(args, stdout=log, stderr=log)
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise PrometheusError(f"prometheus exited: {self.log()}")
            try:
                if httpx.get(f"{self.url}/-/ready", timeout=1).status_code == httpx.codes.OK:
                    return
            except httpx.TransportError:
                pass  # not listening yet
            time.sleep(0.1)
        raise PrometheusError(f"prometheus not ready after {timeout}s: {self.log()}")

    def log(self) -> str:
        """What prometheus wrote so far."""
        path = self.workdir / "prometheus.log"
        return path.read_text(encoding="utf-8", errors="replace") if path.exists() else ""

    def stop(self) -> None:
        """Stop prometheus (SIGTERM, then wait)."""
        if self.process is None:
            return
        if self.process.poll() is None:
            os.kill(self.process.pid, signal.SIGTERM)
            self.process.wait(timeout=15)
        self.process = None


async def api_get(http: httpx.AsyncClient, path: str, params: dict[str, Any]) -> Any:
    """The `data` of a Prometheus HTTP API answer; PrometheusError with its error if it failed."""
    response = await http.get(path, params=params)
    body = response.json()
    if body.get("status") != "success":
        raise PrometheusError(f"{path} {params}: {body.get('errorType')}: {body.get('error')}")
    return body["data"]
