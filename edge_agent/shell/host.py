"""What the agent asks of its host: is the clock synchronized (systemd: hostkit.systemd_notify)."""

from __future__ import annotations

import ctypes
import ctypes.util
from functools import cache

_TIME_ERROR = 5  # adjtimex(2): the clock is not synchronized


@cache
def _libc() -> ctypes.CDLL | None:
    name = ctypes.util.find_library("c")
    return None if name is None else ctypes.CDLL(name, use_errno=True)


def clock_synchronized() -> bool:
    """Whether the kernel says NTP (or PTP) keeps the wall clock synchronized."""
    libc = _libc()
    if libc is None:
        return False
    # struct timex is ~208 bytes; modes (its first field) = 0 makes adjtimex read-only.
    timex = ctypes.create_string_buffer(512)
    # -1 also when a seccomp filter refuses adjtimex: the agent's unit must allow it.
    state = int(libc.adjtimex(timex))
    return state not in {-1, _TIME_ERROR}
