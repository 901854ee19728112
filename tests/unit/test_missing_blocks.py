"""What the agent makes of seqs an ACK lists missing (edge_agent.core.missing_blocks)."""

from __future__ import annotations

from edge_agent.core.missing_blocks import (
    CLOCK_ALLOWANCE,
    EXAMINED,
    AckMark,
    MissingVerdict,
    examined,
    heard,
    judge_missing,
    mark_time,
)


def test_the_window_is_the_lowest_missing_seqs_up_to_the_last_sealed() -> None:
    assert examined([(3, 4), (9, 20)], last_seq=12) == ((3, 4), (9, 12))
    # Seqs above the local last seq are not sealed yet: nothing to say of them.
    assert examined([(13, 20)], last_seq=12) == ()
    assert examined([(1, 10_000)], last_seq=50_000) == ((1, EXAMINED),)
    assert examined([(5, 5), (7, 100)], last_seq=500, limit=4) == ((5, 5), (7, 9))


def test_a_seq_held_undelivered_is_left_to_the_send_path() -> None:
    """A block not sent yet, or waiting in the backlog, is not lost: it goes in its turn."""
    verdict = judge_missing([(3, 6)], {3: False, 4: False, 5: False, 6: False})
    assert verdict == MissingVerdict()
    assert not verdict


def test_a_seq_the_outbox_does_not_hold_is_declared_lost_one_range_a_run() -> None:
    held = {3: False, 6: False, 9: False}
    verdict = judge_missing([(3, 9)], held)
    assert verdict.lost == ((4, 5), (7, 8))
    assert verdict.resend == ()


def test_a_seq_a_gap_record_in_the_outbox_declares_already_is_not_declared_again() -> None:
    """A thinned or dropped block's replacement travels at the head: its gap record closes
    the seqs once the collector stores it. Declaring them again would count them twice."""
    verdict = judge_missing([(4, 12)], {}, declared=[(4, 6), (10, None)])
    assert verdict.lost == ((7, 9),)


def test_a_seq_held_as_delivered_that_the_collector_misses_is_sent_again() -> None:
    """One bit of a row's header turns its `delivered_at` NULL into 0 or 1: the row reads as
    delivered, so nothing sent it again, and the collector waited for it for ever."""
    verdict = judge_missing([(2, 4)], {2: True, 3: False, 4: True})
    assert verdict == MissingVerdict(lost=(), resend=(2, 4))
    assert verdict


def test_a_seq_retention_deleted_after_delivery_is_declared_released_not_corrupt() -> None:
    """The collector ACKed it, the outbox deleted it (retention), the collector lost it since
    (its database put back to a backup): the outbox's disk is not to blame."""
    held = {9: True}
    verdict = judge_missing([(4, 12)], held, declared=[(6, 6)], pruned_through=8, acked_through=9)
    assert verdict.released == ((4, 5), (7, 8))
    assert verdict.lost == ((10, 12),)
    assert verdict.resend == (9,)
    assert MissingVerdict(released=((4, 4),))


def test_a_seq_released_on_its_own_ack_and_deleted_is_not_declared_on_an_older_word() -> None:
    """Found by the session's second read: two collectors, a hole at 11 below live blocks 12
    and 14. A stores 14 and its ACK (acked_through 10, seq 14) releases 14; a full outbox
    deletes it; B's ACK, issued before A stored 14, arrives last and lists 14 missing. 14 is
    at the collector: declaring it `released` would put a loss over stored readings. Only
    what an ACK's `acked_through` once covered is known stored, so only that is declared; a
    seq released on its own ACK is left until an ACK covers it or lists it no more."""
    verdict = judge_missing([(11, 11), (14, 14)], {11: False}, pruned_through=14, acked_through=10)
    assert verdict == MissingVerdict()
    # Once an ACK's acked_through covered it, a collector listing it missing lost it.
    later = judge_missing([(11, 11), (14, 14)], {11: False}, pruned_through=14, acked_through=14)
    assert later == MissingVerdict(released=((14, 14),))


def test_an_ack_below_the_highest_acked_through_heard_is_out_of_date() -> None:
    """Two collectors of a shared subscription answer in any order: one that stored less when
    it answered may list a block the other has stored since, and the agent released (and
    perhaps deleted to make room). Nothing is declared on its word."""
    mark = AckMark("e", 5, 100.0, 100.0)
    assert heard(None, "e", 5, 100.0) == (mark, True)
    # Issued before the mark's, or later by less than two collectors' clocks may differ.
    assert heard(mark, "e", 4, 99.0) == (mark, False)
    assert heard(mark, "e", 4, 100.0 + CLOCK_ALLOWANCE) == (mark, False)
    assert heard(mark, "e", 5, 98.0) == (mark, True)
    assert heard(mark, "e", 6, 101.0) == (AckMark("e", 6, 101.0, 101.0), True)
    # Another epoch starts afresh.
    assert heard(mark, "f", 1, 50.0) == (AckMark("f", 1, 50.0, 50.0), True)


def test_a_lower_acked_through_issued_well_after_the_mark_is_a_collector_gone_back() -> None:
    """A collector whose database was restored from a backup says the lower mark for good:
    once an ACK of it is issued more than CLOCK_ALLOWANCE after the latest ACK that said the
    higher one, it is the collector's word, and the new mark."""
    mark = AckMark("e", 40, 100.0, 100.0)
    later = 100.0 + CLOCK_ALLOWANCE + 0.001
    assert heard(mark, "e", 12, later) == (AckMark("e", 12, later, later), True)
    # The mark keeps the latest time said: an ACK at the mark issued later pushes it on.
    pushed = AckMark("e", 40, 130.0, 130.0)
    assert heard(mark, "e", 40, 130.0) == (pushed, True)
    assert heard(pushed, "e", 12, later) == (pushed, False)


