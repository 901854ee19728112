"""What the end-to-end benches set up the same way: a scratch folder with its broker and the
processes started in it, how they stop, and the tank farm points they configure.

Every bench that runs our programs as processes (acquisition, latency, memory, wire, replay,
queries, throughput, the peer comparison) starts them with their output in `<name>.log` of
the scratch folder, and stops them the same way: SIGTERM, the last started first (the agent
before the collector it sends to), SIGKILL for one that outlives its grace period, so that a
stuck process costs the bench a timeout, not the run.
"""

from __future__ import annotations

import shutil
import subprocess
import sys
import tempfile
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol

import yaml

from demo.__main__ import write_configs
from demo.broker import Broker, free_port

BIN = Path(sys.executable).parent  # the venv's console scripts: edge-agent, collector

# Per simulated tank (simulators.tankfarm): (code, quota, table, start offset); tank n's
# registers start at TANK_STRIDE * (n - 1).
TANK_POINTS = (
    ("LT", "WHP-LT", "holding", 0),
    ("TT", "WHP-TT", "holding", 2),
    ("PT", "WHP-PT", "holding", 4),
    ("LEL", "WHP-LEL", "input", 0),
    ("TOX", "WHP-TOX", "input", 2),
)
TANK_STRIDE = 10


def tank_points(number: int, tank: int) -> list[dict[str, Any]]:
    """Site-map points T<number>-*-01 of simulated tank `tank` (1-based), float32 each."""
    return [
        {
            "point": f"T{number:03d}-{code}-01",
            "quota": quota,
            "address": {
                "table": table,
                "start": TANK_STRIDE * (tank - 1) + offset,
                "type": "float32",
            },
        }
        for code, quota, table, offset in TANK_POINTS
    ]


@contextmanager
def tankfarm_configs(
    work: Path, broker_url: str, sim_port: int, api_port: int
) -> Iterator[dict[str, Any]]:
    """The demo's tank farm collector.yaml and site.yaml in `work`; the `with` block gets the
    site map to change, and it is written back when the block ends."""
    write_configs(work, "tankfarm", broker_url, sim_port, api_port)
    site_path = work / "site.yaml"
    site = yaml.safe_load(site_path.read_text(encoding="utf-8"))
    yield site
    site_path.write_text(yaml.safe_dump(site, allow_unicode=True), encoding="utf-8")


def run_command(work: Path, *argv: str) -> None:
    """Run one of our commands (`BIN/argv[0]`) in `work` to its end; its error ends the bench."""
    command = [str(BIN / argv[0]), *argv[1:]]
    done = subprocess.run(command, cwd=work, capture_output=True, text=True, check=False)
    if done.returncode != 0:  # say why: the bench's error is all the report shows
        raise SystemExit(f"{' '.join(argv)} exited {done.returncode}: {done.stderr[-2000:]}")


def modbus_tcp_device(
    name: str, port: int, points: list[dict[str, Any]], *, poll: str | float, timeout: str = "1s"
) -> dict[str, Any]:
    """A site-map Modbus TCP device reading unit 1 of the simulator on loopback `port`."""
    return {
        "id": name, "driver": "modbus_tcp", "host": "127.0.0.1", "port": port, "unit_id": 1,
        "poll": poll, "timeout": timeout, "points": points,
    }  # fmt: skip


def agent_site_map(
    broker_url: str,
    devices: list[dict[str, Any]],
    *,
    uplink: dict[str, Any],
    outbox: dict[str, Any] | None = None,
) -> dict[str, Any]:
    """The demo gateway's site map: its keys in keys/ (`init_keys`), its outbox in state/.

    `uplink` and `outbox` add settings to those sections (ack_timeout, flush_interval, ...).
    """
    return {
        "site": {
            "enterprise": "91360100MA35GW001H",
            "district": "360100",
            "domain": "WHP",
            "gateway": "91360100MA35GW001H-GW01",
        },
        "uplink": {"broker": broker_url, "collector_key": "keys/collector.key.pub", **uplink},
        "signing": {"key_file": "keys/gateway.key"},
        "outbox": {"path": "state/outbox.db", **(outbox or {})},
        "devices": devices,
    }


class KeyMaker(Protocol):
    """What `init_keys` does, however it is done."""

    def __call__(self, work: Path, *, register: bool = True) -> None: ...


def init_keys(work: Path, *, register: bool = True) -> None:
    """Keys for the collector and the agent of `work`'s collector.yaml and site.yaml; with
    `register`, the agent's gateway added to the collector (as an operator does)."""
    run_command(work, "collector", "keys", "init", "-c", "collector.yaml")
    run_command(work, "edge-agent", "keys", "init", "-c", "site.yaml")
    if register:
        site = yaml.safe_load((work / "site.yaml").read_text(encoding="utf-8"))["site"]
        run_command(
            work, "collector", "gateways", "add", "-c", "collector.yaml",
            "--gateway", site["gateway"], "--district", site["district"],
            "--public-key", "keys/gateway.key.pub",
        )  # fmt: skip


def spawn(work: Path, name: str, *argv: str) -> subprocess.Popen[bytes]:
    """Start `argv` in `work`, its output appended to `<name>.log` there."""
    with (work / f"{name}.log").open("ab") as log:
        return subprocess.Popen(argv, cwd=work, stdout=log, stderr=subprocess.STDOUT)


def stop_processes(processes: Iterable[subprocess.Popen[bytes]], grace: float) -> None:
    """SIGTERM each process still running, one after another; SIGKILL it after `grace` s."""
    for process in processes:
        if process.poll() is None:
            process.terminate()
            try:
                process.wait(timeout=grace)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait()


@dataclass
class Scratch:
    """A scratch folder, the broker that runs in it and the processes started there."""

    work: Path
    broker: Broker
    processes: list[subprocess.Popen[bytes]] = field(default_factory=list)

    @classmethod
    def new(cls, prefix: str, work: Path | None = None) -> Scratch:
        """A fresh folder named `prefix...` in the temp dir (or `work`), a broker on a free port."""
        folder = work or Path(tempfile.mkdtemp(prefix=prefix))
        return cls(folder, Broker(port=free_port(), workdir=folder))

    def spawn(self, name: str, *argv: str) -> subprocess.Popen[bytes]:
        """Start `argv` in the folder (`spawn`); `stop` stops it."""
        process = spawn(self.work, name, *argv)
        self.processes.append(process)
        return process

    def cli(self, *argv: str) -> None:
        """Run one of our commands in the folder to its end (`run_command`)."""
        run_command(self.work, *argv)

    def start_collector(self, api_port: int) -> subprocess.Popen[bytes]:
        """The demo's tank-farm configs (the broker started), keys, the gateway registered,
        and `collector serve` (SQLite) answering on `api_port` — not yet waited for."""
        write_configs(self.work, "tankfarm", self.broker.url, free_port(), api_port)
        init_keys(self.work)
        return self.spawn("collector", str(BIN / "collector"), "serve", "-c", "collector.yaml")

    def stop(self, grace: float, *, keep: bool = False) -> None:
        """Stop the processes (the last started first), then the broker; remove the folder."""
        stop_processes(reversed(self.processes), grace)
        self.broker.stop()
        if not keep:
            shutil.rmtree(self.work, ignore_errors=True)
