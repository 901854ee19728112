"""The outbox on a real SQLite file: gap-free seqs, a verifiable chain, survival of SIGKILL."""

from __future__ import annotations

import asyncio
import sqlite3
from pathlib import Path

from edge_agent.config import load_site_config
from edge_agent.core.alarms import AlarmState
from edge_agent.core.alarms.build import rules_for_site
from edge_agent.core.points import resolve_points
from edge_agent.shell.alarm_stage import AlarmStage
from edge_agent.shell.outbox_open import open_outbox
from specs.catalogue import default_catalogue
from specs.records import Quality, Reading, iso_time
from tests.support.outbox_chain import assert_valid_chain
from tests.support.outbox_site import KEY, SITE, numbered_reading
from tests.support.sealer_rig import running_sealer
from tests.support.sigkill_writer import kill_in_rounds


async def test_seqs_continue_across_reopen_and_the_epoch_stays(tmp_path: Path) -> None:
    path = tmp_path / "outbox.db"
    async with open_outbox(path, SITE, KEY) as outbox:
        epoch = outbox.epoch
        for i in range(3):
            await outbox.seal((numbered_reading(i),), now=1.7e9, clock_synced=True)
    async with open_outbox(path, SITE, KEY) as outbox:
        assert outbox.epoch == epoch
        block = await outbox.seal((numbered_reading(9),), now=1.7e9, clock_synced=True)
        assert block.seq == 4
        stats = await outbox.stats()
        assert (stats.last_seq, stats.undelivered, stats.undelivered_records) == (4, 4, 4)
    assert assert_valid_chain(path) == 4


async def test_a_new_file_gets_a_new_epoch(tmp_path: Path) -> None:
    async with open_outbox(tmp_path / "a.db", SITE, KEY) as first:
        epoch = first.epoch
    async with open_outbox(tmp_path / "b.db", SITE, KEY) as second:
        assert second.epoch != epoch


async def test_release_resend_and_prune(tmp_path: Path) -> None:
    async with open_outbox(tmp_path / "outbox.db", SITE, KEY) as outbox:
        sealed = [
            await outbox.seal((numbered_reading(i),), now=1.7e9, clock_synced=True)
            for i in range(6)
        ]
        stored = await outbox.delivery.get(3)
        assert stored is not None
        assert stored.payload == sealed[2].payload, "resends send the sealed bytes unchanged"
        released = await outbox.delivery.mark_delivered(
            epoch=outbox.epoch, through=2, also=5, now=100.0
        )
        assert released == 3
        assert (
            await outbox.delivery.mark_delivered(epoch="other", through=6, also=None, now=1.0) == 0
        )
        assert [b.seq for b in await outbox.delivery.undelivered(after=0, limit=10)] == [3, 4, 6]
        assert [b.seq for b in await outbox.delivery.undelivered(after=3, limit=1)] == [4]
        assert await outbox.delivery.get(5) is None
        assert await outbox.prune(delivered_before=50.0) == 0
        assert await outbox.prune(delivered_before=200.0) == 3
        stats = await outbox.stats()
        assert (stats.undelivered, stats.delivered, stats.last_seq) == (3, 0, 6)


async def test_sealer_groups_readings_and_flushes_at_shutdown(tmp_path: Path) -> None:
    async with (
        open_outbox(tmp_path / "outbox.db", SITE, KEY) as outbox,
        running_sealer(outbox, flush_interval=3600.0, flush_readings=10) as run,
    ):
        for i in range(25):
            await run.queue.put(numbered_reading(i))
        await run.until_sealed(20)
    assert run.counts == [10, 10, 5], "full blocks at flush_readings, the rest sealed at shutdown"


_WRITER = """
import asyncio, sys
from pathlib import Path
from tests.support.outbox_site import KEY, SITE, numbered_reading
from edge_agent.shell.outbox_open import open_outbox

async def main() -> None:
    async with open_outbox(Path(sys.argv[1]), SITE, KEY) as outbox:
        i = 0
        while True:
            block = await outbox.seal(
                (numbered_reading(i), numbered_reading(i + 1)), now=1.7e9, clock_synced=True
            )
            print("sealed", block.seq, flush=True)
            i += 2

asyncio.run(main())
"""


