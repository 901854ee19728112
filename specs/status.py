"""The retained `status` message: a gateway's heartbeat and its last will.

A status is signed like a block (detached signature in the MQTT user properties), because
whoever can publish on the topic could otherwise keep a dead gateway online. `t` is the
agent's clock when the message was made: the collector takes a heartbeat only while it is
fresh, so a recorded one cannot be replayed later. The last will is signed when the session
connects, so its `t` is that connect time; an offline claim is taken whatever its age (it can
only say less than the truth, and the next heartbeat corrects it).

Wire form: canonical JSON, keys sorted, absent fields left out::

    {"config": "9f86d081884c7d65", "epoch": "...", "last_seq": 41, "online": true,
     "t": 1767225600.5, "undelivered": 0, "version": "0.9.0"}

A clean stop publishes `{"online": false, "t": ...}` itself (the broker sends the will only
when a session ends without a DISCONNECT).
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any

from specs.wirejson import is_count, is_number, load_message_json


class StatusFormatError(ValueError):
    """A status payload is not a status message."""


@dataclass(frozen=True, slots=True)
class GatewayStatus:
    """What a gateway says about itself on its `status` topic."""

    online: bool
    t: float
    epoch: str | None = None
    last_seq: int | None = None
    undelivered: int | None = None
    version: str | None = None  # the agent's package version
    config: str | None = None  # SHA-256 (16 hex digits) of the agent's effective site config

    def encode(self) -> bytes:
        """Canonical bytes (the exact bytes the signature covers)."""
        body: dict[str, Any] = {"online": self.online, "t": self.t}
        if self.epoch is not None:
            body["epoch"] = self.epoch
        if self.last_seq is not None:
            body["last_seq"] = self.last_seq
        if self.undelivered is not None:
            body["undelivered"] = self.undelivered
        if self.version is not None:
            body["version"] = self.version
        if self.config is not None:
            body["config"] = self.config
        return json.dumps(body, sort_keys=True, separators=(",", ":")).encode()


def _optional_count(body: dict[str, object], name: str) -> int | None:
    value = body.get(name)
    if value is None:
        return None
    if not is_count(value):
        raise StatusFormatError(f"status {name!r} must be a non-negative integer")
    return value


def _optional_text(body: dict[str, object], name: str) -> str | None:
    value = body.get(name)
    if value is not None and (not isinstance(value, str) or not value):
        raise StatusFormatError(f"status {name!r} must be a non-empty string")
    return value


def decode_status(payload: bytes) -> GatewayStatus:
    """Parse a status payload strictly; raise StatusFormatError on anything else."""
    body = load_message_json(payload, StatusFormatError, "status: ")
    if not isinstance(body, dict):
        raise StatusFormatError("status must be a JSON object")
    online = body.get("online")
    if not isinstance(online, bool):
        raise StatusFormatError("status must have a boolean 'online'")
    t = body.get("t")
    if not is_number(t):
        raise StatusFormatError("status must have a numeric 't' (unix seconds)")
    return GatewayStatus(
        online=online,
        t=float(t),
        epoch=_optional_text(body, "epoch"),
        last_seq=_optional_count(body, "last_seq"),
        undelivered=_optional_count(body, "undelivered"),
        version=_optional_text(body, "version"),
        config=_optional_text(body, "config"),
    )
