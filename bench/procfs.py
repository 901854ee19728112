"""What the benches read about a process or the machine from /proc, the way `top` does.

Every bench that measures a process by its pid (acquisition, collector, load, memory, the
peer comparison) reads it here, so all of them count CPU and memory the same way.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import TYPE_CHECKING, TypeVar

if TYPE_CHECKING:
    from collections.abc import Mapping

CLOCK_TICKS = os.sysconf("SC_CLK_TCK")

_Key = TypeVar("_Key")
_Count = TypeVar("_Count", int, float)


def cpu_seconds(pid: int) -> float:
    """User + system CPU seconds of process `pid` (all its threads) so far.

    Raises:
        FileNotFoundError: the process has exited.
    """
    stat = Path(f"/proc/{pid}/stat").read_text(encoding="ascii")
    fields = stat.rsplit(")", 1)[1].split()  # after "pid (comm)": the name may hold spaces
    return (int(fields[11]) + int(fields[12])) / CLOCK_TICKS  # utime, stime


def machine_ticks() -> tuple[int, int]:
    """(busy, total) jiffies of all cores since boot, from /proc/stat."""
    fields = [int(x) for x in Path("/proc/stat").read_text(encoding="ascii").split()[1:9]]
    idle = fields[3] + fields[4]  # idle + iowait
    return sum(fields) - idle, sum(fields)


def memory_kib(pid: int) -> tuple[int, int]:
    """(VmRSS, VmHWM) of a process, in KiB."""
    fields: dict[str, int] = {}
    for line in Path(f"/proc/{pid}/status").read_text(encoding="ascii").splitlines():
        key, _, value = line.partition(":")
        if key in {"VmRSS", "VmHWM"}:
            fields[key] = int(value.split()[0])
    return fields["VmRSS"], fields["VmHWM"]


def growth(before: Mapping[_Key, _Count], after: Mapping[_Key, _Count]) -> _Count:
    """How much counters kept by key (a pid, a connection's port) grew between two snapshots.

    A key new since `before` counts from 0; one gone by `after` (an exited backend, a closed
    connection) counts nothing: what it added is no longer known.
    """
    return sum(count - before.get(key, 0) for key, count in after.items())
