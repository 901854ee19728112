"""Who runs an admin command, for the audit rows of admin actions (collector.audit.chain)."""

from __future__ import annotations

import getpass
import time

from collector.audit.chain import Action, ActionEntry
from collector.storage.base import Storage
from collector.storage.capabilities import AuditTrail

UNKNOWN_OPERATOR = "?"


def operator() -> str:
    """The operating-system user running this command (`?` when the system cannot say)."""
    try:
        return f"cli:{getpass.getuser()}"
    except (OSError, KeyError):  # no login name, no passwd entry (containers)
        return f"cli:{UNKNOWN_OPERATOR}"


async def record_action(
    storage: Storage, action: Action, detail: str, gateway: str | None = None
) -> None:
    """Append one admin action, by this command's operator, to the audit chain.

    A backend without the chain (none ships without one) records nothing.
    """
    if isinstance(storage, AuditTrail):
        entry = ActionEntry(time.time(), action, operator(), detail, gateway=gateway)
        await storage.record_actions([entry])
