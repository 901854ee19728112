"""MQTT topics of the gz/1 contract (DESIGN section 5)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Final

ROOT: Final = "gz/1"


class TopicError(ValueError):
    """A topic does not follow the gz/1 layout."""


@dataclass(frozen=True, slots=True)
class GatewayTopics:
    """The topics of one gateway."""

    district: str
    enterprise: str
    gateway: str

    @property
    def base(self) -> str:
        """`gz/1/{d}/{e}/{g}`."""
        return f"{ROOT}/{self.district}/{self.enterprise}/{self.gateway}"

    @property
    def block(self) -> str:
        """Where the agent sends blocks."""
        return f"{self.base}/up/block"

    @property
    def meta(self) -> str:
        """Where the agent sends its signed point catalogue."""
        return f"{self.base}/up/meta"

    @property
    def status(self) -> str:
        """Retained heartbeat and last will."""
        return f"{self.base}/status"

    @property
    def ack(self) -> str:
        """Where the collector sends signed ACKs."""
        return f"{self.base}/down/ack"

    @property
    def cmd(self) -> str:
        """Where the collector sends signed commands."""
        return f"{self.base}/down/cmd"

    @property
    def cmd_result(self) -> str:
        """Where the agent sends signed command results."""
        return f"{self.base}/up/cmd"


def collector_subscription(share_group: str) -> str:
    """The shared subscription every collector process joins."""
    return f"$share/{share_group}/{ROOT}/+/+/+/up/#"


def parse_topic(topic: str) -> tuple[GatewayTopics, str]:
    """Split a gz/1 topic into the gateway and the rest (`up/block`, `status`, ...)."""
    parts = topic.split("/")
    if len(parts) < 6 or "/".join(parts[:2]) != ROOT:  # noqa: PLR2004 - gz/1/d/e/g/kind
        raise TopicError(f"topic {topic!r} is not under {ROOT}/d/e/g/")
    return GatewayTopics(parts[2], parts[3], parts[4]), "/".join(parts[5:])
