"""What `edge-agent status` shows of a running agent: the snapshot, its JSON and its text.

The running agent builds an `AgentSnapshot` when asked on its status socket
(edge_agent.shell.status_server) and sends `to_json()`; the command reads it back with
`snapshot_from_json` and prints `render_snapshot`. Times are ISO 8601 in the JSON, as on the
wire; ages in the text are counted from the snapshot's own time `t`, so a clock that differs
between the agent and the command does not skew them.

Error tree::

    SnapshotFormatError     a status document is not what `to_json` writes
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Literal

from hostkit.tables import render_table
from specs.records import iso_time, parse_iso_time

DeviceState = Literal["ok", "failing", "waiting"]

_ERROR_SHOWN = 60
"""Characters of a device's last error the table shows; `--json` has all of it."""


class SnapshotFormatError(ValueError):
    """A status document is not what `AgentSnapshot.to_json` writes."""


@dataclass(frozen=True, slots=True)
class DeviceFault:
    """The last thing that went wrong with a device: its kind, the driver's words, and when.

    `kind` is `poller.error_kind`'s (timeout, connection, protocol, decode, other) or `point`
    for a point read bad in an otherwise answered read.
    """

    kind: str
    message: str
    at: float


@dataclass(frozen=True, slots=True)
class DeviceStatus:
    """One device of the site map: its last good reading and its last error, if any."""

    device: str
    driver: str
    last_good: float | None
    last_error: DeviceFault | None

    @property
    def state(self) -> DeviceState:
        """`failing` when its last error came after its last good reading (or none came)."""
        if self.last_error is not None and (
            self.last_good is None or self.last_error.at > self.last_good
        ):
            return "failing"
        return "waiting" if self.last_good is None else "ok"


@dataclass(frozen=True, slots=True)
class UplinkStatus:
    """The MQTT link to the province broker."""

    broker: str
    connected: bool
    last_ack: float | None
    published: int


@dataclass(frozen=True, slots=True)
class BusStatus:
    """One Modbus RTU port: measured load since the agent started, and the planned load."""

    port: str
    utilization: float
    seconds: float
    transactions: int
    timeouts: int
    errors: int
    planned: float | None


@dataclass(frozen=True, slots=True)
class OutboxStatus:
    """What waits in the outbox for the collector's ACK."""

    epoch: str
    last_seq: int
    undelivered_blocks: int
    undelivered_records: int
    oldest_undelivered: float | None


@dataclass(frozen=True, slots=True)
class AlarmStatus:
    """An alarm raised and not yet cleared; `slot` names its point and rule."""

    slot: str
    alarm_id: str
    level: str
    raised_t: str


@dataclass(frozen=True, slots=True)
class AgentSnapshot:
    """The running agent at time `t` (unix seconds)."""

    gateway: str
    version: str | None
    config: str
    pid: int
    started: float
    t: float
    clock_synchronized: bool
    uplink: UplinkStatus
    outbox: OutboxStatus
    devices: tuple[DeviceStatus, ...]
    buses: tuple[BusStatus, ...]
    alarms: tuple[AlarmStatus, ...]

    def to_json(self) -> dict[str, object]:
        """The document the status socket sends and `edge-agent status --json` prints."""
        oldest = self.outbox.oldest_undelivered
        return {
            "running": True,
            "gateway": self.gateway,
            "version": self.version,
            "config": self.config,
            "pid": self.pid,
            "started": iso_time(self.started),
            "t": iso_time(self.t),
            "clock": {"synchronized": self.clock_synchronized},
            "uplink": {
                "broker": self.uplink.broker,
                "connected": self.uplink.connected,
                "last_ack": _time_or_none(self.uplink.last_ack),
                "published": self.uplink.published,
            },
            "outbox": {
                "epoch": self.outbox.epoch,
                "last_seq": self.outbox.last_seq,
                "undelivered_blocks": self.outbox.undelivered_blocks,
                "undelivered_records": self.outbox.undelivered_records,
                "oldest_undelivered": _time_or_none(oldest),
                "oldest_undelivered_age_s": (
                    None if oldest is None else round(max(0.0, self.t - oldest), 3)
                ),
            },
            "devices": [_device_json(device) for device in self.devices],
            "rtu_buses": [
                {
                    "port": bus.port,
                    "utilization": round(bus.utilization, 4),
                    "seconds": round(bus.seconds, 1),
                    "transactions": bus.transactions,
                    "timeouts": bus.timeouts,
                    "errors": bus.errors,
                    "planned": None if bus.planned is None else round(bus.planned, 4),
                }
                for bus in self.buses
            ],
            "alarms": [
                {
                    "slot": alarm.slot,
                    "alarm_id": alarm.alarm_id,
                    "level": alarm.level,
                    "raised_t": alarm.raised_t,
                }
                for alarm in self.alarms
            ],
        }


