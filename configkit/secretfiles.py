"""Secrets kept in files of their own (`token_file`, `password_file`), so YAML holds none.

A config key of type `SecretFile` names a file (relative to the config's folder); checking the
config reads it, so that a missing, unreadable, empty or too widely readable secret file is a
config error with file, line and key before anything starts. The file must be a regular file
that neither group nor others may read or write (mode 0600 or 0400): a secret anyone on the
machine can read is no secret. One trailing line end is dropped; the rest is the secret.
"""

from __future__ import annotations

import os
import stat
from pathlib import Path
from typing import Annotated

from pydantic import BeforeValidator, SecretStr, ValidationInfo

from configkit.fields import resolve_path

_SHARED_BITS = stat.S_IRWXG | stat.S_IRWXO


class SecretFileError(ValueError):
    """A secret file cannot be used: missing, unreadable, not private, or empty."""


def read_secret_file(path: Path) -> SecretStr:
    """The secret in `path`; SecretFileError saying what is wrong with the file."""
    try:
        # O_NOFOLLOW is not used: secrets are often symlinked (systemd credentials); the
        # mode checked is the target's, read through the descriptor actually read.
        # O_NONBLOCK: opening a FIFO or a serial line would wait for its other end (a pushed
        # map is checked on the agent's loop); a regular file reads the same with it.
        descriptor = os.open(path, os.O_RDONLY | os.O_CLOEXEC | os.O_NONBLOCK)
    except FileNotFoundError:
        raise SecretFileError(f"secret file {path} does not exist") from None
    except OSError as exc:
        raise SecretFileError(f"cannot read secret file {path}: {exc.strerror}") from None
    # Asked before the descriptor becomes a file object: os.fdopen refuses a directory with
    # an IsADirectoryError of its own, which is no SecretFileError.
    mode = os.fstat(descriptor).st_mode
    if not stat.S_ISREG(mode):
        os.close(descriptor)
        raise SecretFileError(f"secret file {path} is not a regular file")
    with os.fdopen(descriptor, "rb") as file:
        if mode & _SHARED_BITS:
            raise SecretFileError(
                f"secret file {path} is open to group or others (mode"
                f" {stat.S_IMODE(mode):04o}); make it private: chmod 600 {path}"
            )
        try:
            text = file.read().decode("utf-8")
        except OSError as exc:
            raise SecretFileError(f"cannot read secret file {path}: {exc.strerror}") from None
        except UnicodeDecodeError:
            raise SecretFileError(f"secret file {path} is not UTF-8 text") from None
    secret = text.removesuffix("\n").removesuffix("\r")
    if not secret.strip():
        raise SecretFileError(f"secret file {path} is empty")
    return SecretStr(secret)


def _secret_from_file(value: object, info: ValidationInfo) -> object:
    if isinstance(value, SecretStr):
        return value
    if not isinstance(value, str) or not value.strip():
        raise SecretFileError("must be the path of a file holding the secret")
    return read_secret_file(resolve_path(Path(value), info))


SecretFile = Annotated[SecretStr, BeforeValidator(_secret_from_file)]
"""A secret read from the file a config key names; the config holds only the path."""
