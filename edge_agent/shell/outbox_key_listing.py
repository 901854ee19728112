"""Whether the collector's ACKs still name the key this outbox signs with.

An ACK's `keys` lists the kids the collector takes the gateway's blocks under; one that leaves
out the signing key (revoked, retired or never registered there) means every block signed with
it is refused. `ack_check.signing_key_left_out` judges each ACK; the verdict is kept in the
file's `meta` (`key_left_out`: the kid and the first such ACK's time) by the ACK's release
transaction, read back at opening, and logged as a fact: `gateway_key_left_out` when it
appears (and at each start while it stands), `gateway_key_listed_again` when it goes.
"""

from __future__ import annotations

import json
import sqlite3
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Final

import structlog

from edge_agent.core.ack_check import signing_key_left_out
from specs.records import iso_time

log = structlog.get_logger("edge_agent.outbox")

AckKeys = Sequence[str] | None
"""An ACK's `keys`: the kids the collector takes the gateway's blocks under (None: an ACK
from a collector before the field)."""

_KEY_LEFT_OUT: Final = "key_left_out"
"""The `meta` row naming the signing key an ACK's `keys` left out, and since when (JSON)."""


def note_key_listing(
    db: sqlite3.Connection,
    keys: AckKeys,
    signing_kid: str,
    now: float,
    *,
    answered: tuple[str, int | None] | None = None,
) -> None:
    """Keep in `meta` whether the ACK's `keys` leaves out `signing_kid` (ack_check's verdict).

    Left out: noted with `now`, unless it was already (the first ACK's time stays). Named:
    the note goes. An ACK that cannot tell changes nothing. Written only when it changes.
    A successor is a key announced here after `signing_kid` was (rows in the order sealed;
    any announced key when `signing_kid` never was, the key of `keys init`). `answered`: the
    (epoch, seq) of the block the ACK answers; one sealed before the ACK of `signing_kid`'s
    announcement (the switch to it) may have been answered before the collector took it.
    """
    named = json.dumps(list(keys or ()))
    successor = db.execute(
        "SELECT EXISTS (SELECT 1 FROM key_announcements WHERE kid IN"
        " (SELECT value FROM json_each(?)) AND kid != ? AND rowid >"
        " (SELECT coalesce(max(rowid), 0) FROM key_announcements WHERE kid = ?))",
        (named, signing_kid, signing_kid),
    ).fetchone()
    verdict = signing_key_left_out(
        keys,
        signing_kid,
        successor_named=bool(successor[0]),
        before_switch=answered is not None and _sealed_before_switch(db, answered, signing_kid),
    )
    if verdict is False:
        db.execute("DELETE FROM meta WHERE key = ?", (_KEY_LEFT_OUT,))
    elif verdict:
        note = json.dumps({"kid": signing_kid, "since": now})
        db.execute(
            "INSERT INTO meta (key, value) VALUES (?, ?) ON CONFLICT (key) DO UPDATE SET"
            " value = excluded.value WHERE json_extract(meta.value, '$.kid') IS NOT ?",
            (_KEY_LEFT_OUT, note, signing_kid),
        )


def _sealed_before_switch(
    db: sqlite3.Connection, answered: tuple[str, int | None], signing_kid: str
) -> bool:
    """Whether block `answered` was sealed before the ACK of `signing_kid`'s announcement.

    False when `signing_kid` was never announced here (the key of `keys init`) or its
    announcement is not ACKed; a block no longer held counts as sealed before.
    """
    epoch, seq = answered
    found = db.execute(
        "SELECT (SELECT sealed_at FROM blocks WHERE epoch = ? AND seq = ?),"
        " (SELECT delivered_at FROM key_announcements WHERE kid = ?"
        " ORDER BY rowid DESC LIMIT 1)",
        (epoch, -1 if seq is None else seq, signing_kid),
    ).fetchone()
    sealed_at, switched_at = found
    if switched_at is None:
        return False
    return sealed_at is None or float(sealed_at) <= float(switched_at)


@dataclass(frozen=True, slots=True)
class KeyLeftOut:
    """The key an ACK's `keys` left out (`kid`), since the first such ACK (`since`)."""

    kid: str
    since: float


def read_key_left_out(db: sqlite3.Connection) -> KeyLeftOut | None:
    """The signing key an ACK left out of `keys`, as `note_key_listing` kept it (or None)."""
    row = db.execute("SELECT value FROM meta WHERE key = ?", (_KEY_LEFT_OUT,)).fetchone()
    if row is None:
        return None
    note = json.loads(str(row[0]))
    return KeyLeftOut(str(note["kid"]), float(note["since"]))


def _log_left_out(left_out: KeyLeftOut, *, keys: AckKeys) -> None:
    """`gateway_key_left_out`: the ACK's `keys` (None: logged again at a start) and the key."""
    log.error(
        "gateway_key_left_out",
        kid=left_out.kid,
        since=iso_time(left_out.since),
        keys=None if keys is None else list(keys),
        why="the collector's ACK names the keys it takes this gateway's blocks under, and not"
        " this one (revoked, retired or never registered there): it refuses every block signed"
        " with it; see its audit (revoked_key, retired_key, unknown_key) and `collector"
        " gateways list`",
    )


class KeyListing:
    """The signing key an ACK's `keys` left out, as the file keeps it, and the logs it owes."""

    def __init__(self) -> None:
        self._left_out: KeyLeftOut | None = None

    def found(self, kept: KeyLeftOut | None) -> None:
        """What the file keeps at opening (`read_key_left_out`): noted, not logged."""
        self._left_out = kept

    def since(self, signing_kid: str) -> float | None:
        """Since when the ACKs leave out `signing_kid` (None: they name it, or have not said)."""
        left_out = self._left_out
        return left_out.since if left_out is not None and left_out.kid == signing_kid else None

    def report(self, signing_kid: str) -> None:
        """Log `gateway_key_left_out` again while it stands (at each start: no ACK comes)."""
        if self._left_out is not None and self.since(signing_kid) is not None:
            _log_left_out(self._left_out, keys=None)

    def acked(self, now_kept: KeyLeftOut | None, keys: AckKeys, signing_kid: str) -> None:
        """Log what an ACK changed of `since`: left out, or named again."""
        before = self.since(signing_kid)
        self._left_out = now_kept
        after = self.since(signing_kid)
        if after is not None and before is None and now_kept is not None:
            _log_left_out(now_kept, keys=keys)
        elif before is not None and after is None:
            log.info("gateway_key_listed_again", kid=signing_kid)
