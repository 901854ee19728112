"""What `edge-agent status` shows of a running agent: the snapshot and its JSON.

The running agent builds an `AgentSnapshot` when asked on its status socket
(edge_agent.shell.status_server) and sends `to_json()`; the command reads it back with
`snapshot_from_json` and prints it (edge_agent.core.agent_status_text). Times are ISO 8601
in the JSON, as on the wire.

Error tree::

    SnapshotFormatError     a status document is not what `to_json` writes
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Literal

from edge_agent.core import agent_status_storage as on_disk
from specs.records import iso_time, optional_iso_time, parse_iso_time

DeviceState = Literal["ok", "failing", "waiting"]


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
class MetaStatus:
    """The point catalogue (`up/meta`) at the last connect: sent, or not as too large.

    `bytes`: its PUBLISH packet; `limit`: the broker's Maximum Packet Size (None: it set
    none). Not sent when over it (`meta_too_large_for_broker`): the collector lacks it.
    """

    sent: bool
    bytes: int
    limit: int | None


@dataclass(frozen=True, slots=True)
class UplinkStatus:
    """The MQTT link to the province broker; `meta` None before a connect or without one."""

    broker: str
    connected: bool
    last_ack: float | None
    published: int
    meta: MetaStatus | None = None


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
    storage: on_disk.StorageStatus = on_disk.ALL_CLEAR  # a full disk and its toll


@dataclass(frozen=True, slots=True)
class AlarmStatus:
    """An alarm raised and not yet cleared; `slot` names its point and rule."""

    slot: str
    alarm_id: str
    level: str
    raised_t: str


@dataclass(frozen=True, slots=True)
class KeyStatus:
    """The gateway key the agent signs with, and the next one while a rotation is under way.

    `next_state`: `announced` (the collector has not answered yet), `taken` (the switch is
    due), `refused` (the collector stored the announcement but not the key: the agent stays
    on `kid`; `keys rotate` again announces a new one), or None (no announcement of it in
    the outbox: run `keys rotate` again). `left_out`: since when the collector's ACKs leave
    `kid` out of their `keys` (revoked, retired or never registered there: it refuses every
    block signed with it), None while they name it or have not said.
    """

    kid: str
    next: str | None = None
    next_state: str | None = None
    left_out: float | None = None


@dataclass(frozen=True, slots=True)
class AgentSnapshot:
    """The running agent at time `t` (unix seconds); `key` None from an agent before it."""

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
    key: KeyStatus | None = None

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
                "last_ack": optional_iso_time(self.uplink.last_ack),
                "published": self.uplink.published,
                "meta": None if (meta := self.uplink.meta) is None else _meta_json(meta),
            },
            "outbox": {
                "epoch": self.outbox.epoch,
                "last_seq": self.outbox.last_seq,
                "undelivered_blocks": self.outbox.undelivered_blocks,
                "undelivered_records": self.outbox.undelivered_records,
                "storage": on_disk.storage_json(self.outbox.storage),
                "oldest_undelivered": optional_iso_time(oldest),
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
            "key": None if self.key is None else _key_json(self.key),
        }


def _meta_json(meta: MetaStatus) -> dict[str, object]:
    return {"sent": meta.sent, "bytes": meta.bytes, "limit": meta.limit}


def _key_json(key: KeyStatus) -> dict[str, object]:
    return {
        "kid": key.kid,
        "next": key.next,
        "next_state": key.next_state,
        "left_out": optional_iso_time(key.left_out),
    }


def _device_json(device: DeviceStatus) -> dict[str, object]:
    error = device.last_error
    return {
        "device": device.device,
        "driver": device.driver,
        "state": device.state,
        "last_good": optional_iso_time(device.last_good),
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

    def optional_integer(self, key: str) -> int | None:
        return None if self._get(key) is None else self.integer(key)

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

    def later_time(self, key: str) -> float | None:
        """`optional_time` of a key an older agent leaves out (absent reads as null)."""
        return None if self._document.get(key) is None else self.time(key)

    def child(self, key: str) -> _Reader:
        return _Reader(self._get(key), f"{self._where}.{key}")

    def optional_child(self, key: str) -> _Reader | None:
        return None if self._get(key) is None else self.child(key)

    def later_child(self, key: str) -> _Reader | None:
        """`optional_child` of a key an older agent leaves out (absent reads as null)."""
        return None if self._document.get(key) is None else self.child(key)

    def children(self, key: str) -> list[_Reader]:
        items = self._get(key)
        if not isinstance(items, list):
            raise SnapshotFormatError(f"{self._where}.{key}: not a list")
        return [_Reader(item, f"{self._where}.{key}[{i}]") for i, item in enumerate(items)]


def snapshot_from_json(document: object) -> AgentSnapshot:
    """Read back what `AgentSnapshot.to_json` wrote (SnapshotFormatError when it is not)."""
    top = _Reader(document, "status")
    uplink, outbox, key = top.child("uplink"), top.child("outbox"), top.later_child("key")
    meta = uplink.later_child("meta")
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
            meta=None
            if meta is None
            else MetaStatus(
                meta.flag("sent"), meta.integer("bytes"), meta.optional_integer("limit")
            ),
        ),
        outbox=OutboxStatus(
            epoch=outbox.text("epoch"),
            last_seq=outbox.integer("last_seq"),
            undelivered_blocks=outbox.integer("undelivered_blocks"),
            undelivered_records=outbox.integer("undelivered_records"),
            oldest_undelivered=outbox.optional_time("oldest_undelivered"),
            storage=on_disk.storage_from(outbox.later_child("storage")),
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
        key=None
        if key is None
        else KeyStatus(
            key.text("kid"),
            key.optional_text("next"),
            key.optional_text("next_state"),
            key.later_time("left_out"),
        ),
    )
