"""Rotating the collector's own key in two steps, so that no gateway is left behind.

1. `stage_next_key` makes the next key beside the current one (`<key_file>.next`, 0600, and
   its `.pub`); nothing signs with it yet. Its public key goes to every gateway, which then
   lists both keys (`uplink.collector_keys`) and accepts ACKs and commands signed by either.
2. `activate_next_key` makes it the key at `signing.key_file`; the old one stays beside it as
   `<key_file>.retired-<kid>` (0600). Collectors sign with the new key from their next start.

While `.next` exists a rotation is unfinished: activating again finishes it.
"""

from __future__ import annotations

import contextlib
import os
from pathlib import Path

from collector.keyfiles import (
    KeyExistsError,
    KeyFileError,
    create_key_pair,
    load_key_file,
    public_key_path,
)
from specs.signing import SigningKey


def next_key_path(key_file: Path) -> Path:
    """Where the staged next key waits: `<key_file>.next`."""
    return key_file.with_name(key_file.name + ".next")


def retired_key_path(key_file: Path, kid: str) -> Path:
    """Where a replaced key is kept: `<key_file>.retired-<kid>`."""
    return key_file.with_name(f"{key_file.name}.retired-{kid}")


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


def _keep(source: Path, target: Path) -> None:
    """Hard-link `source` to `target`; a target already there is the same file kept before."""
    with contextlib.suppress(FileExistsError):
        os.link(source, target)


def activate_next_key(key_file: Path) -> tuple[SigningKey, SigningKey]:
    """Make the staged key the current one; return (old, new). The old one is kept."""
    staged = next_key_path(key_file)
    if not staged.exists():
        raise KeyFileError(f"no key is staged at {staged}; stage one with `collector keys rotate`")
    old, new = load_key_file(key_file), load_key_file(staged)
    public = public_key_path(key_file)
    try:
        _keep(key_file, retired_key_path(key_file, old.kid))
        if public.exists():
            _keep(public, public_key_path(retired_key_path(key_file, old.kid)))
        # The private key first: from here the collector starts with the new key; the public
        # file follows from the staged one (written whole, replaced atomically).
        staged.replace(key_file)
        staged_public = public_key_path(staged)
        if staged_public.exists():
            staged_public.replace(public)
        else:
            public.write_bytes(new.public().public_pem())
        fd = os.open(key_file.parent, os.O_RDONLY)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)
    except OSError as exc:
        raise KeyFileError(f"cannot activate {staged}: {exc.strerror or exc}") from None
    return old, new
