"""Two collector processes under one MQTT client id on a real Mosquitto: a session takeover.

Found by the hostile collector run: two collectors whose configs gave them one client id took
the session from each other as fast as they could reconnect (Mosquitto logged 69 takeovers in
15 s, 42 of 300 blocks reached neither) and said only "Disconnected during message iteration".
"""

from __future__ import annotations

import asyncio

from structlog.testing import capture_logs

from tests.support.broker import Broker
from tests.support.collector_env import COLLECTOR_KEY, running_ingest

CLIENT_ID = "gz-collector-twice"
WATCHED = 3.0  # seconds both run; a tight fight takes the session over dozens of times in it


async def test_a_collector_whose_session_is_taken_over_says_so_and_does_not_fight_back(
    broker: Broker, storage_url: str
) -> None:
    with capture_logs() as logs:
        async with (
            running_ingest(broker.port, storage_url, COLLECTOR_KEY, client_id=CLIENT_ID),
            running_ingest(broker.port, storage_url, COLLECTOR_KEY, client_id=CLIENT_ID),
        ):
            await asyncio.sleep(WATCHED)
    subscribed = [line for line in logs if line["event"] == "broker_subscribed"]
    # Mosquitto 2.0.11 closes a taken-over session without a reason: the first close of each
    # is a blip (reconnect at once), the second in a row within 10 s a takeover, and the one
    # that saw it waits (30 s or more) while the other keeps the session: A, B, A, B.
    assert len(subscribed) <= 4
    (line,) = [line for line in logs if line["event"] == "broker_session_taken_over"]
    assert line["client_id"] == CLIENT_ID
    assert line["log_level"] == "error"
    assert "its own ingest.client_id" in line["remedy"]
    assert "without a reason 2 times in a row" in line["evidence"]
    assert line["retry_in"] >= 30.0
