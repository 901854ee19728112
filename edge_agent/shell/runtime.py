"""The agent's composition root: build every part from the site config and run them.

Devices go one way: the site config's devices, each bound to its driver kind
(`edge_agent.kinds`: the pure mapping to the driver's settings), built into a driver (a
Modbus RTU slave on the shared bus of its port, `RtuBuses`) and handed to a `DevicePoller`.
"""

from __future__ import annotations

import asyncio
import contextlib
import gc
import hashlib
import importlib.metadata
import signal
import sqlite3
import ssl
import time
from collections.abc import Callable, Iterator
from functools import partial
from pathlib import Path
from typing import TYPE_CHECKING

import structlog

from edge_agent.config import SiteConfig
from edge_agent.core.alarms import rules_for_site
from edge_agent.core.chain import Identity
from edge_agent.core.meta import gateway_meta
from edge_agent.core.points import ResolvedPoint, resolve_points
from edge_agent.core.rtu_plan import plan_buses
from edge_agent.kinds import KINDS
from edge_agent.kinds.descriptor import Backoff
from edge_agent.shell.alarm_stage import load_alarm_stage
from edge_agent.shell.buses import REPORT_EVERY, RtuBuses, log_planned, report_utilization
from edge_agent.shell.collector_keys import read_collector_keys
from edge_agent.shell.commands import CommandDesk
from edge_agent.shell.host import clock_synchronized
from edge_agent.shell.keyfile import load_private_key
from edge_agent.shell.metrics_server import metrics_service
from edge_agent.shell.outbox import Outbox, open_outbox
from edge_agent.shell.poller import DevicePoller, PolledPoint, queue_sink
from edge_agent.shell.publisher import Publisher, UplinkSettings
from edge_agent.shell.rotation import CurrentKey, RotationWatcher, complete_rotation
from edge_agent.shell.sealer import Sealer
from edge_agent.shell.shutdown import shut_down
from edge_agent.shell.status_server import AgentStatus, status_service, status_socket_path
from hostkit.backoff import backoff_delays
from hostkit.systemd_notify import notify, watchdog_pings
from specs.catalogue import Catalogue, default_catalogue
from specs.records import Record
from specs.topics import GatewayTopics

if TYPE_CHECKING:
    from edge_agent.shell.metrics import AgentMetrics

log = structlog.get_logger("edge_agent.runtime")

# Readings waiting to be sealed; pollers wait (backpressure) rather than grow memory. The bound
# is also what a stop has left to seal: an agent polling faster than it seals keeps this queue
# full, and everything in it is sealed before the exit. 20,000 cost 2.5 s of a stop at 2,000
# points polled flat out on a busy machine (the readings' alarm checks, encoding, signing);
# four blocks' worth keeps the sealer busy through a slow fsync all the same.
_QUEUE_BOUND = 2_000
_PRUNE_EVERY = 3600.0


def _package_version() -> str | None:
    try:
        return importlib.metadata.version("ganzhi")
    except importlib.metadata.PackageNotFoundError:  # run from a source tree, not installed
        return None


def config_fingerprint(config: SiteConfig) -> str:
    """Which device map the agent runs: SHA-256 of its effective configuration, 16 hex digits.

    The effective (parsed) configuration, not the file's bytes: a comment or a reordered key
    changes nothing that runs, and so does not change the fingerprint.
    """
    # warnings off: BrokerUrl has no serializer and dumps as its parts, which is still exact.
    canonical = config.model_dump_json(warnings=False).encode()
    return hashlib.sha256(canonical).hexdigest()[:16]


def _reconnect_backoff() -> Iterator[float]:
    uplink = Backoff()  # the broker link backs off as a device does by default
    return backoff_delays(initial=uplink.initial, cap=uplink.cap)


def identity_of(config: SiteConfig) -> Identity:
    """The identifiers every block of this site carries."""
    return Identity(
        gateway=config.site.gateway,
        enterprise=config.site.enterprise,
        district=config.site.district,
        domain=config.site.domain,
        mine_code=config.site.mine_code,
    )


def _agent_metrics(config: SiteConfig) -> AgentMetrics | None:
    """The agent's counters when `metrics.listen` is set; None when nobody could read them.

    prometheus_client, and the http, urllib and email modules it imports (3.5 MiB resident),
    is imported only then (G7).
    """
    if config.metrics is None:
        return None
    from edge_agent.shell.metrics import AgentMetrics  # noqa: PLC0415 - only when served

    return AgentMetrics([device.id for device in config.devices])


def _not_counted(_kind: str) -> None:
    """A device error without metrics: the poller logs it, nothing counts it."""


