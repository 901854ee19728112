"""Backfill beside a real running site: simulator, Mosquitto, collector and `edge-agent run`.

Imported before the agent starts and while it runs, the backfilled readings share the chain
with the live ones: one epoch, contiguous seqs, each block's prev the hash of the one before,
every signature valid. The collector then stores each backfilled reading exactly once, and
running the same file again imports nothing. Once retention has deleted the delivered blocks
(and the keys of their readings), the same file is imported and sent again, and the collector
refuses every reading of it as a duplicate: none is stored twice.
"""

from __future__ import annotations

import asyncio
import sqlite3
import time
from collections import Counter
from contextlib import closing
from pathlib import Path

import pytest

from edge_agent.config import load_site_config
from edge_agent.core.plan_compile import identity_of
from edge_agent.shell.outbox_open import open_outbox
from specs.block import GENESIS, decode_block
from specs.records import Reading
from specs.signing import Signature, load_signing_key, load_verify_key
from tests.e2e.harness import BIN, Site, wait_until
from tests.support.cli_runs import json_output
from tests.support.instrument_log import write_log

pytestmark = pytest.mark.timeout(300)


def _backfill(site: Site, csv: Path) -> dict[str, object]:
    body = json_output(
        [str(BIN / "edge-agent"), "backfill", "-c", "site.yaml", "--csv", str(csv), "--json"],
        cwd=site.work,
        timeout=240,
    )
    assert isinstance(body, dict)
    return body


def _verified_chain(site: Site) -> Counter[tuple[str, str]]:
    """Check the whole outbox chain; return how often each backfilled (point, t) is in it."""
    public = load_verify_key((site.work / "keys" / "gateway.key.pub").read_bytes())
    backfilled: Counter[tuple[str, str]] = Counter()
    path = site.work / "state" / "outbox.db"
    with sqlite3.connect(f"file:{path}?mode=ro", uri=True) as db:
        rows = db.execute("SELECT epoch, seq, payload, alg, kid, sig FROM blocks ORDER BY seq")
        prev, epochs, seq = GENESIS, set(), 0
        for seq, (epoch, stored_seq, payload, alg, kid, sig) in enumerate(rows, start=1):
            block = decode_block(bytes(payload))
            assert (stored_seq, block.header.seq) == (seq, seq), "seqs must be contiguous"
            assert block.header.prev == prev, f"block {seq} does not chain to block {seq - 1}"
            public.verify(Signature(alg, kid, bytes(sig)), bytes(payload))
            epochs.add(epoch)
            prev = block.digest
            for record in block.records:
                if isinstance(record, Reading) and "backfill" in record.flags:
                    backfilled[(record.point, record.t)] += 1
    assert len(epochs) == 1
    assert seq > 0
    return backfilled


def test_backfill_before_and_during_a_run_shares_the_chain_and_arrives_once(site: Site) -> None:
    # Stopped agent: the import creates the outbox; the next run sends it.
    before = _backfill(site, write_log(site.work / "before.csv", 1, 6_000))
    assert (before["imported"], before["duplicate"], before["rejected"]) == (6_000, 0, 0)
    site.start_agent()
    wait_until(lambda: site.sealed_blocks() > 8, 60, "live blocks after the backfilled ones")
    during = _backfill(site, write_log(site.work / "during.csv", 2, 20_000))
    assert (during["imported"], during["duplicate"], during["rejected"]) == (20_000, 0, 0)
    sealed = site.sealed_blocks()
    wait_until(lambda: site.sealed_blocks() > sealed + 3, 60, "live blocks after the import")
    assert site.alive("agent")

    backfilled = _verified_chain(site)
    assert sum(backfilled.values()) == len(backfilled) == 26_000

    site.drain_and_stop_agent(timeout=120)
    served = _served(site)
    assert {key: served[key] for key in backfilled} == dict.fromkeys(backfilled, 1)

    again = _backfill(site, site.work / "during.csv")
    assert (again["imported"], again["duplicate"]) == (0, 20_000)
    assert _verified_chain(site) == backfilled

    # Retention: the delivered blocks go, and the keys of their imported readings with them.
    assert _prune_everything_delivered(site) > 0
    assert _key_count(site) == 0
    # The same file after that is imported and sent again: the collector, which holds every
    # one of its readings, refuses them as duplicates (audited) and stores none twice.
    refused, sealed = _refused_as_duplicate(site), site.sealed_blocks()
    after = _backfill(site, site.work / "during.csv")
    assert (after["imported"], after["duplicate"]) == (20_000, 0)
    resent = site.sealed_blocks() - sealed
    assert resent == 5, "20,000 readings, 4,000 a block"
    site.start_agent()
    site.drain_and_stop_agent(timeout=120)
    # One audit occurrence per block whose readings were all refused (the audit folds them).
    assert _refused_as_duplicate(site) >= refused + resent
    served = _served(site)
    assert {key: served[key] for key in backfilled} == dict.fromkeys(backfilled, 1)


def _served(site: Site) -> Counter[tuple[str, str]]:
    """How often the collector serves each (point, t) of the gateway."""
    return Counter(
        (point, t)
        for (point, t, _value, _quality), count in site.collector_readings().items()
        for _ in range(count)
    )


def _key_count(site: Site) -> int:
    with closing(sqlite3.connect(f"file:{site.outbox_path}?mode=ro", uri=True)) as db:
        return int(db.execute("SELECT count(*) FROM backfill_keys").fetchone()[0])


def _prune_everything_delivered(site: Site) -> int:
    """Apply the outbox's retention as if every delivered block were past it (agent stopped)."""
    config = load_site_config(site.work / "site.yaml")
    key = load_signing_key(config.signing.key_file.read_bytes())

    async def run() -> int:
        async with open_outbox(config.outbox.path, identity_of(config), key) as outbox:
            return await outbox.prune(delivered_before=time.time() + 1)

    return asyncio.run(run())


def _refused_as_duplicate(site: Site) -> int:
    """Occurrences of `duplicate` in the collector's audit (blocks, or a block's readings)."""
    path = site.work / "state" / "collector.db"
    with closing(sqlite3.connect(f"file:{path}?mode=ro", uri=True)) as db:
        (count,) = db.execute(
            "SELECT COALESCE(SUM(count), 0) FROM audit WHERE reason = 'duplicate'"
        ).fetchone()
    return int(count)
