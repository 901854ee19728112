"""Fixtures the integration tests share (the rest live in tests/conftest.py and tests/support/)."""

from __future__ import annotations

from collections.abc import AsyncIterator

import pytest

from tests.support.broker import Broker
from tests.support.collector_env import CollectorEnv, collector_env


@pytest.fixture
async def env(broker: Broker, storage_url: str) -> AsyncIterator[CollectorEnv]:
    """The in-process ingest on `storage_url` (each backend), gateway 1 registered and linked."""
    async with collector_env(broker.port, storage_url) as running:
        yield running
