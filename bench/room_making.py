"""A seal that makes room in a full outbox: how long the event loop stops meanwhile.

A seal that meets the outbox's budget makes room (`edge_agent.shell.outbox_room.RoomMaker`):
the oldest undelivered blocks, up to `outbox.max_bytes / 20` (8 MiB at most), are read,
decoded and thinned (then dropped, once thinned), and what survives is sealed again at the
head. A site offline for weeks meets this every few hundred seals, and the pollers (Modbus,
OPC UA reads every 0.1-1 s) run on the same event loop as the sealer: for as long as the
loop is stopped, polls are late or skipped.

Set-up: an outbox of `--budget` MiB (8 MiB give way at once from 160 MiB up; the product's
default `outbox.max_bytes` is 2 GiB) sealed full with its own seal, nothing ACKed: a site of
`--points` points read every `--poll` seconds, `--block` readings to a block
(`bench.declarations.site_block`), until the first seal has made room; then what lives is
frozen for the garbage collector, as the agent does once started. Each repeat then
seals block after block until `--rooms` seals have made room (a seal that made room is one
whose block's seq jumps: the replacement blocks were sealed before it), while a ticker sleeps
`TICK` seconds again and again and keeps the times it wakes. A seal's stall is the longest
gap between two wakes around it, less `TICK`: how long the loop ran nothing else.

Baseline, each repeat: the median stall of the plain seals (those that made no room) of the
same repeat. Target: the longest stall of a seal that made room at most `STALL_TARGET` times
that (the loop stopped for the whole decode before: 67-177 times; the garbage collector's
full passes over the blocks decoded on the outbox's thread, 50-90 ms, hold it since).
Result (bench/results.py, `--json PATH`): min/median/max of every figure; exit 1 when
the gated median misses. Run: `.venv/bin/python -m bench.room_making [--budget 160]
[--repeats 3] [--rooms 3] [--dir DIR]`.
"""

from __future__ import annotations

import argparse
import asyncio
import gc
import itertools
import shutil
import statistics
import sys
import tempfile
import time
from dataclasses import dataclass
from functools import partial
from pathlib import Path

from bench.declarations import add_site_arguments, once, over_repeats, quiet, site_block
from bench.results import BenchResult, Figure, add_json_argument, finished
from edge_agent.shell.outbox import Outbox
from edge_agent.shell.outbox_open import open_outbox
from edge_agent.shell.outbox_space import SpaceBudget
from tests.support.outbox_site import KEY, SITE, T0

MIB = 1024 * 1024
STALL_TARGET = 20.0  # plain seals' stall
TICK = 0.01


@dataclass(frozen=True)
class Seal:
    """One seal: when it began and ended (perf_counter), and whether it made room."""

    started: float
    ended: float
    made_room: bool


class Sealing:
    """Seals block after block into one outbox; the blocks' index goes on across repeats."""

    def __init__(self, outbox: Outbox, args: argparse.Namespace) -> None:
        self._outbox = outbox
        self._args = args
        self._index = 0
        self._last_seq: int | None = None

    async def next(self) -> Seal:
        """Seal the next block."""
        args = self._args
        records = site_block(self._index, args.points, args.poll, args.block)
        started = time.perf_counter()
        block = await self._outbox.seal(records, now=T0 + self._index, clock_synced=True)
        ended = time.perf_counter()
        # Room made: the replacement blocks were sealed (at the head) before this one.
        made_room = self._last_seq is not None and block.seq > self._last_seq + 1
        self._last_seq = block.seq
        self._index += 1
        return Seal(started, ended, made_room)


async def _ticker(wakes: list[float], stop: asyncio.Event) -> None:
    """Sleep TICK seconds again and again; the time of each wake."""
    while not stop.is_set():
        await asyncio.sleep(TICK)
        wakes.append(time.perf_counter())


def stall(seal: Seal, wakes: list[float]) -> float:
    """The longest gap between two wakes around `seal`, less TICK: seconds the loop stopped."""
    gaps = [
        later - earlier
        for earlier, later in itertools.pairwise(wakes)
        if later > seal.started and earlier < seal.ended
    ]
    return max(0.0, max(gaps, default=0.0) - TICK)


