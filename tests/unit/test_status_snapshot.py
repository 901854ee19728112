"""The status snapshot: its JSON both ways, the devices' states, and the text a person reads."""

from __future__ import annotations

import dataclasses
import json
from typing import Any

import pytest

from edge_agent.core.agent_status import (
    DeviceFault,
    DeviceStatus,
    KeyStatus,
    MetaStatus,
    OutboxStatus,
    SnapshotFormatError,
    UplinkStatus,
    snapshot_from_json,
)
from edge_agent.core.agent_status_storage import ALL_CLEAR, StorageStatus
from edge_agent.core.agent_status_text import format_age, render_snapshot
from hostkit.tables import display_width
from tests.support.agent_snapshot import T, snapshot


def test_the_json_reads_back_as_the_same_snapshot() -> None:
    original = snapshot()
    document = json.loads(json.dumps(original.to_json()))
    assert snapshot_from_json(document) == original
    assert document["running"] is True
    assert document["outbox"]["oldest_undelivered_age_s"] == 4.25
    assert document["devices"][1]["state"] == "failing"
    assert document["devices"][1]["last_error"] == {
        "kind": "timeout",
        "message": "气体探测器 无应答",
        "at": "2026-05-28T20:26:38.000+00:00",
    }
    empty = snapshot(devices=(), buses=(), alarms=(), version=None)
    assert snapshot_from_json(json.loads(json.dumps(empty.to_json()))) == empty


@pytest.mark.parametrize(
    ("last_good", "error_at", "state"),
    [
        (None, None, "waiting"),
        (T, None, "ok"),
        (T, T - 1, "ok"),  # recovered since its last error
        (T, T, "ok"),  # a point read bad in a read that gave good readings too
        (T - 1, T, "failing"),
        (None, T, "failing"),
    ],
)
def test_a_device_fails_when_its_last_error_is_newer_than_its_last_good_read(
    last_good: float | None, error_at: float | None, state: str
) -> None:
    fault = None if error_at is None else DeviceFault("connection", "refused", error_at)
    assert DeviceStatus("d", "modbus_tcp", last_good, fault).state == state


@pytest.mark.parametrize(
    ("path", "breakage", "message"),
    [
        (("uplink",), lambda o: o.pop("connected"), "status.uplink.connected: missing"),
        ((), lambda o: o.update(pid="4242"), "status.pid: not an integer"),
        ((), lambda o: o.update(t="yesterday"), "status.t: not an ISO 8601 time"),
        (("clock",), lambda o: o.update(synchronized=1), "status.clock.synchronized: not true"),
        ((), lambda o: o.update(devices={}), "status.devices: not a list"),
        (
            ("devices", 1, "last_error"),
            lambda o: o.update(at=None),
            "status.devices[1].last_error.at: not a string",
        ),
    ],
)
def test_a_broken_document_is_refused_naming_where(
    path: tuple[str | int, ...], breakage: Any, message: str
) -> None:
    document = json.loads(json.dumps(snapshot().to_json()))
    part = document
    for key in path:
        part = part[key]
    breakage(part)
    with pytest.raises(SnapshotFormatError, match=message.replace("[", r"\[").replace("]", r"\]")):
        snapshot_from_json(document)


def test_the_gateway_key_and_a_refused_rotation_show() -> None:
    refused = snapshot(key=KeyStatus("00000000000000aa", "00000000000000bb", "refused"))
    document = json.loads(json.dumps(refused.to_json()))
    assert document["key"] == {
        "kid": "00000000000000aa",
        "next": "00000000000000bb",
        "next_state": "refused",
        "left_out": None,
    }
    assert snapshot_from_json(document) == refused
    [line] = [line for line in render_snapshot(refused).splitlines() if line.startswith("key")]
    assert line == (
        "key       00000000000000aa, next 00000000000000bb REFUSED by the collector"
        " (audit: bad_key_announcement): `keys rotate` again"
    )
    plain = snapshot(key=KeyStatus("00000000000000aa"))
    assert "key       00000000000000aa\n" in render_snapshot(plain)
    # An agent started before `key` answers without it: read as None, no line.
    del document["key"]
    assert snapshot_from_json(document).key is None
    assert "\nkey " not in render_snapshot(snapshot())


