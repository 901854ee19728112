"""The fault matrix's oracle: every reading the agent sealed, against what the collector serves.

DESIGN invariant 1, checked from both ends after each fault:

* the agent's side is its outbox, read by `read_outbox` (the one place that knows how:
  `edge-agent outbox export --json`, the technician's command; `GZ_FAULTS_OUTBOX_READER=sqlite`
  reads the SQLite file directly instead). Blocks can leave the outbox before the
  end of a test (evicted on a full disk, sealed again under a new epoch), so a `Ledger`
  collects every block seen in snapshots taken during the test;
* the collector's side is `GET /v1/readings` for the gateway, every page.

A sealed reading is *stored* when the collector serves it exactly once, *declared lost* when
it is not served and one of the blocks it was sealed in lies in the seq range of a gap record
(`epoch`, `from_seq`..`to_seq`; an open `to_seq` means the rest of that epoch). Anything else
fails the test: a reading neither served nor declared (silent loss), a reading served twice,
a served reading the agent never sealed, a seq missing from an epoch that no gap declares.
"""

from __future__ import annotations

import json
import os
import sqlite3
import subprocess
import sys
from collections import Counter
from collections.abc import Iterable
from contextlib import closing
from dataclasses import asdict, dataclass, field
from pathlib import Path

import asyncpg

from collector.api.core import shown_value
from specs.block import block_hash, decode_block
from specs.records import GapRecord, Reading
from tests.e2e.harness import Site
from tests.support.postgres import run_sync

BIN = Path(sys.executable).parent
READER_ENV = "GZ_FAULTS_OUTBOX_READER"
RESULTS_ENV = "GZ_FAULTS_RESULTS"
ReadingKey = tuple[str, str, float | None, str]
BlockKey = tuple[str, int]
SealedKey = tuple[str, int, str]


@dataclass(frozen=True, slots=True)
class OutboxBlock:
    """One block as the agent's outbox holds it."""

    epoch: str
    seq: int
    payload: bytes
    delivered: bool


def read_outbox(site: Site) -> list[OutboxBlock]:
    """Every block in the agent's outbox right now ([] before the file has its tables)."""
    if os.environ.get(READER_ENV, "cli") == "sqlite":
        return _read_file(site.outbox_path)
    return _export_command(site)


def _read_file(path: Path) -> list[OutboxBlock]:
    if not path.exists():
        return []
    try:
        with closing(sqlite3.connect(f"file:{path}?mode=ro", uri=True, timeout=30)) as db:
            rows = db.execute("SELECT epoch, seq, payload, delivered_at FROM blocks").fetchall()
    except sqlite3.OperationalError as exc:
        if "no such table" in str(exc):
            return []
        raise
    return [OutboxBlock(str(e), int(s), bytes(p), d is not None) for e, s, p, d in rows]


def _export_command(site: Site) -> list[OutboxBlock]:
    if not site.outbox_path.exists():
        return []
    done = subprocess.run(
        [str(BIN / "edge-agent"), "outbox", "export", "-c", "site.yaml", "--json"],
        cwd=site.work,
        capture_output=True,
        check=False,
        timeout=60,
    )
    if done.returncode != 0:
        raise AssertionError(
            f"edge-agent outbox export failed ({done.returncode}): {done.stderr.decode()}"
        )
    body = json.loads(done.stdout)
    return [
        OutboxBlock(
            str(b["epoch"]), int(b["seq"]), str(b["payload"]).encode(), bool(b["delivered"])
        )
        for b in body["blocks"]
    ]


def collector_blocks(site: Site) -> list[OutboxBlock]:
    """Every block the collector stored, read from its database (SQLite or PostgreSQL).

    Each verified under the gateway's registered key, so each was sealed by the agent: a
    block that came and went between two outbox snapshots (sealed, delivered, then dropped
    to make room) is still held to account through this.
    """
    if site.storage_url.startswith("postgresql"):
        return run_sync(lambda: _postgres_blocks(site.storage_url, site.gateway))
    path = site.work / "state" / "collector.db"
    with closing(sqlite3.connect(f"file:{path}?mode=ro", uri=True, timeout=30)) as db:
        rows = db.execute(
            "SELECT epoch, seq, payload FROM blocks WHERE gateway = ?", (site.gateway,)
        ).fetchall()
    return [OutboxBlock(str(e), int(s), bytes(p), delivered=True) for e, s, p in rows]


