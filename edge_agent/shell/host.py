"""What the agent asks of its host: is the clock synchronized; large buffers mapped (G7).

systemd's part is in hostkit.systemd_notify.
"""

from __future__ import annotations

import ctypes
import ctypes.util
from functools import cache

_TIME_ERROR = 5  # adjtimex(2): the clock is not synchronized
_M_MMAP_THRESHOLD = -3  # mallopt(3)
MMAP_THRESHOLD = 128 * 1024
"""Bytes from which glibc's malloc maps an allocation of its own (its default, kept fixed)."""


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


def keep_large_allocations_mapped() -> bool:
    """Fix glibc's mmap threshold at `MMAP_THRESHOLD`; False where libc has no `mallopt`.

    glibc raises the threshold to the size of the largest mapped block freed (up to 32 MiB), so
    once a few block-sized buffers came and went (a block's canonical JSON and its compressed
    form, rows read back from the outbox, each 100-200 kB at 1,000 tags) later ones come from
    the heap, and what they free stays resident. Fixed, each is mapped and given back when
    freed: 0.6 MiB less resident at 1,000 tags, the same at 10 (G7, bench/memory.py); a few
    mmap calls a second cost nothing measurable beside sealing a block.
    """
    libc = _libc()
    mallopt = None if libc is None else getattr(libc, "mallopt", None)
    if mallopt is None:  # not glibc (musl has none): its own policy stands
        return False
    return bool(mallopt(_M_MMAP_THRESHOLD, MMAP_THRESHOLD))
