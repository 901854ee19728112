"""Scale on paper (issue 11.8): measured per-core figures in, a province's and the nation's
sizing out (pure). docs/scale.md's table is `markdown_table(per_core_from_result(result))` of
bench/load.py's result (`python -m bench.capacity RESULT.json` prints it).

The model, per region of E enterprises x P points polled every I seconds, one gateway each,
sealing one block per poll cycle (an agent's default flush, 0.2 s, is shorter than a cycle):

- readings/s R = E P / I; blocks/s B = E / I; broker messages/s M = 2 B (a block in from the
  gateway, an ACK in from a collector; each delivered to one subscriber, as bench/load.py counts);
- collector cores = R / (readings per collector CPU-second) / utilisation; one `collector
  serve` is one asyncio thread, so processes = ceil(cores), plus one spare (N+1);
- Mosquitto is single-threaded: a node carries (messages per Mosquitto CPU-second) x
  utilisation messages/s; nodes = ceil(M / that), plus one spare;
- PostgreSQL backend cores = R x (backend CPU per reading) / utilisation (a lower bound: the WAL
  writer, checkpointer and autovacuum are not in the figure);
- storage = R x 86,400 x (bytes per stored reading, whole database) per day, kept for
  `retention_days`, x `storage_free` for free space and vacuum;
- partitions: time ranges of `partition_hours`; the readings index `(gateway, point, t)` has one
  insertion point per series, so its hot leaf pages are E P x 8 KiB whatever the partition
  size (they must stay in shared_buffers for inserts not to read from disk);
- bandwidth = (R x wire bytes per reading + B x ACK bytes) x 8 / network utilisation, raw and
  compressed (zlib-6 per block, as measured; issue 11.6 adds an `enc` that does better).
"""

from __future__ import annotations

import argparse
import math
import sys
from dataclasses import dataclass
from pathlib import Path

from bench.results import BenchResult, read_result

INDEX_PAGE = 8192  # PostgreSQL's page: one hot leaf page per series in readings_by_series


@dataclass(frozen=True)
class PerCore:
    """Figures measured by bench/load.py, at `readings_per_block` readings per block."""

    collector_readings_per_cpu_s: float
    broker_messages_per_cpu_s: float
    postgres_cpu_s_per_reading: float
    stored_bytes_per_reading: float
    wire_bytes_per_reading: float
    wire_bytes_per_reading_compressed: float
    ack_wire_bytes: float
    readings_per_block: int


@dataclass(frozen=True)
class Region:
    """Who reports: enterprises, points each, poll interval."""

    name: str
    enterprises: int
    points: int
    interval_s: float = 1.0


@dataclass(frozen=True)
class Headroom:
    """How far below the measured limits a deployment runs, and for how long data is kept.

    0.5 utilisation leaves 2x for a backlog replaying after an outage while live data flows
    (G5) and for reconnect storms; one spare process and node each ride out a failure.
    """

    cpu_utilisation: float = 0.5
    network_utilisation: float = 0.5
    spare: int = 1
    retention_days: int = 30
    storage_free: float = 1.25
    partition_hours: int = 1


PROVINCE = Region("province", 5_000, 100)
NATION = Region("nation", 150_000, 100)


@dataclass(frozen=True)
class Sizing:
    """What a region needs."""

    region: Region
    readings_per_s: float
    blocks_per_s: float
    broker_messages_per_s: float
    collector_cores: float
    collector_processes: int
    broker_cores: float
    broker_nodes: int
    postgres_cores: float
    rows_per_day: float
    stored_bytes_per_day: float
    stored_bytes_retained: float
    rows_per_partition: float
    bytes_per_partition: float
    hot_index_bytes: float
    ingress_bits_per_s: float
    ingress_bits_per_s_compressed: float


def size(per_core: PerCore, region: Region, headroom: Headroom = Headroom()) -> Sizing:
    """The sizing of `region` from `per_core`, with `headroom`."""
    readings = region.enterprises * region.points / region.interval_s
    blocks = region.enterprises / region.interval_s
    messages = 2 * blocks
    u = headroom.cpu_utilisation
    collector_cores = readings / per_core.collector_readings_per_cpu_s / u
    broker_cores = messages / per_core.broker_messages_per_cpu_s / u
    per_day = readings * 86_400
    bytes_per_day = per_day * per_core.stored_bytes_per_reading
    partition_share = headroom.partition_hours / 24
    net = headroom.network_utilisation
    acks = blocks * per_core.ack_wire_bytes
    return Sizing(
        region=region,
        readings_per_s=readings,
        blocks_per_s=blocks,
        broker_messages_per_s=messages,
        collector_cores=collector_cores,
        collector_processes=math.ceil(collector_cores) + headroom.spare,
        broker_cores=broker_cores,
        broker_nodes=math.ceil(broker_cores) + headroom.spare,
        postgres_cores=readings * per_core.postgres_cpu_s_per_reading / u,
        rows_per_day=per_day,
        stored_bytes_per_day=bytes_per_day,
        stored_bytes_retained=bytes_per_day * headroom.retention_days * headroom.storage_free,
        rows_per_partition=per_day * partition_share,
        bytes_per_partition=bytes_per_day * partition_share,
        hot_index_bytes=region.enterprises * region.points * INDEX_PAGE,
        ingress_bits_per_s=8 * (readings * per_core.wire_bytes_per_reading + acks) / net,
        ingress_bits_per_s_compressed=8
        * (readings * per_core.wire_bytes_per_reading_compressed + acks)
        / net,
    )


