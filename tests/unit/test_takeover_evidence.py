"""Which ends of a collector's MQTT session are takeovers (collector.ingest.takeover)."""

from __future__ import annotations

import random

import aiomqtt
from paho.mqtt.packettypes import PacketTypes
from paho.mqtt.reasoncodes import ReasonCode

from collector.ingest.takeover import SHORT_SESSION, Takeovers, takeover_holdoffs


def _ended(reason: int | str) -> aiomqtt.MqttError:
    """The error aiomqtt raises from its message iteration after the broker's DISCONNECT."""
    code = (
        ReasonCode(PacketTypes.DISCONNECT, identifier=reason)
        if isinstance(reason, int)
        else ReasonCode(PacketTypes.DISCONNECT, reason)
    )
    error = aiomqtt.MqttError("Disconnected during message iteration")
    error.__cause__ = aiomqtt.MqttCodeError(code, "Unexpected disconnection")
    return error


def test_reason_0x8e_is_a_takeover_at_once() -> None:
    watch = Takeovers(random.Random(1))
    evidence = watch.evidence(_ended(0x8E), lasted=3600.0)
    assert evidence is not None
    assert "0x8E" in evidence
    # So is an ACK publish that failed because of it (collector.ingest.ack_out keeps the cause).
    failed = aiomqtt.MqttError("ACK publish failed: [code:4]")
    failed.__cause__ = _ended(0x8E)
    assert watch.evidence(failed, lasted=None) is not None


def test_silent_closes_soon_after_the_start_are_a_takeover_from_the_second_in_a_row() -> None:
    watch = Takeovers(random.Random(1))
    silent = _ended("Unspecified error")
    assert watch.evidence(silent, lasted=0.5) is None  # a blip
    assert watch.evidence(silent, lasted=0.5) is not None
    # A session that lived past SHORT_SESSION ends the run; a broker down is no evidence.
    assert watch.evidence(silent, lasted=SHORT_SESSION) is None
    assert watch.evidence(silent, lasted=None) is None
    assert watch.evidence(silent, lasted=0.5) is None
    # A close with another reason (a keep-alive timeout, the broker shutting down) is none.
    assert watch.evidence(_ended(0x8B), lasted=0.5) is None


def test_holdoffs_are_never_short_and_double_up_to_ten_minutes() -> None:
    holdoffs = takeover_holdoffs(random.Random(7))
    waits = [next(holdoffs) for _ in range(8)]
    for wait, floor in zip(waits, [30, 60, 120, 240, 480, 600, 600, 600], strict=True):
        assert floor <= wait <= floor * 1.25