def _time_or_none(moment: float | None) -> str | None:
    return None if moment is None else iso_time(moment)


def _device_json(device: DeviceStatus) -> dict[str, object]:
    error = device.last_error
    return {
        "device": device.device,
        "driver": device.driver,
        "state": device.state,
        "last_good": _time_or_none(device.last_good),
        "last_error": (
            None
            if error is None
            else {"kind": error.kind, "message": error.message, "at": iso_time(error.at)}
        ),
    }


class _Reader:
    """Typed access to one object of a status document; every mistake a SnapshotFormatError."""

    def __init__(self, document: object, where: str) -> None:
        if not isinstance(document, Mapping):
            raise SnapshotFormatError(f"{where}: not an object")
        self._document = document
        self._where = where

    def _get(self, key: str) -> object:
        if key not in self._document:
            raise SnapshotFormatError(f"{self._where}.{key}: missing")
        return self._document[key]

    def text(self, key: str) -> str:
        value = self._get(key)
        if not isinstance(value, str):
            raise SnapshotFormatError(f"{self._where}.{key}: not a string")
        return value

    def optional_text(self, key: str) -> str | None:
        return None if self._get(key) is None else self.text(key)

    def integer(self, key: str) -> int:
        value = self._get(key)
        if isinstance(value, bool) or not isinstance(value, int):
            raise SnapshotFormatError(f"{self._where}.{key}: not an integer")
        return value

    def number(self, key: str) -> float:
        value = self._get(key)
        if isinstance(value, bool) or not isinstance(value, int | float):
            raise SnapshotFormatError(f"{self._where}.{key}: not a number")
        return float(value)

    def optional_number(self, key: str) -> float | None:
        return None if self._get(key) is None else self.number(key)

    def flag(self, key: str) -> bool:
        value = self._get(key)
        if not isinstance(value, bool):
            raise SnapshotFormatError(f"{self._where}.{key}: not true or false")
        return value

    def time(self, key: str) -> float:
        text = self.text(key)
        try:
            return parse_iso_time(text)
        except ValueError:
            raise SnapshotFormatError(f"{self._where}.{key}: not an ISO 8601 time") from None

    def optional_time(self, key: str) -> float | None:
        return None if self._get(key) is None else self.time(key)

    def child(self, key: str) -> _Reader:
        return _Reader(self._get(key), f"{self._where}.{key}")

    def optional_child(self, key: str) -> _Reader | None:
        return None if self._get(key) is None else self.child(key)

    def children(self, key: str) -> list[_Reader]:
        items = self._get(key)
        if not isinstance(items, list):
            raise SnapshotFormatError(f"{self._where}.{key}: not a list")
        return [_Reader(item, f"{self._where}.{key}[{i}]") for i, item in enumerate(items)]


def snapshot_from_json(document: object) -> AgentSnapshot:
    """Read back what `AgentSnapshot.to_json` wrote (SnapshotFormatError when it is not)."""
    top = _Reader(document, "status")
    uplink, outbox = top.child("uplink"), top.child("outbox")
    devices = []
    for item in top.children("devices"):
        error = item.optional_child("last_error")
        devices.append(
            DeviceStatus(
                device=item.text("device"),
                driver=item.text("driver"),
                last_good=item.optional_time("last_good"),
                last_error=None
                if error is None
                else DeviceFault(error.text("kind"), error.text("message"), error.time("at")),
            )
        )
    return AgentSnapshot(
        gateway=top.text("gateway"),
        version=top.optional_text("version"),
        config=top.text("config"),
        pid=top.integer("pid"),
        started=top.time("started"),
        t=top.time("t"),
        clock_synchronized=top.child("clock").flag("synchronized"),
        uplink=UplinkStatus(
            broker=uplink.text("broker"),
            connected=uplink.flag("connected"),
            last_ack=uplink.optional_time("last_ack"),
            published=uplink.integer("published"),
        ),
        outbox=OutboxStatus(
            epoch=outbox.text("epoch"),
            last_seq=outbox.integer("last_seq"),
            undelivered_blocks=outbox.integer("undelivered_blocks"),
            undelivered_records=outbox.integer("undelivered_records"),
            oldest_undelivered=outbox.optional_time("oldest_undelivered"),
        ),
        devices=tuple(devices),
        buses=tuple(
            BusStatus(
                port=bus.text("port"),
                utilization=bus.number("utilization"),
                seconds=bus.number("seconds"),
                transactions=bus.integer("transactions"),
                timeouts=bus.integer("timeouts"),
                errors=bus.integer("errors"),
                planned=bus.optional_number("planned"),
            )
            for bus in top.children("rtu_buses")
        ),
        alarms=tuple(
            AlarmStatus(
                slot=alarm.text("slot"),
                alarm_id=alarm.text("alarm_id"),
                level=alarm.text("level"),
                raised_t=alarm.text("raised_t"),
            )
            for alarm in top.children("alarms")
        ),
    )


