"""G7: the agent keeps glibc's mmap threshold fixed, so block-sized buffers it frees leave its
resident set (edge_agent.shell.host.keep_large_allocations_mapped, called by `edge-agent run`).

Each case is a fresh interpreter (the threshold is process-wide): one large buffer is freed
first, which is what makes glibc raise its threshold, then 8 MB of 200 kB buffers (a block's
size at 1,000 tags) are made, touched and freed. Without the call they stay resident (the
control, which shows the mechanism exists on this libc); with it, they are given back.
"""

from __future__ import annotations

import subprocess
import sys

PROGRAM = """\
import sys
from pathlib import Path

from edge_agent.shell.host import keep_large_allocations_mapped


def rss_kib():
    status = Path("/proc/self/status").read_text().splitlines()
    return int(next(line for line in status if line.startswith("VmRSS")).split()[1])


if sys.argv[1] == "fixed":
    assert keep_large_allocations_mapped()
large = bytearray(8 << 20)
del large
before = rss_kib()
buffers = [bytearray(200 << 10) for _ in range(40)]
del buffers
print(rss_kib() - before)
"""


def kept_kib(mode: str) -> int:
    """Resident KiB the 8 MB of freed 200 kB buffers left behind."""
    done = subprocess.run(
        [sys.executable, "-c", PROGRAM, mode], capture_output=True, text=True, check=True
    )
    return int(done.stdout)


def test_freed_block_sized_buffers_leave_the_resident_set() -> None:
    assert kept_kib("glibc-default") > 4096, "control: glibc's raised threshold keeps them"
    assert kept_kib("fixed") < 1024
