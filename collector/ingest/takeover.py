"""A session taken over: another client connected to the broker with this collector's client id.

Two processes with one client id take the MQTT session from each other: the broker ends the
older connection, and the older one, reconnecting, takes it back. Left to reconnect delays
started afresh after each session that came up (0.2 s doubling) that was a fight: measured on
Mosquitto 2.0.11, 69 takeovers in 15 s, and the blocks in flight at each reached neither
collector until the agents resent them.

Only an explicit word holds the collector off: an MQTT 5 broker that says so (DISCONNECT reason
0x8E, session taken over) is believed, `broker_session_taken_over` is logged (an error, see
`REMEDY`) and the collector waits `takeover_holdoffs` (30 s doubling to 10 min, started afresh
after a session that outlived `SETTLED`) while the other keeps the session.

Mosquitto 2.0.11 says nothing: the old connection just closes (paho: reason 0x80; an ACK
publish then fails with paho's code 4, no connection), exactly as when the broker restarts.
Waiting on that left the collector idle for 30 s and more after two restarts of the broker, so
an early close without a reason is only a *suspected* takeover: from the second in a row
(within `SHORT_SESSION` of each start) it is logged (`broker_session_takeover_suspected`, with
the client id, the count and the remedy), and the collector reconnects after the ordinary
reconnect delay. Those delays start afresh only after a session that lasted `SHORT_SESSION`
(collector.ingest.service), so a real fight slows to the reconnect cap (30 s, full jitter) by
itself, while a restarted broker is reconnected to within a second. Not an exit either way:
under a supervisor's restart a fight would go on at the supervisor's pace, without the API.
"""

from __future__ import annotations

import random
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Final

import aiomqtt
import structlog

log = structlog.get_logger("collector.ingest")

REMEDY: Final = (
    "another process connected with this client id and took the session: give each collector"
    " process its own ingest.client_id (the default one differs by host and api.listen), or,"
    " behind a broker that takes the certificate's name as client id, its own certificate"
    " (collector broker-config --collector NAME)"
)
"""What `broker_session_taken_over` and `broker_session_takeover_suspected` tell the operator."""
SESSION_TAKEN_OVER: Final = 0x8E
"""MQTT 5 DISCONNECT reason code: another connection with the same client id took the session."""
_UNSPECIFIED: Final = 0x80  # paho's reason for a connection closed without a DISCONNECT
_NO_CONNECTION: Final = 4  # paho's MQTT_ERR_NO_CONN: a publish (an ACK) after that close
_NO_REASON: Final = frozenset({_UNSPECIFIED, _NO_CONNECTION})
CUT_SHORT_IN_A_ROW: Final = 2
"""Sessions in a row ended early without a reason that make a suspected takeover."""
SHORT_SESSION: Final = 10.0
"""A session ended by the broker sooner than this (seconds) after it began was cut short."""
TAKEOVER_HOLDOFF: Final = 30.0
"""The first wait after a takeover (seconds); each takeover in a row doubles it."""
TAKEOVER_HOLDOFF_CAP: Final = 600.0
"""The longest wait after takeovers in a row (seconds)."""
SETTLED: Final = 2 * TAKEOVER_HOLDOFF_CAP
"""A session that lasted this long (seconds) starts the hold-offs afresh: longer than any wait
of the other process, so whoever took it before is gone (two that hold off in turn settle at
one takeover per 10 min instead)."""


@dataclass(frozen=True, slots=True)
class Takeover:
    """Why a session's end looks like another process taking it over."""

    evidence: str
    cut_short: int
    """Sessions in a row the broker ended early without a reason (0 for an explicit 0x8E)."""
    confirmed: bool
    """The broker said so (0x8E): hold off. Else suspected: reconnect as after any loss."""


def _reasons(error: BaseException) -> Iterator[int]:
    """The MQTT reason codes of `error` and of the errors it was raised from."""
    seen: set[int] = set()
    found: BaseException | None = error
    while found is not None and id(found) not in seen:
        seen.add(id(found))
        if isinstance(found, aiomqtt.MqttCodeError) and found.rc is not None:
            yield int(found.rc.value if hasattr(found.rc, "value") else found.rc)
        found = found.__cause__ or found.__context__


