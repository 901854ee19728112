"""Alarms in the running agent: the state between blocks, evaluated as each block is sealed.

The sealer hands every batch of readings to `AlarmStage.evaluate` just before sealing it. The
events go into the same block, right after the readings that triggered them, and the new
state is stored by the same outbox transaction (`Outbox.seal(alarm_state=...)`). Several
blocks sealed by one transaction are evaluated in turn, each from the state the one before it
leaves (`after`); the transaction stores the state the last one leaves. Only once
that transaction committed does the stage adopt the new state (`commit`); a failed seal
re-evaluates the same readings from the same state. So the stored blocks and the stored
state always agree, across crashes and restarts.
"""

from __future__ import annotations

import secrets
from collections.abc import Sequence
from dataclasses import dataclass

import structlog

from edge_agent.core.alarms import (
    AlarmRules,
    AlarmState,
    AlarmStateError,
    decode_state,
    encode_state,
    evaluate_batch,
    fit_state,
)
from edge_agent.shell.outbox import Outbox
from specs.records import AlarmEvent, AlarmRecord, Record

log = structlog.get_logger("edge_agent.alarms")


@dataclass(frozen=True, slots=True)
class StagedAlarms:
    """A batch evaluated but not yet sealed.

    `snapshot` is the encoded new state for `Outbox.seal`, or None when the batch left the
    state as it was (most batches: nothing to write).
    """

    records: tuple[Record, ...]
    events: tuple[AlarmRecord, ...]
    state: AlarmState
    snapshot: bytes | None


class AlarmStage:
    """The agent's alarm state and rules; evaluation itself is the pure core's."""

    def __init__(self, rules: AlarmRules, state: AlarmState) -> None:
        self._rules = rules
        self._state = state

    @property
    def state(self) -> AlarmState:
        """The state as of the last sealed block."""
        return self._state

    def evaluate(self, batch: Sequence[Record], after: StagedAlarms | None = None) -> StagedAlarms:
        """Evaluate a batch from the committed state; nothing changes until `commit`.

        `after`: the staged batch sealed just before this one in the same transaction; this
        one is evaluated from the state that one leaves, and its snapshot is the state to
        store with both.
        """
        start = self._state if after is None else after.state
        outcome = evaluate_batch(self._rules, start, batch)
        changed = outcome.state is not self._state
        return StagedAlarms(
            records=outcome.records,
            events=outcome.events,
            state=outcome.state,
            snapshot=encode_state(outcome.state) if changed else None,
        )

    def commit(self, staged: StagedAlarms) -> None:
        """Adopt the state of a batch whose block (and state) the outbox committed."""
        self._state = staged.state
        for event in staged.events:
            # A raise is what a technician reading the journal must not miss. `alarm_level`,
            # not `level`: that key is the log level's own and would be overwritten.
            emit = log.warning if event.event is AlarmEvent.RAISE else log.info
            emit(
                "alarm_raised" if event.event is AlarmEvent.RAISE else "alarm_cleared",
                alarm_id=event.alarm_id,
                point=event.point,
                alarm_level=event.level,
                value=event.value,
                threshold=event.threshold,
                unit=event.unit,
            )


async def load_alarm_stage(outbox: Outbox, rules: AlarmRules) -> AlarmStage:
    """The stage with the state stored in `outbox`, or a fresh one for a new file."""
    stored = await outbox.alarm_state()
    # The outbox epoch is new with the file, so a fresh state's alarm ids never repeat old ones.
    state = AlarmState(namespace=outbox.epoch)
    if stored is not None:
        problem: str | None = None
        try:
            state = decode_state(stored)
        except AlarmStateError as exc:
            problem = str(exc)
        if problem is not None:
            # Start over rather than stop the agent; a fresh namespace keeps new alarm ids
            # apart from the ones already sent under the unreadable state.
            state = AlarmState(namespace=f"{outbox.epoch}-{secrets.token_hex(4)}")
            log.warning("alarm_state_unreadable", error=problem, namespace=state.namespace)
    state = fit_state(state, rules)
    log.info("alarm_state_loaded", active=len(state.active), namespace=state.namespace)
    return AlarmStage(rules, state)
