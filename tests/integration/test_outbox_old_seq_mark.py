"""A seq mark written before the checksum is trusted only where the file and journal bear it out.

A mark of the five fields alone (`<epoch> <seq> <count> <t_from> <t_to>`, an older agent's)
cannot vouch for its own digits. One digit damaged on disk was read as it stood: a higher seq
(15 -> 95) proved seqs 16 to 95 lost (a new epoch, an open-ended `outbox_restored` gap, though
nothing was lost), a lower one (15 -> 13) was taken silently and its tally declared. Now such a
mark is trusted only when its epoch is the file's (or one the journal names) and, the file's,
its seq is the file's last (what an older agent's clean stop leaves); otherwise it is what a
mark whose checksum fails is: `seq_mark_unreadable` (error), no mark, nothing declared, and
the opening's first write replaces it by a sound one. A mark that agrees gets its checksum at
that write.
"""

from __future__ import annotations

from pathlib import Path

import pytest
from structlog.testing import capture_logs

from edge_agent.core.losses import LostReadings
from edge_agent.core.seq_mark_record import Mark, read_record
from edge_agent.shell.outbox_open import open_outbox
from edge_agent.shell.outbox_recovery import Healthy, inspect_outbox
from specs.records import GapRecord
from tests.support.outbox_file import committed_records
from tests.support.outbox_site import KEY, SITE, T0, sealed_blocks

pytestmark = pytest.mark.timeout(60)

BLOCKS = 15
TALLY = f"7 {T0!r} {T0 + 6!r}"  # readings a stop on a full disk let go, as an older agent noted


def _mark(path: Path) -> Path:
    return path.with_name(path.name + ".seq")


def _old_mark(path: Path, text: str) -> None:
    """The mark as an agent before the checksum wrote it: the five fields, padded."""
    _mark(path).write_bytes(text.encode("ascii").ljust(160))


def _last(path: Path) -> tuple[str, int]:
    found = inspect_outbox(path)
    assert isinstance(found, Healthy)
    return found.epoch, found.last_seq


def _gaps(path: Path) -> list[GapRecord]:
    return [r for r in committed_records(path) if isinstance(r, GapRecord)]


# One digit of the true seq (15) damaged: below it, and above it.
@pytest.mark.parametrize("damaged", [13, 95], ids=["lower", "higher"])
async def test_an_old_mark_with_a_damaged_digit_is_not_trusted(
    tmp_path: Path, damaged: int
) -> None:
    path = tmp_path / "outbox.db"
    epoch = await sealed_blocks(path, BLOCKS)
    assert _last(path) == (epoch, BLOCKS)
    _old_mark(path, f"{epoch} {damaged} {TALLY}")
    with capture_logs() as logs:
        async with open_outbox(path, SITE, KEY) as outbox:
            assert outbox.epoch == epoch  # higher, before: a new epoch
            assert (await outbox.unsealed()).count == 0  # lower, before: 7, from a damaged record
    unreadable = [e for e in logs if e["event"] == "seq_mark_unreadable"]
    assert [(e["log_level"], e["path"]) for e in unreadable] == [("error", str(_mark(path)))]
    assert f"its seq {damaged} is not the file's last ({BLOCKS})" in unreadable[0]["why"]
    events = [e["event"] for e in logs]
    assert "outbox_rolled_back" not in events
    assert _gaps(path) == []  # higher, before: outbox_restored from seq 16, lost null
    # Replaced at the opening's first write by a sound mark of what the file holds.
    assert read_record(_mark(path).read_bytes()) == Mark(epoch, BLOCKS, LostReadings())
    with capture_logs() as logs:
        assert await sealed_blocks(path, 1, start=T0 + 1000) == epoch
    assert "seq_mark_unreadable" not in [e["event"] for e in logs]
    assert _last(path) == (epoch, BLOCKS + 1)


async def test_an_old_mark_of_another_epoch_no_journal_names_is_not_trusted(
    tmp_path: Path,
) -> None:
    """A damaged character of the epoch: not the file's, nor any the journal names."""
    path = tmp_path / "outbox.db"
    epoch = await sealed_blocks(path, BLOCKS)
    other = ("0" if epoch[0] != "0" else "1") + epoch[1:]
    _old_mark(path, f"{other} {BLOCKS} {TALLY}")
    with capture_logs() as logs:
        async with open_outbox(path, SITE, KEY) as outbox:
            assert outbox.epoch == epoch
            assert (await outbox.unsealed()).count == 0  # before: 7
    whys = [e["why"] for e in logs if e["event"] == "seq_mark_unreadable"]
    assert whys == ["no checksum, and its epoch is neither the file's nor one the journal names"]


@pytest.mark.parametrize(
    "tally", [f"7 {T0 + 6!r} {T0!r}", f"0 {T0!r} {T0!r}", f"7 {T0!r} -"], ids=str.split
)
async def test_an_old_mark_whose_tally_is_none_is_not_trusted(tmp_path: Path, tally: str) -> None:
    path = tmp_path / "outbox.db"
    epoch = await sealed_blocks(path, BLOCKS)
    _old_mark(path, f"{epoch} {BLOCKS} {tally}")
    with capture_logs() as logs:
        async with open_outbox(path, SITE, KEY) as outbox:
            assert (await outbox.unsealed()).count == 0
    whys = [e["why"] for e in logs if e["event"] == "seq_mark_unreadable"]
    assert whys == ["no checksum, and its tally is not one"]


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
    assert "seq_mark_unreadable" not in [e["event"] for e in logs]
