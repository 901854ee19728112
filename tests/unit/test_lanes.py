"""The `lane` user property and the collector's two-lane queue (issue 11.3, G5)."""

from __future__ import annotations

from collector.ingest.lanes import BacklogBudget, Lanes
from specs.lanes import LANE_PROPERTY, Lane, lane_of, lane_properties


def test_only_a_message_marked_backlog_is_backlog() -> None:
    assert lane_of(lane_properties(Lane.BACKLOG)) is Lane.BACKLOG
    assert lane_of(lane_properties(Lane.LIVE)) is Lane.LIVE
    assert lane_of([]) is Lane.LIVE, "agents before `lane` keep today's place"
    assert lane_of([(LANE_PROPERTY, "urgent")]) is Lane.LIVE
    assert lane_of([("alg", "ed25519"), (LANE_PROPERTY, "backlog")]) is Lane.BACKLOG


def test_live_messages_are_taken_before_backlog_in_arrival_order() -> None:
    lanes: Lanes[tuple[str, int]] = Lanes(lambda m: Lane(m[0]), bound=10)
    for message in [("backlog", 1), ("backlog", 2), ("live", 3), ("backlog", 4), ("live", 5)]:
        lanes.put(message)
    assert lanes.take(batch_max=10, backlog_max=2) == [("live", 3), ("live", 5)]
    assert lanes.take(batch_max=10, backlog_max=2) == [("backlog", 1), ("backlog", 2)]
    lanes.put(("live", 6))
    assert lanes.take(batch_max=10, backlog_max=2) == [("live", 6)]
    assert lanes.take(batch_max=10, backlog_max=2) == [("backlog", 4)]
    assert len(lanes) == 0


def test_the_bound_counts_both_lanes() -> None:
    lanes: Lanes[str] = Lanes(Lane, bound=3)
    lanes.put("live")
    lanes.put("backlog")
    assert not lanes.full
    lanes.put("backlog")
    assert lanes.full


def test_a_backlog_batch_is_sized_to_last_its_budget() -> None:
    budget = BacklogBudget(seconds=0.02, most=16)
    assert budget.size() == 1, "nothing known yet: one block"
    for _ in range(30):  # 2 ms a block plus 6 ms a transaction, as on the bench machine
        size = budget.size()
        budget.took(size, 0.006 + 0.002 * size)
    assert budget.size() in (6, 7), "settles where a batch lasts about 20 ms"
    for _ in range(30):  # blocks of a small site: a few are cheap
        budget.took(budget.size(), 0.0001 * budget.size())
    assert budget.size() == 16, "never past `most`"


def test_a_backlog_batch_dearer_than_its_budget_takes_one_block() -> None:
    budget = BacklogBudget(seconds=0.02, most=16)
    for _ in range(10):
        budget.took(budget.size(), 0.05)
    assert budget.size() == 1
