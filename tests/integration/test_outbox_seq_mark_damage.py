"""A seq mark damaged on disk is no proof of a rollback, and one an older agent wrote still is.

The mark (`<outbox>.seq`) carries the CRC32 of its fields. Found damaged (one digit changed,
garbage) a start says so (`seq_mark_unreadable`, an error) and takes it as no mark: the same
epoch goes on and nothing is declared. Before, `<epoch> 10 0` read as `<epoch> 910 0` was taken
as proof that the file lost seals 11 to 910: a new epoch and an open-ended `outbox_restored` gap
(lost null) though nothing was lost; garbage was passed over with no log line. A mark written
before the checksum (five fields) is read as it always was unless its tally is none (what it
costs: tests/integration/test_outbox_old_seq_mark.py), and the next write adds the sum.
"""

from __future__ import annotations

from pathlib import Path

import pytest
from structlog.testing import capture_logs

from edge_agent.core.losses import LostReadings
from edge_agent.core.seq_mark_record import mark_record
from edge_agent.shell.outbox_open import open_outbox
from specs.records import GapReason, GapRecord
from tests.support.outbox_file import committed_records
from tests.support.outbox_site import KEY, SITE, T0, sealed_blocks

pytestmark = pytest.mark.timeout(60)


def _gaps(path: Path) -> list[GapRecord]:
    return [r for r in committed_records(path) if isinstance(r, GapRecord)]


def _mark(path: Path) -> Path:
    return path.with_name(path.name + ".seq")


def _one_digit_more(path: Path) -> None:
    """`<epoch> 10 ...` made `<epoch> 910 ...` (the record's length kept)."""
    raw = bytearray(_mark(path).read_bytes())
    at = raw.index(b" ") + 1
    raw[at:at] = b"9"
    _mark(path).write_bytes(bytes(raw[:160]))


def _garbage(path: Path) -> None:
    _mark(path).write_bytes(b"\xff\x00 not a mark \x07".ljust(160, b"\xfe"))


@pytest.mark.parametrize("damage", [_one_digit_more, _garbage], ids=["digit", "garbage"])
async def test_a_damaged_mark_is_said_and_proves_no_rollback(
    tmp_path: Path, damage: object
) -> None:
    path = tmp_path / "outbox.db"
    epoch = await sealed_blocks(path, 10)
    assert callable(damage)
    damage(path)
    with capture_logs() as logs:
        assert await sealed_blocks(path, 1, start=T0 + 1000) == epoch  # before: a new epoch
    events = [e["event"] for e in logs]
    assert "seq_mark_unreadable" in events
    assert next(e["log_level"] for e in logs if e["event"] == "seq_mark_unreadable") == "error"
    assert "outbox_rolled_back" not in events
    assert _gaps(path) == []  # before: outbox_restored from seq 11, lost null
    # The next write leaves a sound mark: the start after finds nothing wrong.
    with capture_logs() as logs:
        assert await sealed_blocks(path, 1, start=T0 + 2000) == epoch
    assert "seq_mark_unreadable" not in [e["event"] for e in logs]


async def test_a_mark_written_before_the_checksum_is_still_read(tmp_path: Path) -> None:
    """An upgraded site's mark, at the file's last seq: its tally is still declared."""
    path = tmp_path / "outbox.db"
    epoch = await sealed_blocks(path, 10)
    _mark(path).write_bytes(f"{epoch} 10 7 {T0!r} {T0 + 6!r}".encode().ljust(160))
    async with open_outbox(path, SITE, KEY) as outbox:
        assert outbox.epoch == epoch
        assert (await outbox.unsealed()).count == 7  # the sealer names them in its first block
    assert await sealed_blocks(path, 1, start=T0 + 1000) == epoch
    assert len(_mark(path).read_bytes().split()) == 6  # written again with its checksum
    # A checksummed mark proves a rollback (one without it too, with a warning:
    # tests/integration/test_outbox_old_seq_mark.py).
    _mark(path).write_bytes(mark_record(epoch, 20, LostReadings()))  # the file lost 12..20
    assert await sealed_blocks(path, 1, start=T0 + 2000) != epoch
    assert GapReason.OUTBOX_RESTORED in [g.reason for g in _gaps(path)]