_SECONDS = 60.0
_MINUTES = 120
_HOURS = 48


def format_age(seconds: float) -> str:
    """A short age for a person: `0.4 s`, `12 s`, `5 min`, `3 h 20 min`, `2 d 4 h`."""
    seconds = max(0.0, seconds)
    if seconds < 10:  # noqa: PLR2004 - tenths matter only for the first few seconds
        return f"{seconds:.1f} s"
    if seconds < 2 * _SECONDS:
        return f"{seconds:.0f} s"
    minutes = int(seconds // 60)
    if minutes < _MINUTES:
        return f"{minutes} min"
    hours, minutes = divmod(minutes, 60)
    if hours < _HOURS:
        return f"{hours} h {minutes} min" if minutes else f"{hours} h"
    days, hours = divmod(hours, 24)
    return f"{days} d {hours} h" if hours else f"{days} d"


def _ago(snapshot: AgentSnapshot, moment: float | None, never: str = "never") -> str:
    return never if moment is None else f"{format_age(snapshot.t - moment)} ago"


def _shortened(text: str) -> str:
    return text if len(text) <= _ERROR_SHOWN else f"{text[: _ERROR_SHOWN - 1]}…"


def render_snapshot(snapshot: AgentSnapshot) -> str:
    """The running agent as `edge-agent status` prints it: a few lines, then three tables."""
    outbox, uplink = snapshot.outbox, snapshot.uplink
    blocks, records = outbox.undelivered_blocks, outbox.undelivered_records
    running = (
        f"gateway   {snapshot.gateway} (pid {snapshot.pid}, up"
        f" {format_age(snapshot.t - snapshot.started)}, version {snapshot.version or '-'},"
        f" config {snapshot.config})"
    )
    link = "connected to" if uplink.connected else "NOT connected to"
    waiting = (
        f"epoch {outbox.epoch}, last seq {outbox.last_seq}, {blocks} undelivered"
        f" block{'s' * (blocks != 1)} ({records} record{'s' * (records != 1)}), oldest"
        f" {_ago(snapshot, outbox.oldest_undelivered, never='-')}"
    )
    lines = [
        running,
        f"uplink    {link} {uplink.broker}, last ACK {_ago(snapshot, uplink.last_ack)}",
        f"clock     {'synchronized' if snapshot.clock_synchronized else 'NOT synchronized'}",
        f"outbox    {waiting}",
        "",
        render_table(
            [_device_row(snapshot, device) for device in snapshot.devices],
            ("device", "driver", "state", "last good read", "last error"),
        ),
    ]
    if snapshot.buses:
        lines += ["", render_table([_bus_row(bus) for bus in snapshot.buses], _BUS_HEADER)]
    lines.append("")
    if snapshot.alarms:
        rows = [(a.slot, a.level, a.raised_t, a.alarm_id) for a in snapshot.alarms]
        lines.append(render_table(rows, ("active alarm", "level", "raised", "alarm id")))
    else:
        lines.append("no active alarms")
    return "\n".join(lines)


_BUS_HEADER: Sequence[str] = (
    "rtu bus",
    "measured",
    "over",
    "planned",
    "transactions",
    "timeouts",
    "errors",
)


def _device_row(snapshot: AgentSnapshot, device: DeviceStatus) -> tuple[str, ...]:
    error = device.last_error
    return (
        device.device,
        device.driver,
        device.state,
        _ago(snapshot, device.last_good),
        "-"
        if error is None
        else _shortened(f"{error.kind} {_ago(snapshot, error.at)}: {error.message}"),
    )


def _bus_row(bus: BusStatus) -> tuple[str, ...]:
    return (
        bus.port,
        f"{bus.utilization:.1%}",
        format_age(bus.seconds),
        "-" if bus.planned is None else f"{bus.planned:.1%}",
        str(bus.transactions),
        str(bus.timeouts),
        str(bus.errors),
    )
