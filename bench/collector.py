"""G3 and G4: the collector's ingest rate on SQLite and PostgreSQL, against same-run baselines.

Workload: GATEWAYS gateways each publish BLOCKS pre-signed blocks of 500 readings (50 points x
10 poll cycles: the readings of one cycle share their time, as an agent's do) through a real
Mosquitto to real `collector serve` processes. A run ends when every gateway's last block is
acknowledged (`/v1/gateways` `acked_through`); then every reading is counted in the database.

Figures:
- readings/s (wall): readings / (first publish .. last ACK);
- readings per collector CPU-second: readings / the collectors' user+system CPU time over the
  run (from /proc), i.e. the rate one core sustains, whatever else shares the machine;
- baseline: the Ed25519 single-message verify rate per CPU-second on this machine, in this run.

Targets (../docs/performance.md, G3/G4):
- G3 SQLite: >= 50,000 readings per collector CPU-second and >= 5x the verify rate;
- G4 PostgreSQL: >= 40,000 readings per collector CPU-second, CPU per reading <= 1.2x SQLite's;
  two collectors >= 1.7x one (wall). On a 2-core machine the broker, PostgreSQL, the publisher
  and two collectors share two cores: the scaling figure is reported, and gated only on a
  machine with at least 4 cores (or with `--gate-scaling`).

The Ed25519 verify rate is measured before every repeat; each ratio pairs the figures of one
repeat. Result (bench/results.py): min/median/max over `--repeats`; exit 1 when a gated median
misses. Run: `.venv/bin/python -m bench.collector [--backend sqlite|postgresql|both]
[--repeats 3] [--json PATH]`: about 1.5 min at the defaults (3 x (SQLite + PostgreSQL one +
two) runs of 200,000 readings).
"""

from __future__ import annotations

import argparse
import asyncio
import os
import shutil
import subprocess
import sys
import tempfile
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Protocol

import aiomqtt
import asyncpg
import httpx
import yaml

from bench.procfs import cpu_seconds, machine_ticks
from bench.rates import ed25519_verify_rate
from bench.results import BenchResult, Figure, add_json_argument, finished
from demo.broker import Broker, free_port, wait_for_port
from demo.postgres import create_database, drop_database
from specs.block import GENESIS, BlockHeader, block_hash, encode_block
from specs.identifiers import credit_code_check_character
from specs.records import Quality, Reading, iso_time
from specs.signing import SigningKey, generate_signing_key, signature_properties
from specs.topics import GatewayTopics
from tests.support.collector_client import publish_properties

BIN = Path(sys.executable).parent
TOKEN = "bench-token"  # noqa: S105 - a loopback-only bench
POINTS = 50
CYCLES = 10
DISTRICT = "360100"


class Identity(Protocol):
    """What registering a gateway needs."""

    @property
    def enterprise(self) -> str: ...
    @property
    def gateway(self) -> str: ...
    @property
    def key(self) -> SigningKey: ...


@dataclass(frozen=True)
class BenchGateway:
    """One simulated gateway: identity, key, and its pre-signed blocks."""

    enterprise: str
    gateway: str
    key: SigningKey
    blocks: tuple[tuple[bytes, list[tuple[str, str]]], ...]

    @property
    def topics(self) -> GatewayTopics:
        """Its gz/1 topics."""
        return GatewayTopics(DISTRICT, self.enterprise, self.gateway)


def _gateway(serial: int, blocks: int, start: float) -> BenchGateway:
    body = f"91{DISTRICT}MA{serial:07d}"
    enterprise = body + credit_code_check_character(body)
    gateway = f"{enterprise}-GW01"
    key = generate_signing_key()
    signed, prev = [], GENESIS
    for seq in range(1, blocks + 1):
        cycle0 = start + (seq - 1) * CYCLES
        readings = [
            Reading(
                point=f"T{p:03d}-LT-01",
                quota="WHP-LT",
                t=iso_time(cycle0 + c),
                value=round(1.0 + ((seq * 7 + c * 13 + p) % 997) * 0.01, 3),
                unit="m",
                quality=Quality.GOOD,
            )
            for c in range(CYCLES)
            for p in range(POINTS)
        ]
        header = BlockHeader(
            gateway, enterprise, DISTRICT, "WHP", "bench0collector", seq, prev,
            iso_time(cycle0 + CYCLES), "synced",
        )  # fmt: skip
        payload = encode_block(header, readings)
        prev = block_hash(payload)
        signed.append((payload, signature_properties(key.sign(payload))))
    return BenchGateway(enterprise, gateway, key, tuple(signed))


