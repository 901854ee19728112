"""The agent's composition root: build every part from the run plan and run them.

The plan (`edge_agent.core.plan`) is the checked site map compiled into plain values; this
module never imports the config package (pydantic, YAML: G7), `run_agent` compiles a config
in-process for tests and tools. Devices go one way, from each device's driver settings to its
driver and its `DevicePoller` (`device_pollers`); the RTU buses they share are made here.
"""

from __future__ import annotations

import asyncio
import contextlib
import gc
import importlib.metadata
import os
import sqlite3
import ssl
import time
from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING

import structlog

from edge_agent.core.meta import gateway_meta
from edge_agent.core.plan import AgentPlan, Backoff
from edge_agent.shell.alarm_stage import load_alarm_stage
from edge_agent.shell.buses import REPORT_EVERY, RtuBuses, log_planned, report_utilization
from edge_agent.shell.collector_keys import read_collector_keys
from edge_agent.shell.commands import CommandDesk
from edge_agent.shell.device_pollers import device_pollers, every_device_polled
from edge_agent.shell.host import clock_synchronized
from edge_agent.shell.keyfile import load_private_key
from edge_agent.shell.metrics_server import metrics_service
from edge_agent.shell.outbox import Outbox
from edge_agent.shell.outbox_open import open_outbox
from edge_agent.shell.publisher import Publisher
from edge_agent.shell.rotation import CurrentKey, RotationWatcher, complete_rotation
from edge_agent.shell.sealer import Sealer
from edge_agent.shell.shutdown import shut_down
from edge_agent.shell.status_server import AgentStatus, status_service, status_socket_path
from edge_agent.shell.stop_signals import STOP_SIGNALS, release_stop_signals
from edge_agent.shell.uplink import UplinkSettings
from hostkit.backoff import backoff_delays
from hostkit.systemd_notify import notify, watchdog_pings
from hostkit.tls import client_context
from specs.records import Record
from specs.topics import GatewayTopics

if TYPE_CHECKING:
    from edge_agent.config import SiteConfig
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


def _reconnect_backoff() -> Iterator[float]:
    uplink = Backoff()  # the broker link backs off as a device does by default
    return backoff_delays(initial=uplink.initial, cap=uplink.cap)


def _agent_metrics(plan: AgentPlan) -> AgentMetrics | None:
    """The agent's counters when `metrics.listen` is set; None when nobody could read them.

    prometheus_client, and the http, urllib and email modules it imports (3.5 MiB resident),
    is imported only then (G7).
    """
    if plan.metrics is None:
        return None
    from edge_agent.shell.metrics import AgentMetrics  # noqa: PLC0415 - only when served

    return AgentMetrics([device.id for device in plan.devices])


def tls_context(plan: AgentPlan) -> ssl.SSLContext | None:
    """The TLS settings for an `mqtts://` broker: CA (else system trust), optional client cert."""
    uplink = plan.uplink
    if not uplink.tls:
        return None
    # `run`'s `file_problems` loaded the same files before the exec; TlsFileError here means one
    # changed since.
    return client_context(uplink.ca, uplink.cert, uplink.key, setting="uplink.tls")


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


async def run_agent(
    config: SiteConfig,
    stop: asyncio.Event | None = None,
    *,
    bus_report_every: float = REPORT_EVERY,
    site_file: Path | None = None,
) -> bool:
    """`run_plan` on `config` compiled here (tests and tools that hold a checked config).

    With `site_file` (the map `config` was read from) the agent takes signed commands.
    """
    # Here, not at the top: `edge-agent run` hands the runtime a compiled plan and its
    # process never imports the config models (G7).
    from edge_agent.core.plan_compile import compile_plan  # noqa: PLC0415
    from specs.catalogue import default_catalogue  # noqa: PLC0415

    # Without the map's text the desk reads the file when a pushed map is checked.
    plan = compile_plan(config, default_catalogue(), site_file=site_file, wire_of=os.path.realpath)
    return await run_plan(plan, stop, bus_report_every=bus_report_every)