def _pollers(
    config: SiteConfig,
    points: list[ResolvedPoint],
    queue: asyncio.Queue[Record],
    buses: RtuBuses,
    metrics: AgentMetrics | None,
    *,
    catalogue: Catalogue,
    good: asyncio.Event,
) -> list[DevicePoller]:
    by_device: dict[str, list[ResolvedPoint]] = {}
    for point in points:
        by_device.setdefault(point.device_id, []).append(point)
    pollers = []
    for device in config.devices:
        device_points = by_device.get(device.id, [])
        polled = {}
        for point in device_points:
            indicator = catalogue.get(point.quota)
            if indicator is None:  # the config loader already refused unknown quotas
                raise LookupError(f"quota {point.quota} vanished from the catalogue")
            polled[point.point] = PolledPoint(point, indicator)
        bound = KINDS.bind(device, device_points)
        for warning in bound.warnings:
            log.warning(warning.event, **warning.fields)
        sink = queue_sink(queue, good)
        on_error: Callable[[str], None] = _not_counted
        if metrics is not None:
            sink, on_error = metrics.counting(device.id, sink), metrics.device_errors(device.id)
        pollers.append(
            DevicePoller(
                bound.build(buses),
                polled,
                interval=device.poll,
                sink=sink,
                clock_synced=clock_synchronized,
                backoff=partial(
                    backoff_delays, initial=bound.backoff.initial, cap=bound.backoff.cap
                ),
                on_error=on_error,
            )
        )
    return pollers


def tls_context(config: SiteConfig) -> ssl.SSLContext | None:
    """The TLS settings for an `mqtts://` broker: CA (else system trust), optional client cert."""
    if not config.uplink.broker.tls:
        return None
    tls = config.uplink.tls
    context = ssl.create_default_context(cafile=None if tls is None else tls.ca)
    if tls is not None and tls.cert is not None and tls.key is not None:
        context.load_cert_chain(tls.cert, tls.key)
    return context


async def _report_buses(buses: RtuBuses, every: float, metrics: AgentMetrics | None) -> None:
    if metrics is None:
        await report_utilization(buses, every)
    else:
        await report_utilization(buses, every, metrics.bus_utilization)


async def _prune_forever(outbox: Outbox, retain_seconds: float) -> None:
    while True:
        try:
            removed = await outbox.prune(delivered_before=time.time() - retain_seconds)
        except sqlite3.Error as exc:
            # A full disk or a busy file: retention waits for the next round (a full outbox
            # drops delivered blocks itself), and the agent goes on.
            log.warning("prune_failed", error=str(exc))
        else:
            if removed:
                log.info("delivered_blocks_pruned", blocks=removed)
        await asyncio.sleep(_PRUNE_EVERY)


async def _every_device_polled(pollers: list[DevicePoller]) -> None:
    for poller in pollers:
        await poller.first_cycle_done.wait()


