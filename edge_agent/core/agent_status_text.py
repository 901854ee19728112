"""What `edge-agent status` prints of a snapshot: a few lines, then three tables.

Ages are counted from the snapshot's own time `t`, so a clock that differs between the agent
and the command does not skew them.
"""

from __future__ import annotations

from collections.abc import Sequence

from edge_agent.core.agent_status import (
    AgentSnapshot,
    BusStatus,
    DeviceStatus,
    KeyStatus,
    MetaStatus,
)
from hostkit.tables import render_table

_ERROR_SHOWN = 60
"""Characters of a device's last error the table shows; `--json` has all of it."""


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
        *([] if uplink.meta is None or uplink.meta.sent else [_meta_line(uplink.meta)]),
        f"clock     {'synchronized' if snapshot.clock_synchronized else 'NOT synchronized'}",
        f"outbox    {waiting}",
        *([f"disk      {_storage_line(snapshot)}"] if outbox.storage.troubled else []),
        *([] if snapshot.key is None else [f"key       {_key_line(snapshot.key, snapshot.t)}"]),
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


def _storage_line(snapshot: AgentSnapshot) -> str:
    """What a full disk does to the agent: shown only while something is wrong."""
    storage = snapshot.outbox.storage
    parts = []
    if storage.disk_full:
        parts.append("FULL: the outbox is capped, room is made inside it")
    if storage.reserve == "not held":
        parts.append("reserve NOT HELD (too little free space)")
    if storage.seals_failing_since is not None:
        parts.append(f"seals FAILING since {_ago(snapshot, storage.seals_failing_since)}")
    parts.append(
        f"{storage.held_in_memory} readings held in memory, {storage.let_go_in_memory} let go"
        f" from it, {storage.given_way_in_file} given way in the file"
    )
    if storage.acks_not_recorded:
        parts.append(
            f"{storage.acks_not_recorded} ACKs NOT RECORDED (last"
            f" {_ago(snapshot, storage.last_ack_not_recorded)})"
        )
    return "; ".join(parts)


def _meta_line(meta: MetaStatus) -> str:
    # Only when left out: the collector then lacks the catalogue, and only the broker's
    # setting or a smaller site map gets it there.
    return (
        f"meta      point catalogue NOT SENT at the last connect: {meta.bytes} bytes, over the"
        f" broker's maximum packet size {meta.limit} (raise its max_packet_size or reduce the"
        " points)"
    )


_NEXT_STATES = {
    "announced": "announced, waiting for the collector",
    "taken": "taken by the collector, switching",
    "refused": "REFUSED by the collector (audit: bad_key_announcement): `keys rotate` again",
    None: "staged, not announced in this outbox: `keys rotate` again",
}


def _key_line(key: KeyStatus, now: float) -> str:
    line = key.kid
    if key.left_out is not None:
        line += (
            f" LEFT OUT of the collector's ACKs {format_age(now - key.left_out)} ago (revoked,"
            " retired or not registered there): every block signed with it is refused"
        )
    if key.next is None:
        return line
    return f"{line}, next {key.next} {_NEXT_STATES.get(key.next_state, key.next_state)}"


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
