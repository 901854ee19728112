"""What the epoch journal keeps owed once the first block carrying it has been delivered.

The journal entry of an epoch start keeps the gap records its first block carries (`owed`),
declared again by a later start that cannot find that block committed (the file lost or
corrupt). Once a verified ACK has released that block the collector holds them: declared
again, each costs a `duplicate` audit row there (older collectors list them twice), and
carried into every later entry they piled up with each loss (a flaky SD card). Real outbox
files, released by the ACK handler's own call (`Delivery.mark_delivered`).
"""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path
from typing import Final

import pytest
from structlog.testing import capture_logs

from edge_agent.shell.outbox_open import open_outbox
from edge_agent.shell.outbox_sidecars import EpochJournal
from specs.records import GapReason
from tests.support.held_process import HOLD_FLOCK, held_process
from tests.support.outbox_budget import minute_block
from tests.support.outbox_file import committed_gap_records
from tests.support.outbox_site import KEY, SITE, T0
from tests.support.sqlite_files import remove_with_log

pytestmark = pytest.mark.timeout(120)

_LOSSES: Final = 5
# ACKs after seq 1, each delivering the block just sealed.
_ACKS: Final = 10


def _garbage(path: Path) -> None:
    remove_with_log(path)
    path.write_bytes(b"\xde\xad\xbe\xef" * 16 * 1024)


async def _run(path: Path, index: int, *, delivered: bool) -> str:
    """A start that seals a block, then (`delivered`) takes an ACK of all it holds; its epoch."""
    async with open_outbox(path, SITE, KEY) as outbox:
        await outbox.seal(minute_block(index), now=T0 + index, clock_synced=True)
        if delivered:
            last_seq, _ = await outbox.delivery.chain_position(1)
            await outbox.delivery.mark_delivered(
                epoch=outbox.epoch, through=last_seq, also=None, now=T0 + index + 1
            )
        return outbox.epoch


async def test_owed_records_delivered_are_not_carried_on(tmp_path: Path) -> None:
    path = tmp_path / "outbox.db"
    losses: tuple[tuple[Callable[[Path], None], GapReason], ...] = (
        (remove_with_log, GapReason.OUTBOX_RESTORED),
        (_garbage, GapReason.OUTBOX_CORRUPT),
    )
    epoch = await _run(path, 0, delivered=True)
    carried: list[int] = []
    owed: list[int] = []
    rounds = []
    for index in range(1, _LOSSES + 1):
        lose, reason = losses[index % 2]
        lose(path)
        previous, epoch = epoch, await _run(path, index, delivered=True)
        # The new file holds its epoch's blocks only: its first carries these.
        declared = committed_gap_records(path)
        carried.append(len(declared))
        owed.append(len(EpochJournal.beside(path).owed()))
        found = [(g.reason, g.epoch, g.from_seq) for g in declared]
        rounds.append((found, [(reason, previous, 1)]))
    # Before: the first blocks carried [1, 2, 3, 4, 5] records, the journal kept as many owed
    # once each was delivered (its size 261 -> 1134 bytes).
    assert (carried, owed) == ([1] * _LOSSES, [0] * _LOSSES)
    assert all(found == expected for found, expected in rounds)

    # Not delivered, the first block's records are still owed: carried by the next start.
    remove_with_log(path)
    undelivered = await _run(path, _LOSSES + 1, delivered=False)
    remove_with_log(path)
    await _run(path, _LOSSES + 2, delivered=False)
    named = [(g.reason, g.epoch) for g in committed_gap_records(path)]
    assert sorted(named, key=str) == sorted(
        [(GapReason.OUTBOX_RESTORED, undelivered), (GapReason.OUTBOX_RESTORED, epoch)], key=str
    )
    assert len(json.loads(path.with_name(path.name + ".epochs").read_text())["owed"]) == 2