async def run_agent(
    config: SiteConfig,
    stop: asyncio.Event | None = None,
    *,
    bus_report_every: float = REPORT_EVERY,
    site_file: Path | None = None,
) -> bool:
    """Run until `stop` is set (or SIGTERM/SIGINT), then seal what is queued and exit.

    With `site_file` (the map `config` was read from) the agent takes signed commands on
    `down/cmd` (edge_agent.shell.commands); it returns True when one replaced that file and
    the agent must start again from it (edge_agent.shell.site_runner), False otherwise.

    Modbus RTU devices on one serial port share one bus, created here and closed after the
    poll tasks ended; each bus's measured utilization is logged every `bus_report_every` s.
    """
    stop = stop or asyncio.Event()
    # The shipped catalogue, loaded once here and passed to everything that reads quotas.
    catalogue = default_catalogue()
    for sig in (signal.SIGTERM, signal.SIGINT):
        with contextlib.suppress(NotImplementedError, RuntimeError):
            asyncio.get_running_loop().add_signal_handler(sig, stop.set)
    key = load_private_key(config.signing.key_file)
    # What signs statuses, meta and command results: moved by a key rotation.
    current = CurrentKey(key)
    collector_key = read_collector_keys(config.uplink.collector_key_files)
    topics = GatewayTopics(config.site.district, config.site.enterprise, config.site.gateway)
    # `good`: set by the pollers' sink once a good reading is queued (a map's probation ends).
    queue, good = asyncio.Queue[Record](maxsize=_QUEUE_BOUND), asyncio.Event()
    desk = (
        None
        if site_file is None
        else CommandDesk(
            site_file=site_file,
            config=config,
            catalogue=catalogue,
            trusted=collector_key,
            sign=current.sign,
            good=good,
        )
    )
    points = resolve_points(config)
    meta = gateway_meta(
        identity_of(config),
        points,
        issued_at=time.time(),
        polls={device.id: device.poll for device in config.devices},
    ).encode()
    async with open_outbox(
        config.outbox.path,
        identity_of(config),
        key,
        max_bytes=config.outbox.max_bytes,
        clock_synced=clock_synchronized(),
    ) as outbox:
        # A rotation whose announcement the collector ACKed while the agent was stopped.
        current.key = await complete_rotation(outbox, config.signing.key_file) or key
        publisher = Publisher(
            outbox,
            topics,
            collector_key,
            UplinkSettings(
                host=config.uplink.host,
                port=config.uplink.port,
                client_id=config.site.gateway,
                keepalive=config.uplink.keepalive,
                session_expiry=config.uplink.session_expiry,
                ack_timeout=config.uplink.ack_timeout,
                max_inflight=config.uplink.max_inflight,
                publish_rate=config.uplink.publish_rate,
                tls=tls_context(config),
                encoding=config.uplink.wire_encoding,
            ),
            _reconnect_backoff,
            sign=current.sign,
            meta=(meta, current.sign(meta)),
            version=_package_version(),
            config_hash=config_fingerprint(config),
            commands=desk,
        )
        alarm_stage = await load_alarm_stage(outbox, rules_for_site(config, catalogue))
        sealer = Sealer(
            outbox,
            queue,
            flush_interval=config.outbox.flush_interval,
            flush_readings=config.outbox.flush_readings,
            clock_synced=clock_synchronized,
            on_sealed=lambda block: publisher.notify_sealed(block.seq),
            # Alarm state lives in the outbox file: an alarm active before a restart stays
            # active (no second raise) and its clear carries the same alarm_id.
            alarms=alarm_stage,
            # Readings a stop on a full disk let go: named by the first block sealed now.
            lost=outbox.unsealed,
        )
        metrics = _agent_metrics(config)
        # Bound before any task starts: a taken metrics port fails the start (OSError).
        metrics_tasks = (
            ()
            if metrics is None
            else await metrics_service(config.metrics, metrics.scraper(outbox))
        )
        buses = RtuBuses()
        pollers = _pollers(config, points, queue, buses, metrics, catalogue=catalogue, good=good)
        plans = plan_buses(config, points)
        log_planned(plans)
        status = AgentStatus(
            config,
            pollers,
            publisher=publisher,
            outbox=outbox,
            buses=buses,
            plans=plans,
            alarms=alarm_stage,
            version=_package_version(),
            config_hash=config_fingerprint(config),
        )
        # `edge-agent status` asks here; an agent whose socket cannot be bound runs without.
        status_tasks = await status_service(status_socket_path(config), status.snapshot)
        poll_tasks = [
            asyncio.create_task(p.run(), name=f"poll-{d.id}")
            for p, d in zip(pollers, config.devices, strict=True)
        ]
        if len(buses):  # cancelled with the poll tasks, before the buses close
            poll_tasks.append(
                asyncio.create_task(
                    _report_buses(buses, bus_report_every, metrics), name="rtu-bus-report"
                )
            )
        service_tasks = [
            asyncio.create_task(sealer.run(), name="sealer"),
            asyncio.create_task(publisher.run(), name="publisher"),
            asyncio.create_task(
                _prune_forever(outbox, config.outbox.retain_days * 86400), name="pruner"
            ),
            *([] if desk is None else [asyncio.create_task(desk.run(publisher), name="commands")]),
            asyncio.create_task(
                RotationWatcher(
                    outbox,
                    config.signing.key_file,
                    current,
                    on_switched=lambda new: publisher.replace_meta((meta, new.sign(meta))),
                ).run(),
                name="key-rotation",
            ),
            *metrics_tasks,
            *status_tasks,
        ]
        log.info(
            "agent_started",
            gateway=config.site.gateway,
            epoch=outbox.epoch,
            devices=len(pollers),
        )
        # What exists now (modules, the site map, the catalogue, the drivers' plans) lives as
        # long as the agent: frozen, the garbage collector's full passes and the one at exit
        # walk only what polling made since. Without it the exit alone took 0.7-2.5 s of a
        # stop on a busy machine. Startup's cyclic garbage is collected first, not frozen.
        gc.collect()
        gc.freeze()
        workers: list[asyncio.Task[None]] = [*poll_tasks, *service_tasks]
        stopped = asyncio.create_task(stop.wait(), name="stop")
        # Ready for systemd (READY=1) once the outbox is open and every device has been tried
        # once, answered or not; a stop or a crash before that skips it.
        polled = asyncio.create_task(_every_device_polled(pollers), name="first-poll")
        await asyncio.wait([polled, stopped, *workers], return_when=asyncio.FIRST_COMPLETED)
        polled.cancel()
        if polled.done() and not polled.cancelled():
            notify("READY=1")
            log.info("agent_ready", gateway=config.site.gateway)
        # WATCHDOG=1 from this loop until the agent has stopped: a hung loop is restarted.
        async with watchdog_pings():
            await asyncio.wait([stopped, *workers], return_when=asyncio.FIRST_COMPLETED)
            # A worker that ended on its own crashed: stop cleanly, then let its error surface.
            crashed = [t for t in workers if t.done() and not t.cancelled() and t.exception()]
            notify("STOPPING=1")
            await shut_down(
                gateway=config.site.gateway,
                poll_tasks=poll_tasks,
                service_tasks=service_tasks,
                buses=buses,
                queue=queue,
                sealer=sealer,
                publisher=publisher,
            )
        stopped.cancel()
        for task in crashed:
            error = task.exception()
            if error is not None:
                raise error
    return desk is not None and desk.restart_requested
