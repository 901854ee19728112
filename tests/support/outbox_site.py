"""The outbox tests' gateway (SITE, signing with KEY, readings from T0), and a keyed example
site whose outbox already holds undelivered blocks, for start-up tests."""

from __future__ import annotations

from pathlib import Path

from edge_agent.core.chain import Identity
from edge_agent.shell.outbox_open import open_outbox
from specs.records import Quality, Reading, iso_time
from specs.signing import signing_key_from_seed
from tests.support.cli_runs import keyed_example_site
from tests.support.records import reading_at

KEY = signing_key_from_seed(bytes(32))
SITE = Identity("91360100MA35GW001H-GW01", "91360100MA35GW001H", "360100", "WHP")
T0 = 1_700_000_000.0


def numbered_reading(i: int) -> Reading:
    """Reading `i` of tank 1's level: value `i`, at second `i` after T0."""
    return Reading("T001-LT-01", "WHP-LT", iso_time(T0 + i), float(i), "m", Quality.GOOD)


async def sealed_blocks(path: Path, blocks: int, start: float = T0) -> str:
    """`blocks` blocks of ten readings sealed at `path` (the outbox opened once); its epoch."""
    async with open_outbox(path, SITE, KEY) as outbox:
        for index in range(blocks):
            readings = tuple(reading_at(start + index * 10 + i, float(i)) for i in range(10))
            await outbox.seal(readings, now=start + index, clock_synced=True)
        return outbox.epoch


async def site_with_its_outbox(
    path: Path, folder: Path, *, blocks: int = 1, readings: int = 50
) -> Path:
    """A healthy outbox at `path` (`blocks` undelivered blocks of `readings` readings), and a
    keyed example site in `folder` naming it; returns the site file."""
    async with open_outbox(path, SITE, KEY) as outbox:
        for block in range(blocks):
            await outbox.seal(
                tuple(
                    Reading(
                        f"T00{i % 5}-LT-01",
                        "WHP-LT",
                        iso_time(T0 + i),
                        float(i % 37),
                        "m",
                        Quality.GOOD,
                    )
                    for i in range(block * readings, (block + 1) * readings)
                ),
                now=T0 + block,
                clock_synced=True,
            )
    site = keyed_example_site(folder)
    text = site.read_text(encoding="utf-8")
    site.write_text(text.replace("path: state/outbox.db", f"path: {path}"), encoding="utf-8")
    return site
