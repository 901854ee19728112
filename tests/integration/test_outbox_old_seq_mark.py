"""A seq mark written before the checksum: what its digits can cost, and what a start does.

A mark of the five fields alone (`<epoch> <seq> <count> <t_from> <t_to>`, as an agent before
the checksum, 1012478, wrote it) cannot vouch for its digits. The safe failure is the one that
never seals a seq twice and never drops a loss without a word:
- its seq below the file's last (a write the older agent gave up while `edge-agent backfill`
  held the mark, or one digit damaged lower) proves nothing either way: taken, its tally
  declared. 16e3b1c took such a mark for a damaged one: the 7 readings a full-disk stop let go
  were never declared (tally 0, `seq_mark_unreadable`).
- its seq above the file's last (the file restored from a copy, or one digit damaged higher)
  proves a rollback as before 16e3b1c, with `seq_mark_unchecked_rollback` (warning) saying it
  may be a damaged digit and the loss a false alarm. 16e3b1c took it for damage: the restored
  file's lost seqs were sealed again in the same epoch (forks at the collector).
- its epoch neither the file's nor one the journal names: its seq proves nothing, its tally is
  declared (as before 16e3b1c; 16e3b1c threw it away).
- a tally no writer keeps (backwards, one end, a span with nothing counted): a damaged mark,
  `seq_mark_unreadable` with the count and span thrown away, so they can be declared by hand.
"""

from __future__ import annotations

import shutil
from collections.abc import MutableMapping
from contextlib import ExitStack
from pathlib import Path
from typing import Any

import pytest
from structlog.testing import capture_logs

from edge_agent.core.losses import LostReadings
from edge_agent.core.seq_mark_record import Mark, mark_record, read_record
from edge_agent.shell import outbox_open
from edge_agent.shell.outbox_open import open_outbox
from edge_agent.shell.outbox_recovery import Healthy, inspect_outbox
from edge_agent.shell.outbox_seq_mark import SeqMark
from specs.records import GapReason, GapRecord
from tests.support.flock_waits import locks_on, until
from tests.support.held_process import HOLD_FLOCK, held_process
from tests.support.outbox_file import committed_records
from tests.support.outbox_site import KEY, SITE, T0, sealed_blocks

pytestmark = pytest.mark.timeout(60)

BLOCKS = 15
TALLY = f"7 {T0!r} {T0 + 6!r}"  # readings a stop on a full disk let go, as an older agent noted


def _mark(path: Path) -> Path:
    return path.with_name(path.name + ".seq")


def _old_mark(path: Path, text: str) -> None:
    """The mark as an agent before the checksum wrote it (1012478's `_record`): five fields,
    padded to 160 bytes."""
    _mark(path).write_bytes(text.encode("ascii").ljust(160))


def _last(path: Path) -> tuple[str, int]:
    found = inspect_outbox(path)
    assert isinstance(found, Healthy)
    return found.epoch, found.last_seq


def _gaps(path: Path) -> list[GapRecord]:
    return [r for r in committed_records(path) if isinstance(r, GapRecord)]


def _events(logs: list[MutableMapping[str, Any]], event: str) -> list[MutableMapping[str, Any]]:
    return [e for e in logs if e["event"] == event]


# 10: the older agent's writes given up while a backfill held the mark (5 seals not noted),
# then its full-disk stop noted 7 readings let go; 13: one digit of the true 15 damaged lower.
@pytest.mark.parametrize("noted", [10, 13])
async def test_an_old_mark_below_the_file_is_taken_and_its_tally_declared(
    tmp_path: Path, noted: int
) -> None:
    path = tmp_path / "outbox.db"
    epoch = await sealed_blocks(path, BLOCKS)
    _old_mark(path, f"{epoch} {noted} {TALLY}")
    with capture_logs() as logs:
        async with open_outbox(path, SITE, KEY) as outbox:
            assert outbox.epoch == epoch
            assert (await outbox.unsealed()).count == 7  # 16e3b1c: 0, never declared
    events = [e["event"] for e in logs]
    assert "seq_mark_unreadable" not in events  # 16e3b1c: an error, the tally thrown away
    assert "outbox_rolled_back" not in events
    assert _gaps(path) == []
    # Checksummed at the opening's first write, the tally kept (a change to the tally keeps the
    # seq noted); the next seal notes the file's newest.
    tally = LostReadings(7, T0, T0 + 6)
    assert read_record(_mark(path).read_bytes()) == Mark(epoch, noted, tally)
    assert await sealed_blocks(path, 1, start=T0 + 1000) == epoch
    assert read_record(_mark(path).read_bytes()) == Mark(epoch, BLOCKS + 1, tally)


