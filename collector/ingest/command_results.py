"""A gateway's command result (`up/cmd`, specs.command) as an audit row of the chain.

The row's detail is compact JSON that `collector sites history` reads back: the command's
nonce, the map version, the result, the reason and the first errors (file:line: key:
message), cut to MAX_RESULT_DETAIL characters whatever the gateway sent. The payload's hash is
kept beside it, so the full result can be matched against what the gateway logged.
"""

from __future__ import annotations

import hashlib
import json
from typing import Final

from collector.audit.chain import Action, ActionEntry
from specs.command import CommandResult, Outcome

MAX_RESULT_DETAIL: Final = 2000
_ERROR_CHARS: Final = 300

ACTIONS: Final = {
    Outcome.APPLIED: Action.COMMAND_APPLIED,
    Outcome.REJECTED: Action.COMMAND_REJECTED,
    Outcome.ROLLED_BACK: Action.COMMAND_ROLLED_BACK,
    Outcome.IGNORED: Action.COMMAND_IGNORED,
}


def result_detail(result: CommandResult) -> str:
    """The row's detail: as many whole errors as fit in MAX_RESULT_DETAIL characters."""
    errors: list[str] = []
    body: dict[str, object] = {
        "nonce": result.nonce[:64],
        "version": result.version[:64],
        "result": result.result.value,
        "reason": None if result.reason is None else result.reason[:_ERROR_CHARS],
        "errors": errors,
        "at": result.at,
    }
    for error in result.errors:
        errors.append(error[:_ERROR_CHARS])
        if len(json.dumps(body, ensure_ascii=False)) > MAX_RESULT_DETAIL:
            errors.pop()
            body["more_errors"] = len(result.errors) - len(errors)
            break
    return json.dumps(body, ensure_ascii=False, separators=(",", ":"))


def result_entry(
    result: CommandResult, topic: str, payload: bytes, received_at: float
) -> ActionEntry:
    """The audit row of a verified command result, by the gateway that reported it."""
    return ActionEntry(
        at=received_at,
        action=ACTIONS[result.result],
        actor=result.gateway,
        detail=result_detail(result),
        gateway=result.gateway,
        topic=topic,
        payload_hash=hashlib.sha256(payload).hexdigest(),
    )
