"""How a program that cannot listen on its configured address exits: retried, or not.

Both programs try their address before anything starts and name its line. Under systemd
(`RestartPreventExitStatus=2`) the exit status decides what happens next, so it must say
whether waiting can help: a port another program holds, an address not assigned yet (an IPv6
address right after the link comes up) or a resolver not answering yet at boot clear by
themselves, and the unit should start again (exit 1); a name that does not exist or a port
the service may not bind is a mistake in the config that no restart mends (exit 2).
"""

from __future__ import annotations

import errno
import socket
from typing import Final

from hostkit.configfile import CONFIG_ERROR_EXIT

MAY_CLEAR_EXIT: Final = 1
"""Exit status for a failure that may clear by itself: systemd starts the unit again."""

_LASTING_RESOLVER_ERRORS: Final = frozenset(
    {socket.EAI_NONAME, socket.EAI_SERVICE, socket.EAI_FAMILY, socket.EAI_BADFLAGS}
)
_LASTING_ERRNOS: Final = frozenset({errno.EACCES, errno.EPERM, errno.EINVAL, errno.EAFNOSUPPORT})


def listen_failure_exit(exc: OSError) -> int:
    """The exit status for failing to listen with `exc`: 2 when it is lasting, else 1."""
    if isinstance(exc, socket.gaierror):
        lasting = exc.errno in _LASTING_RESOLVER_ERRORS
    else:
        lasting = exc.errno in _LASTING_ERRNOS
    return CONFIG_ERROR_EXIT if lasting else MAY_CLEAR_EXIT