async def test_an_old_mark_above_a_file_restored_from_a_copy_proves_the_rollback(
    tmp_path: Path,
) -> None:
    """A clean stop on the older agent (mark at 15), then the file put back from a copy taken at
    10. 16e3b1c: same epoch, seq 11 sealed again over the one the collector may hold."""
    path = tmp_path / "outbox.db"
    copy = tmp_path / "copy"
    copy.mkdir()
    epoch = await sealed_blocks(path, 10)
    files = ("outbox.db", "outbox.db-wal", "outbox.db-shm")
    for name in files:
        if (tmp_path / name).exists():
            shutil.copy(tmp_path / name, copy / name)
    assert await sealed_blocks(path, BLOCKS - 10, start=T0 + 500) == epoch
    _old_mark(path, f"{epoch} {BLOCKS} 0 - -")
    for name in files:
        (tmp_path / name).unlink(missing_ok=True)
        if (copy / name).exists():
            shutil.copy(copy / name, tmp_path / name)
    assert _last(path) == (epoch, 10)
    with capture_logs() as logs:
        async with open_outbox(path, SITE, KEY) as outbox:
            assert outbox.epoch != epoch
    (rolled,) = _events(logs, "outbox_rolled_back")
    assert (rolled["sealed_through"], rolled["lost_from"]) == (BLOCKS, 11)
    (unchecked,) = _events(logs, "seq_mark_unchecked_rollback")
    assert unchecked["log_level"] == "warning"
    assert unchecked["why"] == (
        f"no checksum, and it says epoch {epoch} sealed through seq {BLOCKS}, the file's last"
        f" is 10: seqs 11 to {BLOCKS} are declared lost; if the file was not restored from a"
        " copy, the mark may be damaged and the loss a false alarm (seqs above 10 that the"
        " collector stored would prove it real)"
    )
    assert "seq_mark_unreadable" not in [e["event"] for e in logs]
    restored = [g for g in _gaps(path) if g.reason is GapReason.OUTBOX_RESTORED]
    # Seqs 1 to 10 (never delivered) sealed again in the new epoch; 11 on lost, unknown.
    assert [(g.epoch, g.from_seq, g.to_seq, g.lost) for g in restored] == [
        (epoch, 1, 10, 0),
        (epoch, 11, None, None),
    ]


async def test_an_old_mark_with_a_digit_damaged_higher_proves_a_rollback_with_a_warning(
    tmp_path: Path,
) -> None:
    """Not told from a restore: a false loss declared (the collector's stored seqs show it) loses
    nothing, a restore taken for damage seals seqs twice."""
    path = tmp_path / "outbox.db"
    epoch = await sealed_blocks(path, BLOCKS)
    _old_mark(path, f"{epoch} 95 {TALLY}")
    with capture_logs() as logs:
        async with open_outbox(path, SITE, KEY) as outbox:
            assert outbox.epoch != epoch
            assert (await outbox.unsealed()).count == 7
    (unchecked,) = _events(logs, "seq_mark_unchecked_rollback")
    assert "no checksum" in str(unchecked["why"])
    assert "damaged" in str(unchecked["why"])
    assert [e["lost_from"] for e in _events(logs, "outbox_rolled_back")] == [BLOCKS + 1]
    assert "seq_mark_unreadable" not in [e["event"] for e in logs]


async def test_an_old_mark_of_an_epoch_no_journal_names_has_its_tally_declared(
    tmp_path: Path,
) -> None:
    """A damaged character of the epoch, or a journal cut short: the seq proves nothing either
    way (only the file's epoch is compared), the tally is declared (16e3b1c: thrown away)."""
    path = tmp_path / "outbox.db"
    epoch = await sealed_blocks(path, BLOCKS)
    other = ("0" if epoch[0] != "0" else "1") + epoch[1:]
    _old_mark(path, f"{other} {BLOCKS + 80} {TALLY}")
    with capture_logs() as logs:
        async with open_outbox(path, SITE, KEY) as outbox:
            assert outbox.epoch == epoch
            assert (await outbox.unsealed()).count == 7
    events = [e["event"] for e in logs]
    assert "seq_mark_unreadable" not in events
    assert "outbox_rolled_back" not in events


BAD_TALLIES = [f"7 {T0 + 6!r} {T0!r}", f"0 {T0!r} {T0!r}", f"7 {T0!r} -"]


