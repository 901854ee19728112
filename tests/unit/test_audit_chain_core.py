"""The pure audit chain: aggregation stays bounded, and any single change is found."""

from __future__ import annotations

from collections import Counter
from dataclasses import replace

from hypothesis import given, settings
from hypothesis import strategies as st

from collector.audit.chain import (
    MAX_SOURCES_PER_MINUTE,
    MINUTE,
    OVERFLOW_SOURCE,
    Action,
    ActionEntry,
    AuditRow,
    ChainHead,
    ChainVerifier,
    action_row,
    minute_of,
    prune_head,
    rejection_rows,
    seal,
)
from collector.model import AuditEntry, Reason

T0 = 1_780_000_020.0
REASONS = (Reason.MALFORMED, Reason.BAD_SIGNATURE, Reason.UNKNOWN_KEY)

entries = st.lists(
    st.builds(
        AuditEntry,
        at=st.floats(T0, T0 + 5 * MINUTE),
        gateway=st.one_of(st.none(), st.integers(0, 200).map(lambda n: f"gw-{n}")),
        topic=st.just("gz/1/t"),
        reason=st.sampled_from(REASONS),
        detail=st.text(max_size=5),
        payload_hash=st.just("h"),
    ),
    max_size=400,
)


REGISTERED = frozenset(f"gw-{n}" for n in range(0, 200, 4))  # 50 of the 201 names


@settings(max_examples=60, deadline=None)
@given(first=entries, second=entries)
def test_rows_stay_bounded_per_reason_and_minute_and_count_every_message(
    first: list[AuditEntry], second: list[AuditEntry]
) -> None:
    """Two batches, the second upserting into the first's open rows, as the storage does.

    Registered gateways keep rows of their own; other sources get at most 32 per reason and
    minute, then share the overflow row.
    """
    stored = {(r.source, r.reason, r.minute): r for r in rejection_rows(first, (), REGISTERED)}
    held = [(source, reason, minute) for source, reason, minute in stored if minute is not None]
    for row in rejection_rows(second, held, REGISTERED):
        key = (row.source, row.reason, row.minute)
        before = stored.get(key)
        stored[key] = row if before is None else replace(before, count=before.count + row.count)
    strangers = Counter(
        (reason, minute) for source, reason, minute in stored if source not in REGISTERED
    )
    assert max(strangers.values(), default=0) <= MAX_SOURCES_PER_MINUTE + 1
    assert sum(row.count for row in stored.values()) == len(first) + len(second)
    assert all(r.gateway is None for r in stored.values() if r.source == OVERFLOW_SOURCE)
    registered_seen = {
        (e.gateway, e.reason.value, minute_of(e.at))
        for e in (*first, *second)
        if e.gateway in REGISTERED
    }
    assert registered_seen <= set(stored)  # never folded into the overflow row


def _rows(count: int) -> list[AuditRow]:
    return [
        action_row(ActionEntry(T0 + n, Action.TOKEN_ADD, "cli:t", f"action {n}"))
        for n in range(count)
    ]


def _check(head: ChainHead | None, rows: list[AuditRow]) -> list[int]:
    verifier = ChainVerifier(head)
    verifier.feed(rows)
    return [problem.seq for problem in verifier.finish(open_rows=0).broken]


@given(
    size=st.integers(1, 12),
    data=st.data(),
    field=st.sampled_from(["count", "detail", "at", "source", "reason", "prev"]),
)
def test_changing_any_field_of_any_row_is_found_at_that_row(
    size: int, data: st.DataObject, field: str
) -> None:
    head, sealed = seal(ChainHead(), _rows(size))
    assert _check(head, sealed) == []
    index = data.draw(st.integers(0, size - 1))
    row = sealed[index]
    changed = {
        "count": {"count": row.count + 1},
        "detail": {"detail": row.detail + "!"},
        "at": {"at": row.at + 1},
        "source": {"source": "cli:someone-else"},
        "reason": {"reason": "gateway_add"},
        "prev": {"prev": "0" * 63 + "1"},
    }[field]
    sealed[index] = replace(row, **changed)  # type: ignore[arg-type]
    assert _check(head, sealed)[0] == index + 1


@given(size=st.integers(1, 12), data=st.data())
def test_deleting_any_row_is_found_the_newest_by_the_head(size: int, data: st.DataObject) -> None:
    head, sealed = seal(ChainHead(), _rows(size))
    index = data.draw(st.integers(0, size - 1))
    del sealed[index]
    assert _check(head, sealed)  # something is reported


def test_a_pruned_prefix_moves_the_base_and_the_rest_still_verifies() -> None:
    head, sealed = seal(ChainHead(), _rows(5))
    moved = prune_head(head, sealed[2])
    assert (moved.base_seq, moved.head_seq) == (3, 5)
    assert _check(moved, sealed[2:]) == []
    assert _check(head, sealed[2:]) == [3]  # without moving the base, a hole
    emptied = prune_head(head, None)
    assert _check(emptied, []) == []
    assert (emptied.base_seq, emptied.base_prev) == (6, head.head_hash)


def test_a_chain_sealed_in_two_steps_equals_one_sealed_at_once() -> None:
    rows = _rows(6)
    middle, first = seal(ChainHead(), rows[:2])
    end, rest = seal(middle, rows[2:])
    assert (end, first + rest) == seal(ChainHead(), rows)
