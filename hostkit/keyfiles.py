"""Key pairs on disk: the private key 0600 and whole or absent, the public key beside it.

Both files are written aside, synced, and then moved into place, so that a crash, a full disk
or a reader at the wrong moment never meets half a key: the private key is hard-linked into
place (which fails if anything is there, so a key is never replaced by accident), the public
key at `<key_file>.pub` is renamed over whatever stale copy was there (`os.replace`).

Error tree::

    KeyFileError
    ├── KeyExistsError     a key is already there; replacing one must be deliberate
    └── ExposedKeyError    a private key the group or others may read
"""

from __future__ import annotations

import contextlib
import os
import stat
from collections.abc import Callable
from pathlib import Path
from typing import Final, TypeVar

from configkit.durations import format_size
from configkit.issues import NotAFileError, not_a_regular_file, open_file_to_read
from hostkit.atomicfile import replace_file, sync_directory, write_aside
from hostkit.ownership import root_among_others_files
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

_Key = TypeVar("_Key", SigningKey, VerifyKey)

MAX_KEY_FILE: Final = 64 * 1024
"""Read no further: a key PEM is a few hundred bytes, and `/dev/zero` given as one (a slip of
the hand) was read until the kernel killed the command."""

_PUBLIC_MODE = 0o644
_PRIVATE_MODE = 0o600


class KeyFileError(Exception):
    """A key file cannot be created or used."""


class KeyExistsError(KeyFileError, FileExistsError):
    """A key file is already there; replacing a key must be deliberate."""


class ExposedKeyError(KeyFileError):
    """A private key file is readable (or writable) by the group or others."""


def public_key_path(key_file: Path) -> Path:
    """Where the public half of `key_file` lives: `<key_file>.pub`."""
    return key_file.with_name(key_file.name + ".pub")


def next_key_path(key_file: Path) -> Path:
    """Where the next key waits during a rotation: `<key_file>.next`."""
    return key_file.with_name(key_file.name + ".next")


def retired_key_path(key_file: Path, kid: str) -> Path:
    """Where a replaced key is kept: `<key_file>.retired-<kid>`."""
    return key_file.with_name(f"{key_file.name}.retired-{kid}")


def dangling_link_message(path: Path) -> str | None:
    """What to say of a key path that is a link to nothing, or None when it is not one.

    Such a path is neither missing (the link is there: nothing can be created in its place)
    nor a key; advice for either case would contradict the other.
    """
    if not path.is_symlink() or path.exists():
        return None
    try:
        target = path.readlink()
    except OSError:  # gone or replaced since: say what is known
        return None
    return f"{path}: key file is a link to {target}, which is not there; remove the link first"


def not_there(path: Path) -> bool:
    """Whether nothing is at `path`, as `Path.exists` says, but never a PermissionError.

    A path this user may not look at counts as there, so whoever reads it names why it cannot
    (instead of a traceback). For checks that let files not made yet pass (`check` before
    `keys init`), which may run as another user than the program whose files they are.
    """
    try:
        return not path.exists()
    except PermissionError:
        return False


def check_private_mode(key_file: Path) -> None:
    """Raise ExposedKeyError when anyone but the owner may read or write `key_file`.

    A missing file passes: whoever needs the key reports that with its own advice. Anything
    else that is no key file (a folder, a device, a link to nothing: their modes are no
    advice) is a KeyFileError.
    """
    try:
        status = key_file.stat()
    except FileNotFoundError:
        dangling = dangling_link_message(key_file)
        if dangling is not None:
            raise KeyFileError(dangling) from None
        return
    except OSError as exc:
        raise KeyFileError(f"{key_file}: cannot read: {exc.strerror or exc}") from None
    if stat.S_ISDIR(status.st_mode):
        raise KeyFileError(f"{key_file}: a folder, not a key file")
    instead = not_a_regular_file(status.st_mode)
    if instead is not None:
        raise KeyFileError(not_a_key_file_message(key_file, instead))
    if not stat.S_ISREG(status.st_mode):  # a socket
        raise KeyFileError(f"{key_file}: not a regular file, not a key file")
    mode = stat.S_IMODE(status.st_mode)
    if mode & 0o077:
        raise ExposedKeyError(
            f"{key_file}: private key has mode {mode:04o}, open to group or others;"
            f" run `chmod 600 {key_file}`"
        )


def not_a_key_file_message(path: Path, instead: str, what: str = "key file") -> str:
    """What a program says of a key or certificate path that is a FIFO or a device."""
    return f"{path}: not a file but {instead}; give the {what}"


