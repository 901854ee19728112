"""Files root would make in a folder the service's user owns.

Both services run as their own user (`User=ganzhi` in the units) on files in their state
folder. A command run by hand as root there makes its files root's (SQLite gives only its own
`-wal` and `-shm` the database's owner), and the service, started next, cannot write them: it
fails inside SQLite or at its next rename. So a program about to make files refuses as root in
another user's folder, and names the user to run it as.
"""

from __future__ import annotations

import os
import pwd
from pathlib import Path


def root_among_others_files(*owned: Path) -> str | None:
    """Why root may not make files at these places (None when it may, or when not root).

    Pass the file (if it may exist already) and the folder it is in or would be made in. A
    place not there yet stands for the nearest folder above it that is: root would make the
    missing folders, its own, in that one. The first place so found that belongs to another
    user than root is named with that user.
    """
    if os.geteuid() != 0:
        return None
    for place in owned:
        there = next(above for above in (place, *place.parents) if above.exists())
        status = there.stat()
        if status.st_uid != 0:
            user, hint = _run_as(status.st_uid, status.st_gid)
            return f"{there} belongs to {user}, not root: run this as {user} ({hint} -- ...)"
    return None


def _run_as(uid: int, gid: int) -> tuple[str, str]:
    """The owner's name, and a command that runs a program as the owner."""
    try:
        name = pwd.getpwuid(uid).pw_name
    except KeyError:  # no such user in the password file (a volume of the host, say)
        # runuser takes only names; setpriv takes the numbers, and the file's group with them.
        return f"user id {uid}", f"setpriv --reuid={uid} --regid={gid} --clear-groups"
    return name, f"runuser -u {name}"
