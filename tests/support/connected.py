"""A driver connected for the length of a block, closed however the block ends."""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator
from typing import TypeVar

from drivers.base import Driver

DriverT = TypeVar("DriverT", bound=Driver)


@contextlib.asynccontextmanager
async def connected(driver: DriverT) -> AsyncIterator[DriverT]:
    """`driver`, connected; closed when the block ends."""
    await driver.connect()
    try:
        yield driver
    finally:
        await driver.close()