@pytest.mark.parametrize("tally", BAD_TALLIES, ids=str.split)
async def test_an_old_mark_whose_tally_is_none_is_not_trusted(tmp_path: Path, tally: str) -> None:
    path = tmp_path / "outbox.db"
    epoch = await sealed_blocks(path, BLOCKS)
    _old_mark(path, f"{epoch} {BLOCKS} {tally}")
    with capture_logs() as logs:
        async with open_outbox(path, SITE, KEY) as outbox:
            assert (await outbox.unsealed()).count == 0
    (unreadable,) = _events(logs, "seq_mark_unreadable")
    assert unreadable["why"] == "no checksum, and its tally is not one"
    # What was thrown away, for a loss to be declared by hand.
    count, t_from, t_to = tally.split()
    assert (unreadable["count"], unreadable["t_from"], unreadable["t_to"]) == (
        int(count),
        float(t_from),
        None if t_to == "-" else float(t_to),
    )


async def test_a_rejected_old_mark_is_no_mark_while_the_record_stays(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The opening's first write given up (another process held the mark): the record still says
    the rejected mark, and a later read takes it as none (`SeqMark._read`), not as 7 let go."""
    monkeypatch.setattr(outbox_open, "OUTBOX_SEQ_MARK_TIMEOUT", 0.0)
    path = tmp_path / "outbox.db"
    epoch = await sealed_blocks(path, BLOCKS)
    rejected = f"{epoch} {BLOCKS} {BAD_TALLIES[0]}"
    _old_mark(path, rejected)
    vouched = SeqMark.vouched
    with ExitStack() as holding:

        def vouched_then_held(
            mark: SeqMark, noted: Mark, file_at: tuple[str, int] | None
        ) -> Mark | None:
            """Vouched for, then the mark held until the test lets it go."""
            holding.enter_context(held_process(HOLD_FLOCK, str(_mark(path))))
            return vouched(mark, noted, file_at)

        monkeypatch.setattr(SeqMark, "vouched", vouched_then_held)
        async with open_outbox(path, SITE, KEY) as outbox:
            holding.close()
            await until(lambda: not locks_on(_mark(path)), "the mark's flock never let go")
            assert _mark(path).read_bytes().decode().split() == rejected.split()
            assert (await outbox.unsealed()).count == 0


async def test_a_rejected_old_mark_is_not_the_tally_when_the_mark_cannot_be_read(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Held by another process after the opening, the mark is not read: the outbox says the
    tally the opening took (`open_outbox`), none, not the rejected mark's 7."""
    monkeypatch.setattr(outbox_open, "OUTBOX_SEQ_MARK_TIMEOUT", 0.0)
    path = tmp_path / "outbox.db"
    epoch = await sealed_blocks(path, BLOCKS)
    _old_mark(path, f"{epoch} {BLOCKS} {BAD_TALLIES[0]}")
    async with open_outbox(path, SITE, KEY) as outbox:
        with held_process(HOLD_FLOCK, str(_mark(path))):
            assert (await outbox.unsealed()).count == 0


async def test_a_checksummed_mark_costs_the_opening_no_journal_read(tmp_path: Path) -> None:
    """Only a mark without a checksum is vouched for (16e3b1c read the journal for every one:
    one more `epoch_journal_unreadable` per opening with a damaged journal)."""
    path = tmp_path / "outbox.db"
    epoch = await sealed_blocks(path, BLOCKS)
    journal = path.with_name(path.name + ".epochs")
    warned = []
    for record in (mark_record(epoch, BLOCKS, LostReadings()), None):
        _mark(path).unlink(missing_ok=True)
        if record is not None:
            _mark(path).write_bytes(record)
        journal.write_text("{")  # unreadable at every read
        with capture_logs() as logs:
            async with open_outbox(path, SITE, KEY):
                pass
        warned.append(len(_events(logs, "epoch_journal_unreadable")))
    with_mark, without = warned
    assert without > 0
    assert with_mark == without


async def test_an_old_mark_the_file_bears_out_is_trusted_and_checksummed(tmp_path: Path) -> None:
    path = tmp_path / "outbox.db"
    epoch = await sealed_blocks(path, BLOCKS)
    _old_mark(path, f"{epoch} {BLOCKS} {TALLY}")
    with capture_logs() as logs:
        async with open_outbox(path, SITE, KEY) as outbox:
            assert outbox.epoch == epoch
            assert (await outbox.unsealed()).count == 7  # the sealer names them in its first block
            # Rewritten at the opening's first write, checksummed, its tally kept.
            assert len(_mark(path).read_bytes().split()) == 6
            noted = read_record(_mark(path).read_bytes())
            assert isinstance(noted, Mark)
            assert (noted.epoch, noted.seq, noted.unsealed.count) == (epoch, BLOCKS, 7)
    events = [e["event"] for e in logs]
    assert "seq_mark_unreadable" not in events
    assert "seq_mark_unchecked_rollback" not in events
