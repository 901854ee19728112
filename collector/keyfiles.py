"""The collector's key files: created once and atomically, read with their mode checked.

Error tree::

    KeyFileError
    ├── KeyFileExistsError   `keys init` found a key already there and kept it
    └── ExposedKeyError      a private key the group or others may read
"""

from __future__ import annotations

import contextlib
import os
import secrets
import stat
from pathlib import Path

from specs.signing import (
    ED25519,
    SignatureError,
    SigningKey,
    VerifyKey,
    generate_signing_key,
    load_signing_key,
    load_verify_key,
    private_pem,
)


class KeyFileError(Exception):
    """A key file cannot be created or read."""


class KeyFileExistsError(KeyFileError):
    """A key exists at that path already; it is never overwritten."""


class ExposedKeyError(KeyFileError):
    """A private key file is readable (or writable) by the group or others."""


def check_private_mode(key_file: Path) -> None:
    """Raise ExposedKeyError when anyone but the owner may read or write `key_file`.

    A missing file passes: whoever needs the key reports that with its own advice.
    """
    try:
        mode = stat.S_IMODE(key_file.stat().st_mode)
    except FileNotFoundError:
        return
    except OSError as exc:
        raise KeyFileError(f"cannot read key {key_file}: {exc.strerror or exc}") from None
    if mode & 0o077:
        raise ExposedKeyError(
            f"{key_file}: private key has mode {mode:04o}, open to group or others;"
            f" run `chmod 600 {key_file}`"
        )


def public_key_path(key_file: Path) -> Path:
    """Where the public half of `key_file` lives: `<key_file>.pub`."""
    return key_file.with_name(key_file.name + ".pub")


def _write_new(path: Path, data: bytes, mode: int) -> Path:
    """Write `data` to a fresh temporary file beside `path`, synced; return its name."""
    temporary = path.with_name(f".{path.name}.{secrets.token_hex(6)}.tmp")
    fd = os.open(temporary, os.O_WRONLY | os.O_CREAT | os.O_EXCL, mode)
    try:
        os.write(fd, data)
        os.fsync(fd)
    finally:
        os.close(fd)
    return temporary


def _sync_dir(folder: Path) -> None:
    fd = os.open(folder, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def create_key_files(key_file: Path, algorithm: str = ED25519) -> SigningKey:
    """Create a new `algorithm` key at `key_file` (0600) and its public key at `<key_file>.pub`.

    The private key appears whole or not at all (written aside, then hard-linked into place,
    which fails if anything exists there), and an existing key is never replaced.
    """
    if key_file.exists():
        raise KeyFileExistsError(f"{key_file} exists; refusing to overwrite a key")
    try:
        key_file.parent.mkdir(parents=True, exist_ok=True)
        key = generate_signing_key(algorithm)
        temporary = _write_new(key_file, private_pem(key), 0o600)
        try:
            os.link(temporary, key_file)
        except FileExistsError:
            raise KeyFileExistsError(f"{key_file} exists; refusing to overwrite a key") from None
        finally:
            temporary.unlink()
        public = public_key_path(key_file)
        temporary = _write_new(public, key.public().public_pem(), 0o644)
        try:
            temporary.replace(public)
        except OSError:
            with contextlib.suppress(FileNotFoundError):
                temporary.unlink()
            raise
        _sync_dir(key_file.parent)
    except KeyFileExistsError:
        raise
    except OSError as exc:
        raise KeyFileError(f"cannot create key {key_file}: {exc.strerror or exc}") from None
    return key


def load_key_file(key_file: Path) -> SigningKey:
    """Read the private key at `key_file`; refuse one that others may read."""
    check_private_mode(key_file)
    try:
        pem = key_file.read_bytes()
    except FileNotFoundError:
        raise KeyFileError(
            f"{key_file} does not exist; create it with `collector keys init`"
        ) from None
    except OSError as exc:
        raise KeyFileError(f"cannot read key {key_file}: {exc.strerror or exc}") from None
    try:
        return load_signing_key(pem)
    except SignatureError as exc:
        raise KeyFileError(f"{key_file}: {exc}") from None


def load_public_key_file(path: Path) -> VerifyKey:
    """Read a public key PEM (a gateway's, to register it)."""
    try:
        pem = path.read_bytes()
    except OSError as exc:
        raise KeyFileError(f"cannot read public key {path}: {exc.strerror or exc}") from None
    try:
        return load_verify_key(pem)
    except SignatureError as exc:
        raise KeyFileError(f"{path}: {exc}") from None