def verify_rate(seconds: float = 1.0) -> float:
    """Ed25519 verifications of a ~100-byte message per CPU-second of this process.

    Per CPU-second, like the collector's figure it is the baseline of: on a shared machine a
    wall-clock rate measures the neighbours as much as the verify.
    """
    message = b'{"point":"T001-LT-01","quota":"WHP-LT","t":"2026-05-28T08:00:00.000Z","value":8.57}'
    return ed25519_verify_rate(message, seconds, clock=time.process_time, batch=200)


async def _register(url: str, work: Path, gateways: Sequence[Identity]) -> None:
    from collector.model import Gateway, GatewayKey
    from collector.storage import open_storage

    async with open_storage(url, work) as storage:
        for gw in gateways:
            public = gw.key.public()
            await storage.register(
                Gateway(gw.gateway, gw.enterprise, DISTRICT, time.time()),
                GatewayKey(public.kid, gw.gateway, public.alg, public.public_pem(), time.time()),
            )


async def _publish(broker: Broker, gateways: list[BenchGateway]) -> None:
    async with aiomqtt.Client(
        "127.0.0.1", broker.port, protocol=aiomqtt.ProtocolVersion.V5
    ) as client:
        # Round robin over gateways, as many sites publishing at once would.
        for seq in range(len(gateways[0].blocks)):
            for gw in gateways:
                payload, properties = gw.blocks[seq]
                await client.publish(
                    gw.topics.block, payload, qos=1, properties=publish_properties(properties)
                )


async def _all_acked(api_port: int, gateways: list[BenchGateway]) -> None:
    wanted = len(gateways[0].blocks)
    async with httpx.AsyncClient(timeout=60) as http:  # a busy collector answers late
        while True:
            response = await http.get(
                f"http://127.0.0.1:{api_port}/v1/gateways",
                params={"limit": 10_000},
                headers={"Authorization": f"Bearer {TOKEN}"},
            )
            items = response.json()["items"]
            if sum(1 for g in items if g["acked_through"] == wanted) == len(gateways):
                return
            await asyncio.sleep(0.1)


def _write_config(work: Path, name: str, url: str, broker: Broker, api_port: int) -> Path:
    config = {
        "broker": broker.url,
        "storage": {"url": url},
        "signing": {"key_file": "keys/collector.key"},
        "ingest": {"client_id": f"bench-{name}"},
        "api": {
            "listen": f"127.0.0.1:{api_port}",
            "tokens": [{"name": "bench", "token": TOKEN, "districts": ["*"]}],
        },
    }
    path = work / f"{name}.yaml"
    path.write_text(yaml.safe_dump(config), "utf-8")
    return path


async def _count_readings(url: str, work: Path) -> int:
    if url.startswith("sqlite"):
        import sqlite3

        path = work / url.removeprefix("sqlite:///")
        with sqlite3.connect(path) as db:
            return int(db.execute("SELECT count(*) FROM readings").fetchone()[0])
    connection = await asyncpg.connect(url)
    try:
        return int(await connection.fetchval("SELECT count(*) FROM readings"))
    finally:
        await connection.close()


