"""The gateway's key pair on disk: private key 0600, public key beside it."""

from __future__ import annotations

import os
from pathlib import Path

from specs.signing import SigningKey, generate_signing_key, private_pem


class KeyExistsError(FileExistsError):
    """A key file is already there; replacing a gateway key must be deliberate."""


def create_key_pair(key_file: Path) -> SigningKey:
    """Create a new key at `key_file` (mode 0600, never overwritten) and `<key_file>.pub`."""
    if key_file.exists():
        raise KeyExistsError(f"{key_file} exists; remove it first to make a new gateway key")
    key_file.parent.mkdir(parents=True, exist_ok=True)
    key = generate_signing_key()
    # O_EXCL + 0600 at creation: the private key is never readable by others, not even briefly.
    fd = os.open(key_file, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "wb") as handle:
        handle.write(private_pem(key))
        handle.flush()
        os.fsync(handle.fileno())
    public_file = key_file.with_name(key_file.name + ".pub")
    public_file.write_bytes(key.public().public_pem())
    return key
