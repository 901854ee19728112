"""Run the demo: broker, simulator, collector and agent, with a live table from the API.

Every step uses the commands a technician and a province admin would type (`collector keys
init`, `edge-agent keys init`, `collector gateways add`, `collector serve`, `edge-agent run`),
so the demo proves the real path, not a shortcut.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import shutil
import signal
import subprocess
import sys
import time
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from types import MappingProxyType
from typing import Any

import httpx
import yaml

from demo.broker import Broker, wait_for_port
from demo.ports import reserve_port
from demo.postgres import PostgresUnavailableError, create_database

ROOT = Path(__file__).resolve().parent.parent
BIN = Path(sys.executable).parent
DEMO_DATABASE = "ganzhi_demo"
FIRST_READING_WITHIN = 120.0
"""How long a `--duration` run waits for the first reading before it counts."""
TOKEN = "demo-token"  # noqa: S105 - a demo's loopback-only API token
SITE_PROFILES: Mapping[str, str] = MappingProxyType(
    {
        "tankfarm": "tankfarm",
        "tailings": "tailings",
        "fireworks": "fireworks",
        "slope": "slope",
        "coalmine": "coalmine",
    }
)
"""Each site map in configs/ (by file stem) and the simulator profile its devices read."""


def profile_for(site: str) -> str:
    """Return the simulator profile (`python -m simulators --profile`) of a site map.

    Raises:
        SystemExit: the site has no simulator profile.
    """
    profile = SITE_PROFILES.get(site)
    if profile is None:
        raise SystemExit(f"demo: no simulator for site {site!r}; sites: {', '.join(SITE_PROFILES)}")
    return profile


def write_configs(
    work: Path,
    site: str,
    broker_url: str,
    sim_port: int,
    api_port: int,
    *,
    poll: str | None = None,
    storage_url: str = "sqlite:///state/collector.db",
) -> Path:
    """Write `site.yaml` and `collector.yaml` for a local run into `work`; return site.yaml."""
    site_map = yaml.safe_load((ROOT / "configs" / f"{site}.yaml").read_text(encoding="utf-8"))
    site_map["uplink"]["broker"] = broker_url
    site_map["uplink"]["collector_key"] = "keys/collector.key.pub"
    site_map["signing"]["key_file"] = "keys/gateway.key"
    site_map["outbox"]["path"] = "state/outbox.db"
    for device in site_map["devices"]:
        device["host"], device["port"] = "127.0.0.1", sim_port
        if poll is not None:
            device["poll"] = poll
    (work / "site.yaml").write_text(yaml.safe_dump(site_map, allow_unicode=True), "utf-8")
    collector = {
        "broker": broker_url,
        "storage": {"url": storage_url},
        "signing": {"key_file": "keys/collector.key"},
        "api": {
            "listen": f"127.0.0.1:{api_port}",
            "tokens": [{"name": "demo", "token": TOKEN, "districts": ["*"]}],
        },
    }
    (work / "collector.yaml").write_text(yaml.safe_dump(collector), "utf-8")
    return work / "site.yaml"


def api_get(port: int, path: str, **params: str | int) -> Any:  # noqa: ANN401 - a JSON body
    """GET `path` of the collector API on loopback `port` with the demo token: its JSON body."""
    response = httpx.get(
        f"http://127.0.0.1:{port}{path}",
        params=params,
        headers={"Authorization": f"Bearer {TOKEN}"},
        timeout=10,
    )
    response.raise_for_status()
    return response.json()


def _run(*args: str, cwd: Path) -> str:
    done = subprocess.run(args, cwd=cwd, capture_output=True, text=True, check=False)
    if done.returncode != 0:
        sys.stderr.write(done.stdout + done.stderr)
        raise SystemExit(f"demo: `{' '.join(args)}` failed with exit {done.returncode}")
    return done.stdout


def _table(items: list[dict[str, Any]]) -> str:
    now = time.time()
    # Coal point codes are 23 characters long: size the column to the site's codes.
    width = max([16, *(len(str(item["point"])) for item in items)])
    lines = [f"{'point':<{width}} {'value':>12} {'unit':<7} {'quality':<10} {'age':>6}"]
    for item in sorted(items, key=lambda i: str(i["point"])):
        value = "-" if item["value"] is None else f"{item['value']:.3f}"
        age = now - datetime.fromisoformat(item["t"]).timestamp()
        lines.append(
            f"{item['point']:<{width}} {value:>12} {item['unit']:<7} {item['quality']:<10}"
            f" {age:5.1f}s"
        )
    return "\n".join(lines)


@dataclass
class Demo:
    """The processes of one demo run and where they write."""

    work: Path
    broker: Broker
    sim_port: int
    api_port: int
    profile: str = "tankfarm"
    children: list[subprocess.Popen[bytes]] = field(default_factory=list)
    interrupted: bool = False

    @property
    def logs(self) -> Path:
        """Where every child's output goes."""
        return self.work / "logs"

    def spawn(self, name: str, *argv: str) -> None:
        """Start a child with its output in logs/<name>.log."""
        with (self.logs / f"{name}.log").open("wb") as out:
            self.children.append(
                subprocess.Popen(argv, cwd=self.work, stdout=out, stderr=subprocess.STDOUT)
            )

    def start(self, site_yaml: Path) -> str:
        """Start broker, simulator, collector and agent; return the gateway id."""
        self.broker.start()
        print(f"demo: mosquitto on 127.0.0.1:{self.broker.port}")
        self.spawn(
            "sim", str(BIN / "python"), "-m", "simulators",
            "--profile", self.profile, "--port", str(self.sim_port),
        )  # fmt: skip
        wait_for_port(self.sim_port)
        print(f"demo: {self.profile} simulator on 127.0.0.1:{self.sim_port}")
        _run(str(BIN / "collector"), "keys", "init", "-c", "collector.yaml", cwd=self.work)
        _run(str(BIN / "edge-agent"), "keys", "init", "-c", "site.yaml", cwd=self.work)
        site = yaml.safe_load(site_yaml.read_text(encoding="utf-8"))["site"]
        _run(
            str(BIN / "collector"), "gateways", "add", "-c", "collector.yaml",
            "--gateway", site["gateway"], "--district", site["district"],
            "--public-key", "keys/gateway.key.pub", cwd=self.work,
        )  # fmt: skip
        print(f"demo: gateway {site['gateway']} registered")
        self.spawn("collector", str(BIN / "collector"), "serve", "-c", "collector.yaml")
        wait_for_port(self.api_port, timeout=30)
        self.spawn("agent", str(BIN / "edge-agent"), "run", "-c", "site.yaml")
        print(f"demo: collector API on http://127.0.0.1:{self.api_port}/docs (token {TOKEN})")
        print(
            f"demo: status page on http://127.0.0.1:{self.api_port}/"
            f" (log in with any user name and the token {TOKEN} as the password)"
        )
        print(f"demo: logs in {self.logs}; Ctrl-C stops everything")
        return str(site["gateway"])

    def get(self, path: str, **params: str | int) -> list[dict[str, Any]]:
        """The items of an API list endpoint."""
        items: list[dict[str, Any]] = api_get(self.api_port, path, **params)["items"]
        return items

    def watch(self, duration: float | None) -> None:
        """Print the live table every 2 s until Ctrl-C, or `duration` s of readings.

        The `duration` counts from the first reading the collector shows, waited for at most
        FIRST_READING_WITHIN s: on a loaded machine the agent's start alone (imports, the
        outbox, the broker) can take longer than a short `duration`.
        """
        started = time.monotonic()
        first_reading_at: float | None = None
        interactive = duration is None and sys.stdout.isatty()
        while not self.interrupted:
            if duration is not None:
                counted_from = (
                    started + FIRST_READING_WITHIN if first_reading_at is None else first_reading_at
                )
                if time.monotonic() - counted_from >= duration:
                    return
            time.sleep(2)
            for child in self.children:
                if child.poll() is not None:
                    raise SystemExit(f"demo: {child.args!r} exited early; see {self.logs}")
            with contextlib.suppress(httpx.HTTPError):
                latest = self.get("/v1/latest")
                if latest and first_reading_at is None:
                    first_reading_at = time.monotonic()
                if interactive:
                    sys.stdout.write("\x1b[2J\x1b[H")
                print(_table(latest), flush=True)

    def stop(self) -> None:
        """Stop every child (SIGTERM, then SIGKILL after 15 s) and the broker."""
        for child in reversed(self.children):
            if child.poll() is None:
                child.send_signal(signal.SIGTERM)
        for child in reversed(self.children):
            try:
                child.wait(timeout=15)
            except subprocess.TimeoutExpired:
                child.kill()
        self.broker.stop()