async def test_owed_records_split_off_seq_1_stay_owed_until_their_part_is_delivered(
    tmp_path: Path,
) -> None:
    """Seq 1 split as too_large: an ACK through the too_large record does not deliver them.

    The collector counts seq 1 covered once the too_large record at seq 2 declares it; the
    parts carrying the owed records (3, 4) are still in flight. The file then lost: before,
    the journal had dropped them and the next start declared its own epoch only.
    """
    path = tmp_path / "outbox.db"
    async with open_outbox(path, SITE, KEY) as outbox:
        first_epoch = outbox.epoch
        await outbox.seal(minute_block(0), now=T0, clock_synced=True)
    remove_with_log(path)
    async with open_outbox(path, SITE, KEY) as outbox:
        second_epoch = outbox.epoch
    remove_with_log(path)
    async with open_outbox(path, SITE, KEY) as outbox:
        epoch = outbox.epoch
        first = await outbox.delivery.get(1)
        assert first is not None
        assert await outbox.delivery.seal_smaller(first, 2, now=T0 + 10, clock_synced=True)
        await outbox.delivery.mark_delivered(epoch=epoch, through=2, also=None, now=T0 + 11)
        assert await outbox.delivery.get(3) is not None
        owed_after_ack = len(EpochJournal.beside(path).owed())
    remove_with_log(path)
    async with open_outbox(path, SITE, KEY):
        pass
    named = sorted((g.epoch or "", g.from_seq) for g in committed_gap_records(path))
    # Before: 0 owed after the ACK, the next start declared [epoch from 1] only.
    assert owed_after_ack == 2
    assert named == sorted([(epoch, 1), (second_epoch, 1), (first_epoch, 1)])


async def test_owed_records_are_kept_while_another_process_holds_the_epoch_lock(
    tmp_path: Path,
) -> None:
    path = tmp_path / "outbox.db"
    journal_path = path.with_name(path.name + ".epochs")
    await _run(path, 0, delivered=True)
    remove_with_log(path)
    async with open_outbox(path, SITE, KEY) as outbox:
        await outbox.seal(minute_block(1), now=T0 + 1, clock_synced=True)
        last_seq, _ = await outbox.delivery.chain_position(1)
        before = journal_path.read_bytes()
        assert len(EpochJournal.beside(path).owed()) == 1
        lock = str(path.with_name(path.name + ".epoch-lock"))
        with held_process(HOLD_FLOCK, lock), capture_logs() as logs:
            # The ACK releasing seq 1 while the other process holds the lock: it may be
            # between its read of the journal and its rename; the handler does not wait.
            await outbox.delivery.mark_delivered(
                epoch=outbox.epoch, through=last_seq, also=None, now=T0 + 2
            )
            during = journal_path.read_bytes()
        # Before: the journal rewritten under the other process (owed 1 -> 0).
        assert during == before
        assert [e["epoch"] for e in logs if e["event"] == "epoch_journal_delivery_deferred"] == [
            outbox.epoch
        ]
        # The lock free, the next ACK rewrites it.
        await outbox.delivery.mark_delivered(
            epoch=outbox.epoch, through=last_seq, also=None, now=T0 + 3
        )
        assert EpochJournal.beside(path).owed() == []


async def test_a_lock_file_that_cannot_be_made_is_tried_once_an_epoch(tmp_path: Path) -> None:
    """`<outbox>.epoch-lock` cannot be opened: the owed records stay, asked about once.

    A root-owned 0600 lock file left by `sudo edge-agent backfill`, or a read-only folder: the
    rewrite cannot be made safe (that very backfill may journal an epoch meanwhile), and every
    ACK after seq 1 tried it again, for as long as seq 1's row is kept (retention). Here the
    lock file is a link into a folder that is not there: the open fails as it would then.
    """
    path = tmp_path / "outbox.db"
    await _run(path, 0, delivered=True)
    remove_with_log(path)
    lock = path.with_name(path.name + ".epoch-lock")
    lock.unlink()
    lock.symlink_to(tmp_path / "no-such-folder" / "lock")
    with capture_logs() as logs:
        async with open_outbox(path, SITE, KEY) as outbox:
            for index in range(1, _ACKS + 1):
                await outbox.seal(minute_block(index), now=T0 + index, clock_synced=True)
                last_seq, _ = await outbox.delivery.chain_position(1)
                await outbox.delivery.mark_delivered(
                    epoch=outbox.epoch, through=last_seq, also=None, now=T0 + index
                )
    deferred = [e for e in logs if e["event"] == "epoch_journal_delivery_deferred"]
    not_made = [e for e in logs if e["event"] == "outbox_epoch_lock_not_made"]
    # Before: 10 and 11 (the opening's, then one an ACK), the owed record kept (1).
    assert (len(deferred), len(not_made)) == (1, 2)
    assert len(EpochJournal.beside(path).owed()) == 1  # kept: declared again at worst
