"""Which ends of a collector's MQTT session are takeovers (collector.ingest.takeover)."""

from __future__ import annotations

import asyncio
import functools
import random
from collections.abc import Iterator

import aiomqtt
from hypothesis import given, settings
from hypothesis import strategies as st
from paho.mqtt.packettypes import PacketTypes
from paho.mqtt.reasoncodes import ReasonCode
from structlog.testing import capture_logs

from collector.ingest.takeover import (
    SETTLED,
    SHORT_SESSION,
    TAKEOVER_HOLDOFF,
    TAKEOVER_HOLDOFF_CAP,
    Reconnects,
    Takeovers,
    takeover_holdoffs,
)
from hostkit.backoff import backoff_delays


def _disconnect(reason: int | str) -> aiomqtt.MqttCodeError:
    """What aiomqtt's on_disconnect sets on the client when the broker closed the session."""
    code = (
        ReasonCode(PacketTypes.DISCONNECT, identifier=reason)
        if isinstance(reason, int)
        else ReasonCode(PacketTypes.DISCONNECT, reason)
    )
    return aiomqtt.MqttCodeError(code, "Unexpected disconnection")


def _ended(reason: int | str) -> aiomqtt.MqttError:
    """The error aiomqtt raises from its message iteration after the broker's DISCONNECT."""
    error = aiomqtt.MqttError("Disconnected during message iteration")
    error.__cause__ = _disconnect(reason)
    return error


async def _publish_after(disconnect: aiomqtt.MqttCodeError) -> aiomqtt.MqttCodeError:
    client = aiomqtt.Client("127.0.0.1", 1, protocol=aiomqtt.ProtocolVersion.V5)  # never connected
    client._disconnected.set_exception(disconnect)  # as its on_disconnect does
    try:
        await client.publish("gz/ack", b"ack", qos=1)
    except aiomqtt.MqttCodeError as failed:
        return failed
    raise AssertionError("a publish on a disconnected client succeeded")


@functools.cache
def _ack_failed(reason: int = 0x80) -> aiomqtt.MqttError:
    """What AckOut.raise_failure raises for an ACK published after the broker's DISCONNECT.

    aiomqtt's own chain, from its publish: paho's code 4 (not connected), raised from the
    disconnect's error; AckOut wraps it in an MqttError.
    """
    failure = asyncio.run(_publish_after(_disconnect(reason)))
    assert failure.rc == 4
    assert isinstance(failure.__cause__, aiomqtt.MqttCodeError)
    wrapped = aiomqtt.MqttError(f"ACK publish failed: {failure}")  # `raise ... from failure`
    wrapped.__cause__ = failure
    return wrapped


def test_reason_0x8e_is_a_takeover_at_once() -> None:
    watch = Takeovers(random.Random(1))
    takeover = watch.evidence(_ended(0x8E), lasted=3600.0)
    assert takeover is not None
    assert takeover.confirmed
    assert "0x8E" in takeover.evidence
    # So is an ACK publish that failed because of it (collector.ingest.ack_out keeps the cause).
    assert (again := watch.evidence(_ack_failed(0x8E), lasted=None)) is not None
    assert again.confirmed


def test_silent_closes_soon_after_the_start_are_suspected_from_the_second_in_a_row() -> None:
    watch = Takeovers(random.Random(1))
    silent = _ended("Unspecified error")
    assert watch.evidence(silent, lasted=0.5) is None  # a blip
    suspected = watch.evidence(silent, lasted=0.5)
    assert suspected is not None
    assert (suspected.confirmed, suspected.cut_short) == (False, 2)
    # A session that lived past SHORT_SESSION ends the run; a broker down is no evidence.
    assert watch.evidence(silent, lasted=SHORT_SESSION) is None
    assert watch.evidence(silent, lasted=None) is None
    assert watch.evidence(silent, lasted=0.5) is None
    # A close with another reason (a keep-alive timeout, the broker shutting down) is none.
    assert watch.evidence(_ended(0x8B), lasted=0.5) is None


def test_an_ack_that_failed_for_want_of_a_connection_is_a_silent_close_too() -> None:
    """Review (holdoff_pure.py (c)): under traffic the fight was never seen, code 4 reset it."""
    watch = Takeovers(random.Random(1))
    ends = [_ended(0x80), _ack_failed(), _ended(0x80), _ack_failed(), _ended(0x80)]
    seen = [watch.evidence(end, lasted=3.0) for end in ends]
    # before: no takeover seen at all (each failed ACK cleared the count)
    assert [t.cut_short if t else 0 for t in seen] == [0, 2, 3, 4, 5]


