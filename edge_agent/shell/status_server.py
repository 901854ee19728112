"""The running agent's status socket: `edge-agent status` asks here (DESIGN section 11).

A Unix socket in the state directory (the outbox file's folder), mode 0600: only the agent's
own user (and root) may ask. One connection, one request line `status`, one JSON document
(`AgentSnapshot.to_json`) and the connection closes. Served on the agent's event loop like
everything else (no thread); the request line is bounded in size and time so a stuck client
holds nothing.

The socket is a convenience, not a duty: when it cannot be bound (a path too long for a Unix
socket, another agent answering on it) the agent logs `status_socket_failed` and runs
without it; `edge-agent status` then says the agent does not answer and shows the file view.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import socket
import sqlite3
import time
from collections.abc import Awaitable, Callable, Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Final

import structlog

from drivers.modbus.rtu_bus import BusStats
from edge_agent.core.agent_status import (
    AgentSnapshot,
    AlarmStatus,
    BusStatus,
    DeviceStatus,
    OutboxStatus,
    UplinkStatus,
)
from edge_agent.core.agent_status_storage import StorageStatus
from edge_agent.core.rtu_plan import BusPlan
from edge_agent.shell.alarm_stage import AlarmStage
from edge_agent.shell.buses import RtuBuses
from edge_agent.shell.host import clock_synchronized
from edge_agent.shell.one_request import ACCEPT_BACKLOG, Handler, one_request_handler
from edge_agent.shell.outbox import Outbox
from edge_agent.shell.poller import DevicePoller
from edge_agent.shell.publisher import Publisher
from edge_agent.shell.rotation import CurrentKey, key_status
from edge_agent.shell.sealer import Sealer

if TYPE_CHECKING:
    from edge_agent.core.plan import AgentPlan, Outboxed

log = structlog.get_logger("edge_agent.status")

SOCKET_NAME: Final = "agent.sock"
REQUEST: Final = b"status\n"
MAX_REQUEST_BYTES: Final = 256
REQUEST_TIMEOUT: Final = 2.0
"""Seconds a client has to send its request line."""

Snapshot = Callable[[], Awaitable[AgentSnapshot]]


def status_socket_path(config: Outboxed) -> Path:
    """Where the agent of `config` (a site map or its plan) answers: beside its outbox file."""
    return config.outbox.path.parent / SOCKET_NAME


class AgentStatus:
    """Builds an `AgentSnapshot` from the agent's live parts when asked."""

    def __init__(
        self,
        plan: AgentPlan,
        pollers: Sequence[DevicePoller],
        *,
        publisher: Publisher,
        outbox: Outbox,
        buses: RtuBuses,
        plans: Sequence[BusPlan],
        alarms: AlarmStage,
        version: str | None,
        config_hash: str,
        current: CurrentKey,
        sealer: Sealer | None = None,
    ) -> None:
        """Report on these parts; `pollers` in the order of `plan.devices`."""
        self._sealer = sealer
        self._plan = plan
        self._pollers = tuple(zip(plan.devices, pollers, strict=True))
        self._publisher = publisher
        self._outbox = outbox
        self._buses = buses
        self._planned = {os.path.realpath(plan.port): plan.utilization for plan in plans}
        self._alarms = alarms
        self._version = version
        self._config_hash = config_hash
        self._current = current
        self._started = time.time()
        # Measured load is counted from here: the buses' counters as the agent starts.
        self._bus_marks: Mapping[str, BusStats] = {
            port: bus.stats() for port, bus in buses.by_port().items()
        }

    async def snapshot(self) -> AgentSnapshot:
        """The agent now (sqlite3.Error when the outbox cannot be read)."""
        stats = await self._outbox.stats()
        uplink = self._plan.uplink
        scheme = "mqtts" if uplink.tls else "mqtt"
        return AgentSnapshot(
            gateway=self._plan.identity.gateway,
            version=self._version,
            config=self._config_hash,
            pid=os.getpid(),
            started=self._started,
            t=time.time(),
            clock_synchronized=clock_synchronized(),
            uplink=UplinkStatus(
                broker=f"{scheme}://{uplink.host}:{uplink.port}",
                connected=self._publisher.connected.is_set(),
                last_ack=self._publisher.last_ack,
                published=self._publisher.published,
                meta=self._publisher.meta_status,
            ),
            outbox=OutboxStatus(
                epoch=stats.epoch,
                last_seq=stats.last_seq,
                undelivered_blocks=stats.undelivered,
                undelivered_records=stats.undelivered_records,
                oldest_undelivered=stats.oldest_undelivered_sealed_at,
                storage=self._storage(),
            ),
            devices=tuple(
                DeviceStatus(device.id, device.driver, poller.last_good, poller.last_error)
                for device, poller in self._pollers
            ),
            buses=tuple(self._bus_status(port, stats) for port, stats in self._bus_stats()),
            alarms=tuple(
                AlarmStatus(slot, alarm.alarm_id, alarm.level, alarm.raised_t)
                for slot, alarm in sorted(self._alarms.state.active.items())
            ),
            key=await key_status(self._outbox, self._plan.key_file, self._current.key),
        )

    def _storage(self) -> StorageStatus:
        """The outbox against its disk: a full one, the reserve, what it costs in readings."""
        room, sealer = self._outbox.room, self._sealer
        reserve = room.reserve_held
        acks, last = self._publisher.acks_not_recorded
        return StorageStatus(
            disk_full=room.disk_full,
            reserve="none" if reserve is None else "held" if reserve else "not held",
            seals_failing_since=room.failing_since,
            held_in_memory=0 if sealer is None else sealer.held,
            let_go_in_memory=0 if sealer is None else sealer.lost.count,
            given_way_in_file=room.let_go,
            acks_not_recorded=acks,
            last_ack_not_recorded=last,
        )

    def _bus_stats(self) -> list[tuple[str, BusStats]]:
        return [(port, bus.stats()) for port, bus in self._buses.by_port().items()]

    def _bus_status(self, port: str, now: BusStats) -> BusStatus:
        mark = self._bus_marks.get(port, now)
        return BusStatus(
            port=port,
            utilization=now.utilization_since(mark),
            seconds=now.t_mono - mark.t_mono,
            transactions=now.transactions - mark.transactions,
            timeouts=now.timeouts - mark.timeouts,
            errors=now.errors - mark.errors,
            planned=self._planned.get(port),
        )


