"""An ACK releases blocks only when it agrees with the local chain; else it proves a rollback."""

from __future__ import annotations

from edge_agent.core.ack_check import EpochLeft, Release, Rollback, how_epoch_left, judge_ack
from specs.ack import Ack

GATEWAY = "91360100MA35GW001H-GW01"


def _ack(
    through: int, *, seq: int | None = None, acked_hash: str | None = None, conflict: bool = False
) -> Ack:
    return Ack(
        GATEWAY, "e1", through, (), seq, "2026-12-05T00:00:00.000+00:00", acked_hash, conflict
    )


def test_an_ack_that_agrees_releases_through_its_mark_and_its_own_seq() -> None:
    verdict = judge_ack(_ack(5, seq=8, acked_hash="h5"), last_seq=9, local_hash="h5")
    assert verdict == Release(through=5, also=8)


def test_a_conflict_releases_nothing() -> None:
    assert isinstance(judge_ack(_ack(5, conflict=True), last_seq=9, local_hash=None), Rollback)


def test_a_collector_ahead_of_the_local_chain_proves_a_rollback() -> None:
    verdict = judge_ack(_ack(12, seq=12), last_seq=9, local_hash=None)
    assert isinstance(verdict, Rollback)
    assert "12" in verdict.why


def test_another_hash_at_the_acked_seq_proves_a_rollback() -> None:
    verdict = judge_ack(_ack(5, acked_hash="theirs"), last_seq=9, local_hash="ours")
    assert isinstance(verdict, Rollback)


def test_a_pruned_local_block_cannot_be_compared_and_is_not_held_against_the_ack() -> None:
    assert judge_ack(_ack(5, acked_hash="theirs"), last_seq=9, local_hash=None) == Release(5, None)


def test_an_ack_from_an_older_collector_without_a_hash_still_releases() -> None:
    assert judge_ack(_ack(5), last_seq=5, local_hash="ours") == Release(5, None)


def test_the_epoch_journal_places_the_epoch_a_file_left_an_acks_for() -> None:
    journal = ("e0", "e1", "e2")
    assert how_epoch_left(journal, "e2", "e1") is EpochLeft.FOR_A_LATER  # another's start
    assert how_epoch_left(journal, "e0", "e1") is EpochLeft.PUT_BACK  # an older copy
    # A start whose journal write failed, or the ACK's epoch let go by the 16-entry cap.
    assert how_epoch_left(journal, "e3", "e1") is EpochLeft.UNPLACED
    assert how_epoch_left(journal[1:], "e1", "e0") is EpochLeft.UNPLACED
    assert how_epoch_left((), "e1", "e0") is EpochLeft.UNPLACED
