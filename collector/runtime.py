"""The composition root: wires storage, ingest and the HTTP API into one running collector.

`run_collector(config)` is what `collector serve` runs (through `serve_until_signalled`) and
what tests use to run a whole collector in-process.
"""

from __future__ import annotations

import asyncio
import contextlib
import signal
import socket
import time
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass

import structlog

from collector.api.app import create_app
from collector.api.core import ApiToken
from collector.api.server import ApiServer, listening_socket, server_config
from collector.audit.sealing import seal_periodically
from collector.config import CollectorConfig, default_client_id
from collector.feed.activations import announce_periodically
from collector.feed.wakeup import CommitSignal, LocalCommitSignal
from collector.ingest.service import Ingest, IngestSettings
from collector.keyfiles import load_key_file
from collector.legacy_session import ingest_after_retiring, legacy_session
from collector.metrics import CollectorMetrics
from collector.pki.tls import client_context
from collector.retention import apply_retention
from collector.storage import open_storage
from collector.storage.base import Storage
from collector.storage.capabilities import AlarmActivations, AuditTrail, relayed_commits
from collector.storage.sqlite import SqliteStorage
from configkit.network import ListenAddress
from hostkit.signal_mask import block_signals, executor_leaving_signals
from hostkit.systemd_notify import notify, watchdog_pings
from specs.signing import VerifyKey

log = structlog.get_logger("collector")


def _bind(listen: ListenAddress) -> socket.socket:
    return listening_socket(listen.host, listen.port)


def api_tokens(config: CollectorConfig) -> tuple[ApiToken, ...]:
    """The API's tokens from the config."""
    return tuple(
        ApiToken(t.name, t.secret.get_secret_value(), tuple(t.districts)) for t in config.api.tokens
    )


def ingest_settings(config: CollectorConfig, host: str | None = None) -> IngestSettings:
    """The ingest loop's settings from the config (a durable session under a stable id).

    The client id is `ingest.client_id`, or else derived from `host` (default: this
    machine's name) and the config, so that a restarted collector finds its session again.
    For an `mqtts://` broker the TLS files of `broker_tls` are read here (PkiError when
    they are missing or wrong).
    """
    client_id = config.ingest.client_id or default_client_id(
        socket.gethostname() if host is None else host, config
    )
    return IngestSettings(
        host=config.broker.host,
        port=config.broker.port,
        tls=client_context(config.broker_tls) if config.broker.tls else None,
        share_group=config.ingest.share_group,
        batch_max=config.ingest.batch_max,
        client_id=client_id,
        session_expiry=config.ingest.session_expiry,
        leave_on_stop=config.ingest.leave_on_stop,
        offline_after=config.offline_after,
        key_overlap=config.ingest.key_overlap,
        ahead_allowance=config.ingest.ahead_allowance,
        max_message_bytes=config.ingest.max_message_bytes,
    )


@dataclass
class RunningCollector:
    """A collector running in this process: its storage, ingest loop, API address and key."""

    storage: Storage
    ingest: Ingest
    public_key: VerifyKey
    api_url: str
    tasks: tuple[asyncio.Task[None], ...]
    metrics: CollectorMetrics

    async def wait_connected(self) -> None:
        """Return once the ingest loop is subscribed at the broker (wrap in a timeout)."""
        await self.ingest.connected.wait()

    async def wait(self) -> None:
        """Return when a service stops by itself, raising its error if it failed."""
        done, _ = await asyncio.wait(self.tasks, return_when=asyncio.FIRST_COMPLETED)
        for task in done:
            task.result()


def _audit_sealing(storage: Storage, clock: Callable[[], float]) -> tuple[asyncio.Task[None], ...]:
    """The task that chains each finished minute's audit rows (collector.audit.sealing)."""
    if not isinstance(storage, AuditTrail):
        return ()
    return (asyncio.create_task(seal_periodically(storage, clock), name="collector-audit"),)


def _activations(
    storage: Storage, config: CollectorConfig, clock: Callable[[], float], commits: CommitSignal
) -> tuple[asyncio.Task[None], ...]:
    """The task that tells the live feed when alarms raised ahead come due (collector.feed)."""
    if not isinstance(storage, AlarmActivations):
        return ()
    work = announce_periodically(storage, clock, config.ingest.ahead_allowance, commits)
    return (asyncio.create_task(work, name="collector-activations"),)


def _retention(
    config: CollectorConfig, clock: Callable[[], float]
) -> tuple[asyncio.Task[None], ...]:
    """The retention task, when `storage.raw_days` or `storage.audit_days` asks for one."""
    policy = config.storage.retention
    if not policy.prunes:
        return ()
    work = apply_retention(config.storage.url, policy, clock)
    return (asyncio.create_task(work, name="collector-retention"),)


