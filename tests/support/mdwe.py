"""Run a program with memory that is never both writable and executable: `python mdwe.py ARGV`.

The units' `MemoryDenyWriteExecute=yes` forbids W+X memory (systemd does it with a seccomp
filter). Linux >= 6.3 offers the same refusal to any process, inherited across execve:
prctl(PR_SET_MDWE, PR_MDWE_REFUSE_EXEC_GAIN), which this sets before it executes ARGV. A
program that would need a W+X page (a JIT, a libffi closure without static trampolines)
fails here as it would under systemd.
"""

from __future__ import annotations

import ctypes
import os
import sys

PR_SET_MDWE = 65
PR_GET_MDWE = 66
PR_MDWE_REFUSE_EXEC_GAIN = 1


def deny_write_execute() -> None:
    """Forbid W+X memory to this process and what it executes; OSError where Linux cannot."""
    libc = ctypes.CDLL(None, use_errno=True)
    if libc.prctl(PR_SET_MDWE, PR_MDWE_REFUSE_EXEC_GAIN, 0, 0, 0) != 0:
        errno = ctypes.get_errno()
        raise OSError(errno, f"prctl(PR_SET_MDWE): {os.strerror(errno)}")


def write_execute_denied() -> bool:
    """Whether this process runs under PR_MDWE_REFUSE_EXEC_GAIN."""
    libc = ctypes.CDLL(None, use_errno=True)
    return bool(libc.prctl(PR_GET_MDWE, 0, 0, 0, 0) & PR_MDWE_REFUSE_EXEC_GAIN)


if __name__ == "__main__":
    deny_write_execute()
    os.execv(sys.argv[1], sys.argv[1:])  # noqa: S606 - the test names the program