def takeover_holdoffs(rng: random.Random | None = None) -> Iterator[float]:
    """The waits after takeovers in a row: 30 s doubling to 10 min, each 0-25 % longer.

    Never short, unlike the reconnect delays' full jitter: a wait near zero would take the
    session back at once. The jitter keeps two processes from keeping step.
    """
    source = rng if rng is not None else random.SystemRandom()
    holdoff = TAKEOVER_HOLDOFF
    while True:
        yield holdoff * (1.0 + source.uniform(0.0, 0.25))
        holdoff = min(TAKEOVER_HOLDOFF_CAP, holdoff * 2)


class Takeovers:
    """Tells, of each session's end, whether another process took it over, and how long to wait."""

    def __init__(self, rng: random.Random | None = None) -> None:
        self._rng = rng
        self._cut_short = 0  # sessions in a row the broker ended early without a reason
        self._holdoffs = takeover_holdoffs(rng)

    def evidence(self, error: aiomqtt.MqttError, lasted: float | None) -> Takeover | None:
        """Whether the session that ended with `error` was taken over, or None when not.

        `lasted`: seconds from its start to its end, None when it never came up.
        """
        if lasted is not None and lasted >= SETTLED:
            self._holdoffs = takeover_holdoffs(self._rng)
        reasons = set(_reasons(error))
        if SESSION_TAKEN_OVER in reasons:
            self._cut_short = 0
            return Takeover(
                "the broker ended the session with reason 0x8E (session taken over)",
                cut_short=0,
                confirmed=True,
            )
        if lasted is None:
            return None
        if lasted >= SHORT_SESSION or not reasons <= _NO_REASON:
            self._cut_short = 0
            return None
        self._cut_short += 1
        if self._cut_short < CUT_SHORT_IN_A_ROW:
            return None  # a blip
        return Takeover(
            f"the broker closed the session without a reason {self._cut_short} times in a"
            f" row, each within {SHORT_SESSION:g} s of its start: Mosquitto 2.0 closes a"
            " session taken over so, and so does a broker restarted",
            cut_short=self._cut_short,
            confirmed=False,
        )

    def holdoff(self) -> float:
        """How long to wait after a confirmed takeover before connecting again."""
        return next(self._holdoffs)


class Reconnects:
    """How long to wait after each lost session, said in the log (`Ingest.run`'s shell)."""

    def __init__(
        self,
        reconnect_delays: Callable[[], Iterator[float]],
        client_id: str,
        takeovers: Takeovers | None = None,
    ) -> None:
        self._fresh_delays = reconnect_delays
        self._delays = reconnect_delays()
        self._client_id = client_id
        self._takeovers = takeovers if takeovers is not None else Takeovers()

    def wait_after(self, error: aiomqtt.MqttError, lasted: float | None) -> float:
        """Seconds to wait before connecting again after the session that ended with `error`.

        `lasted`: seconds from its start to its end, None when it never came up. A session
        that lasted `SHORT_SESSION` starts the reconnect delays afresh.
        """
        if lasted is not None and lasted >= SHORT_SESSION:
            self._delays = self._fresh_delays()
        takeover = self._takeovers.evidence(error, lasted)
        if takeover is not None and takeover.confirmed:
            delay = self._takeovers.holdoff()  # no fight over it
            log.error(
                "broker_session_taken_over",
                client_id=self._client_id,
                evidence=takeover.evidence,
                remedy=REMEDY,
                retry_in=round(delay, 3),
            )
            return delay
        delay = next(self._delays)
        if takeover is not None:
            log.warning(
                "broker_session_takeover_suspected",
                client_id=self._client_id,
                cut_short=takeover.cut_short,
                evidence=takeover.evidence,
                error=str(error),
                remedy=f"if the broker was not being restarted: {REMEDY}",
                retry_in=round(delay, 3),
            )
        else:
            log.warning("broker_connection_lost", error=str(error), retry_in=round(delay, 3))
        return delay
