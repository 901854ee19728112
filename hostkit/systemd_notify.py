"""systemd's service notifications (sd_notify(3)): READY=1, WATCHDOG=1, STOPPING=1.

Both programs run as `Type=notify` services: each sends READY=1 once it really works, a
WATCHDOG=1 keep-alive from its event loop at half of `WatchdogSec=` (so a loop that hangs
stops the pings and systemd restarts the service), and STOPPING=1 when it begins to stop.

The protocol is one datagram of `KEY=VALUE` lines to the AF_UNIX socket named by
$NOTIFY_SOCKET (a leading '@' means Linux's abstract namespace). Without $NOTIFY_SOCKET (a
terminal, a test) nothing is sent. Our own few lines rather than a library: `sdnotify` (PyPI)
had its last release in 2017 and has no watchdog support, and `systemd-python` compiles
against libsystemd's headers (libsystemd-dev, pkg-config, a C compiler), which a fresh machine
with only Python lacks; both would still leave the keep-alive task to us.

Host code both programs share, so it lives in the host layer; it imports nothing of ours.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import socket
from collections.abc import AsyncIterator, Mapping

import structlog

log = structlog.get_logger("systemd_notify")

_MICROSECONDS = 1_000_000


def notify(message: str, environ: Mapping[str, str] = os.environ) -> bool:
    """Send `message` (e.g. "READY=1") to systemd; False when not run with a notify socket.

    Raises OSError when the socket named by $NOTIFY_SOCKET cannot take it.
    """
    address = environ.get("NOTIFY_SOCKET")
    if not address:
        return False
    if address.startswith("@"):
        address = "\0" + address[1:]
    with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM | socket.SOCK_CLOEXEC) as sock:
        sock.sendto(message.encode(), address)
    return True


def watchdog_period(environ: Mapping[str, str] = os.environ) -> float | None:
    """`WatchdogSec=` in seconds when systemd watches this process, else None.

    systemd passes it as $WATCHDOG_USEC, and $WATCHDOG_PID names the process it watches: a
    child that inherited the variables is not watched (sd_watchdog_enabled(3)).
    """
    usec = environ.get("WATCHDOG_USEC")
    if not usec:
        return None
    pid = environ.get("WATCHDOG_PID")
    if pid and int(pid) != os.getpid():
        return None
    period = int(usec) / _MICROSECONDS
    return period if period > 0 else None


async def _ping_forever(interval: float, environ: Mapping[str, str]) -> None:
    failing = False
    while True:
        try:
            notify("WATCHDOG=1", environ)
        except OSError as exc:
            # Not fatal here: if systemd really cannot hear us, its watchdog restarts us.
            if not failing:
                log.warning("watchdog_ping_failed", error=str(exc))
            failing = True
        else:
            failing = False
        await asyncio.sleep(interval)


@contextlib.asynccontextmanager
async def watchdog_pings(environ: Mapping[str, str] = os.environ) -> AsyncIterator[float | None]:
    """While entered, send WATCHDOG=1 every half watchdog period from this event loop.

    A task of the running loop sends them, not a thread: when the loop hangs, the pings stop,
    which is what the watchdog is for. Yields the interval between pings, or None when
    systemd does not watch this process (and then nothing is sent).
    """
    period = watchdog_period(environ)
    if period is None:
        yield None
        return
    interval = period / 2
    task = asyncio.create_task(_ping_forever(interval, environ), name="systemd-watchdog")
    try:
        yield interval
    finally:
        task.cancel()
        await asyncio.wait([task])  # unlike `await task`, never swallows our own cancellation
