"""Fixtures shared by every test: a real broker, a real PostgreSQL, a running site."""

from __future__ import annotations

import shutil
from collections.abc import Iterator
from pathlib import Path

import pytest
from hypothesis import HealthCheck, settings

from tests.e2e.harness import Site
from tests.support.broker import Broker, free_port
from tests.support.leaks import no_leaks, no_task_leaks
from tests.support.logging_state import logging_left_as_found
from tests.support.postgres import SERVER, PostgresDatabases, StorageUrls, server_problem

# Autouse fixtures: every test is checked for leaks, and leaves logging as it found it.
__all__ = ["logging_left_as_found", "no_leaks", "no_task_leaks"]

# No time limit per property-test example, nor for generating one: on a busy two-core CI
# machine either fails a test by load alone, and timing goals belong in bench/.
settings.register_profile("ganzhi", deadline=None, suppress_health_check=[HealthCheck.too_slow])
settings.load_profile("ganzhi")


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
def site_storage_url() -> str:
    """Where the `site` fixture's collector stores: a SQLite file in the site's folder.

    A test module overrides this fixture to run its sites on other backends.
    """
    return "sqlite:///state/collector.db"


@pytest.fixture
def site(tmp_path: Path, broker: Broker, site_storage_url: str) -> Iterator[Site]:
    """A set-up site (configs, keys) with its simulator and collector running; no agent yet."""
    work = tmp_path / "site"
    work.mkdir()
    instance = Site(work=work, broker=broker, storage_url=site_storage_url)
    instance.setup()
    instance.start_sim()
    instance.start_collector()
    yield instance
    instance.stop_all()


@pytest.fixture(scope="session")
def postgres_databases() -> Iterator[PostgresDatabases]:
    """The run's PostgreSQL databases: a migrated template, all dropped at the end.

    Fails (never skips) when the server does not answer: the PostgreSQL storage is tested
    against a real server or not at all.
    """
    problem = server_problem()
    if problem is not None:
        pytest.fail(
            f"PostgreSQL is not reachable at {SERVER} ({problem}): start it (the machine runs"
            " one on 127.0.0.1:5432 with trust auth for user postgres) or set GZ_TEST_POSTGRES"
        )
    databases = PostgresDatabases()
    databases.prepare()
    yield databases
    databases.drop_all()


@pytest.fixture
def postgres_url(postgres_databases: PostgresDatabases) -> Iterator[str]:
    """A fresh, migrated PostgreSQL database for one test (a copy of the template)."""
    url = postgres_databases.create()
    yield url
    postgres_databases.drop(url)


@pytest.fixture(params=["sqlite", "postgresql"])
def storage_urls(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[StorageUrls]:
    """Fresh storage URLs of one backend per parameter: each test runs on SQLite and PostgreSQL."""
    backend: str = request.param
    databases = request.getfixturevalue("postgres_databases") if backend == "postgresql" else None
    urls = StorageUrls(backend, tmp_path, databases)
    yield urls
    urls.drop_all()


@pytest.fixture
def storage_url(storage_urls: StorageUrls) -> str:
    """One fresh storage URL, on each backend in turn."""
    return storage_urls.new()