def test_a_mark_time_ahead_of_a_synchronized_agent_clock_counts_as_now() -> None:
    """An ACK the agent holds was issued before its clock's now: one a month ahead (a collector
    clock gone wrong) kept as it says made every later ACK below the mark stale, a restored
    collector never answered. A synchronized agent clock bounds it (the mark's `bound`, kept
    beside the time as said); one not synchronized may be the wrong one, and bounds nothing."""
    now = 1_000.0
    month = 30 * 86_400.0
    assert mark_time(now + month, now) == now + CLOCK_ALLOWANCE
    assert mark_time(now + 3.0, now) == now + 3.0  # within what clocks differ by: as said
    assert mark_time(now + month, None) == now + month
    ahead, _ = heard(None, "e", 5, now + month, now)
    assert ahead == AckMark("e", 5, now + month, now + CLOCK_ALLOWANCE)
    # Another collector's stale ACK, issued before the mark's reached the agent: not answered.
    assert heard(ahead, "e", 2, now - 5.0, now + 1.0)[1] is False
    assert heard(ahead, "e", 2, now + 1.0, now + 1.0)[1] is False
    # The collector put back to a backup answers a minute later, its clock right.
    later = now + 60.0
    assert heard(ahead, "e", 2, later, later) == (AckMark("e", 2, later, later), True)
    # A mark read back from the outbox as an earlier version kept it, or kept while the
    # clock was not synchronized, is bounded when it is used: then, all that is known is
    # that it came before now, so the collector's next ACK issued well after is answered.
    kept = AckMark("e", 5, now + month, now + month)
    assert heard(kept, "e", 2, now - 5.0, now) == (ahead, False)
    assert heard(ahead, "e", 2, later, later) == (AckMark("e", 2, later, later), True)
    # Not synchronized: the collector's time stands, as before.
    assert heard(kept, "e", 2, later, None) == (kept, False)


NOW = 1_000.0
FAR = NOW + 30 * 86_400.0  # a collector clock a month ahead


def test_a_stale_ack_of_a_collector_whose_clock_is_far_ahead_is_not_answered() -> None:
    """Scenario A: the mark kept only the agent-bounded time (now + CLOCK_ALLOWANCE), so the
    far-ahead collector's own stale ACK, issued 5 s before the mark's by its clock, looked a
    month later than the mark: answered as a restore, and seqs it held declared `released`."""
    mark, _ = heard(None, "e", 5, FAR, NOW)
    assert heard(mark, "e", 2, FAR - 5.0, NOW + 1.0)[1] is False
    assert heard(mark, "e", 2, FAR + CLOCK_ALLOWANCE, NOW + 60.0)[1] is False


def test_a_restore_is_answered_by_either_clock() -> None:
    """Scenarios B-D: later by the collector's own clock (rule a), or, the agent's clock
    synchronized, believable by it and well after the mark was heard (rule b)."""
    mark, _ = heard(None, "e", 5, FAR, NOW)  # heard at NOW: bounded at NOW + 10
    # B: restored collector, clock right, a minute later by the agent's clock too.
    later = NOW + 60.0
    assert heard(mark, "e", 2, later, later) == (AckMark("e", 2, later, later), True)
    # ... but not before 2 x CLOCK_ALLOWANCE after the mark was heard, nor ahead of the agent.
    assert heard(mark, "e", 2, NOW + 2 * CLOCK_ALLOWANCE, later)[1] is False
    assert heard(mark, "e", 2, later + CLOCK_ALLOWANCE + 1.0, later)[1] is False
    # C: another collector's stale ACK, its clock right, issued before the mark was heard.
    assert heard(mark, "e", 2, NOW - 5.0, later)[1] is False
    # D: restored with the same clock a month ahead: later by its own clock.
    assert heard(mark, "e", 2, FAR + 60.0, later) == (
        AckMark("e", 2, FAR + 60.0, later + CLOCK_ALLOWANCE),
        True,
    )
    # The mark keeps both times, the latest said at the mark.
    assert heard(mark, "e", 5, FAR + 1.0, later) == (
        AckMark("e", 5, FAR + 1.0, later + CLOCK_ALLOWANCE),
        True,
    )


def test_an_unsynchronized_agent_judges_by_the_collectors_clock_alone() -> None:
    """Scenario E: the agent's clock may be the wrong one; the rule before the bound."""
    mark, _ = heard(None, "e", 5, FAR, None)
    assert mark == AckMark("e", 5, FAR, FAR)
    assert heard(mark, "e", 2, NOW + 60.0, None) == (mark, False)
    assert heard(mark, "e", 2, FAR + 60.0, None) == (AckMark("e", 2, FAR + 60.0, FAR + 60.0), True)


def test_a_mark_read_back_without_its_bound_is_bounded_at_use() -> None:
    """Scenario F: a file written before `bound` keeps one time; it serves as both, and the
    bound is clamped at the agent's clock when used (then kept: ACKs 20 s after answer)."""
    kept = AckMark("e", 5, FAR, FAR)
    bounded, answered = heard(kept, "e", 2, NOW - 5.0, NOW)
    assert (bounded, answered) == (AckMark("e", 5, FAR, NOW + CLOCK_ALLOWANCE), False)
    assert heard(bounded, "e", 2, FAR - 5.0, NOW + 1.0)[1] is False
    later = NOW + 60.0
    assert heard(bounded, "e", 2, later, later)[1] is True
