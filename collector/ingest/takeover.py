"""A session taken over: another client connected to the broker with this collector's client id.

Two processes with one client id take the MQTT session from each other: the broker ends the
older connection, and the older one, reconnecting, takes it back. Left to the ordinary reconnect
delays (0.2 s doubling, started afresh after each session that came up) that is a fight:
measured on Mosquitto 2.0.11, 69 takeovers in 15 s, and the blocks in flight at each reached
neither collector until the agents resent them.

An MQTT 5 broker says so with DISCONNECT reason 0x8E (session taken over). Mosquitto 2.0.11
does not: the old connection just closes (paho: reason 0x80, unspecified), as a broken link
would. So a session is taken as taken over on 0x8E, or when it is the second in a row that the
broker ended without a reason within `SHORT_SESSION` of its start (a single one is a blip).
Then the collector logs `broker_session_taken_over` (an error: two processes share a client
id, see `REMEDY`) and waits `takeover_holdoffs` before connecting again, while the other keeps
the session. Not an exit: under a supervisor's restart that would be the same fight at the
supervisor's pace, and the API would stop with it; waiting, the collector goes on by itself
once the other process is gone (or, on a link that really drops every few seconds, reconnects
after the holdoff).
"""

from __future__ import annotations

import random
from collections.abc import Iterator
from typing import Final

import aiomqtt

REMEDY: Final = (
    "another process connected with this client id and took the session: give each collector"
    " process its own ingest.client_id (the default one differs by host and api.listen), or,"
    " behind a broker that takes the certificate's name as client id, its own certificate"
    " (collector broker-config --collector NAME)"
)
"""What `broker_session_taken_over` tells the operator to do."""
SESSION_TAKEN_OVER: Final = 0x8E
"""MQTT 5 DISCONNECT reason code: another connection with the same client id took the session."""
_UNSPECIFIED: Final = 0x80  # paho's reason for a connection closed without a DISCONNECT
CUT_SHORT_IN_A_ROW: Final = 2
"""Sessions in a row ended early without a reason that make a takeover (one is a blip)."""
SHORT_SESSION: Final = 10.0
"""A session ended by the broker sooner than this (seconds) after it began was cut short."""
TAKEOVER_HOLDOFF: Final = 30.0
"""The first wait after a takeover (seconds); each takeover in a row doubles it."""
TAKEOVER_HOLDOFF_CAP: Final = 600.0
"""The longest wait after takeovers in a row (seconds)."""


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

    def evidence(self, error: aiomqtt.MqttError, lasted: float | None) -> str | None:
        """Why the session that ended with `error` was taken over, or None when it was not.

        `lasted`: seconds from its start to its end, None when it never came up.
        """
        reasons = set(_reasons(error))
        if SESSION_TAKEN_OVER in reasons:
            return "the broker ended the session with reason 0x8E (session taken over)"
        if lasted is None:
            return None
        if lasted < SHORT_SESSION and reasons <= {_UNSPECIFIED}:
            self._cut_short += 1
            if self._cut_short >= CUT_SHORT_IN_A_ROW:
                return (
                    f"the broker closed the session without a reason {self._cut_short} times"
                    f" in a row, each within {SHORT_SESSION:g} s of its start (Mosquitto 2.0"
                    " closes a session taken over so)"
                )
            return None
        self._cut_short = 0
        self._holdoffs = takeover_holdoffs(self._rng)
        return None

    def holdoff(self) -> float:
        """How long to wait after a takeover before connecting again."""
        return next(self._holdoffs)
