"""Fixtures the integration tests share (the rest live in tests/conftest.py and tests/support/)."""

from __future__ import annotations

from collections.abc import AsyncIterator

import pytest

from simulators.rtu_bus import RtuBusSim
from simulators.rtu_slaves import Fault, headcount_slave, pattern_slave
from tests.support.broker import Broker
from tests.support.collector_env import CollectorEnv, collector_env
from tests.support.packet_limit import small_broker

# Fixtures of tests/support/ the integration tests take by name.
__all__ = ["small_broker"]


@pytest.fixture
async def env(broker: Broker, storage_url: str) -> AsyncIterator[CollectorEnv]:
    """The in-process ingest on `storage_url` (each backend), gateway 1 registered and linked."""
    async with collector_env(broker.port, storage_url) as running:
        yield running


@pytest.fixture
async def rtu_sim() -> AsyncIterator[RtuBusSim]:
    """A pty RS-485 bus at 19200 8N2 (11-bit characters): pattern slaves 1 and 2, a headcount
    slave 3; slave 2 never answers."""
    slaves = [pattern_slave(1), pattern_slave(2), headcount_slave(3)]
    async with RtuBusSim(slaves, baudrate=19200, bits_per_char=11, interval=0.05) as sim:
        sim.slave(2).fault = Fault.SILENT
        yield sim
