"""A whole site on loopback: simulator, collector and agent as real processes.

The oracle is the agent's own outbox: every record of every sealed block must be served by
the collector exactly once (DESIGN invariant 1). Records are compared as a multiset of
(point, t, value, quality), so a duplicate or a loss both show.
"""

from __future__ import annotations

import atexit
import contextlib
import hashlib
import json
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from collections import Counter
from collections.abc import Callable, Sequence
from contextlib import closing
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from collector.api.core import shown_value
from demo.__main__ import api_get, profile_for, write_configs
from specs.records import Reading
from tests.support.broker import Broker, free_port, wait_for_port
from tests.support.cli_runs import collector_cli
from tests.support.logging_state import logging_restored
from tests.support.outbox_file import committed_readings, read_only, sealed_blocks

BIN = Path(sys.executable).parent
ReadingKey = tuple[str, str, float | None, str]


def wait_until(condition: Callable[[], bool], timeout: float, what: str) -> None:
    """Poll `condition` every 100 ms until it holds; fail with `what` after `timeout`."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if condition():
            return
        time.sleep(0.1)
    raise AssertionError(f"timed out after {timeout}s waiting for {what}")


def _cli(*argv: str, cwd: Path) -> None:
    subprocess.run(argv, cwd=cwd, check=True, capture_output=True)


# Both programs' `keys init` cost two interpreter start-ups per site (about 1 s each on an idle
# 2-core box, 2-3 s under load), and a session sets up some 60 sites. What they write depends
# only on the `signing` sections of the two configs, so each distinct pair is made once by the
# real commands and its files (modes kept) copied into every later site with the same pair.
_KEYS = Path(tempfile.mkdtemp(prefix="ganzhi-test-keys-"))
atexit.register(shutil.rmtree, _KEYS, ignore_errors=True)


def _init_keys(work: Path) -> None:
    """`keys init` of the collector and the agent in `work`, or the files they made before."""
    signing = [
        yaml.safe_load((work / name).read_text(encoding="utf-8"))["signing"]
        for name in ("collector.yaml", "site.yaml")
    ]
    made = _KEYS / hashlib.sha256(json.dumps(signing, sort_keys=True).encode()).hexdigest()
    if not made.exists():
        scratch = made.with_suffix(".making")
        shutil.rmtree(scratch, ignore_errors=True)
        scratch.mkdir()
        for name in ("collector.yaml", "site.yaml"):
            shutil.copy2(work / name, scratch / name)
        _cli(str(BIN / "collector"), "keys", "init", "-c", "collector.yaml", cwd=scratch)
        _cli(str(BIN / "edge-agent"), "keys", "init", "-c", "site.yaml", cwd=scratch)
        for name in ("collector.yaml", "site.yaml"):
            (scratch / name).unlink()
        scratch.rename(made)
    shutil.copytree(made, work, dirs_exist_ok=True)


def register_gateway(work: Path) -> str:
    """`collector gateways add` of the gateway of `work`'s site.yaml, its key
    keys/gateway.key.pub, into the storage of `work`'s collector.yaml; the gateway's id.

    In-process (click's runner), not a process: the command is the same, without the second
    of interpreter start-up each of some 100 sites a session would spend on it.
    """
    site = yaml.safe_load((work / "site.yaml").read_text(encoding="utf-8"))["site"]
    with logging_restored():
        added = collector_cli(
            "gateways", "add", "-c", str(work / "collector.yaml"),
            "--gateway", site["gateway"], "--district", site["district"],
            "--public-key", str(work / "keys" / "gateway.key.pub"),
        )  # fmt: skip
    assert added.exit_code == 0, added.output
    return str(site["gateway"])


@dataclass
class Site:
    """One agent, one collector and one simulator around a test's broker.

    `site_name` picks the site map in configs/ and, through the demo's mapping, the
    simulator profile its devices read.
    """

    work: Path
    broker: Broker
    sim_port: int = field(default_factory=free_port)
    api_port: int = field(default_factory=free_port)
    processes: dict[str, subprocess.Popen[bytes]] = field(default_factory=dict)
    gateway: str = ""
    site_name: str = "tankfarm"
    # Where the agent's outbox lives, relative to `work` (a test may move it to another disk).
    outbox_file: str = "state/outbox.db"
    storage_url: str = "sqlite:///state/collector.db"
    # API port of each collector by process name (`collector` is the one `setup` configures).
    collector_ports: dict[str, int] = field(default_factory=dict)

    def setup(
        self, poll: str = "200ms", configure: Callable[[dict[str, Any]], None] | None = None
    ) -> None:
        """Write configs and register keys with the real commands (`keys init` made once per
        session and signing settings, see `_init_keys`).

        `configure`, when given, edits the site map (as loaded from site.yaml) before the keys
        are made: fault tests shorten timeouts, drop devices or point the uplink at a proxy.
        """
        write_configs(
            self.work,
            self.site_name,
            self.broker.url,
            self.sim_port,
            self.api_port,
            poll=poll,
            storage_url=self.storage_url,
        )
        self.collector_ports["collector"] = self.api_port
        if configure is not None:
            path = self.work / "site.yaml"
            site_map = yaml.safe_load(path.read_text(encoding="utf-8"))
            configure(site_map)
            path.write_text(yaml.safe_dump(site_map, allow_unicode=True), encoding="utf-8")
        _init_keys(self.work)
        self.register_gateway()

    def register_gateway(self) -> None:
        """`collector gateways add` of the site's gateway and its public key (again, after the
        collector lost its database)."""
        self.gateway = register_gateway(self.work)

    def _spawn(self, name: str, *argv: str) -> None:
        self.stop(name)  # never drop a running (or unreaped) process of the same name
        with (self.work / f"{name}.log").open("ab") as log:
            self.processes[name] = subprocess.Popen(
                argv, cwd=self.work, stdout=log, stderr=subprocess.STDOUT
            )

    def start_sim(self) -> None:
        """Start the simulator profile of this site (the tank farm by default)."""
        self._spawn(
            "sim", str(BIN / "python"), "-m", "simulators",
            "--profile", profile_for(self.site_name), "--port", str(self.sim_port),
        )  # fmt: skip
        wait_for_port(self.sim_port)

    def add_collector(
        self, name: str, client_id: str | None = None, session_expiry: str | None = None
    ) -> None:
        """Configure another collector `name` on the same database, with an API of its own.

        Its MQTT session is durable either way (clean start off, `ingest.session_expiry`, one
        day by default): without `client_id` under the default id, which differs by
        `api.listen` and so from every other collector of the site; with it under that id
        (what `ingest.client_id` does). A SIGKILLed collector's session holds its share of the
        group's blocks until it comes back or `session_expiry` (a duration, "5s") ends it.
        """
        config = yaml.safe_load((self.work / "collector.yaml").read_text(encoding="utf-8"))
        port = free_port()
        config["api"]["listen"] = f"127.0.0.1:{port}"
        ingest = config.setdefault("ingest", {})
        if client_id is not None:
            ingest["client_id"] = client_id
        if session_expiry is not None:
            ingest["session_expiry"] = session_expiry
        (self.work / f"{name}.yaml").write_text(yaml.safe_dump(config), encoding="utf-8")
        self.collector_ports[name] = port

    def start_collector(self, name: str = "collector", *options: str) -> None:
        """Start `collector [options] serve` for config `<name>.yaml`; wait for its API."""
        self._spawn(name, str(BIN / "collector"), *options, "serve", "-c", f"{name}.yaml")
        wait_for_port(self.collector_ports.get(name, self.api_port), timeout=30)

    def start_agent(self, wrapper: Sequence[str] = ()) -> None:
        """Start `edge-agent run` (behind `wrapper`, a command that runs it, when given)."""
        self._spawn("agent", *wrapper, str(BIN / "edge-agent"), "run", "-c", "site.yaml")

    def stop(self, name: str, sig: int = signal.SIGTERM) -> None:
        """Stop one process (SIGKILL to simulate a crash or power cut)."""
        process = self.processes.pop(name, None)
        if process is None or process.poll() is not None:
            return
        with contextlib.suppress(ProcessLookupError):  # it may have exited a moment ago
            os.kill(process.pid, sig)
            if sig != signal.SIGKILL:
                os.kill(process.pid, signal.SIGCONT)  # a frozen process must act on it
        try:
            process.wait(timeout=30)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()
            raise AssertionError(f"{name} did not stop within 30 s of signal {sig}") from None

    def stop_all(self) -> None:
        """Stop every process this site started."""
        for name in list(self.processes):
            self.stop(name)

    def send_signal(self, name: str, sig: int) -> None:
        """Send a signal to a running process and keep it (SIGSTOP/SIGCONT to freeze it)."""
        process = self.processes[name]
        assert process.poll() is None, f"{name} is not running"
        os.kill(process.pid, sig)

    def alive(self, name: str) -> bool:
        """Whether the named process still runs."""
        process = self.processes.get(name)
        return process is not None and process.poll() is None

    def log(self, name: str) -> str:
        """The named process's combined output so far."""
        return (self.work / f"{name}.log").read_text(encoding="utf-8", errors="replace")

    # --- the oracle -----------------------------------------------------------------------

    @property
    def outbox_path(self) -> Path:
        """The agent's outbox file."""
        return self.work / self.outbox_file

    def outbox_records(self) -> list[Reading]:
        """Every reading the agent ever committed to its outbox, whole (flags included)."""
        return committed_readings(self.outbox_path)

    def outbox_readings(self) -> Counter[ReadingKey]:
        """Every reading the agent ever committed to its outbox."""
        return Counter(
            (record.point, record.t, shown_value(record.value), record.quality.value)
            for record in self.outbox_records()
        )

    def outbox_seqs(self) -> dict[str, list[int]]:
        """Sealed seqs per epoch."""
        seqs: dict[str, list[int]] = {}
        with closing(read_only(self.outbox_path)) as db:
            for epoch, seq in db.execute("SELECT epoch, seq FROM blocks ORDER BY epoch, seq"):
                seqs.setdefault(str(epoch), []).append(int(seq))
        return seqs

    def undelivered(self) -> int:
        """Blocks still waiting for a collector ACK."""
        with closing(read_only(self.outbox_path)) as db:
            row = db.execute("SELECT COUNT(*) FROM blocks WHERE delivered_at IS NULL").fetchone()
        return int(row[0])

    def sealed_blocks(self) -> int:
        """Blocks sealed so far (0 before the outbox exists)."""
        return sealed_blocks(self.outbox_path)

    def api(self, path: str, **params: str | int) -> dict[str, object]:
        """GET an API path with the demo token."""
        body = api_get(self.api_port, path, **params)
        assert isinstance(body, dict)
        return body

    def collector_items(self) -> list[dict[str, Any]]:
        """The collector's readings of this gateway as the API gives them, following cursors."""
        items: list[dict[str, Any]] = []
        cursor: str | None = None
        while True:
            params: dict[str, str | int] = {"gateway": self.gateway, "limit": 5000}
            if cursor:
                params["cursor"] = cursor
            body = self.api("/v1/readings", **params)
            page = body["items"]
            assert isinstance(page, list)
            items.extend(page)
            next_cursor = body["next"]
            if not next_cursor:
                return items
            cursor = str(next_cursor)

    def collector_readings(self) -> Counter[ReadingKey]:
        """Every reading the collector serves for this gateway, following cursors."""
        # Both sides through shown_value: equal whether or not the API shortened it.
        return Counter(
            (item["point"], item["t"], shown_value(item["value"]), item["quality"])
            for item in self.collector_items()
        )

    def assert_committed_readings_served_once(self) -> int:
        """Every reading the outbox committed is served exactly once; how many there are."""
        committed = self.outbox_readings()
        served = self.collector_readings()
        assert sum(committed.values()) > 0
        missing = committed - served
        extra = served - committed
        assert not missing, f"{sum(missing.values())} committed readings never arrived"
        assert not extra, f"{sum(extra.values())} readings served more often than committed"
        return sum(committed.values())

    def drain_and_stop_agent(self, timeout: float = 60) -> None:
        """Wait until the collector ACKed everything, then stop the agent gracefully."""
        wait_until(lambda: self.undelivered() == 0, timeout, "every block ACKed")
        self.stop("agent")
        # A graceful stop seals what is queued and waits for those last ACKs before exiting.
        assert self.undelivered() == 0, "blocks sealed at shutdown were not ACKed"
