"""Alarms at the edge: pure evaluation of readings against the site's alarm rules.

Works offline and without an event loop: `build.rules_for_site(config, catalogue)` compiles the
rules once; `evaluate_batch(rules, state, records)` returns the records with raise/clear events
(`specs.records.AlarmRecord`) after their triggering readings, and the next `AlarmState`.
`encode_state` / `decode_state` give the state's durable bytes, which the shell stores in
the same transaction as the block holding the events.
"""

from edge_agent.core.alarms.evaluate import (
    MIN_SPAN,
    WINDOW_SAMPLES,
    Evaluation,
    evaluate,
    evaluate_batch,
)
from edge_agent.core.alarms.rules import (
    COLOURS,
    ESCALATION,
    AlarmRules,
    CompareRule,
    HeldRule,
    ItemRule,
    LevelRule,
    PointRules,
    RateRule,
    item_level,
)
from edge_agent.core.alarms.state import (
    ActiveAlarm,
    AlarmState,
    AlarmStateError,
    decode_state,
    encode_state,
    fit_state,
)

__all__ = [
    "COLOURS",
    "ESCALATION",
    "MIN_SPAN",
    "WINDOW_SAMPLES",
    "ActiveAlarm",
    "AlarmRules",
    "AlarmState",
    "AlarmStateError",
    "CompareRule",
    "Evaluation",
    "HeldRule",
    "ItemRule",
    "LevelRule",
    "PointRules",
    "RateRule",
    "decode_state",
    "encode_state",
    "evaluate",
    "evaluate_batch",
    "fit_state",
    "item_level",
]
