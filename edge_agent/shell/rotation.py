"""Rotating the gateway's key: announce under the old key, switch once the collector has it.

1. `announce_next_key` (`edge-agent keys rotate`) makes the next key at `<key_file>.next`
   (0600, `.pub` beside it) and seals a block whose `key` record carries its public key; the
   outbox signs that block with the current key, as every block until the switch.
2. When the collector ACKs that block and the ACK's `keys` names the new key, the collector
   holds it (and accepts both for its overlap window). `complete_rotation` then makes the
   next key the one at `signing.key_file`, keeps the old one as `<key_file>.retired-<kid>`
   (0600), and has the outbox sign with the new key, undelivered blocks included. The
   running agent does this as soon as the ACK arrives (`RotationWatcher`); a stopped one at
   its next start. An ACK without `keys` (a collector before the field) counts as taking it,
   as it did: waiting for a word such a collector never sends would leave the agent on its
   old key until the collector retires that key, and the gateway dark all the same. A later
   ACK naming the key takes it too (the key notice, when the ACK of the announcement was
   lost and the collector has retired the old key since: the resends are refused).
3. An ACK that releases the announcement without naming the key says the collector stored
   the block but refused the key (another gateway's kid, a revoked one...): the outbox keeps
   that (`refused_at`), the agent keeps signing with its current key, logs
   `gateway_key_refused` (again at each start), and never switches to that key.

While `<key_file>.next` exists a rotation is under way; `keys rotate` again announces the
same next key once more (the first announcement may have been lost with a broken outbox),
unless the collector refused it: then the refused key is set aside as
`<key_file>.refused-<kid>` (0600) and a new next key is made and announced.
"""

from __future__ import annotations

import dataclasses
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import structlog

from edge_agent.core.agent_status import KeyStatus
from edge_agent.shell.keyfile import load_private_key
from edge_agent.shell.outbox import Outbox
from hostkit.atomicfile import sync_directory
from hostkit.keyfiles import (
    KeyFileError,
    next_key_path,
    public_key_path,
    switch_to_next_key,
    write_key_pair,
)
from specs.records import KeyRecord, iso_time
from specs.signing import Signature, SigningKey, generate_signing_key

log = structlog.get_logger("edge_agent.rotation")


@dataclass(frozen=True, slots=True)
class Announced:
    """A key announcement sealed into the outbox."""

    key: SigningKey
    epoch: str
    seq: int
    again: bool  # the next key was staged already: announced once more
    refused: Path | None = None  # where the staged key the collector refused was set aside


def refused_key_path(key_file: Path, kid: str) -> Path:
    """Where a next key the collector refused is kept: `<key_file>.refused-<kid>`."""
    return key_file.with_name(f"{key_file.name}.refused-{kid}")


def _set_aside(key_file: Path, kid: str) -> Path:
    """Move the refused next key (and its `.pub`) to `refused_key_path`; where it went."""
    staged, kept = next_key_path(key_file), refused_key_path(key_file, kid)
    try:
        public = public_key_path(staged)
        if public.exists():
            public.replace(public_key_path(kept))
        staged.replace(kept)
        sync_directory(key_file.parent)
    except OSError as exc:
        raise KeyFileError(f"cannot set {staged} aside: {exc.strerror or exc}") from None
    return kept


async def announce_next_key(
    outbox: Outbox, key_file: Path, current: SigningKey, algorithm: str, *, clock_synced: bool
) -> Announced:
    """Stage the next key (or take the staged one) and seal its announcement.

    A staged key the collector refused is set aside and a new one made.
    """
    staged = next_key_path(key_file)
    again, refused = staged.exists(), None
    if again:
        key = load_private_key(staged)
        if await outbox.announcement_state(key.kid) == "refused":
            again, refused = False, _set_aside(key_file, key.kid)
    if not again:
        key = generate_signing_key(algorithm)
        write_key_pair(staged, key)
    now = time.time()
    record = KeyRecord(
        t=iso_time(now),
        kid=key.kid,
        alg=key.alg,
        public_key=key.public().public_pem().decode("ascii"),
        replaces=current.kid,
    )
    block = await outbox.seal((record,), now=now, clock_synced=clock_synced)
    return Announced(key, block.epoch, block.seq, again, refused)


def promote_next_key(key_file: Path) -> tuple[SigningKey, SigningKey]:
    """Make `<key_file>.next` the key at `key_file`, keeping the old one; (old, new)."""
    return switch_to_next_key(key_file, load_private_key, action="switch to")


async def complete_rotation(outbox: Outbox, key_file: Path) -> SigningKey | None:
    """Switch to the next key if the collector took its announcement; the new key, or None.

    A refused announcement is logged (`gateway_key_refused`) and switches nothing.
    """
    staged = next_key_path(key_file)
    if not staged.exists():
        return None
    pending = load_private_key(staged)
    state = await outbox.announcement_state(pending.kid)
    if state == "refused":
        log.warning(
            "gateway_key_refused",
            kid=pending.kid,
            current=load_private_key(key_file).kid,
            next_key_file=str(staged),
            why="the collector stored its announcement but does not take the key; see its"
            " audit (bad_key_announcement); `edge-agent keys rotate` announces a new one",
        )
    if state != "taken":
        return None
    old, new = promote_next_key(key_file)
    resigned = await outbox.use_key(new)
    log.warning("gateway_key_switched", old=old.kid, new=new.kid, blocks_signed_again=resigned)
    return new


async def key_status(outbox: Outbox, key_file: Path, current: SigningKey) -> KeyStatus:
    """The key signing now, and the staged next one with the collector's answer to it.

    `left_out`: whether the collector's ACKs leave the signing key out. The staged key is
    read as `complete_rotation` reads it; one that cannot be read (a rotation's files being
    moved this instant, a mode gone wrong) shows as none.
    """
    signing = KeyStatus(current.kid, left_out=outbox.delivery.key_left_out)
    staged = next_key_path(key_file)
    if not staged.exists():
        return signing
    try:
        pending = load_private_key(staged)
    except KeyFileError:
        return signing
    state = await outbox.announcement_state(pending.kid)
    return dataclasses.replace(signing, next=pending.kid, next_state=state)


class CurrentKey:
    """The key the gateway signs its status and meta messages with, as rotation moves it."""

    def __init__(self, key: SigningKey) -> None:
        self.key = key

    def sign(self, payload: bytes) -> Signature:
        """Sign with the key of the moment."""
        return self.key.sign(payload)


class RotationWatcher:
    """Completes a rotation as soon as an ACK releases its announcement and takes its key."""

    def __init__(
        self,
        outbox: Outbox,
        key_file: Path,
        current: CurrentKey,
        on_switched: Callable[[SigningKey], None] = lambda _key: None,
    ) -> None:
        self._outbox = outbox
        self._key_file = key_file
        self._current = current
        self._on_switched = on_switched

    async def run(self) -> None:
        """Forever: wait for an ACKed announcement, then switch; cancel to stop."""
        while True:
            await self._outbox.delivery.announcement_delivered.wait()
            self._outbox.delivery.announcement_delivered.clear()
            await self.check()

    async def check(self) -> None:
        """Switch now if the announcement of the staged key was ACKed and its key taken."""
        try:
            new = await complete_rotation(self._outbox, self._key_file)
        except KeyFileError as exc:
            # The switch is tried again with the next ACKed announcement and at start; the
            # old key keeps signing meanwhile, which the collector accepts in the overlap.
            log.exception("gateway_key_switch_failed", error=str(exc))
            return
        if new is not None:
            self._current.key = new
            self._on_switched(new)
