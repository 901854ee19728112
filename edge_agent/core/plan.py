"""What a running agent needs of its checked site map, as plain frozen values (the run plan).

`edge-agent run` checks the site map (pydantic, YAML: `edge_agent.config`) and compiles it into
an `AgentPlan` (`edge_agent.core.plan_compile`); the agent runs from the plan alone, in a
process that never imports the config package, pydantic, YAML or click (G7: 11-13 MiB of a
60 MiB budget). Everything here is what the runtime reads: identity, uplink, signing, outbox,
metrics and command settings, each device's driver settings (its kind's pure `settings`), the
resolved points with their indicators, the alarm rules and the RTU bus plans.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Final, Protocol

from edge_agent.core.alarms.rules import AlarmRules
from edge_agent.core.chain import Identity
from edge_agent.core.points import ResolvedPoint
from edge_agent.core.rtu_plan import BusPlan
from specs.catalogue.model import Indicator
from specs.encoding import Encoding

BACKOFF_INITIAL = 0.5
"""Seconds before the first reconnect attempt of a device."""
BACKOFF_CAP = 30.0
"""Longest pause between reconnect attempts: a silent RTU slave retried sooner would cost its
shared bus a timeout each time."""


@dataclass(frozen=True, slots=True)
class Backoff:
    """Reconnect delays of a device's poll loop: doubling from `initial` up to `cap` seconds."""

    initial: float = BACKOFF_INITIAL
    cap: float = BACKOFF_CAP


@dataclass(frozen=True, slots=True)
class StartWarning:
    """Something about a device's configuration the agent warns about when it starts."""

    event: str
    fields: Mapping[str, object]


@dataclass(frozen=True, slots=True)
class UplinkPlan:
    """The link to the collector, as the publisher and `status` need it."""

    host: str
    port: int
    tls: bool
    """`mqtts://`: TLS with `ca` (else the system's trust) and the optional client `cert`."""
    ca: Path | None
    cert: Path | None
    key: Path | None
    keepalive: float
    session_expiry: float
    ack_timeout: float
    max_inflight: int
    publish_rate: float | None
    encoding: Encoding | None
    collector_key_files: tuple[Path, ...]


# How long a connection to the outbox waits for another process's lock before SQLite answers
# SQLITE_BUSY (a seal or `outbox resend` in progress is over long before). Not a config key:
# every plan `edge-agent run` compiles has it; tests that wait out a lock make it short.
OUTBOX_BUSY_TIMEOUT: Final = 30.0
# How long an opening of the outbox or an epoch start waits for another process's
# (`edge_agent.shell.outbox_epoch_lock`): an opening checks the whole file (quick_check).
OUTBOX_EPOCH_LOCK_TIMEOUT: Final = 120.0
# How long a read or write of the seq mark waits for another process's `flock` on it
# (`outbox_seq_mark.SeqMark`), held for one 160-byte pread and pwrite: longer, that process is
# stopped (Ctrl-Z) and the mark is given up on until it lets go. The outbox lock is held meanwhile.
OUTBOX_SEQ_MARK_TIMEOUT: Final = 5.0


@dataclass(frozen=True, slots=True)
class OutboxPlan:
    """Where blocks wait for their ACK, how large the file may grow, how blocks are sealed."""

    path: Path
    max_bytes: int
    retain_days: int
    flush_interval: float
    flush_readings: int
    busy_timeout: float = OUTBOX_BUSY_TIMEOUT


@dataclass(frozen=True, slots=True)
class MetricsPlan:
    """Where `GET /metrics` is served."""

    host: str
    port: int


@dataclass(frozen=True, slots=True)
class DevicePlan:
    """One device as its poll loop needs it: its driver's settings and how they build."""

    id: str
    driver: str
    """The device's `driver` value in the site map (`status` shows it)."""
    poll: float
    backoff: Backoff
    warnings: tuple[StartWarning, ...]
    settings: object
    """The frozen settings its kind's `settings` made from the checked device."""
    build: str
    """`module:function` that builds the driver from `settings` (the kind's `build`)."""


@dataclass(frozen=True, slots=True)
class AgentPlan:
    """Everything `edge_agent.shell.runtime.run_plan` runs from."""

    identity: Identity
    key_file: Path
    uplink: UplinkPlan
    outbox: OutboxPlan
    metrics: MetricsPlan | None
    rollback_after: float
    """Seconds a pushed map is on probation (`commands.rollback_after`)."""
    devices: tuple[DevicePlan, ...]
    points: tuple[ResolvedPoint, ...]
    indicators: Mapping[str, Indicator]
    """The catalogue's indicators of the points' quotas, by quota code."""
    rules: AlarmRules
    buses: tuple[BusPlan, ...]
    config_hash: str
    """`config_fingerprint` of the checked map: which map runs (`status`, the heartbeat)."""
    site_file: Path | None = None
    """The map's file, when commands may replace it (`edge-agent run`)."""
    site_text: str | None = None
    """The text of the map that runs: a pushed map is checked against it (only then parsed)."""


class _HasPath(Protocol):
    @property
    def path(self) -> Path:
        """The outbox file."""
        ...


class Outboxed(Protocol):
    """A site map or its run plan: both say where the outbox (the agent's state) is."""

    @property
    def outbox(self) -> _HasPath:
        """Its outbox settings."""
        ...
