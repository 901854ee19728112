"""A graceful stop of the agent within its budget: every reading polled before it is sealed.

The order: pollers first (nothing is read after the stop), then the RTU buses, then everything
queued is sealed, the live blocks' ACKs are awaited while they come (not a backlog's), the
offline status is sent, and the other tasks end or are abandoned and logged.
"""

from __future__ import annotations

import asyncio
import contextlib

import aiomqtt
import structlog

from edge_agent.shell.buses import RtuBuses
from edge_agent.shell.publisher import Publisher
from edge_agent.shell.sealer import Sealer
from specs.records import Record

log = structlog.get_logger("edge_agent.runtime")

# A graceful stop (SIGTERM) has one budget, counted from the stop: the agent must exit within
# 5 s under any load (systemd's TimeoutStopSec=5 kills it after that). Pollers are cancelled at
# once and get _SHUTDOWN_POLLERS s to close their links; then everything queued is sealed (at
# most the runtime's queue bound and the sealer's batch); the live blocks' ACKs are awaited until
# _SHUTDOWN_DRAIN s after the stop; every other task has ended, or is abandoned and logged, by
# SHUTDOWN_BUDGET s after the stop. The rest is closing the outbox file and the interpreter's
# exit, which on a starved CPU takes a second or more (hence 2 s of ACKs, not 3).
_SHUTDOWN_POLLERS = 1.0
_SHUTDOWN_DRAIN = 2.0
SHUTDOWN_BUDGET = 4.0
# The last ACKs are awaited while they come: once none has released a block for this long, the
# collector is gone or far behind, and waiting on only delays the stop (a healthy collector
# ACKs within its flush interval, 0.2 s by default). What is not ACKed goes out after the start.
_DRAIN_STALL = 0.5
# The offline status is one QoS 1 PUBLISH on a loopback or LAN link; past this the link is
# gone anyway, and the broker's last will says the same.
_SAY_OFFLINE_WITHIN = 0.5
# A task that has not ended this long after its cancellation is cancelled again, and again
# every _RECANCEL_EVERY s: a library may swallow one cancellation (Python 3.11's wait_for does
# when the awaited result lands in the same loop iteration), and a polite close (an OPC UA
# CloseSession) gets this long before it is cut short.
_RECANCEL_AFTER = 0.5
_RECANCEL_EVERY = 0.25
# However late a step starts, its tasks get this long to end.
_STOP_GRACE = 0.5


async def _stop_tasks(tasks: list[asyncio.Task[None]], until: float) -> list[asyncio.Task[None]]:
    """Cancel `tasks` and wait for them until the loop time `until`; return what is left.

    Each gets at least _STOP_GRACE s. A task still running is cancelled again after
    _RECANCEL_AFTER s (or half its time, if less) and then every _RECANCEL_EVERY s: one
    swallowed cancellation must not cost the whole budget.
    """
    loop = asyncio.get_running_loop()
    start = loop.time()
    until = max(until, start + _STOP_GRACE)
    pending = {task for task in tasks if not task.done()}
    for task in pending:
        task.cancel()
    recancel_at = start + min(_RECANCEL_AFTER, (until - start) / 2)
    while pending and (now := loop.time()) < until:
        if now >= recancel_at:
            for task in pending:
                task.cancel()
            recancel_at = now + _RECANCEL_EVERY
        _, pending = await asyncio.wait(pending, timeout=min(until, recancel_at) - now)
    return sorted(pending, key=lambda task: task.get_name())


async def await_last_acks(publisher: Publisher, until: float) -> bool:
    """Wait for the ACKs of the live blocks until the loop time `until`, or until none come.

    True when every live block was ACKed. A backlog is not waited for: it takes minutes to
    drain, its ACKs keep coming all the while (so the wait would take all its time), and it is
    in the outbox for the next start anyway.
    """
    loop = asyncio.get_running_loop()
    last_ack = publisher.last_ack
    while (left := until - loop.time()) > 0:
        try:
            async with asyncio.timeout(min(left, _DRAIN_STALL)):
                await publisher.settled()
        except TimeoutError:
            if publisher.last_ack == last_ack:
                return False  # no ACK released anything for _DRAIN_STALL s
            last_ack = publisher.last_ack
        else:
            return True
    return False


async def shut_down(
    *,
    gateway: str,
    poll_tasks: list[asyncio.Task[None]],
    service_tasks: list[asyncio.Task[None]],
    buses: RtuBuses,
    queue: asyncio.Queue[Record],
    sealer: Sealer,
    publisher: Publisher,
) -> None:
    """Stop every task within the shutdown budget; seal everything polled before the stop.

    `service_tasks` are the sealer, then the publisher and the rest.
    """
    loop = asyncio.get_running_loop()
    stopping_at = loop.time()
    # A seq mark held by another process (a stopped `edge-agent backfill`) is waited for no
    # later than the end of the ACK drain: by the flush below (readings let go on a full disk)
    # and by the outbox's close (tally changes held back); what is not written then is logged.
    sealer.stopping_by(stopping_at + _SHUTDOWN_DRAIN)
    # What the stop has left to seal, besides what the pollers hand over as they end.
    log.info("agent_stopping", gateway=gateway, unsealed=queue.qsize() + sealer.held)
    # 1. Pollers at once: nothing is read after the stop. A driver whose close hangs is
    #    abandoned; what its poller queued before is sealed all the same.
    abandoned = await _stop_tasks(poll_tasks, stopping_at + _SHUTDOWN_POLLERS)
    for port, bus in buses.by_port().items():
        stats = bus.stats()
        log.info(
            "rtu_bus_closed",
            port=port,
            transactions=stats.transactions,
            timeouts=stats.timeouts,
            errors=stats.errors,
            busy_seconds=round(stats.busy_seconds, 3),
        )
    await buses.close()  # every driver detached when its poll task ended
    # 2. Seal everything polled: the sealer's batch in flight, its pending readings and the
    #    queue. Not cut short: a reading polled before the stop is never dropped here.
    abandoned += await _stop_tasks(service_tasks[:1], stopping_at)
    await sealer.flush()
    sealed_in = loop.time() - stopping_at
    # 3. The live blocks' ACKs, only with what is left of the drain time and while they come;
    #    whatever is not ACKed stays in the outbox and goes out after the next start.
    live_acked = await await_last_acks(publisher, stopping_at + _SHUTDOWN_DRAIN)
    # 4. The retained offline status, sent by us: a clean DISCONNECT fires no last will.
    said_offline = False
    with contextlib.suppress(TimeoutError, aiomqtt.MqttError):
        async with asyncio.timeout(_SAY_OFFLINE_WITHIN):
            said_offline = await publisher.say_offline()
    # 5. The uplink and the pruner, bounded like the pollers. The publisher is told first:
    #    a cancellation alone can be swallowed by its PUBACK waits (Publisher.stop).
    publisher.stop()
    abandoned += await _stop_tasks(service_tasks[1:], stopping_at + SHUTDOWN_BUDGET)
    if abandoned:
        # Left running: asyncio.run cancels them once more at exit; systemd's stop timeout
        # is the backstop.
        log.error("shutdown_tasks_abandoned", tasks=[t.get_name() for t in abandoned])
    log.info(
        "agent_stopped",
        gateway=gateway,
        seconds=round(loop.time() - stopping_at, 3),
        sealed_in=round(sealed_in, 3),
        live_acked=live_acked,
        said_offline=said_offline,
    )