def test_a_signing_key_the_collector_left_out_shows() -> None:
    """`left_out`: when an ACK first left the key the agent signs with out of its `keys`."""
    left_out = snapshot(key=KeyStatus("00000000000000aa", left_out=T - 60))
    document = json.loads(json.dumps(left_out.to_json()))
    assert document["key"]["left_out"] == "2026-05-28T20:25:40.000+00:00"
    assert snapshot_from_json(document) == left_out
    [line] = [line for line in render_snapshot(left_out).splitlines() if line.startswith("key")]
    assert line == (
        "key       00000000000000aa LEFT OUT of the collector's ACKs 60 s ago (revoked, retired"
        " or not registered there): every block signed with it is refused"
    )
    # An agent before `left_out` answers without it: read as None.
    del document["key"]["left_out"]
    assert snapshot_from_json(document).key == KeyStatus("00000000000000aa")


def test_a_point_catalogue_left_out_as_too_large_shows_and_one_sent_does_not() -> None:
    left = MetaStatus(sent=False, bytes=20_051, limit=16_384)
    base = snapshot()
    shown = snapshot(uplink=dataclasses.replace(base.uplink, meta=left))
    document = json.loads(json.dumps(shown.to_json()))
    assert document["uplink"]["meta"] == {"sent": False, "bytes": 20_051, "limit": 16_384}
    assert snapshot_from_json(document) == shown
    assert render_snapshot(shown).splitlines()[2] == (
        "meta      point catalogue NOT SENT at the last connect: 20051 bytes, over the broker's"
        " maximum packet size 16384 (raise its max_packet_size or reduce the points)"
    )
    sent = snapshot(
        uplink=dataclasses.replace(base.uplink, meta=MetaStatus(sent=True, bytes=812, limit=None))
    )
    assert snapshot_from_json(json.loads(json.dumps(sent.to_json()))) == sent
    assert render_snapshot(sent) == render_snapshot(base)  # nothing to say
    # An agent before `meta` answers without it: read as None.
    del document["uplink"]["meta"]
    assert snapshot_from_json(document).uplink.meta is None


def test_not_an_object_is_refused() -> None:
    with pytest.raises(SnapshotFormatError, match="status: not an object"):
        snapshot_from_json([])


def test_the_text_names_everything_a_technician_asks_about() -> None:
    text = render_snapshot(snapshot())
    lines = text.splitlines()
    assert lines[0] == (
        "gateway   91360100MA0000001X-GW01 (pid 4242, up 60 min, version 0.9.0,"
        " config 0123456789abcdef)"
    )
    assert lines[1] == "uplink    connected to mqtts://broker.example:8883, last ACK 1.5 s ago"
    assert lines[2] == "clock     synchronized"
    assert lines[3] == (
        "outbox    epoch e1, last seq 120, 2 undelivered blocks (7 records), oldest 4.2 s ago"
    )
    assert (
        "gas-2   serial      failing  90 s ago        timeout 2.0 s ago: 气体探测器 无应答" in lines
    )
    assert "opc-3   opcua       waiting  never           -" in lines
    assert "/dev/ttyUSB0  43.2%     60 min  38.0%    1000          3         0" in lines
    assert "no active alarms" not in text
    bare = render_snapshot(
        snapshot(
            alarms=(),
            buses=(),
            clock_synchronized=False,
            uplink=UplinkStatus(
                "mqtt://127.0.0.1:1883", connected=False, last_ack=None, published=0
            ),
            outbox=OutboxStatus("e1", 0, 0, 0, None),
        )
    )
    assert "uplink    NOT connected to mqtt://127.0.0.1:1883, last ACK never" in bare
    assert "clock     NOT synchronized" in bare
    assert "0 undelivered blocks (0 records), oldest -" in bare
    assert bare.endswith("no active alarms")
    assert "rtu bus" not in bare


