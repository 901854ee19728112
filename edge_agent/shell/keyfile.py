"""The gateway's key pair on disk: private key 0600, public key beside it.

Error tree::

    KeyFileError
    ├── KeyExistsError     a key is already there; replacing one must be deliberate
    └── ExposedKeyError    a private key the group or others may read
"""

from __future__ import annotations

import os
import stat
from pathlib import Path

from specs.signing import (
    ED25519,
    SignatureError,
    SigningKey,
    generate_signing_key,
    load_signing_key,
    private_pem,
)


class KeyFileError(Exception):
    """A key file cannot be created or used."""


class KeyExistsError(KeyFileError, FileExistsError):
    """A key file is already there; replacing a gateway key must be deliberate."""


class ExposedKeyError(KeyFileError):
    """A private key file is readable (or writable) by the group or others."""


def public_key_path(key_file: Path) -> Path:
    """Where the public half of `key_file` lives: `<key_file>.pub`."""
    return key_file.with_name(key_file.name + ".pub")


def write_private_key(key_file: Path, key: SigningKey) -> None:
    """Write `key` to `key_file` (mode 0600, never over an existing file) and its `.pub`."""
    key_file.parent.mkdir(parents=True, exist_ok=True)
    # O_EXCL + 0600 at creation: the private key is never readable by others, not even briefly.
    try:
        fd = os.open(key_file, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    except FileExistsError:
        raise KeyExistsError(f"{key_file} exists; refusing to overwrite a key") from None
    with os.fdopen(fd, "wb") as handle:
        handle.write(private_pem(key))
        handle.flush()
        os.fsync(handle.fileno())
    public_key_path(key_file).write_bytes(key.public().public_pem())


def create_key_pair(key_file: Path, algorithm: str = ED25519) -> SigningKey:
    """Create a new `algorithm` key at `key_file` (0600, never overwritten) and `<key_file>.pub`."""
    if key_file.exists():
        raise KeyExistsError(f"{key_file} exists; remove it first to make a new gateway key")
    key = generate_signing_key(algorithm)
    write_private_key(key_file, key)
    return key


def check_private_mode(key_file: Path) -> None:
    """Raise ExposedKeyError when anyone but the owner may read or write `key_file`.

    A missing file passes: whoever needs the key reports that with its own advice.
    """
    try:
        mode = stat.S_IMODE(key_file.stat().st_mode)
    except FileNotFoundError:
        return
    if mode & 0o077:
        raise ExposedKeyError(
            f"{key_file}: private key has mode {mode:04o}, open to group or others;"
            f" run `chmod 600 {key_file}`"
        )


def load_private_key(key_file: Path) -> SigningKey:
    """Read the private key at `key_file`, refusing one that others may read."""
    check_private_mode(key_file)
    try:
        pem = key_file.read_bytes()
    except FileNotFoundError:
        missing = f"{key_file}: key file is missing (see `edge-agent keys init`)"
        raise KeyFileError(missing) from None
    except OSError as exc:
        raise KeyFileError(f"{key_file}: cannot read: {exc.strerror or exc}") from None
    try:
        return load_signing_key(pem)
    except SignatureError as exc:
        raise KeyFileError(f"{key_file}: {exc}") from None


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
