"""Pure pieces of the HTTP API: bearer tokens, opaque cursors, and judging `online`.

Error tree::

    CursorError     a cursor was not made by this API for this list
"""

from __future__ import annotations

import base64
import binascii
import hmac
import json
from collections.abc import Sequence
from dataclasses import dataclass

from collector.model import GatewayView, Scope

WILDCARD = "*"


class CursorError(ValueError):
    """A cursor was not made by this API for this list."""


@dataclass(frozen=True, slots=True)
class ApiToken:
    """A bearer token and the districts it may see (`*` = all)."""

    name: str
    token: str
    districts: tuple[str, ...]

    @property
    def scope(self) -> Scope:
        """What this token may see."""
        if WILDCARD in self.districts:
            return Scope()
        return Scope(frozenset(self.districts))


def find_token(tokens: Sequence[ApiToken], presented: str) -> ApiToken | None:
    """The token matching `presented`, compared in constant time against every candidate."""
    found: ApiToken | None = None
    wanted = presented.encode("utf-8")
    for candidate in tokens:
        if hmac.compare_digest(candidate.token.encode("utf-8"), wanted) and found is None:
            found = candidate
    return found


def encode_cursor(kind: str, position: Sequence[str | int | float]) -> str:
    """An opaque cursor naming the list it pages and the last item's sort key."""
    raw = json.dumps([kind, list(position)], separators=(",", ":")).encode("utf-8")
    return base64.urlsafe_b64encode(raw).decode("ascii").rstrip("=")


def decode_cursor(kind: str, cursor: str, shape: Sequence[type]) -> tuple[str | int | float, ...]:
    """The sort key inside `cursor`; CursorError unless it is a cursor of list `kind`."""
    try:
        raw = base64.urlsafe_b64decode(cursor + "=" * (-len(cursor) % 4))
        body = json.loads(raw)
    except (binascii.Error, UnicodeDecodeError, json.JSONDecodeError, ValueError):
        raise CursorError("cursor is not valid") from None
    if not (isinstance(body, list) and len(body) == 2 and body[0] == kind):  # noqa: PLR2004 - [kind, key]
        raise CursorError(f"cursor does not belong to the {kind} list")
    position = body[1]
    if not isinstance(position, list) or len(position) != len(shape):
        raise CursorError("cursor is not valid")
    for value, expected in zip(position, shape, strict=True):
        valid = isinstance(value, expected) and not isinstance(value, bool)
        if expected is float:
            valid = isinstance(value, int | float) and not isinstance(value, bool)
        if not valid:
            raise CursorError("cursor is not valid")
    return tuple(float(v) if t is float else v for v, t in zip(position, shape, strict=True))


def is_online(view: GatewayView, now: float, offline_after: float) -> bool:
    """Online when the newest sign of life is recent and is not a status saying offline."""
    status_seen = view.status_seen if view.status_seen is not None else float("-inf")
    block_seen = view.block_seen if view.block_seen is not None else float("-inf")
    newest = max(status_seen, block_seen)
    if newest == float("-inf") or now - newest > offline_after:
        return False
    if status_seen >= block_seen:
        return bool(view.status_online)
    return True


def last_seen(view: GatewayView) -> float | None:
    """The newest of the last status and the last block."""
    return max((t for t in (view.status_seen, view.block_seen) if t is not None), default=None)
