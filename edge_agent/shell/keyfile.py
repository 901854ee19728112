"""The gateway's key pair on disk: `hostkit.keyfiles` with the agent's own advice.

The files are written and read by the host layer (private key 0600 and never replaced, public
key at `<key_file>.pub` renamed into place); what is the agent's own is the hint for a missing
key and the check that the key fits `signing.algorithm`.
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
    write_key_pair,
)
from specs.signing import SignatureError, SigningKey, load_signing_key

__all__ = [
    "ExposedKeyError",
    "KeyExistsError",
    "KeyFileError",
    "check_private_mode",
    "create_key_pair",
    "key_algorithm_problem",
    "load_private_key",
    "public_key_path",
    "write_key_pair",
]


def load_private_key(key_file: Path) -> SigningKey:
    """Read the gateway's private key at `key_file`, refusing one that others may read."""
    return read_private_key(key_file, missing_advice="see `edge-agent keys init`")


def key_algorithm_problem(key_file: Path, algorithm: str) -> str | None:
    """Why the key at `key_file` cannot sign as `signing.algorithm` says, or None when it can.

    A key of another algorithm than configured would sign everything with that algorithm
    without a word; the agent refuses to start instead.
    """
    try:
        key = load_signing_key(key_file.read_bytes())
    except OSError as exc:
        return f"{key_file}: cannot read the gateway key: {exc.strerror or exc}"
    except SignatureError as exc:
        return f"{key_file}: {exc}"
    if key.alg != algorithm:
        return (
            f"{key_file}: the key is {key.alg} but signing.algorithm is {algorithm};"
            " make a new key with `edge-agent keys init` or fix signing.algorithm"
        )
    return None
