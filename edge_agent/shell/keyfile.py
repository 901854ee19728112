"""The gateway's key pair on disk: private key 0600, public key beside it."""

from __future__ import annotations

import os
from pathlib import Path

from specs.signing import (
    ED25519,
    SignatureError,
    SigningKey,
    generate_signing_key,
    load_signing_key,
    private_pem,
)


class KeyExistsError(FileExistsError):
    """A key file is already there; replacing a gateway key must be deliberate."""


def create_key_pair(key_file: Path, algorithm: str = ED25519) -> SigningKey:
    """Create a new `algorithm` key at `key_file` (0600, never overwritten) and `<key_file>.pub`."""
    if key_file.exists():
        raise KeyExistsError(f"{key_file} exists; remove it first to make a new gateway key")
    key_file.parent.mkdir(parents=True, exist_ok=True)
    key = generate_signing_key(algorithm)
    # O_EXCL + 0600 at creation: the private key is never readable by others, not even briefly.
    fd = os.open(key_file, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "wb") as handle:
        handle.write(private_pem(key))
        handle.flush()
        os.fsync(handle.fileno())
    public_file = key_file.with_name(key_file.name + ".pub")
    public_file.write_bytes(key.public().public_pem())
    return key


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
