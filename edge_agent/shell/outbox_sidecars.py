"""The two small files kept beside the outbox, which remember what the file itself may lose.

This module holds the epoch journal; the seq mark is `edge_agent.shell.outbox_seq_mark`.

The epoch journal (`<path>.epochs`, a small JSON file rewritten atomically whenever an epoch
starts) names the epochs this path has used, so a missing or emptied file is told from a first
start, and what the latest one's first block declares lost (until a verified ACK releases that
block, the collector may not hold it: rewritten then, once per epoch), and whether that epoch
has sealed nothing (`sealed` false: written with the entry of an epoch start, taken back inside
its first block's transaction before the commit, so a start cut short before leaves it proven
empty; written again after a commit that failed; `sealed_in` takes it back once a start finds
the file holding the epoch committed: a commit whose WAL fsync failed may be recovered by the
next open). The seq mark (`<path>.seq`, one small record overwritten in place after every seal)
remembers the highest seq sealed and the readings a stop on a full disk let go unsealed, so a
file that comes back older (a WAL cut mid-frame) is told from a healthy one. It is the file's
newest seq, read after the seal (`OutboxFile`: blocks sealed while making room, and another
process's, count too), and it never goes back within an epoch, nor to an epoch the journal
names as started before the one noted: two processes on one file (the agent, `edge-agent
backfill`) write it under `flock` (never waited for on the event loop: `SeqMark`), the higher
seq kept, and the tally as noted there changed by what the writer let go or declared (never its
own copy), the epoch and seq noted left as they are by such a change. The mark is written
without fsync: it survives a killed process or a tampered file, not every power cut (the WAL
itself is synced). Neither holds data: losing one only blunts what a restart can tell
(`edge_agent.shell.outbox_recovery`).
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import Callable, Sequence
from functools import partial
from pathlib import Path
from typing import Final, TypeVar

import structlog

from edge_agent.shell.to_its_end import to_its_end
from hostkit.atomicfile import replace_file
from specs.record_wire import record_from_wire
from specs.records import GapRecord, RecordFormatError

log = structlog.get_logger("edge_agent.outbox")

_JOURNAL_KEEP: Final = 16

_Done = TypeVar("_Done")


class ProofStandsError(Exception):
    """A journaled proof that an epoch sealed nothing could not be taken back (`sealed_in`).

    Its message names the journal and the OS error; `remedy` says what mends it.
    """

    remedy: Final = (
        "free some space where the journal is, or mend what the error names (`dmesg` for an"
        " I/O error, LimitNOFILE for too many open files), and the next start goes on"
    )

    def __init__(self, journal: Path, what: str, error: OSError | ValueError) -> None:
        super().__init__(f"{journal}: cannot {what} ({error})")


class EpochJournal:
    """The epochs this outbox path has used, newest last (advisory: losing it loses no data).

    Each write is a file synced and renamed: seconds on a slow or failing disk. An epoch
    start's (`Outbox.start_new_epoch`: the ACK handler's, and an opening's that leaves its
    file, the agent's or `edge-agent backfill`'s) are made on a thread and awaited
    (`*_on_thread`, `outbox_delivery.Delivery` its `delivered`), so the loop (polling, MQTT
    keepalive, the status server) goes on and what depends on a write still comes after it is
    synced; a start cancelled meanwhile ends once the write is done, its locks held until
    then. An opening's other writes (a new file's entry, an epoch the journal does not name,
    `sealed_in` for a file found in the journal's epoch) are made on the loop, before any of
    that has started (`outbox_open`).
    """

    def __init__(self, path: Path) -> None:
        self._path = path

    @classmethod
    def beside(cls, outbox: Path) -> EpochJournal:
        """The journal of an outbox file."""
        return cls(outbox.with_name(outbox.name + ".epochs"))

    @property
    def path(self) -> Path:
        """The journal file."""
        return self._path

    def _body(self) -> dict[str, object]:
        """The journal as read for declaring: missing or unreadable (logged), it is empty.

        Read so, nothing proves an epoch sealed nothing (`latest_sealed_nothing`): declared
        (one record more at worst). Taking a proof back reads with `_read`: unreadable, a proof
        it may hold is not taken back (`sealed_in`).
        """
        try:
            return self._read()
        except (OSError, ValueError) as exc:
            log.warning("epoch_journal_unreadable", path=str(self._path), error=str(exc))
            return {}

    def _read(self) -> dict[str, object]:
        """The journal (empty: missing); OSError or ValueError when it cannot be read."""
        try:
            body = json.loads(self._path.read_text(encoding="utf-8"))
        except FileNotFoundError:
            return {}
        return body if isinstance(body, dict) else {}

    def epochs(self) -> tuple[str, ...]:
        """Epochs recorded so far (empty when the journal is missing or unreadable)."""
        found = self._body().get("epochs")
        if not isinstance(found, list):
            return ()
        return tuple(e for e in found if isinstance(e, str))

    def owed(self) -> list[GapRecord]:
        """The gap records the latest epoch's first block declares (empty: none, or unknown).

        Kept until a verified ACK releases that block (`delivered`), or the next epoch starts:
        a start cut short before that block committed (killed, or a seal that failed), or a
        file lost before it was delivered, leaves them to the next start, which cannot read
        them from the file (`outbox_recovery.recovery_gaps`). Sealed again as recorded, `t`
        included, so one that did reach the collector is the same loss sealed again there.
        """
        owed = self._body().get("owed")
        found: list[GapRecord] = []
        for entry in owed if isinstance(owed, list) else []:
            try:
                record = record_from_wire(entry)
            except RecordFormatError:  # an entry of an earlier agent: [epoch, seq] only
                continue
            if isinstance(record, GapRecord):
                found.append(record)
        return found

    def delivered(self, epoch: str) -> None:
        """The first block of `epoch` is released by a verified ACK: what it carries is not owed.

        The collector holds those records: declared again by a later start that finds the file
        lost, each is a `duplicate` at the collector, and carried into every later entry they
        would pile up with each loss. Rewritten (synced) only when `epoch` is the latest and
        owes some, so once per epoch; another epoch started meanwhile keeps its own.
        """
        body = self._body()
        epochs = body.get("epochs")
        if body.get("owed") and isinstance(epochs, list) and epochs[-1:] == [epoch]:
            self._write({**body, "owed": []})

    def sealed_nothing(self, epoch: str) -> None:
        """The first block of `epoch`, the latest, failed and the file shows it not committed.

        Written (synced) by the start that saw it fail, the one proof that `epoch` sealed and
        sent nothing (`latest_sealed_nothing`), when the proof its entry was written with
        (`record`'s `unsealed`) was taken back before a commit that then failed. An entry
        without it (written so, or taken back and the start killed before its commit, or a
        write that failed: a full disk) says `epoch` may have sealed blocks, and a start that
        finds it left is to declare them lost.
        """
        body = self._body()
        epochs = body.get("epochs")
        if isinstance(epochs, list) and epochs[-1:] == [epoch] and body.get("sealed") is not False:
            self._write({**body, "sealed": False})

    def sealed_in(self, epoch: str) -> bool:
        """`epoch` is (or is about to be) committed: no proof that an epoch sealed nothing stands.

        Whether one stood, now taken back (rewritten, synced). Raises ProofStandsError when one
        stands still: its rewrite failed, or the journal could not be read (a proof it may hold
        cannot be told taken back). Taken back by `epoch`'s start before its first block
        commits (`outbox_rewrite.begin_epoch`), and by a start that finds the file holding
        `epoch`, the latest: a commit whose WAL fsync failed raises, its frames still in the
        WAL: its start read the file back outside `epoch` and wrote the proof again, and the
        next open recovered them. A proof of another epoch is taken back too: `epoch`'s own
        entry was not written (`epoch_journal_not_written`), and left standing it would tell a
        start that finds a copy put back that the latest epoch named sealed nothing, while
        `epoch`'s blocks are declared by nobody; taken back, that epoch is declared too.
        """
        try:
            body = self._read()
        except (OSError, ValueError) as exc:
            log.warning("epoch_journal_unreadable", path=str(self._path), error=str(exc))
            what = "read whether a proof that an epoch sealed nothing stands"
            raise ProofStandsError(self._path, what, exc) from exc
        if body.get("sealed") is not False:
            return False
        error = self._write({key: value for key, value in body.items() if key != "sealed"})
        if error is not None:
            epochs = body.get("epochs")
            of = epochs[-1] if isinstance(epochs, list) and epochs else epoch
            what = f"take back the proof that epoch {of} sealed nothing"
            raise ProofStandsError(self._path, what, error)
        return True

    async def owed_on_thread(self) -> list[GapRecord]:
        """`owed`, read on a thread (as the writes are: the loop goes on meanwhile)."""
        return await asyncio.to_thread(self.owed)

    async def record_on_thread(
        self, epoch: str, owed: Sequence[GapRecord] = (), *, unsealed: bool = False
    ) -> None:
        """`record`, on a thread: returns once the entry is synced (or not written, logged)."""
        await _to_its_end(partial(self.record, epoch, owed, unsealed=unsealed))

    async def sealed_in_on_thread(self, epoch: str) -> bool:
        """`sealed_in`, on a thread: whether a proof stood, taken back (else ProofStandsError)."""
        return await _to_its_end(partial(self.sealed_in, epoch))

    async def sealed_nothing_on_thread(self, epoch: str) -> None:
        """`sealed_nothing`, on a thread: returns once the proof is synced (or not written)."""
        await _to_its_end(partial(self.sealed_nothing, epoch))

    def latest_sealed_nothing(self) -> bool:
        """Whether the journal's proof that the latest epoch sealed nothing stands."""
        return self._body().get("sealed") is False

    def latest(self) -> str | None:
        """The epoch most recently started here."""
        epochs = self.epochs()
        return epochs[-1] if epochs else None

    def record(self, epoch: str, owed: Sequence[GapRecord] = (), *, unsealed: bool = False) -> None:
        """Note `epoch` as the current one: written to a temporary file, synced, renamed.

        `owed`: the gap records its first block carries; those naming seqs are kept (`owed`).
        `unsealed` (an epoch start, before anything of `epoch` is committed): flagged `sealed`
        false, the proof it sealed nothing, which its start takes back (`sealed_in`) before
        the first block commits: a start killed before that (a restart loop on a seal making
        room in a huge full outbox, past systemd's start timeout) leaves its epoch proven
        empty, not one more record for the next start to declare. Otherwise not flagged.
        """
        epochs: Sequence[str] = self.epochs()
        if epochs and epochs[-1] == epoch:
            return
        body: dict[str, object] = {
            "epochs": [*[e for e in epochs if e != epoch], epoch][-_JOURNAL_KEEP:],
            "owed": [gap.to_wire() for gap in owed if gap.epoch is not None],
        }
        self._write({**body, "sealed": False} if unsealed else body)

    def _write(self, body: dict[str, object]) -> OSError | None:
        """Written to a temporary file, synced, renamed; why not (None: it was)."""
        try:
            replace_file(self._path, json.dumps(body).encode("utf-8"))
        except OSError as exc:
            # A full disk must not stop the agent; the journal only sharpens gap records
            # (a proof not taken back refuses an epoch start, or an opening that finds the
            # file in that epoch: `sealed_in`).
            log.warning("epoch_journal_not_written", path=str(self._path), error=str(exc))
            return exc
        return None


async def _to_its_end(write: Callable[[], _Done]) -> _Done:
    """`write()` on a thread, awaited to its end even when the awaiting task is cancelled.

    Its caller holds the epoch and outbox locks for it (`Outbox.start_new_epoch`). Left at a
    cancellation (the connection dropping mid-ACK, a stop), the await let them go while the
    write's read-modify-write went on: the next start read the journal before it renamed its
    own over that start's entry. Cancelled, it waits on (`to_its_end`) and then the
    cancellation is raised, once the write is done.
    """
    return await to_its_end(asyncio.to_thread(write))
