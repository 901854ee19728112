"""A broker that takes packets of 16 KiB at most, and a block larger than that.

Mosquitto closes the connection of a client that sends a packet over its `max_packet_size`
(a broker from `collector broker-config` sets it from `ingest.max_message_bytes`), and says the
size in its CONNACK. `small_broker` is a real one set so (a fixture: tests/integration/conftest.py
makes it one of the integration tests'); BIG, sealed as one block, goes over it.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from specs.records import Quality, Reading, iso_time
from tests.support.broker import Broker, free_port

LIMIT = 16 * 1024


@pytest.fixture
def small_broker(tmp_path: Path) -> Iterator[Broker]:
    """A real Mosquitto that takes packets of LIMIT bytes at most."""
    workdir = tmp_path / "broker"
    workdir.mkdir()
    instance = Broker(free_port(), workdir, extra_config=f"max_packet_size {LIMIT}\n")
    instance.start()
    yield instance
    instance.stop()


def tank_reading(i: int) -> Reading:
    """Tank `i`'s level reading, at second `i` after 1.7e9."""
    return Reading(f"T{i:03d}-LT-01", "WHP-LT", iso_time(1.7e9 + i), 1.0 + i / 7, "m", Quality.GOOD)


BIG = tuple(tank_reading(i) for i in range(400))  # ~60 KB as one block
