"""The hostile tester's fuzz of the outbox file, rebuilt: rows damaged, then a restart.

Each trial is one gateway against a real Mosquitto and the real collector ingest (SQLite),
`tests.support.outbox_fuzz.damaged_restart`: blocks sealed, the first ones stored and ACKed,
the rest waiting in the stopped agent's outbox; bytes of some rows changed where the file
holds them (a bit of a row's record header, bytes inside one column, or the epoch column and
both witnesses at once: `tests.support.row_damage`); the agent started again on the file.
Invariant 1 must hold: each reading sealed before the damage is stored at the collector or
lies in a seq range a gap record stored there declares lost, and the collector waits for no
seq (no open hole). Before the ACK's `missing` was answered (`edge_agent.core.missing_blocks`),
a row whose epoch column changed with both its witnesses was declared under the epoch the
damage wrote: its seq stayed an open hole, its readings neither stored nor declared.

The default suite runs the seeds below (the first five left silent holes before); all 200 trials
carry the `soak` marker: `pytest -m soak tests/integration/test_outbox_fuzz.py -s` prints a
line per trial.
"""

from __future__ import annotations

import random
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from tests.support.broker import Broker
from tests.support.collector_client import sim_gateway
from tests.support.collector_env import COLLECTOR_KEY, running_ingest
from tests.support.outbox_fuzz import Collector, Damage, Outcome, damaged_restart
from tests.support.row_damage import (
    COLUMNS,
    RowBytes,
    damage_value,
    flip_header_bit,
    mark_delivered_in_header,
    write_at,
)

pytestmark = pytest.mark.timeout(120)

TRIALS = 200
SEEDS = (13, 25, 32, 37, 40, 0)


@pytest.fixture
async def collector(tmp_path: Path, broker: Broker) -> AsyncIterator[Collector]:
    url = f"sqlite:///{tmp_path / 'collector.db'}"
    async with running_ingest(broker.port, url, COLLECTOR_KEY) as (_, storage):
        yield Collector(broker.port, storage, url)


def fuzz_damage(rng: random.Random) -> Damage:
    """Damage 1-3 rows, each one way: a header bit, bytes of one column, or epoch + witnesses."""

    def damage(path: Path, rows: dict[int, RowBytes], undelivered: set[int]) -> list[str]:
        done = []
        for seq in rng.sample(sorted(rows), rng.randint(1, min(3, len(rows)))):
            row = rows[seq]
            kind = rng.choice(["header", "header", "value", "value", "delivered", "witnesses"])
            if kind == "delivered" and seq in undelivered:
                done.append(mark_delivered_in_header(path, row, rng.randint(0, 1)))
            elif kind == "witnesses":
                done.extend(damage_value(path, row, c, rng) for c in ("epoch", "digest", "sig"))
            elif kind == "value":
                done.append(damage_value(path, row, rng.choice(COLUMNS), rng))
            else:
                done.append(flip_header_bit(path, row, rng))
        return done

    return damage


async def _trial(seed: int, tmp_path: Path, collector: Collector) -> Outcome:
    rng = random.Random(seed)
    folder = tmp_path / f"trial-{seed}"
    folder.mkdir()
    blocks = rng.randint(6, 12)
    acked = rng.randint(0, blocks - 2)
    return await damaged_restart(
        folder,
        collector,
        sim_gateway(100_000 + seed),
        blocks=blocks,
        acked=acked,
        damage=fuzz_damage(rng),
    )


async def test_seeded_fuzz_leaves_no_silent_hole(tmp_path: Path, collector: Collector) -> None:
    outcomes = {seed: await _trial(seed, tmp_path, collector) for seed in SEEDS}
    bad = {seed: o.line() for seed, o in outcomes.items() if o.silent or o.open_holes}
    assert not bad


@pytest.mark.soak
@pytest.mark.timeout(3600)
async def test_two_hundred_fuzz_trials_leave_no_silent_hole(
    tmp_path: Path, collector: Collector
) -> None:
    bad = []
    for seed in range(TRIALS):
        outcome = await _trial(seed, tmp_path, collector)
        print(f"seed {seed}: {outcome.line()}", flush=True)
        if outcome.silent or outcome.open_holes:
            bad.append(seed)
    print(f"{len(bad)} of {TRIALS} trials left holes: {bad}")
    assert not bad


def _epoch_and_witnesses(seq: int) -> Damage:
    def damage(path: Path, rows: dict[int, RowBytes], _undelivered: set[int]) -> list[str]:
        row = rows[seq]
        for column, at, data in (
            ("epoch", 4, b"\0\0"),
            ("digest", 8, b"\xff" * 4),
            ("sig", 20, bytes(8)),
        ):
            write_at(path, row.values[column][0] + at, data)
        return [f"seq {seq}: epoch, digest and sig"]

    return damage


async def test_a_row_whose_epoch_and_both_witnesses_changed_is_declared_in_its_own_epoch(
    tmp_path: Path, collector: Collector
) -> None:
    """Block 5 of 8 (2 delivered) lost its epoch column and both witnesses together. It was
    declared lost in the epoch its damage wrote: an epoch that never was, whose lower seqs the
    collector then waited for, while seq 5 of the real epoch stayed an open hole, its three
    readings neither stored nor declared. Its readings are now declared with no seqs, and seq
    5 once the collector's ACK lists it missing: nothing silent, no hole left open."""
    outcome = await damaged_restart(
        tmp_path, collector, sim_gateway(7), blocks=8, acked=2, damage=_epoch_and_witnesses(5)
    )
    assert outcome.silent == set()
    assert outcome.open_holes == []
    (epoch,) = {epoch for epoch, _, _ in outcome.declared}
    assert [(low, high) for _, low, high in outcome.declared] == [(5, 5)]
    assert len(epoch) == 16


def _delivered_behind_a_moved_row(path: Path, rows: dict[int, RowBytes], _: set[int]) -> list[str]:
    # Block 4's epoch column changed one letter: the open gives the row its epoch back and
    # rebuilds the indexes, so block 6, whose header now says delivered, leaves the index of
    # undelivered blocks the send path reads.
    write_at(path, rows[4].values["epoch"][0] + 4, b"g")
    return [mark_delivered_in_header(path, rows[6], 1), "seq 4: epoch column"]


async def test_a_row_whose_header_says_delivered_is_sent_again_when_the_collector_misses_it(
    tmp_path: Path, collector: Collector
) -> None:
    """One bit of block 6's record header turned its `delivered_at` NULL into 1: it read as
    delivered, nothing sent it, and the collector waited for seq 6 for ever (its readings
    neither stored nor declared). The collector's ACK lists it missing: the outbox holds it
    still, so it is made undelivered again and sent, and nothing is declared."""
    outcome = await damaged_restart(
        tmp_path,
        collector,
        sim_gateway(8),
        blocks=8,
        acked=2,
        damage=_delivered_behind_a_moved_row,
    )
    assert outcome.silent == set()
    assert outcome.open_holes == []
    assert outcome.declared == []
