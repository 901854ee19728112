"""Fixtures shared by every test: a real broker on a free loopback port."""

from __future__ import annotations

import shutil
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.support.broker import Broker, free_port


@pytest.fixture
def broker(tmp_path: Path) -> Iterator[Broker]:
    """A real Mosquitto for one test; fails (never skips) when mosquitto is missing."""
    if shutil.which("mosquitto") is None and not Path("/usr/sbin/mosquitto").exists():
        pytest.fail("mosquitto is not installed: run `make test` (it installs it) or apt-get")
    workdir = tmp_path / "broker"
    workdir.mkdir()
    instance = Broker(port=free_port(), workdir=workdir)
    instance.start()
    yield instance
    instance.stop()
