"""One trial of the outbox damage fuzz: seal, deliver some, damage rows, restart, judge.

A gateway's agent (a real outbox and publisher) against a real Mosquitto and the real
collector ingest: blocks of three readings are sealed, the first `acked` stored and ACKed by
the collector, the rest sealed while the agent's uplink is down (its backlog, in the file
alone). Then `damage` changes bytes of rows where the file holds them (tests.support.row_damage)
and the agent starts again on the file and seals two blocks more. The verdict is read from
the collector's database: each reading sealed before the damage is stored there, or lies in a
seq range a gap record stored there declares lost; anything else is a silent hole.
"""

from __future__ import annotations

import contextlib
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from collector.storage.base import Storage
from edge_agent.shell.outbox_open import open_outbox
from specs.records import Reading
from tests.support.agent_rig import identity_of, running_agent
from tests.support.collector_client import SimGateway
from tests.support.collector_env import COLLECTOR_KEY, register, wait_until
from tests.support.postgres import sql_rows
from tests.support.row_damage import RowBytes, locate_row, quick_check

READINGS_PER_BLOCK = 3
# How long a trial waits after the restart for every reading to be stored or declared, and
# every hole at the collector closed (a good trial ends in well under a second).
SETTLE = 8.0
ACK_TIMEOUT = 0.5

# Changes bytes of the rows (by seq, before any change) of the file; what it did, in words.
# Its second argument: the seqs still undelivered when the agent stopped.
Damage = Callable[[Path, dict[int, RowBytes], set[int]], list[str]]
Span = tuple[str, int, int | None]


@dataclass
class Outcome:
    """What one trial did, and what the collector holds after it."""

    damage: list[str] = field(default_factory=list)
    check: str = ""  # quick_check of the damaged file
    silent: set[tuple[str, int]] = field(default_factory=set)  # blocks of readings neither
    open_holes: list[Span] = field(default_factory=list)  # the collector still waits for
    declared: list[Span] = field(default_factory=list)  # (epoch, from_seq, to_seq)

    def line(self) -> str:
        """The trial in one line."""
        return (
            f"silent {sorted(self.silent)} open holes {self.open_holes}"
            f" check {self.check!r} damage {self.damage}"
        )


@dataclass(frozen=True)
class Collector:
    """The running collector: its broker port, storage and database URL."""

    port: int
    storage: Storage
    url: str


async def damaged_restart(
    folder: Path,
    collector: Collector,
    gateway: SimGateway,
    *,
    blocks: int,
    acked: int,
    damage: Damage,
) -> Outcome:
    """Run one trial of `gateway` in `folder` (see the module's doc)."""
    await register(collector.storage, gateway)
    sealed: dict[float, tuple[str, int]] = {}  # a reading's value: (epoch, seq) of its block
    count = 0

    def records() -> tuple[Reading, ...]:
        nonlocal count
        count += 1
        return tuple(gateway.reading(count, i) for i in range(READINGS_PER_BLOCK))

    def note(chosen: tuple[Reading, ...], epoch: str, seq: int) -> None:
        sealed.update({float(r.value or 0.0): (epoch, seq) for r in chosen})

    keys = COLLECTOR_KEY.public()
    async with running_agent(
        folder, collector.port, gateway, keys, ack_timeout=ACK_TIMEOUT
    ) as agent:
        for _ in range(acked):
            chosen = records()
            await agent.seal(1, records=chosen)
            note(chosen, agent.outbox.epoch, agent.sealed)
        await wait_until(agent.undelivered, lambda seqs: not seqs)
    path = folder / "outbox.db"
    async with open_outbox(path, identity_of(gateway), gateway.key) as outbox:
        for _ in range(blocks - acked):
            chosen = records()
            block = await outbox.seal(chosen, now=time.time(), clock_synced=True)
            note(chosen, block.epoch, block.seq)
        undelivered = {b.seq for b in await outbox.delivery.undelivered(after=0, limit=blocks)}
    rows = {seq: locate_row(path, seq) for seq in range(1, blocks + 1)}
    outcome = Outcome(damage=damage(path, rows, undelivered))
    outcome.check = quick_check(path)

    async def settled() -> bool:
        if await agent.undelivered():
            return False
        await _judge(outcome, collector.url, gateway, sealed)
        return not (outcome.silent or outcome.open_holes)

    async with running_agent(
        folder, collector.port, gateway, keys, ack_timeout=ACK_TIMEOUT
    ) as agent:
        await agent.seal(2)
        with contextlib.suppress(TimeoutError):  # judged below all the same
            await wait_until(settled, bool, SETTLE)
    await _judge(outcome, collector.url, gateway, sealed)
    return outcome


async def _judge(
    outcome: Outcome, url: str, gateway: SimGateway, sealed: dict[float, tuple[str, int]]
) -> None:
    """Fill `outcome` from the collector's database."""
    name = gateway.gateway
    stored = {
        float(value)
        for (value,) in await sql_rows(url, "SELECT value FROM readings WHERE gateway = ?", name)
    }
    outcome.declared = [
        (str(epoch), int(low), None if high is None else int(high))
        for epoch, low, high in await sql_rows(
            url,
            "SELECT declared_epoch, from_seq, to_seq FROM gaps WHERE kind = 'record'"
            " AND gateway = ? AND declared_epoch IS NOT NULL AND from_seq IS NOT NULL",
            name,
        )
    ]
    holes = await sql_rows(
        url,
        "SELECT epoch, from_seq, to_seq FROM gaps WHERE kind = 'sequence' AND gateway = ?",
        name,
    )
    outcome.open_holes = [(str(epoch), int(low), int(high)) for epoch, low, high in holes]
    outcome.silent = {
        (epoch, seq)
        for value, (epoch, seq) in sealed.items()
        if value not in stored
        and not any(
            e == epoch and low <= seq and (high is None or seq <= high)
            for e, low, high in outcome.declared
        )
    }