async def run_plan(
    plan: AgentPlan,
    stop: asyncio.Event | None = None,
    *,
    bus_report_every: float = REPORT_EVERY,
) -> bool:
    """Run until `stop` is set (or SIGTERM/SIGINT/SIGHUP), then seal what is queued and exit.

    With `plan.site_file` (the map the plan was compiled from) the agent takes signed commands
    on `down/cmd` (edge_agent.shell.commands); it returns True when one replaced that file and
    the agent must start again from it (`edge_agent.runner`), False otherwise.

    Modbus RTU devices on one serial port share one bus, created here and closed after the
    poll tasks ended; each bus's measured utilization is logged every `bus_report_every` s.
    """
    stop = stop or asyncio.Event()
    # SIGHUP: a run by hand whose terminal goes away (SSH dropped) seals what it polled too.
    for sig in STOP_SIGNALS:
        with contextlib.suppress(NotImplementedError, RuntimeError):
            asyncio.get_running_loop().add_signal_handler(sig, stop.set)
    # Held since `edge-agent run` execed the runner: one that came meanwhile stops it now.
    release_stop_signals()
    key = load_private_key(plan.key_file)
    # What signs statuses, meta and command results: moved by a key rotation.
    current = CurrentKey(key)
    collector_key = read_collector_keys(plan.uplink.collector_key_files)
    identity = plan.identity
    topics = GatewayTopics(identity.district, identity.enterprise, identity.gateway)
    # `good`: set by the pollers' sink once a good reading is queued (a map's probation ends).
    queue, good = asyncio.Queue[Record](maxsize=_QUEUE_BOUND), asyncio.Event()
    desk = (
        None
        if plan.site_file is None
        else CommandDesk(
            plan=plan,
            site_file=plan.site_file,
            trusted=collector_key,
            sign=current.sign,
            good=good,
        )
    )
    meta = gateway_meta(
        identity,
        plan.points,
        issued_at=time.time(),
        polls={device.id: device.poll for device in plan.devices},
    ).encode()
    async with open_outbox(
        plan.outbox.path,
        identity,
        key,
        max_bytes=plan.outbox.max_bytes,
        clock_synced=clock_synchronized(),
        busy_timeout=plan.outbox.busy_timeout,
        # A stop while the opening waits for another process's lock (up to 2 x 120 s) ends
        # the wait: systemd's SIGKILL comes 5 s after its SIGTERM.
        stop=stop,
    ) as outbox:
        # A rotation whose announcement the collector ACKed, and whose key it took, while the
        # agent was stopped (a refused one is logged and switches nothing).
        current.key = await complete_rotation(outbox, plan.key_file) or key
        outbox.delivery.report_key_left_out()  # no ACK comes while the collector refuses the key
        publisher = Publisher(
            outbox,
            topics,
            collector_key,
            UplinkSettings(
                host=plan.uplink.host,
                port=plan.uplink.port,
                client_id=identity.gateway,
                keepalive=plan.uplink.keepalive,
                session_expiry=plan.uplink.session_expiry,
                ack_timeout=plan.uplink.ack_timeout,
                max_inflight=plan.uplink.max_inflight,
                publish_rate=plan.uplink.publish_rate,
                tls=tls_context(plan),
                encoding=plan.uplink.encoding,
            ),
            _reconnect_backoff,
            sign=current.sign,
            meta=(meta, current.sign(meta)),
            version=_package_version(),
            config_hash=plan.config_hash,
            commands=desk,
        )
        alarm_stage = await load_alarm_stage(outbox, plan.rules)
        sealer = Sealer(
            outbox,
            queue,
            flush_interval=plan.outbox.flush_interval,
            flush_readings=plan.outbox.flush_readings,
            clock_synced=clock_synchronized,
            on_sealed=lambda block: publisher.notify_sealed(block.seq),
            # Alarm state lives in the outbox file: an alarm active before a restart stays
            # active (no second raise) and its clear carries the same alarm_id.
            alarms=alarm_stage,
            # Readings a stop on a full disk let go: named by the first block sealed now.
            lost=await outbox.unsealed(),
        )
        metrics = _agent_metrics(plan)
        # Bound before any task starts: a taken metrics port fails the start (OSError).
        metrics_tasks = (
            ()
            if metrics is None
            else await metrics_service(plan.metrics, metrics.scraper(outbox, publisher))
        )
        buses = RtuBuses()
        pollers = device_pollers(plan, queue, buses, metrics, good=good)
        log_planned(plan.buses)
        status = AgentStatus(
            plan,
            pollers,
            publisher=publisher,
            outbox=outbox,
            buses=buses,
            plans=plan.buses,
            alarms=alarm_stage,
            version=_package_version(),
            config_hash=plan.config_hash,
            current=current,
            sealer=sealer,
        )
        # `edge-agent status` asks here; an agent whose socket cannot be bound runs without.
        status_tasks = await status_service(status_socket_path(plan), status.snapshot)
        poll_tasks = [
            asyncio.create_task(p.run(), name=f"poll-{d.id}")
            for p, d in zip(pollers, plan.devices, strict=True)
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
                _prune_forever(outbox, plan.outbox.retain_days * 86400), name="pruner"
            ),
            *([] if desk is None else [asyncio.create_task(desk.run(publisher), name="commands")]),
            asyncio.create_task(
                RotationWatcher(
                    outbox,
                    plan.key_file,
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
            gateway=identity.gateway,
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
        polled = asyncio.create_task(every_device_polled(pollers), name="first-poll")
        await asyncio.wait([polled, stopped, *workers], return_when=asyncio.FIRST_COMPLETED)
        polled.cancel()
        if polled.done() and not polled.cancelled():
            notify("READY=1")
            log.info("agent_ready", gateway=identity.gateway)
        # WATCHDOG=1 from this loop until the agent has stopped: a hung loop is restarted.
        async with watchdog_pings():
            await asyncio.wait([stopped, *workers], return_when=asyncio.FIRST_COMPLETED)
            # A worker that ended on its own crashed: stop cleanly, then let its error surface.
            crashed = [t for t in workers if t.done() and not t.cancelled() and t.exception()]
            notify("STOPPING=1")
            await shut_down(
                gateway=identity.gateway,
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
