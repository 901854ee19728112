"""What the agent asks of its host: is the clock synchronized, and telling systemd we run."""

from __future__ import annotations

import ctypes
import ctypes.util
import os
import socket
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
    state = int(libc.adjtimex(timex))
    return state not in {-1, _TIME_ERROR}


def notify_systemd(message: str) -> None:
    """Send `message` (e.g. READY=1) to systemd when it started us with Type=notify."""
    address = os.environ.get("NOTIFY_SOCKET")
    if not address:
        return
    if address.startswith("@"):
        address = "\0" + address[1:]
    with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM) as sock:
        sock.connect(address)
        sock.sendall(message.encode())
