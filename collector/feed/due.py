"""Pure: which alarms raised ahead of the collector's clock the live feed must announce active.

An alarm raised by an event stamped more than the ahead allowance past the collector's clock at
arrival is written to the journal not active (judged at the row's `at`). Once the clock comes
within the allowance of its raise it is active (AlarmState.active_at), and the feed says so
with one more alarm event, written by a sweep (`collector.feed.activations` runs it every
second, `collector.storage.activations` reads and writes): each sweep looks at the raises that
came due since the previous one (`ActivationWindow`), and at those due with a journal row stored
since (one that reached the journal through a collector of a smaller allowance only after it was
due here, below every later window), and writes an event for each open one
whose newest journal row does not say it active already (`due_activations`): a row keeps
`active` as its writer judged it, so a collector of another allowance, or this one before its
clock stepped back, announced it for good.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Final

from collector.feed.core import event_active
from collector.readmodel import AlarmState

ACTIVATION_MARGIN: Final = 60.0
"""Seconds each sweep looks back before the previous one: a batch reads the clock when it starts
and may commit a raise that came due meanwhile after a sweep passed that moment."""

AlarmKey = tuple[str, str]


@dataclass(frozen=True, slots=True)
class ActivationSweep:
    """One look for open alarms whose raise, stamped ahead, the clock came within reach of.

    Raises due (raised_at - allowance) in (`due_after`, `now`] (None: any up to `now`), and
    any due up to `now` with an alarm journal row above `fresh_after`: a raise that reached the
    journal only after it was due here (written not active by a collector of a smaller
    allowance) is below every later window. The newest journal row of each is looked for above
    `scan_after` first (one read of the rows a sweep of this process did not see), then below
    it, alarm by alarm.
    """

    now: float
    allowance: float
    due_after: float | None
    scan_after: int
    fresh_after: int = 0
    """Journal rows above it were committed after an earlier sweep of this process looked."""

    @property
    def raised_after(self) -> float | None:
        """The lowest raise time not looked at (exclusive)."""
        return None if self.due_after is None else self.due_after + self.allowance

    @property
    def raised_through(self) -> float:
        """The highest raise time that is active at `now`."""
        return self.now + self.allowance


@dataclass(frozen=True, slots=True)
class ActivationWindow:
    """What the sweeps of one process covered: (clock, journal head) of each, oldest first."""

    swept: tuple[tuple[float, int], ...] = ()

    def sweep(self, now: float, allowance: float) -> ActivationSweep:
        """The next sweep at `now`: from the previous one's clock, ACTIVATION_MARGIN back.

        The first looks at every raise up to `now` (those that came due while no collector
        swept) and at the whole journal for the rows that announced them already. A row that
        announces a raise due after `due_after` was written once the clock passed that, so
        after the head of a sweep at least a margin earlier. Until such a sweep exists, the
        scan starts at the oldest sweep kept (the first one's head): never from 0 again, which
        read the whole journal once a second for two margins after every start. An alarm with
        no row above it has its newest read alone, from there down.
        """
        if not self.swept:
            return ActivationSweep(now, allowance, None, 0)
        due_after = self.swept[-1][0] - ACTIVATION_MARGIN
        heads = [head for at, head in self.swept if at <= due_after - ACTIVATION_MARGIN]
        # Rows above the oldest sweep kept came after it looked at every raise then due: the
        # first sweep's looked at all of them.
        scan_after = heads[-1] if heads else self.swept[0][1]
        return ActivationSweep(now, allowance, due_after, scan_after, fresh_after=scan_after)

    def after(self, now: float, head: int) -> ActivationWindow:
        """The window once a sweep at `now` read the journal up to `head`.

        Keeps the sweeps the next ones may take their scan from, and the newest before them.
        """
        kept = [entry for entry in self.swept if entry[0] > now - 3 * ACTIVATION_MARGIN]
        older = self.swept[: len(self.swept) - len(kept)][-1:]
        return ActivationWindow((*older, *kept, (now, head)))


@dataclass(frozen=True, slots=True)
class Written:
    """An alarm's newest journal row: the writer's clock, the `active` it keeps (None: older)."""

    at: float
    active: bool | None


@dataclass(frozen=True, slots=True)
class Announced:
    """What a sweep did: the journal head it read first, the alarms it announced active."""

    head: int
    alarms: tuple[AlarmState, ...] = ()


def due_activations(
    candidates: Iterable[AlarmState],
    newest: Mapping[AlarmKey, Written | None],
    allowance: float,
) -> list[AlarmState]:
    """The open alarms raised ahead whose raise came due and whose newest row is not active.

    `newest`: each alarm's newest journal row (None or absent: none is kept). Its `active` is
    its writer's word, whatever allowance that collector had; a row of an older collector that
    does not keep one is judged at its `at` with `allowance`, as it was when written.
    """
    due: list[AlarmState] = []
    for state in candidates:
        if state.raised_at is None or state.cleared_at is not None or not state.raised_ahead:
            continue
        row = newest.get((state.gateway, state.alarm_id))
        if row is None or not event_active(state, row.at, row.active, allowance):
            due.append(state)
    return due
