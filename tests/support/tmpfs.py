"""Small real filesystems for the disk-full tests: a tmpfs mounted for one test.

Mounting needs root (CI and the fault matrix run as root here); a test that cannot mount
fails rather than skips, since filling a real filesystem is what it is about.
"""

from __future__ import annotations

import subprocess
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest


def mount_tmpfs(path: Path, options: str) -> None:
    """Mount a tmpfs with mount `options` (`size=12M,mode=0700`) at `path`, made if missing."""
    path.mkdir(parents=True, exist_ok=True)
    done = subprocess.run(
        ["mount", "-t", "tmpfs", "-o", options, "tmpfs", str(path)],
        capture_output=True,
        text=True,
        check=False,
    )
    if done.returncode != 0:
        pytest.fail(f"cannot mount a tmpfs at {path} (needs root): {done.stderr.strip()}")


def unmount(path: Path) -> None:
    """Unmount `path` lazily: processes that still hold files there do not stop it."""
    subprocess.run(["umount", "-l", str(path)], check=False, capture_output=True)


@contextmanager
def tmpfs_at(path: Path, options: str) -> Iterator[Path]:
    """A tmpfs mounted at `path` for the block (`mount_tmpfs`), unmounted after it."""
    mount_tmpfs(path, options)
    try:
        yield path
    finally:
        unmount(path)
