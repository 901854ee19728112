"""Our side of the peer bench: the real `edge-agent run` and `collector serve` (SQLite).

The site map is the tank-farm demo's (demo.write_configs) with its devices replaced by the
bench's: one Modbus TCP device per `TbDevice`, each point a big-endian float32 at the same
table and address ThingsBoard IoT Gateway reads, polled every second (as bench/memory.py
builds its 1,000-tag case). Delivered readings are the rows of the collector's `readings`
table; sealed ones are the outbox's (`unstored` compares them block by block).
"""

from __future__ import annotations

import contextlib
import sqlite3
import subprocess
from collections import defaultdict
from collections.abc import Sequence
from contextlib import closing
from pathlib import Path
from typing import Any

from bench.peers.tb_gateway import TbDevice
from bench.rig import (
    BIN,
    init_keys,
    modbus_tcp_device,
    spawn,
    stop_processes,
    tankfarm_configs,
)
from demo.broker import free_port, wait_for_port

QUOTA = {"LT": "WHP-LT", "TT": "WHP-TT", "PT": "WHP-PT", "LEL": "WHP-LEL", "TOX": "WHP-TOX"}


def _device(device: TbDevice) -> dict[str, Any]:
    points = [
        {
            "point": point.key,
            "quota": QUOTA[point.key.split("-")[1]],
            "address": {"table": point.table, "start": point.address, "type": "float32"},
        }
        for point in device.points
    ]
    return modbus_tcp_device(device.name, device.port, points, poll="1s")


def _query(path: Path, sql: str) -> list[tuple[Any, ...]]:
    """Rows of `sql` on the SQLite file at `path`, read-only; none while it is not there."""
    if not path.exists():
        return []
    with (
        contextlib.suppress(sqlite3.OperationalError),  # not created yet
        closing(sqlite3.connect(f"file:{path}?mode=ro", uri=True, timeout=10)) as db,
    ):
        return db.execute(sql).fetchall()
    return []


class OurSite:
    """A collector and an agent in `work`, on a broker and simulator the bench runs."""

    def __init__(self, work: Path, broker_url: str) -> None:
        self.work = work
        self.broker_url = broker_url
        self.processes: list[subprocess.Popen[bytes]] = []
        self.agent: subprocess.Popen[bytes] | None = None

    def _spawn(self, name: str, *argv: str) -> subprocess.Popen[bytes]:
        """Start one of our commands (`BIN/argv[0]`)."""
        process = spawn(self.work, name, str(BIN / argv[0]), *argv[1:])
        self.processes.append(process)
        return process

    def start(self, devices: Sequence[TbDevice]) -> int:
        """Configure and start the collector, then the agent; the agent's pid."""
        api_port = free_port()
        with tankfarm_configs(self.work, self.broker_url, devices[0].port, api_port) as site:
            site["devices"] = [_device(d) for d in devices]
            site.pop("alarms", None)
        init_keys(self.work)
        self._spawn("collector", "collector", "serve", "-c", "collector.yaml")
        wait_for_port(api_port, timeout=30)
        self.agent = self._spawn("agent", "edge-agent", "run", "-c", "site.yaml")
        return self.agent.pid

    def exited(self) -> str | None:
        """Which of our processes has exited, if one has."""
        names = ("collector", "agent")
        return next(
            (n for n, p in zip(names, self.processes, strict=False) if p.poll() is not None), None
        )

    def delivered(self) -> int:
        """Readings the collector has stored."""
        rows = _query(self.work / "state" / "collector.db", "SELECT count(*) FROM readings")
        return int(rows[0][0]) if rows else 0

    def unstored(self, sealed_by: float) -> tuple[int, int]:
        """(readings sealed by `sealed_by` (wall clock), those of them the collector lacks).

        Exact: block by block, the outbox's count against the collector's rows of that block.
        """
        sealed = {
            (str(epoch), int(seq)): int(n)
            for epoch, seq, n in _query(
                self.work / "state" / "outbox.db",
                "SELECT epoch, seq, coalesce(readings, records) FROM blocks"
                f" WHERE sealed_at <= {float(sealed_by)!r}",
            )
        }
        stored = {
            (str(epoch), int(seq)): int(n)
            for epoch, seq, n in _query(
                self.work / "state" / "collector.db",
                "SELECT epoch, seq, count(*) FROM readings GROUP BY epoch, seq",
            )
        }
        lacking = sum(max(0, n - stored.get(key, 0)) for key, n in sealed.items())
        return sum(sealed.values()), lacking

    def series(self) -> dict[str, list[float]]:
        """Every point's distinct stored reading times, in seconds, oldest first."""
        found: dict[str, set[float]] = defaultdict(set)
        for point, t in _query(
            self.work / "state" / "collector.db", "SELECT point, t FROM readings"
        ):
            found[str(point)].add(float(t))
        return {k: sorted(v) for k, v in found.items()}

    def stop(self) -> None:
        """SIGTERM the agent, then the collector."""
        stop_processes(reversed(self.processes), 30)
