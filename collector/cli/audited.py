"""Who runs an admin command, for the audit rows of admin actions (collector.audit.chain)."""

from __future__ import annotations

import os
import pwd
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Final

from collector.audit.chain import Action, ActionEntry
from collector.storage.base import Storage
from collector.storage.capabilities import AuditTrail

LOGIN_UID: Final = Path("/proc/self/loginuid")
_NO_LOGIN: Final = 4294967295  # (uid_t)-1: no login session (a service, a container)


def _user(uid: int) -> str:
    try:
        return pwd.getpwuid(uid).pw_name
    except KeyError:  # no passwd entry (containers): the number says who
        return str(uid)


def _login_uid() -> int | None:
    """Who logged in to this session (set at login; `sudo` and `runuser` keep it), if known."""
    try:
        uid = int(LOGIN_UID.read_text().strip())
    except (OSError, ValueError):
        return None
    return None if uid == _NO_LOGIN else uid


def operator_name(uid: int, login: int | None) -> str:
    """`cli:<user of uid>`, and `(login <user>)` when someone else logged in to the session."""
    named = f"cli:{_user(uid)}"
    if login is None or login in (uid, _NO_LOGIN):
        return named
    return f"{named} (login {_user(login)})"


def operator() -> str:
    """The operating-system user running this command, by its real uid.

    Not `getpass.getuser()`: it reads LOGNAME and USER first, which whoever runs the command
    sets at will, and an audit row must not name whom the caller chose.
    """
    return operator_name(os.getuid(), _login_uid())


async def record_action(
    storage: Storage, action: Action, detail: str, gateway: str | None = None
) -> None:
    """Append one admin action, by this command's operator, to the audit chain.

    A backend without the chain (none ships without one) records nothing.
    """
    await record_each(storage, action, [(detail, gateway)])


async def record_each(
    storage: Storage, action: Action, rows: Sequence[tuple[str, str | None]]
) -> None:
    """Append one `action` row per (detail, gateway), by this command's operator, at once.

    One transaction: every row is chained, or none (a StorageError).
    """
    if isinstance(storage, AuditTrail) and rows:
        at, actor = time.time(), operator()
        entries = [ActionEntry(at, action, actor, detail, gateway=gw) for detail, gw in rows]
        await storage.record_actions(entries)
