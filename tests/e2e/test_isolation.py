"""Isolation (issue 4 point 7): three faults at once, and the healthy devices do not notice.

One agent process (`edge-agent run`) with a real Mosquitto and a real collector, reading:

* a shared Modbus RTU bus on a pty (`simulators.rtu_bus`) with three slaves, unit 2 silent;
* an OPC UA slope server (`simulators.slope_opcua`) that is stopped and started again
  mid-run, as a new process on the same port;
* a free-running serial gas analyzer (`simulators.gas_analyzer`) that sends only garbage;
* the healthy devices: RTU units 1 and 3 on that same bus and a request/response analyzer.

Every simulator runs in its own process and prints its pty path; the agent is a subprocess.
Asserted: the healthy devices keep their poll cadence within one timeout (gaps between the
reading times the agent committed), every committed reading is served by the collector exactly
once (the harness oracle), the silent slave's and the garbage instrument's readings are BAD
but present every cycle, and the OPC UA points are GOOD again after the restart.
"""

from __future__ import annotations

import itertools
import statistics
import subprocess
import sys
import time
from collections import Counter
from collections.abc import Iterator
from pathlib import Path

import pytest
import yaml

from demo.__main__ import TOKEN
from specs.records import parse_iso_time
from tests.e2e.harness import ReadingKey, Site, wait_until
from tests.support.broker import Broker, free_port, wait_for_port

# Under load the run takes 60-90 s, of which restarting the OPC UA server up to 25 s.
pytestmark = pytest.mark.timeout(240)

BIN = Path(sys.executable).parent
POLL = 0.5
RTU_TIMEOUT = 0.3  # the silent slave's: what a healthy slave on its bus may queue behind
# The healthy devices' own timeout. It is not what this test is about, and every simulator is
# a process of its own on a busy 2-core machine: with 0.3 s, one the scheduler leaves waiting
# that long answers after its master gave up, and its healthy points are BAD for a reason
# that says nothing about isolation. A second is beyond the stalls measured under load (the
# simulator at most 75 ms late, 18 runs at load 8-10), and what isolation must prove, that
# the healthy readings come on time, the gap limit below checks whatever the timeout.
OWN_TIMEOUT = 1.0
# A healthy device's reading may come late by one timeout of the silent slave it queued
# behind on the bus, plus the bus transactions queued with it (a few ms each at 19,200 baud)
# and the scheduling noise of seven processes on a small CI machine. The slack covers the
# last two; a failure of isolation (waiting for a whole poll cycle, a reconnect or the OPC UA
# server) costs far more than it.
SLACK = 0.15
OPC_KEEPALIVE = 1.0

HEALTHY = ("H3-PC", "H3-PR", "R1-PC", "R1-PR", "G1-TOX", "G1-CO")
SILENT = ("R2-PC",)
GARBAGE = ("G2-TOX",)
SLOPE = ("S1-GX", "S1-GY")
HEALTHY_DEVICE = {
    "H3-PC": "headcount-3",
    "H3-PR": "headcount-3",
    "R1-PC": "counter-1",
    "R1-PR": "counter-1",
    "G1-TOX": "gas-ok",
    "G1-CO": "gas-ok",
}
# How long past its poll slot a healthy reading may come, before the slack.
HEALTHY_WAIT = {
    "H3-PC": RTU_TIMEOUT,
    "H3-PR": RTU_TIMEOUT,
    "R1-PC": RTU_TIMEOUT,
    "R1-PR": RTU_TIMEOUT,
    # The analyzer has its own port: nothing on it waits for another device (the allowance
    # it had as its own timeout before OWN_TIMEOUT, kept).
    "G1-TOX": 0.3,
    "G1-CO": 0.3,
}


