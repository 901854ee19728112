"""The epoch journal failing at the take-back of its proof that an epoch sealed nothing.

The faults come as a full disk and a process out of descriptors make them: the journal's
rewrite (`hostkit.atomicfile.replace_file`) failing ENOSPC, its read EMFILE. Each starts at
`EpochJournal.sealed_in`, so the entry written with the proof before it is real.
"""

from __future__ import annotations

import errno
from pathlib import Path

import pytest

import edge_agent.shell.outbox_sidecars as journal_side
from edge_agent.shell.outbox_sidecars import EpochJournal

__all__ = ["disk_full", "full_from_the_take_back", "unreadable_at_the_take_back"]


def disk_full(*_args: object, **_kwargs: object) -> None:
    """`replace_file` on a full disk."""
    raise OSError(errno.ENOSPC, "No space left on device")


def full_from_the_take_back(monkeypatch: pytest.MonkeyPatch) -> None:
    """The disk fills up as the proof is about to be taken back, and stays full."""
    taken_back = EpochJournal.sealed_in

    def sealed_in(journal: EpochJournal, epoch: str) -> bool:
        monkeypatch.setattr(journal_side, "replace_file", disk_full)
        return taken_back(journal, epoch)

    monkeypatch.setattr(EpochJournal, "sealed_in", sealed_in)


def unreadable_at_the_take_back(monkeypatch: pytest.MonkeyPatch) -> None:
    """The journal cannot be read (EMFILE) while the proof is being taken back, only then."""
    taken_back = EpochJournal.sealed_in
    read_text = Path.read_text

    def sealed_in(journal: EpochJournal, epoch: str) -> bool:
        def out_of_descriptors(path: Path, *args: object, **kwargs: object) -> str:
            if path == journal.path:
                raise OSError(errno.EMFILE, "Too many open files")
            return read_text(path, *args, **kwargs)  # type: ignore[arg-type]

        with monkeypatch.context() as reading:
            reading.setattr(Path, "read_text", out_of_descriptors)
            return taken_back(journal, epoch)

    monkeypatch.setattr(EpochJournal, "sealed_in", sealed_in)
