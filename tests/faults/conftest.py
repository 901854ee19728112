"""Fixtures of the fault matrix: a whole site on loopback, the oracle, the results file."""

from __future__ import annotations

import os
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Protocol

import pytest

from demo.broker import Broker
from tests.e2e.harness import Site, wait_until
from tests.faults.common import SiteMap
from tests.faults.oracle import (
    RESULTS_ENV,
    Ledger,
    Verdict,
    collector_blocks,
    judge,
    outbox_integrity,
    served,
    write_result,
)


@pytest.fixture(scope="session")
def results_file(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Where each case appends its result line (`GZ_FAULTS_RESULTS`, else the pytest tmp dir)."""
    configured = os.environ.get(RESULTS_ENV)
    if configured:
        return Path(configured)
    return tmp_path_factory.getbasetemp() / "faults-results.jsonl"


class MakeSite(Protocol):
    def __call__(
        self,
        configure: Callable[[SiteMap], None] | None = None,
        *,
        collector: bool = True,
        outbox_file: str = ...,
        storage_url: str | None = ...,
    ) -> Site: ...


@pytest.fixture
def make_site(tmp_path: Path, broker: Broker) -> Iterator[MakeSite]:
    """Set up a site (configs, keys, simulator, collector) around the test's broker."""
    sites: list[Site] = []

    def make(
        configure: Callable[[SiteMap], None] | None = None,
        *,
        collector: bool = True,
        outbox_file: str = "state/outbox.db",
        storage_url: str | None = None,
    ) -> Site:
        """`outbox_file` (relative to the site's folder) moves the agent's outbox;
        `storage_url` the collector's database (SQLite in the site's folder when None)."""
        work = tmp_path / f"site{len(sites)}"
        work.mkdir()
        site = Site(work=work, broker=broker, outbox_file=outbox_file)
        if storage_url is not None:
            site.storage_url = storage_url
        sites.append(site)

        def edit(site_map: SiteMap) -> None:
            site_map["outbox"]["path"] = outbox_file
            if configure is not None:
                configure(site_map)

        site.setup(configure=edit)
        site.start_sim()
        if collector:
            site.start_collector()
        return site

    yield make
    for site in sites:
        site.stop_all()


class Conclude(Protocol):
    def __call__(
        self, site: Site, ledger: Ledger, case: str, started: float, *, drain_timeout: float = ...
    ) -> Verdict: ...


@pytest.fixture
def conclude(results_file: Path) -> Conclude:
    """Drain the agent, stop it gracefully, judge, write the result line, assert the oracle."""

    def finish(
        site: Site, ledger: Ledger, case: str, started: float, *, drain_timeout: float = 90
    ) -> Verdict:
        wait_until(lambda: site.undelivered() == 0, drain_timeout, "every block ACKed")
        site.stop("agent")
        ledger.snapshot(site)
        ledger.observe(collector_blocks(site))
        verdict = judge(case, ledger, served(site), time.monotonic() - started)
        write_result(verdict, results_file)
        assert outbox_integrity(site) == "ok"
        assert not verdict.problems(), verdict.problems()
        return verdict

    return finish