def start_collectors(
    work: Path,
    url: str,
    broker: Broker,
    gateways: Sequence[Identity],
    procs: list[subprocess.Popen[bytes]],
    *,
    count: int,
) -> list[int]:
    """Key, register `gateways` and start `count` `collector serve` on `url`; their API ports.

    The processes are appended to `procs` as they start, so the caller stops them whatever
    fails later.
    """
    ports = [free_port() for _ in range(count)]
    configs = [
        _write_config(work, f"collector-{i}", url, broker, port) for i, port in enumerate(ports)
    ]
    subprocess.run(
        [str(BIN / "collector"), "keys", "init", "-c", str(configs[0])],
        cwd=work, check=True, capture_output=True,
    )  # fmt: skip
    asyncio.run(_register(url, work, gateways))
    for config in configs:
        log = (work / f"{config.stem}.log").open("wb")
        procs.append(
            subprocess.Popen(
                [str(BIN / "collector"), "serve", "-c", str(config)],
                cwd=work,
                stdout=log,
                stderr=log,
            )
        )
    for port in ports:
        wait_for_port(port, timeout=60)
    time.sleep(1.0)  # the API answers before the MQTT session is up: let them subscribe
    return ports


STOP_TIMEOUT = 30.0
# `collector serve` processes this run had to SIGKILL: each left its API but not its process
# within STOP_TIMEOUT of SIGTERM. Reported in the result's notes; the bench goes on.
unstoppable: list[str] = []


def stop_collectors(procs: list[subprocess.Popen[bytes]]) -> None:
    """SIGTERM every collector, wait for each; SIGKILL (and remember) one that does not exit."""
    for proc in procs:
        proc.terminate()
    for proc in procs:
        try:
            proc.wait(timeout=STOP_TIMEOUT)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
            command = f"pid {proc.pid}: {proc.args!r}"
            unstoppable.append(command)
            print(
                f"bench: {command} did not exit {STOP_TIMEOUT:g} s after SIGTERM", file=sys.stderr
            )


def run(url: str, processes: int, gateways: list[BenchGateway]) -> dict[str, float]:
    """Ingest every gateway's blocks through `processes` collectors on `url`; figures."""
    work = Path(tempfile.mkdtemp(prefix="ganzhi-bench-collector-"))
    broker = Broker(port=free_port(), workdir=work)
    procs: list[subprocess.Popen[bytes]] = []
    try:
        broker.start()
        ports = start_collectors(work, url, broker, gateways, procs, count=processes)
        cpu_before = sum(cpu_seconds(p.pid) for p in procs)
        machine_before = machine_ticks()
        started = time.perf_counter()
        asyncio.run(_publish(broker, gateways))
        asyncio.run(_all_acked(ports[0], gateways))
        elapsed = time.perf_counter() - started
        cpu = sum(cpu_seconds(p.pid) for p in procs) - cpu_before
        busy, total = (a - b for a, b in zip(machine_ticks(), machine_before, strict=True))
        stored = asyncio.run(_count_readings(url, work))
    finally:
        try:
            stop_collectors(procs)
        finally:
            broker.stop()
            shutil.rmtree(work, ignore_errors=True)
    readings = sum(len(g.blocks) for g in gateways) * POINTS * CYCLES
    if stored != readings:
        raise SystemExit(f"bench: {stored} readings stored, {readings} sealed")
    return {
        "readings": readings,
        "seconds": round(elapsed, 3),
        "readings_per_s": round(readings / elapsed),
        "readings_per_cpu_s": round(readings / cpu),
        "collector_cpu_s": round(cpu, 3),
        # How busy the whole machine was: at ~100 % the cores, not the collectors, set the pace.
        "machine_busy_percent": round(100 * busy / total, 1),
    }


def postgres_run(processes: int, gateways: list[BenchGateway]) -> dict[str, float]:
    """One run on a fresh PostgreSQL database, dropped afterwards."""
    name = f"ganzhi_bench_{os.getpid()}_{processes}"
    url = create_database(name)
    try:
        return run(url, processes, gateways)
    finally:
        drop_database(name)


