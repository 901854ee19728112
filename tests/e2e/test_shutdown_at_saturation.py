"""SIGTERM stops an agent running flat out within 5 s, and every reading it polled is sealed.

The load is bench/acquisition.py's G2 site: `edge-agent run` polling 2,000 float32 points on
4 Modbus TCP devices (two pymodbus simulator processes) every 10 ms, far faster than it can,
with four alarm thresholds on every point, and a real `collector serve` ACKing what it can
(it falls behind: the agent seals faster than one collector stores). So at the signal the
pollers' queue to the sealer is as full as it ever gets, and the ACKs can never all arrive.

After the stop: exit code 0 within 5 s; the outbox is one unbroken signed hash chain; every
point's readings reach the signal without a hole; and the readings sealed after the signal -
the work a stop has to do - are a few blocks, not a backlog (this bound does not depend on
how fast the machine is). Then the agent starts again on the same outbox, continues the
chain (same epoch, next seq, no gap record) and stops as quickly.
"""

from __future__ import annotations

import contextlib
import itertools
import sqlite3
import time
from collections.abc import Iterator
from dataclasses import dataclass, replace
from pathlib import Path

import pytest

from bench.acquisition import CASES, Site
from specs.block import GENESIS, Block, block_hash, decode_block
from specs.records import GapRecord, Reading, parse_iso_time
from specs.signing import Signature, load_verify_key
from tests.e2e.harness import register_gateway
from tests.support.cli_runs import agent_cli, collector_cli
from tests.support.logging_state import logging_restored

STOP_WITHIN = 5.0
CASE = replace(CASES["g2"], thresholds=True)
FLUSH_READINGS = 500  # the site's outbox.flush_readings (the default)
# Readings a stop may still have to seal: those queued for the sealer, the batch it holds
# and the one in flight, and the cycle each poller hands over as it is cancelled.
FINAL_SEAL_BOUND = 4 * FLUSH_READINGS + 2 * FLUSH_READINGS + CASE.points


@dataclass(frozen=True)
class Sealed:
    """A block of the outbox: decoded, when it was sealed, its signature."""

    block: Block
    sealed_at: float
    signature: Signature


def sealed_blocks(outbox: Path) -> list[Sealed]:
    with contextlib.closing(sqlite3.connect(f"file:{outbox}?mode=ro", uri=True)) as db:
        rows = db.execute(
            "SELECT payload, sealed_at, alg, kid, sig FROM blocks ORDER BY epoch, seq"
        ).fetchall()
    return [
        Sealed(decode_block(bytes(payload)), sealed_at, Signature(alg, kid, bytes(sig)))
        for payload, sealed_at, alg, kid, sig in rows
    ]


def assert_one_signed_chain(blocks: list[Sealed], public_pem: bytes) -> None:
    key = load_verify_key(public_pem)
    epochs = {b.block.header.epoch for b in blocks}
    assert len(epochs) == 1, f"the chain was cut into epochs {epochs}"
    prev = GENESIS
    for seq, sealed in enumerate(blocks, start=1):
        header = sealed.block.header
        assert (header.seq, header.prev) == (seq, prev), f"block {header.seq} breaks the chain"
        key.verify(sealed.signature, sealed.block.payload)
        prev = block_hash(sealed.block.payload)


def assert_every_point_sealed_up_to(blocks: list[Sealed], signalled_at: float) -> None:
    by_point: dict[str, list[float]] = {}
    for sealed in blocks:
        for record in sealed.block.records:
            if isinstance(record, Reading):
                by_point.setdefault(record.point, []).append(parse_iso_time(record.t))
    assert len(by_point) == CASE.points
    for point, times in by_point.items():
        times.sort()
        # The cycle before the signal is there (a slow cycle on a busy machine aside) ...
        assert times[-1] >= signalled_at - 2.0, (point, signalled_at - times[-1])
        # ... and no hole: a batch lost at the stop would leave one.
        gaps = [b - a for a, b in itertools.pairwise(times)]
        assert max(gaps, default=0.0) < 2.0, (point, max(gaps))


def sealed_after(blocks: list[Sealed], signalled_at: float) -> int:
    return sum(
        sum(isinstance(r, Reading) for r in b.block.records)
        for b in blocks
        if b.sealed_at >= signalled_at
    )


def keys_in_process(work: Path, *, register: bool = True) -> None:
    """`bench.rig.init_keys`'s commands in-process (click's runner): as processes, three
    interpreter start-ups took 7.6 s of the site's set-up at load 7. The keys and the
    registered gateway are the same; the agent and the collector still run as processes."""
    with logging_restored():
        made = [
            collector_cli("keys", "init", "-c", str(work / "collector.yaml")),
            agent_cli("keys", "init", "-c", str(work / "site.yaml")),
        ]
    for result in made:
        assert result.exit_code == 0, result.output
    if register:
        register_gateway(work)


@pytest.fixture
def site(tmp_path: Path) -> Iterator[Site]:
    made = Site(CASE, collector=True, work=tmp_path, make_keys=keys_in_process)
    try:
        made.start()
        yield made
    finally:
        made.stop()


def stop(site: Site) -> tuple[float, float]:
    time.sleep(3.0)  # flat out: the queue to the sealer is as full as it gets
    signalled_at, took, code = site.sigterm_agent()
    log = (site.work / "agent.log").read_text(encoding="utf-8", errors="replace")
    assert code == 0, f"exit code {code}; log tail:\n{log[-3000:]}"
    print(f"SIGTERM to exit: {took:.3f} s")  # the measured figure, for -s runs
    return signalled_at, took


def test_sigterm_at_saturation_exits_within_5s_and_seals_every_reading(site: Site) -> None:
    public_pem = (site.work / "keys" / "gateway.key.pub").read_bytes()
    signalled_at, took = stop(site)
    blocks = sealed_blocks(site.outbox)
    assert_one_signed_chain(blocks, public_pem)
    assert_every_point_sealed_up_to(blocks, signalled_at)
    final = sealed_after(blocks, signalled_at)
    assert final <= FINAL_SEAL_BOUND, f"the stop had {final} readings left to seal"
    assert took < STOP_WITHIN, f"SIGTERM to exit took {took:.2f} s"

    # The next start continues the same chain: nothing about the stop needs repairing.
    site.start_agent()
    signalled_at, took = stop(site)
    after = sealed_blocks(site.outbox)
    assert_one_signed_chain(after, public_pem)
    assert after[: len(blocks)] == blocks
    assert not any(isinstance(r, GapRecord) for b in after[len(blocks) :] for r in b.block.records)
    assert sealed_after(after, signalled_at) <= FINAL_SEAL_BOUND
    assert took < STOP_WITHIN, f"SIGTERM to exit took {took:.2f} s after the restart"
