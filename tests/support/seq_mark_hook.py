"""A hook at the moment a seal has committed and its seq mark is not written yet.

Races with another process on the same outbox file (`edge-agent backfill`, an import) are
shown by letting that process go on exactly there: the agent's block is in the file, the mark
beside it (`SeqMark.write`) still names the seq before. No sleeps.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import contextmanager

import pytest

from edge_agent.shell.outbox_seq_mark import SeqMark


@contextmanager
def before_the_mark_write(first: Callable[[int], object]) -> Iterator[None]:
    """While inside, this process's first `SeqMark.write` calls `first(seq)` with the seq it
    is about to write, then writes it."""
    written = SeqMark.write
    done: list[bool] = []

    async def write(mark: SeqMark, epoch: str, seq: int) -> None:
        if not done:
            done.append(True)
            first(seq)
        await written(mark, epoch, seq)

    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(SeqMark, "write", write)
        yield