def _si(value: float, unit: str) -> str:
    for factor, prefix in ((1e15, "P"), (1e12, "T"), (1e9, "G"), (1e6, "M"), (1e3, "k")):
        if value >= factor:
            return f"{value / factor:.3g} {prefix}{unit}"
    return f"{value:.3g} {unit}"


def rows(sizing: Sizing, headroom: Headroom = Headroom()) -> list[tuple[str, str]]:
    """(quantity, value) rows of one region's sizing."""
    u = f"at {headroom.cpu_utilisation:.0%} CPU"
    return [
        ("readings/s", f"{sizing.readings_per_s:,.0f}"),
        ("blocks/s (one per gateway per poll)", f"{sizing.blocks_per_s:,.0f}"),
        ("broker messages/s (blocks + ACKs)", f"{sizing.broker_messages_per_s:,.0f}"),
        (f"collector cores {u}", f"{sizing.collector_cores:.1f}"),
        (f"collector processes (+{headroom.spare} spare)", f"{sizing.collector_processes}"),
        (f"Mosquitto cores {u}", f"{sizing.broker_cores:.1f}"),
        (f"Mosquitto nodes, one core each (+{headroom.spare} spare)", f"{sizing.broker_nodes}"),
        (f"PostgreSQL backend cores {u} (lower bound)", f"{sizing.postgres_cores:.1f}"),
        ("rows/day", _si(sizing.rows_per_day, "")),
        ("stored bytes/day", _si(sizing.stored_bytes_per_day, "B")),
        (
            f"storage for {headroom.retention_days} days raw (x{headroom.storage_free} free space)",
            _si(sizing.stored_bytes_retained, "B"),
        ),
        (f"rows per {headroom.partition_hours} h partition", _si(sizing.rows_per_partition, "")),
        (f"bytes per {headroom.partition_hours} h partition", _si(sizing.bytes_per_partition, "B")),
        ("hot index leaf pages (one per series)", _si(sizing.hot_index_bytes, "B")),
        (
            f"ingress, raw JSON (link at {headroom.network_utilisation:.0%})",
            _si(sizing.ingress_bits_per_s, "bit/s"),
        ),
        ("ingress, zlib-6 per block", _si(sizing.ingress_bits_per_s_compressed, "bit/s")),
    ]


def markdown_table(per_core: PerCore, headroom: Headroom = Headroom()) -> str:
    """The province and nation sizing as a markdown table (docs/scale.md's)."""
    province, nation = size(per_core, PROVINCE, headroom), size(per_core, NATION, headroom)
    head = (
        f"| | province ({PROVINCE.enterprises:,} x {PROVINCE.points} points at"
        f" {PROVINCE.interval_s:g} s) | nation ({NATION.enterprises:,} x {NATION.points}) |\n"
        "|---|---:|---:|\n"
    )
    body = "".join(
        f"| {name} | {p} | {n} |\n"
        for (name, p), (_, n) in zip(rows(province, headroom), rows(nation, headroom), strict=True)
    )
    return head + body


def _figure(result: BenchResult, name: str) -> float:
    for figure in result.figures:
        if figure.name == name:
            return figure.median
    raise KeyError(f"{result.bench} has no figure {name!r}")


def per_core_from_result(
    result: BenchResult, backend: str = "postgresql", phase: str = "blocks"
) -> PerCore:
    """The per-core figures of bench/load.py's `backend`/`phase` run (medians over windows)."""
    label = f"{backend}/{phase}: "
    return PerCore(
        collector_readings_per_cpu_s=_figure(
            result, label + "collector readings per collector CPU-second"
        ),
        broker_messages_per_cpu_s=_figure(
            result, label + "broker messages per Mosquitto CPU-second"
        ),
        postgres_cpu_s_per_reading=_figure(result, label + "PostgreSQL backend CPU per reading")
        / 1e6,
        stored_bytes_per_reading=_figure(
            result, label + "bytes per stored reading, whole database"
        ),
        wire_bytes_per_reading=_figure(result, label + "bytes per reading on the wire, raw"),
        wire_bytes_per_reading_compressed=_figure(
            result, label + "bytes per reading on the wire, zlib-6 per block"
        ),
        ack_wire_bytes=_figure(result, label + "bytes per ACK on the wire"),
        readings_per_block=round(_figure(result, label + "readings per block")),
    )


def main() -> int:
    """Print the sizing table of a bench/load.py result file."""
    parser = argparse.ArgumentParser(description="Sizing table from bench/load.py --json")
    parser.add_argument("result", type=Path)
    args = parser.parse_args()
    sys.stdout.write(markdown_table(per_core_from_result(read_result(args.result))))
    return 0


if __name__ == "__main__":
    sys.exit(main())
