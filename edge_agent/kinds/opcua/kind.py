"""The `opcua` kind: an OPC UA server and the nodes read from it.

The driver (and asyncua, about 13 MB resident) is imported only when one is built (G7).
`probe` reads every node with one Read call, whatever the device's mode, so a node's status
shows at once; the raw column is the StatusCode's name.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence

from drivers.base import Quality, RawSample
from drivers.opcua.build import UaSettings, build_ua
from drivers.opcua.model import ReadMode, SecurityMode, SecurityPolicy, UaPoint, UaSecurity
from edge_agent.core.plan import BACKOFF_INITIAL, Backoff, StartWarning
from edge_agent.core.points import NodeSource, ResolvedPoint
from edge_agent.kinds.descriptor import DriverKind, PointView
from edge_agent.kinds.opcua.config import OpcUaDevice

_UA_STATUS_PREFIXES = ("Good", "Uncertain", "Bad")


def ua_point(point: ResolvedPoint) -> UaPoint:
    """The OPC UA driver's view of a configured point.

    Raises:
        TypeError: the point is not read from an OPC UA node.
    """
    return UaPoint(point.point, _node(point))


def _node(point: ResolvedPoint) -> str:
    return point.source_as(NodeSource, "an OPC UA").node


def _status_name(sample: RawSample) -> str:
    status = next((f for f in sample.flags if f.startswith(_UA_STATUS_PREFIXES)), None)
    if status is None and sample.quality is not Quality.BAD:
        status = "Good"  # plain Good is not named in the flags
    return status or "-"


NODES = PointView(
    columns=("node",),
    cells=lambda point: (_node(point),),
    as_json=lambda point: {"node": _node(point)},
    raw_text=_status_name,
    answered=lambda sample: _status_name(sample) != "-",
)
"""OPC UA points: their node id; raw is the StatusCode's name."""


def ua_settings(device: OpcUaDevice, points: Sequence[ResolvedPoint]) -> UaSettings:
    """The OPC UA driver's settings for `device` reading `points`.

    Pure: a `password_file` was read when the config was loaded.
    """
    security = device.security
    return UaSettings(
        device_id=device.id,
        endpoint=device.endpoint,
        points=tuple(ua_point(p) for p in points),
        mode=ReadMode(device.mode),
        publishing_interval=device.publishing,
        sampling_interval=device.sampling,
        keepalive=device.keepalive,
        timeout=device.timeout,
        security=None
        if security is None
        else UaSecurity(
            cert=security.cert,
            key=security.key,
            server_cert=security.server_cert,
            mode=SecurityMode(security.mode),
            policy=SecurityPolicy(security.policy),
        ),
        username=device.username,
        password=device.login_password,
    )


def _probe_reads(settings: UaSettings) -> UaSettings:
    """`probe` reads with one Read call, not a subscription."""
    return dataclasses.replace(settings, mode=ReadMode.POLL)


def _backoff(device: OpcUaDevice) -> Backoff:
    """An OPC UA server is retried at least once per keepalive.

    A connect attempt costs the server one TCP handshake, and after a restart the
    subscription should be back within about two keepalives, not after a 30 s pause.
    """
    cap = device.keepalive
    return Backoff(initial=min(BACKOFF_INITIAL, cap), cap=cap)


def _warnings(device: OpcUaDevice) -> tuple[StartWarning, ...]:
    if device.security is not None and device.security.server_cert is None:
        # Trust on first use at every connect: fine for commissioning, not for years.
        fields = {"device": device.id, "endpoint": device.endpoint}
        return (StartWarning("opcua_server_not_pinned", fields),)
    return ()


OPCUA = DriverKind(
    config=OpcUaDevice,
    settings=ua_settings,
    build=build_ua,
    view=NODES,
    backoff=_backoff,
    probe_settings=_probe_reads,
    warnings=_warnings,
)
"""`opcua`: an OPC UA server, subscribed to or read every `poll`."""
