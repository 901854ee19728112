"""Put the process's logging back after a test that ran a program's command line in-process.

`edge-agent` and `collector` configure logging for the whole process (the root handler on the
CLI runner's stdout, levels, structlog), which would leak into every later test: the structlog
events and stdlib records of the rest of the pytest worker went to that runner's stream, lost.
`logging_left_as_found` (autouse, in tests/conftest.py) restores after every test.
"""

from __future__ import annotations

import contextlib
import logging
from collections.abc import Iterator

import pytest
import structlog

QUIETED = ("pymodbus", "asyncua")  # loggers whose level the programs set (hostkit.logs)


@contextlib.contextmanager
def logging_restored() -> Iterator[None]:
    """On exit: the root handlers and level, QUIETED's levels and structlog as on entry."""
    root = logging.getLogger()
    handlers, level = root.handlers[:], root.level
    quieted = {name: logging.getLogger(name).level for name in QUIETED}
    config = structlog.get_config()
    try:
        yield
    finally:
        root.handlers[:] = handlers
        root.setLevel(level)
        for name, old in quieted.items():
            logging.getLogger(name).setLevel(old)
        structlog.configure(**config)


@pytest.fixture(autouse=True)
def logging_left_as_found() -> Iterator[None]:
    """Every test leaves logging as it found it (`logging_restored`)."""
    with logging_restored():
        yield
