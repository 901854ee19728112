"""Problems in a config file, each placed at `file:line: key.path`.

Error tree::

    ConfigError     carries every ConfigIssue found; str() is one issue per line
"""

from __future__ import annotations

import errno
import os
import stat
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import BinaryIO, Final, TypeAlias

from configkit.durations import format_size

KeyPath: TypeAlias = tuple[str | int, ...]
"""Where a value sits in a document: keys and list indexes from the top."""

_SHOWN_WIDTH = 40


@dataclass(frozen=True, slots=True)
class ConfigIssue:
    """One problem in a config file, printed `file:line: key.path: message`."""

    file: str
    line: int | None
    path: str
    message: str
    column: int | None = None

    def __str__(self) -> str:
        where = self.file if self.line is None else f"{self.file}:{self.line}"
        if self.column is not None:
            where = f"{where}:{self.column}"
        return f"{where}: {self.path}: {self.message}" if self.path else f"{where}: {self.message}"


class ConfigError(Exception):
    """A config file is unusable; `issues` lists every problem found, in file order."""

    def __init__(self, issues: Iterable[ConfigIssue]) -> None:
        self.issues = tuple(issues)
        super().__init__("\n".join(str(issue) for issue in self.issues))


def format_path(path: Sequence[str | int]) -> str:
    """Render a key path the way people read it: `devices[0].points[2].address.start`."""
    text = ""
    for part in path:
        if isinstance(part, int):
            text += f"[{part}]"
        elif not part or "." in part or part != part.strip():
            text += f"[{part!r}]"  # keys a dotted path cannot show as they are
        else:
            text = f"{text}.{part}" if text else part
    return text


def unreadable(file: str, error: OSError | UnicodeDecodeError) -> ConfigError:
    """Return the `ConfigError` for a config file that cannot be read as UTF-8 text."""
    if isinstance(error, UnicodeDecodeError):
        return ConfigError([ConfigIssue(file, None, "", f"not UTF-8 text: {error.reason}")])
    return ConfigError([ConfigIssue(file, None, "", f"cannot read: {error.strerror or error}")])


MAX_CONFIG_BYTES: Final = 64 * 1024 * 1024
"""A config file larger than this is refused unread: `-c /dev/zero` (or a disk) would take
every byte of memory; a site map of 100,000 points is a few MiB."""


def not_a_regular_file(mode: int) -> str | None:
    """What a path to be read as a file is instead (a FIFO, a device), or None.

    None for a folder too: reading one fails at once, and says so (`Is a directory`).
    """
    if stat.S_ISFIFO(mode):
        return "a FIFO (named pipe)"
    if stat.S_ISCHR(mode):
        return "a character device"
    if stat.S_ISBLK(mode):
        return "a block device"
    return None


class NotAFileError(OSError):
    """A path to be read as a file is a FIFO or a device instead; `instead` says which."""

    def __init__(self, path: Path, instead: str) -> None:
        super().__init__(f"{path}: not a file but {instead}")
        self.instead = instead


def open_file_to_read(path: Path) -> BinaryIO:
    """`path` opened to read, once it is known to be a file: NotAFileError for a FIFO or device.

    Opened with O_NONBLOCK (opening a FIFO would wait for a writer) and the kind asked of the
    descriptor opened (no race with a rename), before a byte is read. Config files and the key
    and certificate files the programs read at start all come through here.
    """
    descriptor = os.open(path, os.O_RDONLY | os.O_CLOEXEC | os.O_NONBLOCK)
    try:
        _refuse_unless_a_file(path, os.fstat(descriptor).st_mode)
    except BaseException:
        os.close(descriptor)
        raise
    return os.fdopen(descriptor, "rb")


def _refuse_unless_a_file(path: Path, mode: int) -> None:
    if stat.S_ISDIR(mode):  # os.fdopen would refuse it too, but keep the descriptor open
        raise IsADirectoryError(errno.EISDIR, os.strerror(errno.EISDIR), str(path))
    instead = not_a_regular_file(mode)
    if instead is not None:
        raise NotAFileError(path, instead)


def read_config_text(path: Path) -> str:
    """The config file at `path` as text; `ConfigError` when it cannot be read as UTF-8.

    A FIFO or a device is refused unread: a FIFO with no writer would wait for ever, a device
    such as /dev/zero never ends. At most MAX_CONFIG_BYTES are read: past them the file is
    refused as no config file.
    """
    try:
        try:
            opened = open_file_to_read(path)
        except NotAFileError as exc:
            issue = ConfigIssue(
                str(path), None, "", f"not a file but {exc.instead}; give the config file"
            )
            raise ConfigError([issue]) from None
        with opened as file:
            data = file.read(MAX_CONFIG_BYTES + 1)
        if len(data) > MAX_CONFIG_BYTES:
            raise ConfigError(
                [
                    ConfigIssue(
                        str(path),
                        None,
                        "",
                        f"larger than {format_size(MAX_CONFIG_BYTES)};"
                        " a config file is text a person wrote",
                    )
                ]
            )
        # Newlines as text mode reads them (CRLF and CR become LF), as read_text gave them.
        return data.decode("utf-8").replace("\r\n", "\n").replace("\r", "\n")
    except (OSError, UnicodeDecodeError) as exc:
        raise unreadable(str(path), exc) from None


def show_value(value: object) -> str:
    """A value as an error message quotes it: mappings and lists by kind, long text cut."""
    if isinstance(value, dict):
        return "a mapping"
    if isinstance(value, list):
        return "a list"
    text = repr(value)
    return text if len(text) <= _SHOWN_WIDTH else text[: _SHOWN_WIDTH - 3] + "..."