def test_sigkill_while_sealing_leaves_a_gap_free_verifiable_chain(tmp_path: Path) -> None:
    path = tmp_path / "outbox.db"
    reported = kill_in_rounds(_WRITER, rounds=8, step=7, args=lambda _: (str(path),))
    total = assert_valid_chain(path)
    assert total >= reported, "every seal reported as committed survived SIGKILL"
    assert total <= reported + 1, "at most the one in flight committed unreported"


async def test_acks_during_a_failing_seal_never_commit_half_a_block(tmp_path: Path) -> None:
    async with open_outbox(tmp_path / "outbox.db", SITE, KEY) as outbox:
        for i in range(3):
            await outbox.seal((numbered_reading(i),), now=1.7e9, clock_synced=True)
        # A real SQLite failure in the middle of sealing block 4: after its INSERT, at the
        # chain-state UPDATE (as a full disk or I/O error would strike).
        await outbox._file.db.execute(
            "CREATE TRIGGER fail_seal BEFORE UPDATE ON meta WHEN NEW.value = '4'"
            " BEGIN SELECT RAISE(ABORT, 'injected failure'); END"
        )

        async def acks() -> None:
            for _ in range(200):
                await outbox.delivery.mark_delivered(
                    epoch=outbox.epoch, through=3, also=None, now=1.0
                )
                await asyncio.sleep(0)

        results = await asyncio.gather(
            outbox.seal((numbered_reading(9),), now=1.7e9, clock_synced=True),
            acks(),
            return_exceptions=True,
        )
        assert isinstance(results[0], sqlite3.IntegrityError)
        await outbox._file.db.execute("DROP TRIGGER fail_seal")
        block = await outbox.seal((numbered_reading(10),), now=1.7e9, clock_synced=True)
        assert block.seq == 4, "the failed seal left nothing behind"
    assert assert_valid_chain(tmp_path / "outbox.db") == 4


async def test_a_failed_seal_keeps_its_readings_and_retries(tmp_path: Path) -> None:
    async with open_outbox(tmp_path / "outbox.db", SITE, KEY) as outbox:
        await outbox._file.db.execute(
            "CREATE TRIGGER fail_seal BEFORE INSERT ON blocks"
            " BEGIN SELECT RAISE(ABORT, 'disk full, say'); END"
        )
        async with running_sealer(outbox) as run:
            for i in range(5):
                await run.queue.put(numbered_reading(i))
            await asyncio.sleep(0.3)  # several failed attempts
            assert run.counts == []
            assert not run.task.done(), "a failed seal must not end the sealer"
            await outbox._file.db.execute("DROP TRIGGER fail_seal")
            await run.until_sealed(5)
    assert run.counts == [5]
    assert assert_valid_chain(tmp_path / "outbox.db") == 1


async def test_a_reading_the_alarm_evaluator_cannot_handle_is_still_sealed(
    tmp_path: Path,
) -> None:
    # A slope point has rate rules; a time the wire refuses makes their evaluation raise.
    config = load_site_config(Path(__file__).resolve().parents[2] / "configs" / "slope.yaml")
    stage = AlarmStage(rules_for_site(config, default_catalogue()), AlarmState(namespace="test"))
    point = next(p for p in resolve_points(config) if p.quota == "BP-GX")
    odd = Reading(point.point, "BP-GX", "9999-12-31T23:59:59.000+00:00", 1.0, "mm", Quality.GOOD)
    fine = Reading(point.point, "BP-GX", iso_time(1.7e9), 1.0, "mm", Quality.GOOD)
    async with (
        open_outbox(tmp_path / "outbox.db", SITE, KEY) as outbox,
        running_sealer(outbox, alarms=stage) as run,
    ):
        await run.queue.put(odd)
        await run.queue.put(fine)
        await run.until_sealed(2)  # fails at once if the evaluation error ended the sealer
    assert sum(run.counts) == 2
