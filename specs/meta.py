"""The gateway's signed point catalogue (`up/meta`): what each point is, for the collector.

Sent on connect and whenever the device map changes; signed like a block, over the exact
bytes. The collector uses it for point names, units and thresholds (e.g. coal AQMC rows).
"""

from __future__ import annotations

from dataclasses import dataclass

from specs.block import SPEC
from specs.wirejson import canonical_json, is_number, load_message_json


class MetaFormatError(ValueError):
    """A payload is not a valid meta message."""


@dataclass(frozen=True, slots=True)
class PointMeta:
    """One point as its gateway describes it.

    `poll` is the seconds between two readings of the point (its device's poll period), from
    which the collector knows how many readings to expect; None (absent on the wire) from
    agents that do not say.
    """

    point: str
    quota: str
    unit: str
    name: str
    device: str
    thresholds: dict[str, float]
    poll: float | None = None


@dataclass(frozen=True, slots=True)
class GatewayMeta:
    """A gateway's whole point catalogue at `issued_at`."""

    gateway: str
    enterprise: str
    district: str
    domain: str
    mine_code: str | None
    issued_at: str
    points: tuple[PointMeta, ...]

    def encode(self) -> bytes:
        """Canonical bytes of the meta message."""
        body = {
            "spec": SPEC,
            "kind": "meta",
            "gateway": self.gateway,
            "enterprise": self.enterprise,
            "district": self.district,
            "domain": self.domain,
            "mine_code": self.mine_code,
            "issued_at": self.issued_at,
            "points": [_point_body(p) for p in self.points],
        }
        return canonical_json(body).encode("utf-8")


def _point_body(point: PointMeta) -> dict[str, object]:
    body: dict[str, object] = {
        "point": point.point,
        "quota": point.quota,
        "unit": point.unit,
        "name": point.name,
        "device": point.device,
        "thresholds": dict(sorted(point.thresholds.items())),
    }
    if point.poll is not None:  # absent rather than null: older messages keep their bytes
        body["poll"] = point.poll
    return body


def _poll(raw: dict[str, object]) -> float | None:
    poll = raw.get("poll")
    if poll is None:
        return None
    if not is_number(poll):
        raise MetaFormatError("meta point poll must be a number of seconds")
    if poll <= 0:
        raise MetaFormatError("meta point poll must be above 0 seconds")
    return float(poll)


def _text(body: dict[str, object], key: str) -> str:
    value = body.get(key)
    if not isinstance(value, str) or not value:
        raise MetaFormatError(f"meta field {key!r} must be a non-empty string")
    return value


def _point(raw: object) -> PointMeta:
    if not isinstance(raw, dict):
        raise MetaFormatError("meta points must be objects")
    thresholds = raw.get("thresholds", {})
    if not isinstance(thresholds, dict) or not all(
        isinstance(k, str) and is_number(v) for k, v in thresholds.items()
    ):
        raise MetaFormatError("meta point thresholds must map names to finite numbers")
    return PointMeta(
        point=_text(raw, "point"),
        quota=_text(raw, "quota"),
        unit=_text(raw, "unit"),
        name=_text(raw, "name"),
        device=_text(raw, "device"),
        thresholds={str(k): float(v) for k, v in thresholds.items()},
        poll=_poll(raw),
    )


def decode_meta(payload: bytes) -> GatewayMeta:
    """Parse a meta payload; raise MetaFormatError with the reason."""
    body = load_message_json(payload, MetaFormatError, "meta: ")
    if not isinstance(body, dict) or body.get("spec") != SPEC or body.get("kind") != "meta":
        raise MetaFormatError("not a gz/1 meta object")
    points = body.get("points")
    if not isinstance(points, list):
        raise MetaFormatError("meta 'points' must be a list")
    mine_code = body.get("mine_code")
    if mine_code is not None and not isinstance(mine_code, str):
        raise MetaFormatError("meta 'mine_code' must be a string or null")
    return GatewayMeta(
        gateway=_text(body, "gateway"),
        enterprise=_text(body, "enterprise"),
        district=_text(body, "district"),
        domain=_text(body, "domain"),
        mine_code=mine_code,
        issued_at=_text(body, "issued_at"),
        points=tuple(_point(p) for p in points),
    )