def write_key_pair(key_file: Path, key: SigningKey) -> None:
    """Write `key` to `key_file` (0600, never over an existing file) and its `.pub` (0644).

    Not as root in a folder another user owns (the service's): the key would be root's, 0600,
    and the service could not read it (hostkit.ownership).
    """
    if (problem := root_among_others_files(key_file.parent)) is not None:
        raise KeyFileError(f"{key_file}: cannot write the key: {problem}")
    try:
        try:
            key_file.parent.mkdir(parents=True, exist_ok=True)
        except FileExistsError:  # not a folder (mkdir's own word, "File exists", misleads)
            raise KeyFileError(
                f"{key_file}: cannot write the key: {key_file.parent} is not a folder"
            ) from None
        temporary = write_aside(key_file, private_pem(key), _PRIVATE_MODE)
        try:
            os.link(temporary, key_file)
        except FileExistsError:
            raise KeyExistsError(_exists_message(key_file)) from None
        finally:
            temporary.unlink()
        # Renamed over a stale `.pub` (and the link synced with it, one folder).
        replace_file(public_key_path(key_file), key.public().public_pem(), _PUBLIC_MODE)
    except OSError as exc:
        if isinstance(exc, KeyExistsError):
            raise
        raise KeyFileError(f"{key_file}: cannot write the key: {exc.strerror or exc}") from None


def create_key_pair(key_file: Path, algorithm: str = ED25519) -> SigningKey:
    """Create a new `algorithm` key at `key_file` (0600, never overwritten) and `<key_file>.pub`."""
    if key_file.exists() or key_file.is_symlink():
        raise KeyExistsError(_exists_message(key_file))
    key = generate_signing_key(algorithm)
    write_key_pair(key_file, key)
    return key


def missing_key_message(path: Path, advice: str) -> str:
    """What a program says of a key file that is not there; `advice`: how to make or get one."""
    return dangling_link_message(path) or f"{path}: key file is missing ({advice})"


def _exists_message(key_file: Path) -> str:
    """Why no key is made at `key_file`: one is there, or a link to nothing is."""
    return dangling_link_message(key_file) or f"{key_file} exists; refusing to overwrite a key"


def read_key_file(
    path: Path,
    load: Callable[[bytes], _Key],
    *,
    missing_advice: str | None = None,
    cannot_read: str = "cannot read",
) -> _Key:
    """Read the key PEM at `path` with `load`; every failure a KeyFileError naming the file.

    `missing_advice` is the program's own hint when there is no file (which command makes it,
    where to copy it from); without one a missing file is unreadable like any other, and the
    OS's reason follows `cannot_read`.
    """
    try:
        with open_file_to_read(path) as file:  # a FIFO would hold the program for ever
            pem = file.read(MAX_KEY_FILE + 1)
    except NotAFileError as exc:
        raise KeyFileError(not_a_key_file_message(path, exc.instead)) from None
    except OSError as exc:
        if missing_advice is not None and isinstance(exc, FileNotFoundError):
            raise KeyFileError(missing_key_message(path, missing_advice)) from None
        raise KeyFileError(f"{path}: {cannot_read}: {exc.strerror or exc}") from None
    if len(pem) > MAX_KEY_FILE:
        raise KeyFileError(f"{path}: larger than {format_size(MAX_KEY_FILE)}; not a key PEM")
    try:
        return load(pem)
    except SignatureError as exc:
        raise KeyFileError(f"{path}: {exc}") from None


def read_private_key(key_file: Path, *, missing_advice: str) -> SigningKey:
    """Read the private key at `key_file`, refusing one that others may read.

    `missing_advice` is the program's own hint when there is no file (which command makes one).
    """
    check_private_mode(key_file)
    return read_key_file(key_file, load_signing_key, missing_advice=missing_advice)


def read_public_key(path: Path) -> VerifyKey:
    """Read a public key PEM (a gateway's, to register it; the collector's, to trust it)."""
    return read_key_file(path, load_verify_key, cannot_read="cannot read the public key")


def _keep(source: Path, target: Path) -> None:
    """Hard-link `source` to `target`; a target already there was kept by an earlier try."""
    with contextlib.suppress(FileExistsError):
        os.link(source, target)


def switch_to_next_key(
    key_file: Path, load: Callable[[Path], SigningKey], *, action: str
) -> tuple[SigningKey, SigningKey]:
    """Make `<key_file>.next` the key at `key_file`, keeping the old one; (old, new).

    `load` reads a private key with the program's advice; `action` names the switch in the
    KeyFileError of a failed file operation. The old key and its `.pub` stay as
    `<key_file>.retired-<kid>`; the public file moves first (from the staged one, or written
    whole), the private key last: until then `<key_file>.next` is there, so a switch killed
    half way is done again whole by the next one (the next start, or `--activate` again).
    Private first, a kill in between left the new key under the old key's `.pub` and nothing
    to say the switch was unfinished.
    """
    staged = next_key_path(key_file)
    old, new = load(key_file), load(staged)
    retired = retired_key_path(key_file, old.kid)
    public = public_key_path(key_file)
    try:
        _keep(key_file, retired)
        if public.exists():
            _keep(public, public_key_path(retired))
        staged_public = public_key_path(staged)
        if staged_public.exists():
            staged_public.replace(public)
        else:  # not in place: `public` is one inode with the retired key's `.pub`
            replace_file(public, new.public().public_pem(), _PUBLIC_MODE)
        staged.replace(key_file)
        sync_directory(key_file.parent)
    except OSError as exc:
        raise KeyFileError(f"cannot {action} {staged}: {exc.strerror or exc}") from None
    return old, new
