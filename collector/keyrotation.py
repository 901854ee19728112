"""Rotating the collector's own key in two steps, so that no gateway is left behind.

1. `stage_next_key` makes the next key beside the current one (`<key_file>.next`, 0600, and
   its `.pub`); nothing signs with it yet. Its public key goes to every gateway, which then
   lists both keys (`uplink.collector_keys`) and accepts ACKs and commands signed by either.
2. `activate_next_key` makes it the key at `signing.key_file`; the old one stays beside it as
   `<key_file>.retired-<kid>` (0600). Collectors sign with the new key from their next start.

While `.next` exists a rotation is unfinished: activating again finishes it.
"""

from __future__ import annotations

from pathlib import Path

from collector.keyfiles import load_key_file
from hostkit.keyfiles import (
    KeyExistsError,
    KeyFileError,
    create_key_pair,
    next_key_path,
    switch_to_next_key,
)
from specs.signing import SigningKey


def stage_next_key(key_file: Path, algorithm: str) -> SigningKey:
    """Make the next key at `<key_file>.next` (never over a staged one)."""
    load_key_file(key_file)  # a rotation starts from a usable current key
    staged = next_key_path(key_file)
    if staged.exists():
        raise KeyExistsError(
            f"{staged} is staged already; activate it (`collector keys rotate --activate`)"
            " or remove it and its .pub to stage another"
        )
    return create_key_pair(staged, algorithm)


def activate_next_key(key_file: Path) -> tuple[SigningKey, SigningKey]:
    """Make the staged key the current one; return (old, new). The old one is kept."""
    staged = next_key_path(key_file)
    if not staged.exists():
        raise KeyFileError(f"no key is staged at {staged}; stage one with `collector keys rotate`")
    return switch_to_next_key(key_file, load_key_file, action="activate")
