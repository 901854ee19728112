"""first_failure: a child's error ends the rest; the caller's cancellation is never swallowed."""

from __future__ import annotations

import asyncio

import pytest

from edge_agent.shell.first_failure import first_failure


class LinkLostError(Exception):
    pass


async def _forever() -> None:
    await asyncio.Event().wait()


async def _fails_when(go: asyncio.Event) -> None:
    await go.wait()
    raise LinkLostError


async def test_a_failing_child_cancels_the_others_and_its_error_is_raised() -> None:
    go = asyncio.Event()
    go.set()
    with pytest.raises(LinkLostError):
        await first_failure(("fails", _fails_when(go)), ("waits", _forever()))
    assert [t for t in asyncio.all_tasks() if t.get_name() == "waits"] == []


async def test_a_cancel_that_meets_a_failing_child_still_cancels_the_caller() -> None:
    """The defect: with TaskGroup the error won and the cancelled caller kept running."""
    go = asyncio.Event()
    caller = asyncio.create_task(first_failure(("fails", _fails_when(go)), ("waits", _forever())))
    await asyncio.sleep(0)  # children started and waiting
    go.set()  # the child fails in the next turn of the loop...
    caller.cancel()  # ...the same turn the caller is cancelled
    with pytest.raises(asyncio.CancelledError):
        await caller
    assert caller.cancelled()
