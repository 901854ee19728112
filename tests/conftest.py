"""Fixtures shared by every test: a real broker on a free loopback port, a running site."""

from __future__ import annotations

import shutil
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.e2e.harness import Site
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


@pytest.fixture
def site(tmp_path: Path, broker: Broker) -> Iterator[Site]:
    """A set-up site (configs, keys) with its simulator and collector running; no agent yet."""
    work = tmp_path / "site"
    work.mkdir()
    instance = Site(work=work, broker=broker)
    instance.setup()
    instance.start_sim()
    instance.start_collector()
    yield instance
    instance.stop_all()
