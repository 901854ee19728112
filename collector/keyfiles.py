"""The collector's private key: `hostkit.keyfiles` with the collector's own advice.

Key files are created once and atomically, read with their mode checked, and rotated by the
host layer (`hostkit.keyfiles`, which the agent uses too); what is the collector's own is the
hint for a missing key.
"""

from __future__ import annotations

from pathlib import Path

from hostkit.keyfiles import read_private_key
from specs.signing import SigningKey


def load_key_file(key_file: Path) -> SigningKey:
    """Read the collector's private key at `key_file`; refuse one that others may read."""
    return read_private_key(key_file, missing_advice="create it with `collector keys init`")