def _site_map(rtu: str, gas_ok: str, gas_bad: str, ua_port: int, broker: str) -> dict[str, object]:
    # A pty keeps no parity across reopening, so the bus runs 8N2 (11-bit characters, as 8E1).
    rtu_line = {"port": rtu, "baudrate": 19200, "parity": "N", "stopbits": 2}

    def slave(
        name: str, unit_id: int, *points: dict[str, object], timeout: float = OWN_TIMEOUT
    ) -> dict[str, object]:
        return {
            "id": name, "driver": "modbus_rtu", **rtu_line, "unit_id": unit_id,
            "poll": f"{POLL}s", "timeout": f"{timeout}s", "points": list(points),
        }  # fmt: skip

    return {
        "site": {
            "enterprise": "91360100MA35GW001H",
            "district": "360100",
            "domain": "YHBZ",
            "gateway": "91360100MA35GW001H-GW07",
        },
        "uplink": {"broker": broker, "collector_key": "keys/collector.key.pub"},
        "signing": {"key_file": "keys/gateway.key"},
        "outbox": {"path": "state/outbox.db"},
        "devices": [
            # The silent slave first: its poll task starts first, so on every try its request
            # is ahead of the others' in the bus queue and they wait out its whole timeout.
            slave(
                "counter-2", 2, _register("R2-PC", "YHBZ-PC", "holding", 210), timeout=RTU_TIMEOUT
            ),
            slave(
                "headcount-3",
                3,
                _register("H3-PC", "YHBZ-PC", "input", 0),
                _register("H3-PR", "YHBZ-PR", "input", 1),
            ),
            slave(
                "counter-1",
                1,
                _register("R1-PC", "YHBZ-PC", "holding", 210),
                _register("R1-PR", "YHBZ-PR", "holding", 205),
            ),
            {
                "id": "gas-ok",
                "driver": "serial",
                "port": gas_ok,
                "request": "RD\r\n",
                "checksum": "xor",
                "poll": f"{POLL}s",
                "timeout": f"{OWN_TIMEOUT}s",
                "points": [
                    {"point": "G1-TOX", "quota": "WHP-TOX", "pattern": r"H2S=(?P<value>[0-9.]+)"},
                    {"point": "G1-CO", "quota": "WHP-TOX", "pattern": r"CO=(?P<value>[0-9.]+)"},
                ],
            },
            {
                "id": "gas-noisy",
                "driver": "serial",
                "port": gas_bad,
                "checksum": "xor",
                "poll": f"{POLL}s",
                "max_age": "2s",
                "points": [
                    {"point": "G2-TOX", "quota": "WHP-TOX", "pattern": r"H2S=(?P<value>[0-9.]+)"}
                ],
            },
            {
                "id": "slope",
                "driver": "opcua",
                "endpoint": f"opc.tcp://127.0.0.1:{ua_port}",
                "poll": f"{POLL}s",
                "publishing_interval": "200ms",
                "keepalive": f"{OPC_KEEPALIVE:g}s",
                "timeout": "2s",
                "points": [
                    {"point": "S1-GX", "quota": "BP-GX", "node": "ns=2;s=Slope.G1.X"},
                    {"point": "S1-GY", "quota": "BP-GY", "node": "ns=2;s=Slope.G1.Y"},
                ],
            },
        ],
    }


def _register(point: str, quota: str, table: str, start: int) -> dict[str, object]:
    return {
        "point": point,
        "quota": quota,
        "address": {"table": table, "start": start, "type": "uint16"},
    }


def _cli(work: Path, *argv: str) -> None:
    subprocess.run(argv, cwd=work, check=True, capture_output=True)


def _pty_path(site: Site, name: str) -> str:
    """The pty path a serial simulator printed as its first line."""
    log = site.work / f"{name}.log"
    wait_until(
        lambda: log.exists() and log.read_text(encoding="utf-8").startswith("/dev/"),
        10,
        f"the {name} simulator's pty path",
    )
    return log.read_text(encoding="utf-8").splitlines()[0]


def _start_slope(site: Site, port: int) -> None:
    site._spawn(
        "slope", str(BIN / "python"), "-m", "simulators.slope_opcua",
        "--port", str(port), "--stations", "1", "--interval", "0.2",
    )  # fmt: skip
    # An asyncua server builds its whole address space at start: 2-3 s on an idle machine,
    # 6-25 s measured at load 8-10, when 20 s here failed 2 runs of 18.
    wait_for_port(port, timeout=60)