def test_wide_characters_keep_the_columns_aligned() -> None:
    lines = render_snapshot(snapshot()).splitlines()
    header = next(line for line in lines if line.startswith("active alarm"))
    (row,) = [line for line in lines if line.startswith("F001-PC-01/over_staff ")]
    # "超员" takes four cells: the raised time after it starts under its header all the same.
    assert display_width(row[: row.index(" t ") + 1]) == display_width(
        header[: header.index("raised")]
    )


def test_a_long_error_is_shortened_in_the_table_but_not_in_the_json() -> None:
    long = "x" * 200
    device = DeviceStatus("d", "modbus_tcp", None, DeviceFault("other", long, T))
    shown = render_snapshot(snapshot(devices=(device,)))
    assert long not in shown
    assert "…" in shown
    assert snapshot(devices=(device,)).to_json()["devices"] == [
        {
            "device": "d",
            "driver": "modbus_tcp",
            "state": "failing",
            "last_good": None,
            "last_error": {"kind": "other", "message": long, "at": "2026-05-28T20:26:40.000+00:00"},
        }
    ]


@pytest.mark.parametrize(
    ("seconds", "shown"),
    [
        (-1, "0.0 s"),
        (0.44, "0.4 s"),
        (12.4, "12 s"),
        (119, "119 s"),
        (120, "2 min"),
        (7199, "119 min"),
        (7200, "2 h"),
        (3 * 3600 + 20 * 60, "3 h 20 min"),
        (48 * 3600, "2 d"),
        (52 * 3600, "2 d 4 h"),
    ],
)
def test_ages_read_like_a_person_says_them(seconds: float, shown: str) -> None:
    assert format_age(seconds) == shown


def test_a_full_disk_and_its_toll_show_in_json_and_text() -> None:
    """A wedged agent looked healthy: connected, `last ACK never` while ACKs came and could not
    be recorded, nothing of the full disk, the failing seals or the readings let go."""
    storage = StorageStatus(
        disk_full=True,
        reserve="not held",
        seals_failing_since=T - 30,
        held_in_memory=5_000,
        let_go_in_memory=48_000,
        given_way_in_file=1_200,
        acks_not_recorded=118,
        last_ack_not_recorded=T - 2,
    )
    wedged = snapshot(
        outbox=OutboxStatus("e1", 120, 2, 7, T - 4.25, storage),
        uplink=UplinkStatus("mqtt://b:1883", connected=True, last_ack=None, published=3),
    )
    document = json.loads(json.dumps(wedged.to_json()))
    assert snapshot_from_json(document) == wedged
    assert document["outbox"]["storage"] == {
        "disk_full": True,
        "reserve": "not held",
        "seals_failing_since": "2026-05-28T20:26:10.000+00:00",
        "held_in_memory": 5_000,
        "let_go_in_memory": 48_000,
        "given_way_in_file": 1_200,
        "acks_not_recorded": 118,
        "last_ack_not_recorded": "2026-05-28T20:26:38.000+00:00",
    }
    [line] = [line for line in render_snapshot(wedged).splitlines() if line.startswith("disk")]
    assert line == (
        "disk      FULL: the outbox is capped, room is made inside it; reserve NOT HELD (too"
        " little free space); seals FAILING since 30 s ago; 5000 readings held in memory, 48000"
        " let go from it, 1200 given way in the file; 118 ACKs NOT RECORDED (last 2.0 s ago)"
    )
    # All clear: no line, and an agent from before `storage` reads as all clear.
    assert not any(line.startswith("disk") for line in render_snapshot(snapshot()).splitlines())
    del document["outbox"]["storage"]
    assert snapshot_from_json(document).outbox.storage == ALL_CLEAR