def main() -> int:
    """Start everything, show the table, stop everything."""
    parser = argparse.ArgumentParser(prog="make demo")
    parser.add_argument(
        "--site", default="tankfarm", choices=SITE_PROFILES, help="a site map in configs/"
    )
    parser.add_argument("--duration", type=float, default=None, help="seconds; no terminal")
    parser.add_argument(
        "--storage",
        default="sqlite",
        choices=["sqlite", "postgresql"],
        help="the collector's database: a SQLite file, or a fresh PostgreSQL database"
        " ganzhi_demo on 127.0.0.1:5432 (PGADMIN_URL to change)",
    )
    args = parser.parse_args()
    storage_url = "sqlite:///state/collector.db"
    if args.storage == "postgresql":
        try:
            storage_url = create_database(DEMO_DATABASE)
        except PostgresUnavailableError as exc:
            raise SystemExit(f"demo: {exc}") from None

    work = ROOT / ".demo"
    shutil.rmtree(work, ignore_errors=True)
    (work / "broker").mkdir(parents=True)
    (work / "logs").mkdir()
    # The broker's, the simulator's and the API's ports, held for the whole run: no other run
    # (another demo, a test session) can be given them while these servers come up (demo.ports).
    with contextlib.ExitStack() as held:
        broker_port, sim_port, api_port = (
            held.enter_context(reserve_port()).getsockname()[1] for _ in range(3)
        )
        demo = Demo(
            work,
            Broker(port=broker_port, workdir=work / "broker"),
            sim_port,
            api_port,
            profile=profile_for(args.site),
        )
        return _run_demo(demo, args.site, storage_url, args.duration)


def _run_demo(demo: Demo, site: str, storage_url: str, duration: float | None) -> int:
    """Write the configs, start everything, show the table, stop everything."""
    site_yaml = write_configs(
        demo.work, site, demo.broker.url, demo.sim_port, demo.api_port, storage_url=storage_url
    )

    def interrupt(*_: object) -> None:
        demo.interrupted = True

    signal.signal(signal.SIGINT, interrupt)
    signal.signal(signal.SIGTERM, interrupt)
    try:
        gateway = demo.start(site_yaml)
        demo.watch(duration)
        if duration is None:
            return 0
        readings = demo.get("/v1/readings", gateway=gateway, limit=10000)
        print(json.dumps({"readings_at_collector": len(readings)}))
        return 0 if readings else 1
    finally:
        demo.stop()


if __name__ == "__main__":
    sys.exit(main())
