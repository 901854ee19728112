"""Rotating the gateway's key: announce under the old key, switch once the collector has it.

1. `announce_next_key` (`edge-agent keys rotate`) makes the next key at `<key_file>.next`
   (0600, `.pub` beside it) and seals a block whose `key` record carries its public key; the
   outbox signs that block with the current key, as every block until the switch.
2. When the collector ACKs that block, it holds the new key (and accepts both for its overlap
   window). `complete_rotation` then makes the next key the one at `signing.key_file`, keeps
   the old one as `<key_file>.retired-<kid>` (0600), and has the outbox sign with the new key,
   undelivered blocks included. The running agent does this as soon as the ACK arrives
   (`RotationWatcher`); a stopped one at its next start.

While `<key_file>.next` exists a rotation is under way; `keys rotate` again announces the
same next key once more (the first announcement may have been lost with a broken outbox).
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import structlog

from edge_agent.shell.keyfile import load_private_key
from edge_agent.shell.outbox import Outbox
from hostkit.keyfiles import KeyFileError, next_key_path, switch_to_next_key, write_key_pair
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


async def announce_next_key(
    outbox: Outbox, key_file: Path, current: SigningKey, algorithm: str, *, clock_synced: bool
) -> Announced:
    """Stage the next key (or take the staged one) and seal its announcement."""
    staged = next_key_path(key_file)
    again = staged.exists()
    if again:
        key = load_private_key(staged)
    else:
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
    return Announced(key, block.epoch, block.seq, again)


def promote_next_key(key_file: Path) -> tuple[SigningKey, SigningKey]:
    """Make `<key_file>.next` the key at `key_file`, keeping the old one; (old, new)."""
    return switch_to_next_key(key_file, load_private_key, action="switch to")


async def complete_rotation(outbox: Outbox, key_file: Path) -> SigningKey | None:
    """Switch to the next key if the collector holds its announcement; the new key, or None."""
    staged = next_key_path(key_file)
    if not staged.exists():
        return None
    pending = load_private_key(staged)
    if not await outbox.announcement_stored(pending.kid):
        return None
    old, new = promote_next_key(key_file)
    resigned = await outbox.use_key(new)
    log.warning("gateway_key_switched", old=old.kid, new=new.kid, blocks_signed_again=resigned)
    return new


class CurrentKey:
    """The key the gateway signs its status and meta messages with, as rotation moves it."""

    def __init__(self, key: SigningKey) -> None:
        self.key = key

    def sign(self, payload: bytes) -> Signature:
        """Sign with the key of the moment."""
        return self.key.sign(payload)


class RotationWatcher:
    """Completes a rotation as soon as an ACK releases its announcement."""

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
            await self._outbox.announcement_delivered.wait()
            self._outbox.announcement_delivered.clear()
            await self.check()

    async def check(self) -> None:
        """Switch now if the announcement of the staged key was ACKed."""
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
