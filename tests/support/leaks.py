"""A test that leaves a task or a thread running has a defect: find it at its own test.

Left alone, a forgotten task is cancelled silently when pytest-asyncio closes the loop, and a
forgotten thread keeps a port, a file or a database connection open into the next test, where
it shows up as a flake far from its cause. `no_leaks` (autouse, in tests/conftest.py) fails the
test that left one, naming it.
"""

from __future__ import annotations

import asyncio
import threading
from collections.abc import AsyncIterator, Iterator

import pytest
from pytest_asyncio.plugin import is_async_test

# A thread that was asked to stop gets this long to finish (a worker closing its database).
THREAD_GRACE = 5.0
# Worker threads of the loop's pools belong to the loop, which ends them when it closes:
# asyncio's default executor, and AnyIO's (starlette runs sync work there; an idle worker
# lives on for 10 s by design).
_LOOP_OWNED_THREAD_PREFIXES = ("asyncio_", "AnyIO worker thread")
# Tasks a library starts once per event loop and keeps for the loop's life, by design (not a
# test's leak): sse-starlette's shutdown watcher, started by the first event stream served.
_LOOP_OWNED_TASKS = frozenset({("sse_starlette.sse", "_shutdown_watcher")})


def _loop_owned(task: asyncio.Task[object]) -> bool:
    coroutine = task.get_coro()
    frame = getattr(coroutine, "cr_frame", None)
    module = frame.f_globals.get("__name__") if frame is not None else None
    return (module, getattr(coroutine, "__qualname__", None)) in _LOOP_OWNED_TASKS


def _describe(task: asyncio.Task[object]) -> str:
    coroutine = task.get_coro()
    name = getattr(coroutine, "__qualname__", repr(coroutine))
    return f"{task.get_name()} ({name})"


@pytest.fixture
async def no_task_leaks() -> AsyncIterator[None]:
    """Fail when tasks other than the fixture's own are still pending after teardown."""
    yield
    current = asyncio.current_task()
    pending = [
        t for t in asyncio.all_tasks() if t is not current and not t.done() and not _loop_owned(t)
    ]
    if pending:
        for task in pending:
            task.cancel()
        await asyncio.gather(*pending, return_exceptions=True)
        pytest.fail(
            "the test left tasks running: " + ", ".join(sorted(map(_describe, pending))),
            pytrace=False,
        )


@pytest.fixture(autouse=True)
def no_leaks(request: pytest.FixtureRequest) -> Iterator[None]:
    """Fail when a thread the test started outlives it; for async tests also tasks."""
    before = set(threading.enumerate())
    if is_async_test(request.node):
        # Requested first, so torn down after every fixture the test itself uses.
        request.getfixturevalue(no_task_leaks.__name__)
    yield
    started = [
        t
        for t in threading.enumerate()
        if t not in before and not t.name.startswith(_LOOP_OWNED_THREAD_PREFIXES)
    ]
    for thread in started:
        thread.join(THREAD_GRACE)
    alive = [t.name for t in started if t.is_alive()]
    if alive:
        pytest.fail(f"the test left threads running: {', '.join(sorted(alive))}", pytrace=False)