async def one_repeat(sealing: Sealing, args: argparse.Namespace) -> dict[str, float]:
    """Seal until `args.rooms` seals made room, the ticker running; this repeat's figures."""
    wakes: list[float] = []
    stop = asyncio.Event()
    ticker = asyncio.create_task(_ticker(wakes, stop))
    await asyncio.sleep(0.05)  # ticking before the first seal
    seals: list[Seal] = []
    while sum(s.made_room for s in seals) < args.rooms:
        seals.append(await sealing.next())
    await asyncio.sleep(2 * TICK)  # the wake after the last seal is kept
    stop.set()
    await ticker
    room = [s for s in seals if s.made_room]
    plain = [s for s in seals if not s.made_room]
    room_stall = max(stall(s, wakes) for s in room) * 1000
    plain_stall = statistics.median(stall(s, wakes) for s in plain) * 1000
    return {
        "room_stall_ms": room_stall,
        "room_seal_ms": statistics.median(s.ended - s.started for s in room) * 1000,
        "plain_stall_ms": plain_stall,
        "plain_stall_max_ms": max(stall(s, wakes) for s in plain) * 1000,
        "plain_seal_ms": statistics.median(s.ended - s.started for s in plain) * 1000,
        "plain_seals": len(plain),
        # A plain seal's stall is a few ms at most: at least one tick's worth, against noise.
        "ratio": room_stall / max(plain_stall, TICK * 1000 / 10),
    }


async def measure(args: argparse.Namespace) -> tuple[dict[str, float], list[dict[str, float]]]:
    """Fill the outbox until room is made, then the repeats on it."""
    folder = Path(tempfile.mkdtemp(prefix="ganzhi-bench-room-", dir=args.dir))
    try:
        budget = args.budget * MIB
        async with open_outbox(folder / "outbox.db", SITE, KEY, max_bytes=budget) as outbox:
            sealing = Sealing(outbox, args)
            started = time.perf_counter()
            filled = 0
            while not (await sealing.next()).made_room:
                filled += 1
            built = {
                "fill_s": time.perf_counter() - started,
                "seals": filled,
                "evict_mib": SpaceBudget(budget).evict_bytes / MIB,
            }
            print(f"bench.room_making: filled {built}", flush=True)
            # As the agent does once started (edge_agent.shell.runtime): the garbage
            # collector's full passes walk only what was made since.
            gc.collect()
            gc.freeze()
            runs = []
            for _ in range(args.repeats):
                runs.append(await one_repeat(sealing, args))
                print(f"bench.room_making: {runs[-1]}", flush=True)
    finally:
        shutil.rmtree(folder, ignore_errors=True)
    return built, runs


def figures(runs: list[dict[str, float]], built: dict[str, float]) -> tuple[Figure, ...]:
    """The result's figures: each over the repeats, the file's once."""
    values = partial(over_repeats, runs)
    built_once = partial(once, built)

    return (
        Figure("", "seal that made room: longest event loop stall (the pollers' loop)", "ms",
               values("room_stall_ms")),
        Figure("", "seal that made room: longest stall over a plain seal's", "x",
               values("ratio"), target=STALL_TARGET, direction="at_most",
               baseline="median stall of the plain seals, same repeat"),
        Figure("", "plain seal: median event loop stall", "ms", values("plain_stall_ms")),
        Figure("", "plain seal: longest event loop stall", "ms", values("plain_stall_max_ms")),
        Figure("", "seal that made room, whole (the outbox lock held as long)", "ms",
               values("room_seal_ms")),
        Figure("", "plain seal, whole", "ms", values("plain_seal_ms")),
        Figure("", "plain seals between two that made room", "seals", values("plain_seals", 0)),
        Figure("", "given way at once", "MiB", built_once("evict_mib")),
        Figure("", "filling the outbox", "s", built_once("fill_s")),
    )  # fmt: skip


def main() -> int:
    """Measure, write the result, and fail when the gated median misses its target."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--budget", type=int, default=160, help="outbox.max_bytes, MiB")
    add_site_arguments(parser)
    parser.add_argument("--rooms", type=int, default=3, help="seals that make room, a repeat")
    parser.add_argument("--repeats", type=int, default=3)
    add_json_argument(parser)
    args = parser.parse_args()
    quiet()
    built, runs = asyncio.run(measure(args))
    result = BenchResult(
        "room_making",
        figures(runs, built),
        notes=((f"An outbox of {args.budget} MiB sealed full without an ACK: {args.points} "
               f"points every {args.poll:g} s, {args.block} readings a block; each repeat "
               f"seals until {args.rooms} seals made room, a ticker waking every "
               f"{TICK * 1000:g} ms."),),
    )  # fmt: skip
    return finished(args.json, result)


if __name__ == "__main__":
    sys.exit(main())