async def _answer(request: bytes, snapshot: Snapshot) -> dict[str, object]:
    if request != REQUEST:
        return {"error": f"unknown request {request[:32]!r}: send {REQUEST!r}"}
    try:
        return (await snapshot()).to_json()
    except sqlite3.Error as exc:
        log.warning("status_snapshot_failed", error=str(exc))
        return {"error": f"the outbox cannot be read: {exc}"}


def _handler(snapshot: Snapshot) -> Handler:
    async def reply(request: bytes) -> bytes:
        document = await _answer(request, snapshot)
        return json.dumps(document, ensure_ascii=False).encode() + b"\n"

    # A request line too long is not worth answering, as one cut short or never sent.
    return one_request_handler(reply, ends_with=b"\n", timeout=REQUEST_TIMEOUT, too_long=None)


class _SocketTakenError(OSError):
    """Something other than a socket a killed agent left sits at the socket's path."""


async def _someone_answers(path: Path) -> bool:
    try:
        async with asyncio.timeout(REQUEST_TIMEOUT):
            _, writer = await asyncio.open_unix_connection(path)
    except (OSError, TimeoutError):
        return False
    writer.close()
    return True


def _left_behind(path: Path) -> bool:
    """Whether a socket file is at `path` (_SocketTakenError when something else is)."""
    if path.is_socket():
        return True
    if path.exists():
        raise _SocketTakenError(f"{path}: exists and is not a socket")
    return False


def _bound_socket(path: Path, *, replace: bool) -> tuple[socket.socket, int]:
    """A Unix stream socket bound at `path`, 0600 from the start, and its file's inode.

    With `replace` the (stale) socket file at `path` goes first. OSError when it cannot be
    bound.
    """
    if replace:
        path.unlink(missing_ok=True)
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    try:
        # The umask is the process's, but nothing else runs between these lines (one
        # thread): the socket file never exists with wider permissions.
        previous = os.umask(0o177)
        try:
            sock.bind(str(path))
        finally:
            os.umask(previous)
        path.chmod(0o600)
        return sock, path.lstat().st_ino
    except OSError:
        sock.close()
        raise


async def _listen(path: Path, snapshot: Snapshot) -> tuple[asyncio.Server, int]:
    # A socket file nobody answers on is a killed agent's: replaced.
    stale = _left_behind(path)
    if stale and await _someone_answers(path):
        raise _SocketTakenError(f"{path}: another process answers on it")
    sock, inode = _bound_socket(path, replace=stale)
    server = await asyncio.start_unix_server(
        _handler(snapshot), sock=sock, limit=MAX_REQUEST_BYTES, backlog=ACCEPT_BACKLOG
    )
    return server, inode


async def status_service(path: Path, snapshot: Snapshot) -> tuple[asyncio.Task[None], ...]:
    """The task answering on `path` (none when the socket cannot be had; logged).

    A socket file left by an agent that was killed is replaced; one some process answers on
    is left alone. Cancelling the task closes the socket and removes its file.
    """
    try:
        server, inode = await _listen(path, snapshot)
    except OSError as exc:
        # Not fatal (module docstring); the warning names the path and why.
        log.warning("status_socket_failed", path=str(path), error=str(exc))
        return ()
    log.info("status_socket_listening", path=str(path))
    task = asyncio.create_task(server.serve_forever(), name="status-socket")
    # A callback, not a `finally` in the task: a task cancelled before it ever ran (a stop
    # right after the start) runs no code of its own.
    task.add_done_callback(lambda _: _close(server, path, inode))
    return (task,)


def _close(server: asyncio.Server, path: Path, inode: int) -> None:
    """Stop listening and remove the socket file, if it is still ours.

    A later agent may have bound a new one at the same path by now.
    """
    server.close()
    with contextlib.suppress(FileNotFoundError):
        if path.lstat().st_ino == inode:
            path.unlink()
