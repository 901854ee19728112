"""What `edge-agent status` shows of the outbox's hold on the disk: a full one and its toll.

A full disk leaves the agent up and connected while it cannot keep what it reads: the file
capped, seals failing, readings held in memory and let go when the ring is full, ACKs that
arrive but cannot be recorded. `StorageStatus` is that part of the snapshot
(`AgentSnapshot.outbox.storage`); an agent from before it sends none (all clear).
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import Any, Final, Literal, Protocol

from specs.records import optional_iso_time

ReserveState = Literal["held", "not held", "none"]


@dataclass(frozen=True, slots=True)
class StorageStatus:
    """The outbox against its disk.

    `disk_full`: the file is capped at what a full disk left it (room is made inside it).
    `reserve`: the disk reserve beside the file (`none`: no budget, so no reserve).
    `seals_failing_since`: the first of the seals failing now (None: the last one sealed).
    `held_in_memory`: readings waiting in the sealer's ring; `let_go_in_memory`: readings the
    ring let go, not yet declared by a gap record; `given_way_in_file`: readings thinned away
    or dropped to make room in the file this run. `acks_not_recorded`: ACKs received this run
    that the outbox could not record, the last at `last_ack_not_recorded`.
    """

    disk_full: bool = False
    reserve: ReserveState = "none"
    seals_failing_since: float | None = None
    held_in_memory: int = 0
    let_go_in_memory: int = 0
    given_way_in_file: int = 0
    acks_not_recorded: int = 0
    last_ack_not_recorded: float | None = None

    @property
    def troubled(self) -> bool:
        """Whether any of it is worth a line of `status`."""
        return (
            self.disk_full
            or self.reserve == "not held"
            or self.seals_failing_since is not None
            or self.let_go_in_memory > 0
            or self.acks_not_recorded > 0
        )


ALL_CLEAR: Final = StorageStatus()
"""What an agent from before `storage` is read as."""


class StorageReader(Protocol):
    """The checked reads of a status document `storage_from` uses (agent_status's reader)."""

    def flag(self, key: str) -> bool: ...  # noqa: D102 - as the reader's
    def text(self, key: str) -> str: ...  # noqa: D102
    def integer(self, key: str) -> int: ...  # noqa: D102
    def optional_time(self, key: str) -> float | None: ...  # noqa: D102


_TIMES: Final = ("seals_failing_since", "last_ack_not_recorded")
_COUNTS: Final = ("held_in_memory", "let_go_in_memory", "given_way_in_file", "acks_not_recorded")


def storage_json(storage: StorageStatus) -> dict[str, object]:
    """`storage` as the status document carries it (times ISO 8601)."""
    document: dict[str, object] = dataclasses.asdict(storage)
    for key in _TIMES:
        document[key] = optional_iso_time(getattr(storage, key))
    return document


def storage_from(reader: StorageReader | None) -> StorageStatus:
    """What `storage_json` wrote, read back through the status document's checked reader.

    None (an agent from before it sent none): `ALL_CLEAR`.
    """
    if reader is None:
        return ALL_CLEAR
    reserve = reader.text("reserve")
    # Checked by the reader, key by key: the times are times, the counts integers.
    read: dict[str, Any] = {key: reader.optional_time(key) for key in _TIMES}
    read |= {key: reader.integer(key) for key in _COUNTS}
    return dataclasses.replace(
        ALL_CLEAR,
        disk_full=reader.flag("disk_full"),
        reserve="held" if reserve == "held" else "not held" if reserve == "not held" else "none",
        **read,
    )