async def _postgres_blocks(url: str, gateway: str) -> list[OutboxBlock]:
    db = await asyncpg.connect(url, timeout=10)
    try:
        rows = await db.fetch("SELECT epoch, seq, payload FROM blocks WHERE gateway = $1", gateway)
    finally:
        await db.close()
    return [OutboxBlock(str(e), int(s), bytes(p), delivered=True) for e, s, p in rows]


def outbox_integrity(site: Site) -> str:
    """`PRAGMA integrity_check` of the agent's outbox file ("ok" when sound)."""
    path = site.outbox_path
    with closing(sqlite3.connect(f"file:{path}?mode=ro", uri=True, timeout=30)) as db:
        return "; ".join(str(row[0]) for row in db.execute("PRAGMA integrity_check"))


@dataclass
class Ledger:
    """Every block the agent was seen to hold, over all snapshots of a test.

    Keyed by (epoch, seq, payload hash): a seq sealed twice with other bytes (an outbox rolled
    back by a cut WAL) keeps both versions, so the readings of each are held to account.
    """

    blocks: dict[SealedKey, bytes] = field(default_factory=dict)

    def observe(self, blocks: Iterable[OutboxBlock]) -> int:
        """Add a snapshot; return how many blocks it held."""
        count = 0
        for block in blocks:
            count += 1
            self.blocks.setdefault(
                (block.epoch, block.seq, block_hash(block.payload)), block.payload
            )
        return count

    def snapshot(self, site: Site) -> int:
        """Observe the agent's outbox now; return how many blocks it holds."""
        return self.observe(read_outbox(site))

    def rewritten(self) -> list[BlockKey]:
        """(epoch, seq) seen with more than one payload."""
        counts = Counter((epoch, seq) for epoch, seq, _ in self.blocks)
        return sorted(key for key, n in counts.items() if n > 1)


@dataclass(frozen=True, slots=True)
class Declared:
    """A seq range of one epoch that a gap record says will never come."""

    epoch: str
    from_seq: int
    to_seq: int | None

    def covers(self, key: BlockKey) -> bool:
        epoch, seq = key
        return (
            epoch == self.epoch
            and seq >= self.from_seq
            and (self.to_seq is None or seq <= self.to_seq)
        )


@dataclass(frozen=True, slots=True)
class Verdict:
    """One case's figures, and everything that breaks the invariants (empty when it holds).

    `sealed`: distinct readings in the blocks seen; `stored`: of them, served by the
    collector; `declared_lost`: of them, not served but in a seq range a gap record declares;
    `silent_losses`: not served and not declared. `gap_lost_counted` sums the gap records'
    own `lost` counts (these include readings that never reached a block, e.g. a memory ring
    that overflowed); `gap_lost_unknown` counts gap records whose agent could not count.
    """

    case: str
    sealed: int
    stored: int
    declared_lost: int
    gap_lost_counted: int
    gap_lost_unknown: int
    duplicates: int
    gap_records: int
    gap_reasons: dict[str, int]
    epochs: int
    blocks: int
    seconds: float
    silent_losses: int
    unknown_served: int
    seq_holes: dict[str, list[int]]
    rewritten_seqs: int
    rewritten_undeclared: int

    def line(self) -> str:
        """The result line for the closing table (JSON)."""
        return json.dumps(asdict(self), sort_keys=False)

    def problems(self) -> list[str]:
        """Every broken invariant, in words."""
        found = []
        if self.sealed == 0:
            found.append("the agent sealed no reading at all")
        if self.silent_losses:
            found.append(f"{self.silent_losses} sealed readings neither stored nor declared lost")
        if self.duplicates:
            found.append(f"{self.duplicates} readings stored more than once")
        if self.unknown_served:
            found.append(f"{self.unknown_served} served readings the agent never sealed")
        if self.seq_holes:
            found.append(f"seqs missing and not declared: {self.seq_holes}")
        if self.rewritten_undeclared:
            found.append(
                f"{self.rewritten_undeclared} (epoch, seq) sealed twice with other bytes"
                " and not declared by a gap record"
            )
        return found


