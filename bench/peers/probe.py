"""What the peer bench reads from outside a gateway process: uplink bytes and the readings
missing from each point's series (its CPU time and memory: bench/procfs.py).

Everything here looks at a process the way `top` and `ss` do, so both gateways are measured
by the same code whatever they run on.
"""

from __future__ import annotations

import re
import subprocess
from collections.abc import Iterable
from dataclasses import dataclass

_SOCKET = re.compile(r"^ESTAB\s.*?127\.0\.0\.1:(\d+)\s+127\.0\.0\.1:(\d+)\s.*?pid=(\d+),")
_ACKED = re.compile(r"\bbytes_acked:(\d+)")


def uplink_bytes(pid: int, broker_port: int) -> dict[int, int]:
    """Bytes the broker has acknowledged on each TCP connection of `pid` to the broker.

    Keyed by the connection's local port: TCP payload, so MQTT framing counts, IP and TCP
    headers do not. A connection's counter starts at zero when it is opened.
    """
    done = subprocess.run(
        ["ss", "-tinpH", "state", "established", f"( dport = :{broker_port} )"],
        capture_output=True, text=True, check=True,
    )  # fmt: skip
    sockets: dict[int, int] = {}
    lines = done.stdout.splitlines()
    for head, info in zip(lines[::2], lines[1::2], strict=False):
        # -H drops the state column with a state filter; put it back for one pattern.
        match = _SOCKET.match("ESTAB " + head.strip())
        acked = _ACKED.search(info)
        if match and acked and int(match.group(3)) == pid:
            sockets[int(match.group(1))] = int(acked.group(1))
    return sockets


@dataclass(frozen=True)
class Shortfall:
    """Readings due in a window that did not arrive, from each point's steady rate."""

    expected: float
    received: int

    @property
    def missing(self) -> int:
        """Expected minus received: negative when more came than the steady rate predicts."""
        return round(self.expected - self.received)


def shortfall(
    series: Iterable[list[float]], steady: tuple[float, float], window: tuple[float, float]
) -> Shortfall:
    """Readings each point should have had in `window` at its steady rate, summed.

    A point's period is taken from its readings in `steady` (first to last over their number
    less one). Its window is stretched to the last reading before it and the first one at or
    after its end: between those two, (span / period) - 1 readings are due. For a regular
    schedule (ours: polls on a 1 s grid) that is exact. ThingsBoard IoT Gateway queues a poll
    per period and stamps it when its queue gets to it, so its intervals range from 0.1 to
    2.5 s without any loss: its figure is good to about a poll per device (the same estimate
    on an outage-free stretch shows the resolution). A hole count (an interval
    of 2 s misses one reading) would count that jitter as loss.
    """
    expected = 0.0
    received = 0
    for times in series:
        calm = [t for t in times if steady[0] <= t < steady[1]]
        if len(calm) < 2:  # no period to take
            continue
        period = (calm[-1] - calm[0]) / (len(calm) - 1)
        before = [t for t in times if t < window[0]][-1:]
        after = [t for t in times if t >= window[1]][:1]
        start = before[0] if before else window[0]
        end = after[0] if after else window[1]
        received += sum(start < t < end for t in times)
        # Between two readings: span / period - 1 due; to an open end, half a reading less.
        expected += (end - start) / period - (1.0 if after else 0.5)
    return Shortfall(expected=expected, received=received)
