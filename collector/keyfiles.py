"""The collector's key files: `hostkit.keyfiles` with the collector's own advice.

Created once and atomically, read with their mode checked, by the host layer; what is the
collector's own is the hint for a missing key.
"""

from __future__ import annotations

from pathlib import Path

from hostkit.keyfiles import (
    ExposedKeyError,
    KeyExistsError,
    KeyFileError,
    check_private_mode,
    create_key_pair,
    public_key_path,
    read_private_key,
    read_public_key,
)
from specs.signing import SigningKey

__all__ = [
    "ExposedKeyError",
    "KeyExistsError",
    "KeyFileError",
    "check_private_mode",
    "create_key_pair",
    "load_key_file",
    "public_key_path",
    "read_public_key",
]


def load_key_file(key_file: Path) -> SigningKey:
    """Read the collector's private key at `key_file`; refuse one that others may read."""
    return read_private_key(key_file, missing_advice="create it with `collector keys init`")