def served(site: Site) -> Counter[ReadingKey]:
    """Every reading the collector serves for the site's gateway (all pages)."""
    return site.collector_readings()


def served_items(site: Site) -> list[dict[str, object]]:
    """The collector's readings of the gateway as the API gives them (flags included)."""
    return site.collector_items()


@dataclass
class _Index:
    """Where each sealed reading was sealed, and the seq ranges gap records declare."""

    where: dict[ReadingKey, set[BlockKey]] = field(default_factory=dict)
    declared: list[Declared] = field(default_factory=list)
    gaps: list[GapRecord] = field(default_factory=list)

    def covered(self, block: BlockKey) -> bool:
        return any(d.covers(block) for d in self.declared)


def _index(ledger: Ledger) -> _Index:
    index = _Index()
    for (epoch, seq, _), payload in ledger.blocks.items():
        for record in decode_block(payload).records:
            if isinstance(record, Reading):
                reading = (record.point, record.t, shown_value(record.value), record.quality.value)
                index.where.setdefault(reading, set()).add((epoch, seq))
            elif isinstance(record, GapRecord):
                index.gaps.append(record)
                if record.epoch is not None and record.from_seq is not None:
                    index.declared.append(Declared(record.epoch, record.from_seq, record.to_seq))
    return index


def _seq_holes(ledger: Ledger, index: _Index) -> dict[str, list[int]]:
    """Per epoch, the seqs between the first and last seen that neither exist nor are declared."""
    by_epoch: dict[str, set[int]] = {}
    for epoch, seq, _ in ledger.blocks:
        by_epoch.setdefault(epoch, set()).add(seq)
    holes: dict[str, list[int]] = {}
    for epoch, seqs in by_epoch.items():
        missing = [
            s
            for s in range(min(seqs), max(seqs) + 1)
            if s not in seqs and not index.covered((epoch, s))
        ]
        if missing:
            holes[epoch] = missing[:20]
    return holes


def judge(case: str, ledger: Ledger, collector: Counter[ReadingKey], seconds: float) -> Verdict:
    """Hold what the agent sealed against what the collector serves."""
    index = _index(ledger)
    stored = not_stored = silent = 0
    for reading, blocks in index.where.items():
        if collector.get(reading, 0) >= 1:
            stored += 1
        else:
            not_stored += 1
            if not any(index.covered(b) for b in blocks):
                silent += 1
    return Verdict(
        case=case,
        sealed=len(index.where),
        stored=stored,
        declared_lost=not_stored - silent,
        gap_lost_counted=sum(g.lost or 0 for g in index.gaps),
        gap_lost_unknown=sum(1 for g in index.gaps if g.lost is None),
        duplicates=sum(count - 1 for count in collector.values() if count > 1),
        gap_records=len(index.gaps),
        gap_reasons=dict(Counter(g.reason.value for g in index.gaps)),
        epochs=len({epoch for epoch, _, _ in ledger.blocks}),
        blocks=len(ledger.blocks),
        seconds=round(seconds, 1),
        silent_losses=silent,
        unknown_served=sum(n for reading, n in collector.items() if reading not in index.where),
        seq_holes=_seq_holes(ledger, index),
        rewritten_seqs=len(ledger.rewritten()),
        rewritten_undeclared=sum(1 for key in ledger.rewritten() if not index.covered(key)),
    )


def gap_records(ledger: Ledger) -> list[GapRecord]:
    """Every gap record in the blocks seen."""
    return [
        record
        for payload in ledger.blocks.values()
        for record in decode_block(payload).records
        if isinstance(record, GapRecord)
    ]


def write_result(verdict: Verdict, path: Path) -> None:
    """Append the verdict's line to the results file and print it."""
    line = verdict.line()
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("a", encoding="utf-8") as out:
        out.write(line + "\n")
    print(f"fault result ({path}): {line}")