@contextlib.asynccontextmanager
async def run_collector(
    config: CollectorConfig, *, clock: Callable[[], float] = time.time
) -> AsyncIterator[RunningCollector]:
    """Run ingest and the HTTP API until the block exits; both stop cleanly then.

    The API socket is bound before this yields, so the API answers at once; the broker may
    still be unreachable (ingest retries), so callers that need it await `wait_connected()`.
    """
    key = load_key_file(config.signing.key_file)
    # Rung by the ingest loop after each commit, and by the storage for the commits of other
    # collectors sharing its database; live streams sleep on it.
    commits = LocalCommitSignal()
    async with open_storage(config.storage.url) as storage, relayed_commits(storage, commits):
        if isinstance(storage, SqliteStorage):
            # A file from before an index: its open built it, holding the write lock meanwhile
            # (schema._OPEN_INDEXES), and a long start says why.
            for built in storage.indexes_built:
                log.info("index_built", index=built.index, seconds=built.seconds)
        metrics = CollectorMetrics(offline_after=config.offline_after)
        host = socket.gethostname()
        settings = ingest_settings(config, host)
        ingest = Ingest(settings, storage, key, clock, commits=commits, metrics=metrics)
        # The session an upgrade left under the old default id (collector.legacy_session).
        legacy = legacy_session(config, host, settings.tls)
        app = create_app(
            storage,
            api_tokens(config),
            offline_after=config.offline_after,
            clock=clock,
            display_zone=config.api.tz,
            commits=commits,
            request_limits=config.api.limits.settings,
            rate_limits=config.api.rate_limit.settings,
            collector_metrics=metrics,
            ahead_allowance=config.ingest.ahead_allowance,
        )
        # serve_until_signalled owns SIGINT/SIGTERM, not uvicorn.
        server = ApiServer(
            server_config(app, config.api.limits.settings, stalled=metrics.connection_stalled)
        )
        with _bind(config.api.listen) as sock:
            tasks = (
                asyncio.create_task(ingest_after_retiring(legacy, ingest), name="collector-ingest"),
                asyncio.create_task(server.serve(sockets=[sock]), name="collector-api"),
                *_retention(config, clock),
                *_audit_sealing(storage, clock),
                *_activations(storage, config, clock, commits),
            )
            running = RunningCollector(
                storage, ingest, key.public(), f"http://{config.api.listen}", tasks, metrics
            )
            log.info(
                "collector_started",
                api=running.api_url,
                broker=str(config.broker),
                kid=key.kid,
            )
            try:
                yield running
            finally:
                server.should_exit = True
                commits.close()  # live streams end, so the server can finish its responses
                ingest.stop()
                for task in (tasks[0], *tasks[2:]):  # all but the API, which exits by itself
                    task.cancel()
                await asyncio.wait(tasks)
                log.info("collector_stopped")


async def serve_until_signalled(config: CollectorConfig) -> None:
    """Run the collector until SIGINT or SIGTERM, or until a service fails (raising its error).

    Under systemd (Type=notify): READY=1 once the database is open and ingest is subscribed
    at the broker, WATCHDOG=1 from this event loop from then on, STOPPING=1 at the stop.
    Raises KeyFileError, PkiError, StorageError or OSError when the collector cannot start.

    A signal while the collector starts (opening its database, which a server that takes the
    connection and never answers holds for the 10 s connect timeout) cancels the start: it
    returns at once, as a stop after the start does.

    Only the main thread takes the signals (hostkit.signal_mask: the SQLite storage's worker
    threads and the executor's block them), and from the stop to the exit it blocks them too:
    a second signal during the stop is the same stop, one after it is dropped at the exit. The
    mask is the process's: this is for `collector serve`, not for a collector run in-process.
    """
    loop = asyncio.get_running_loop()
    # asyncio.run shuts it down at the end.
    loop.set_default_executor(executor_leaving_signals("collector-worker"))
    stop = asyncio.Event()
    signals = (signal.SIGINT, signal.SIGTERM)
    starting = asyncio.current_task()
    assert starting is not None  # noqa: S101 - a coroutine run by asyncio.run has its task
    started = start_abandoned = False

    def on_signal() -> None:
        # One handler that asks which phase it is in, rather than a second handler installed
        # once started: a signal asyncio has already queued would still run the first one.
        nonlocal start_abandoned
        if started:  # the services stop in order (run_collector's exit)
            stop.set()
        elif not start_abandoned:  # a second signal is the same stop, not a second cancellation
            start_abandoned = True
            starting.cancel()  # at one of the start's awaits

    for sig in signals:
        loop.add_signal_handler(sig, on_signal)
    try:
        async with run_collector(config) as running:
            started = True
            stopping = asyncio.create_task(stop.wait(), name="collector-signal")
            failing = asyncio.create_task(running.wait(), name="collector-services")
            connected = asyncio.create_task(running.wait_connected(), name="collector-ready")
            await asyncio.wait((stopping, failing, connected), return_when=asyncio.FIRST_COMPLETED)
            connected.cancel()
            if connected.done() and not connected.cancelled():
                notify("READY=1")
                log.info("collector_ready")
            async with watchdog_pings():
                await asyncio.wait((stopping, failing), return_when=asyncio.FIRST_COMPLETED)
                if stopping.done():
                    notify("STOPPING=1")
            stopping.cancel()
            failing.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await failing  # re-raises a service's failure
    except asyncio.CancelledError:
        if not start_abandoned or starting.uncancel() > 0:
            raise  # not (only) the signal's cancellation
        notify("STOPPING=1")
        log.info("collector_stopped", while_starting=True)
    finally:
        # Blocked until the exit: without its handlers a signal has its default again, which
        # would kill a stopped collector with -15.
        block_signals(signals)
        for sig in signals:
            loop.remove_signal_handler(sig)