def _times(readings: Counter[ReadingKey], point: str) -> list[tuple[float, str]]:
    """(time, quality) of every committed reading of one point, in time order."""
    return sorted(
        (parse_iso_time(t), quality)
        for (code, t, _, quality), count in readings.items()
        for _ in range(count)
        if code == point
    )


def _why_bad(site: Site, point: str) -> str:
    """What a failure of a healthy point says: its qualities, the stored flags of its BAD
    readings (the driver's error, as the outbox keeps it) and what its device logged."""
    records = [r for r in site.outbox_records() if r.point == point]
    bad = Counter((r.quality.value, r.flags) for r in records if r.quality.value != "good")
    device = HEALTHY_DEVICE[point]
    said = [line for line in site.log("agent").splitlines() if f'"device": "{device}"' in line]
    return (
        f"{point}: {Counter(r.quality.value for r in records)}, not good: {dict(bad)}; "
        f"{device} logged: {said}"
    )


@pytest.fixture
def site(tmp_path: Path, broker: Broker) -> Iterator[Site]:
    work = tmp_path / "site"
    work.mkdir()
    instance = Site(work=work, broker=broker)
    yield instance
    instance.stop_all()


def test_faults_on_three_links_leave_the_other_devices_alone(site: Site) -> None:  # noqa: PLR0915
    work = site.work
    ua_port = free_port()
    site._spawn(
        "rtu", str(BIN / "python"), "-m", "simulators.rtu_bus",
        "--units", "1,2", "--headcount", "3", "--baudrate", "19200", "--fault", "2=silent",
    )  # fmt: skip
    site._spawn("gas_ok", str(BIN / "python"), "-m", "simulators.gas_analyzer")
    site._spawn(
        "gas_bad", str(BIN / "python"), "-m", "simulators.gas_analyzer",
        "--free-running", "0.2", "--fault", "garbage",
    )  # fmt: skip
    site_map = _site_map(
        _pty_path(site, "rtu"),
        _pty_path(site, "gas_ok"),
        _pty_path(site, "gas_bad"),
        ua_port,
        site.broker.url,
    )
    (work / "site.yaml").write_text(yaml.safe_dump(site_map), encoding="utf-8")
    collector = {
        "broker": site.broker.url,
        "storage": {"url": "sqlite:///state/collector.db"},
        "signing": {"key_file": "keys/collector.key"},
        "api": {
            "listen": f"127.0.0.1:{site.api_port}",
            "tokens": [{"name": "test", "token": TOKEN, "districts": ["*"]}],
        },
    }
    (work / "collector.yaml").write_text(yaml.safe_dump(collector), encoding="utf-8")
    _cli(work, str(BIN / "collector"), "keys", "init", "-c", "collector.yaml")
    _cli(work, str(BIN / "edge-agent"), "keys", "init", "-c", "site.yaml")
    site.gateway = "91360100MA35GW001H-GW07"
    _cli(
        work, str(BIN / "collector"), "gateways", "add", "-c", "collector.yaml",
        "--gateway", site.gateway, "--public-key", "keys/gateway.key.pub",
    )  # fmt: skip
    _start_slope(site, ua_port)
    site.start_collector()
    site.start_agent()

    def good_slope_after(moment: float) -> bool:
        if site.sealed_blocks() == 0:
            return False
        readings = site.outbox_readings()
        return all(any(t > moment and q == "good" for t, q in _times(readings, p)) for p in SLOPE)

    # Steady state with the silent slave and the garbage instrument from the start.
    wait_until(lambda: good_slope_after(0.0), 30, "GOOD OPC UA readings")
    time.sleep(3 * POLL)

    # The OPC UA server goes away for a while and comes back as a new process.
    site.stop("slope")  # returns once the process has exited (it serves until then)
    stopped_at = time.time()
    time.sleep(2.0 + 1.5 * OPC_KEEPALIVE)  # long enough to be noticed, then seen BAD
    restarting_at = time.time()  # the new server's values carry its own times from here on
    _start_slope(site, ua_port)
    back_at = time.time()
    wait_until(lambda: good_slope_after(back_at), 30, "OPC UA GOOD again after the restart")
    recovered_at = min(
        t
        for p in SLOPE
        for t, q in _times(site.outbox_readings(), p)
        if t > back_at and q == "good"
    )
    time.sleep(3 * POLL)
    site.drain_and_stop_agent()

    # Every committed reading is served by the collector exactly once.
    committed = site.outbox_readings()
    served = site.collector_readings()
    assert not committed - served, f"{sum((committed - served).values())} never arrived"
    assert not served - committed, f"{sum((served - committed).values())} served too often"
    for epoch, seqs in site.outbox_seqs().items():
        assert seqs == list(range(seqs[0], seqs[0] + len(seqs))), f"seq gap in epoch {epoch}"

    # The healthy devices kept their cadence, within one timeout, and were GOOD throughout.
    report = []
    for point in HEALTHY:
        series = _times(committed, point)
        assert {q for _, q in series} == {"good"}, _why_bad(site, point)
        gaps = [b - a for (a, _), (b, _) in itertools.pairwise(t for t in series)]
        limit = POLL + HEALTHY_WAIT[point] + SLACK
        # Whether a try of the silent slave lands ahead of a healthy one in the bus queue is
        # up to the scheduler; when it does, the healthy reading is late by the silent one's
        # timeout.
        late = sum(gap > POLL + RTU_TIMEOUT / 2 for gap in gaps)
        report.append(
            f"{point}: {len(series)} readings, gap mean {statistics.mean(gaps) * 1000:.0f} ms,"
            f" min {min(gaps) * 1000:.0f} ms, max {max(gaps) * 1000:.0f} ms (limit "
            f"{limit * 1000:.0f} ms), {late} late by a timeout"
        )
        assert max(gaps) <= limit, report[-1]
        assert statistics.mean(gaps) == pytest.approx(POLL, rel=0.1), report[-1]
    span = _times(committed, HEALTHY[0])
    cycles = len(span)

    # The faulty ones are BAD, not missing: one reading per cycle (the silent slave after
    # its first timeout is not asked again until its backoff ends, yet still reports).
    for point in (*SILENT, *GARBAGE):
        series = _times(committed, point)
        assert {q for _, q in series} == {"bad"}, (point, Counter(q for _, q in series))
        assert len(series) >= 0.9 * cycles, (point, len(series), cycles)
        report.append(f"{point}: {len(series)} readings, all bad ({cycles} healthy cycles)")

    # OPC UA: BAD while the server was away, GOOD again after it came back.
    for point in SLOPE:
        series = _times(committed, point)
        # From when the driver must have noticed (a closed socket at once, a silent one
        # within 1.5 keepalives; until then it may hold the last value) until it listened again.
        noticed = stopped_at + 1.5 * OPC_KEEPALIVE + POLL
        outage = [q for t, q in series if noticed < t < restarting_at]
        assert outage, f"{point}: no readings while the server was down"
        assert set(outage) == {"bad"}, (point, Counter(outage))
        assert series[-1][1] == "good", point
    report.append(
        f"OPC UA: down {back_at - stopped_at:.1f} s, GOOD again "
        f"{recovered_at - back_at:.1f} s after the server was back"
    )
    # The agent retries an OPC UA server at least once per keepalive (1 s here); connecting,
    # subscribing and the next poll take the rest.
    assert recovered_at - back_at <= 5.0, report[-1]
    log = site.log("agent")
    assert '"event": "rtu_bus_planned"' in log
    tries = log.count('"device": "counter-2", "error"')
    assert tries >= 2, "the silent slave was asked again after its backoff"
    report.append(f"silent slave: {tries} timeouts of {RTU_TIMEOUT * 1000:.0f} ms on the bus")
    print("\n".join(report), file=sys.stderr)