def test_the_holdoff_starts_afresh_after_a_session_that_settled() -> None:
    """Review (holdoff_pure.py (a)): hour-long sessions each ended by 0x8E waited 31 .. 539 s."""
    watch = Takeovers(random.Random(1))
    waits = [watch.holdoff() for _ in range(5) if watch.evidence(_ended(0x8E), SETTLED * 3)]
    assert len(waits) == 5
    assert all(TAKEOVER_HOLDOFF <= wait <= TAKEOVER_HOLDOFF * 1.25 for wait in waits)
    # Taken over again and again soon after each start: the waits double (no fight).
    fight = [watch.holdoff() for _ in range(3) if watch.evidence(_ended(0x8E), 40.0)]
    assert fight[1] >= 2 * TAKEOVER_HOLDOFF
    assert fight[2] >= 4 * TAKEOVER_HOLDOFF


def test_a_blip_after_a_suspected_takeover_and_a_session_that_lasted_is_a_blip() -> None:
    """Review (holdoff_pure.py (b)): the count was never cleared after a detection."""
    watch = Takeovers(random.Random(1))
    silent = _ended(0x80)
    assert watch.evidence(silent, lasted=4.0) is None
    assert watch.evidence(silent, lasted=4.0) is not None
    assert watch.evidence(silent, lasted=60.0) is None  # the session after it lasted
    assert watch.evidence(silent, lasted=5.0) is None  # one blip: no suspicion


def _delays() -> Iterator[float]:
    return backoff_delays(initial=0.2, cap=30.0, rng=random.Random(3))


def test_broker_restarts_never_hold_the_collector_off() -> None:
    """Review (restart_twice.py): two restarts 6 s apart held it off 36 s (block after 45 s)."""
    reconnects = Reconnects(_delays, "gz-c", Takeovers(random.Random(1)))
    with capture_logs() as logs:
        waits = [reconnects.wait_after(_ended(0x80), lasted) for lasted in (6.0, 6.0, 4.0)]
    # before: the second was broker_session_taken_over, retry_in 36 s
    assert all(wait <= 0.8 for wait in waits)
    events = [line["event"] for line in logs]
    assert events == ["broker_connection_lost", *["broker_session_takeover_suspected"] * 2]
    suspected = logs[-1]
    assert (suspected["client_id"], suspected["cut_short"]) == ("gz-c", 3)
    assert "its own ingest.client_id" in suspected["remedy"]
    assert suspected["log_level"] == "warning"


def test_the_reconnect_delays_start_afresh_only_after_a_session_that_lasted() -> None:
    ceilings = [0.2 * 2**n for n in range(8)]
    reconnects = Reconnects(_delays, "gz-c", Takeovers(random.Random(1)))
    with capture_logs():
        cut_short = [reconnects.wait_after(_ack_failed(), 1.0) for _ in ceilings]
        after_a_lasting_one = reconnects.wait_after(_ended(0x80), SHORT_SESSION)
    # A fight (or a flapping link) spaces out to the reconnect cap, full jitter each.
    assert all(wait <= ceiling for wait, ceiling in zip(cut_short, ceilings, strict=True))
    assert after_a_lasting_one <= 0.2


@settings(max_examples=300)
@given(
    st.lists(
        st.tuples(
            st.sampled_from([0x80, 0x8E, 0x8B, "ack"]),
            st.one_of(st.none(), st.floats(0.0, 3 * SETTLED, allow_nan=False)),
        ),
        max_size=30,
    )
)
def test_only_the_brokers_word_holds_the_collector_off(
    ends: list[tuple[int | str, float | None]],
) -> None:
    watch = Takeovers(random.Random(5))
    reconnects = Reconnects(_delays, "gz-c", watch)
    with capture_logs() as logs:
        for reason, lasted in ends:
            error = _ack_failed() if reason == "ack" else _ended(reason)
            wait = reconnects.wait_after(error, lasted)
            if reason == 0x8E:
                assert logs[-1]["event"] == "broker_session_taken_over"
                assert TAKEOVER_HOLDOFF <= wait <= TAKEOVER_HOLDOFF_CAP * 1.25
                if lasted is not None and lasted >= SETTLED:
                    assert wait <= TAKEOVER_HOLDOFF * 1.25
            else:
                assert logs[-1]["event"] != "broker_session_taken_over"
                assert wait <= 30.0  # never past the reconnect cap


def test_holdoffs_are_never_short_and_double_up_to_ten_minutes() -> None:
    holdoffs = takeover_holdoffs(random.Random(7))
    waits = [next(holdoffs) for _ in range(8)]
    for wait, floor in zip(waits, [30, 60, 120, 240, 480, 600, 600, 600], strict=True):
        assert floor <= wait <= floor * 1.25