def _figures(
    verify: list[float],
    sqlite: list[dict[str, float]],
    one: list[dict[str, float]],
    two: list[dict[str, float]],
    *,
    gate_scaling: bool,
) -> list[Figure]:
    """G3 and G4 figures from the runs of each repeat (index i: the same repeat)."""
    cores = os.cpu_count() or 1
    figures = [
        Figure(
            "", "Ed25519 single-message verify rate per CPU-second", "/s", tuple(map(round, verify))
        )
    ]
    if sqlite:
        cpu = tuple(float(r["readings_per_cpu_s"]) for r in sqlite)
        figures += [
            Figure("G3", "SQLite ingest, readings per collector CPU-second", "readings/s", cpu,
                   target=50_000),
            Figure("G3", "SQLite ingest per CPU-second over the verify rate", "x",
                   tuple(round(c / v, 2) for c, v in zip(cpu, verify, strict=False)), target=5,
                   baseline="Ed25519 verifies per CPU-second, same repeat"),
            Figure("", "SQLite ingest, readings/s (wall)", "readings/s",
                   tuple(float(r["readings_per_s"]) for r in sqlite)),
        ]  # fmt: skip
    if one:
        pg = tuple(float(r["readings_per_cpu_s"]) for r in one)
        wall_one = tuple(float(r["readings_per_s"]) for r in one)
        wall_two = tuple(float(r["readings_per_s"]) for r in two)
        gated = gate_scaling or cores >= 4
        figures += [
            Figure("G4", "PostgreSQL ingest, readings per collector CPU-second", "readings/s", pg,
                   target=40_000),
            Figure("", "PostgreSQL ingest, one collector, readings/s (wall)", "readings/s",
                   wall_one),
            Figure("G4", "two collectors over one, readings/s (wall)", "x",
                   tuple(round(b / a, 2) for a, b in zip(wall_one, wall_two, strict=True)),
                   target=1.7, baseline="one collector, same repeat", gated=gated,
                   note="" if gated else f"{cores} cores: broker, PostgreSQL, publisher and two "
                   "collectors share them; gated on >= 4 cores"),
        ]  # fmt: skip
        if sqlite:
            cost = tuple(
                round(float(s["readings_per_cpu_s"]) / p, 2)
                for s, p in zip(sqlite, pg, strict=True)
            )
            figures.append(
                Figure("G4", "collector CPU per reading, PostgreSQL over SQLite", "x", cost,
                       target=1.2, direction="at_most", baseline="SQLite ingest, same repeat")
            )  # fmt: skip
    return figures


def main() -> int:
    """Measure, write the result, and fail when a gated median misses its target."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--backend", choices=["sqlite", "postgresql", "both"], default="both")
    parser.add_argument("--gateways", type=int, default=20)
    parser.add_argument("--blocks", type=int, default=20, help="blocks per gateway")
    parser.add_argument("--repeats", "--repeat", type=int, default=3)
    parser.add_argument("--gate-scaling", action="store_true", help="gate G4 scaling (< 4 cores)")
    add_json_argument(parser)
    args = parser.parse_args()
    start = time.time() - 86400
    gateways = [_gateway(serial, args.blocks, start) for serial in range(1, args.gateways + 1)]
    verify: list[float] = []
    sqlite: list[dict[str, float]] = []
    one: list[dict[str, float]] = []
    two: list[dict[str, float]] = []
    for _ in range(args.repeats):  # interleaved: every backend sees the same machine load
        verify.append(verify_rate())
        if args.backend in {"sqlite", "both"}:
            sqlite.append(run("sqlite:///collector.db", 1, gateways))
        if args.backend in {"postgresql", "both"}:
            one.append(postgres_run(1, gateways))
            two.append(postgres_run(2, gateways))
    busy = [r["machine_busy_percent"] for r in (*sqlite, *one, *two)]
    readings = args.gateways * args.blocks * POINTS * CYCLES
    result = BenchResult(
        "collector",
        tuple(_figures(verify, sqlite, one, two, gate_scaling=args.gate_scaling)),
        notes=(
            (
                f"{args.gateways} gateways x {args.blocks} pre-signed blocks of {POINTS * CYCLES} "
                f"readings ({readings:,} per run) through a real Mosquitto to `collector serve`."
            ),
            (
                f"Machine busy during the runs: {min(busy):.0f}-{max(busy):.0f} % of all cores "
                "(near 100 %, the cores, not the collector, set the wall-clock pace)."
            ),
            *(
                f"SIGKILLed, still running {STOP_TIMEOUT:g} s after SIGTERM: {c}"
                for c in unstoppable
            ),
        ),
    )
    return finished(args.json, result)


if __name__ == "__main__":
    sys.exit(main())
