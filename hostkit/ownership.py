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

    The first of `owned` that exists and belongs to another user than root is named with that
    user. Pass the file (if it may exist already) and the folder it is in or would be made in.
    """
    if os.geteuid() != 0:
        return None
    for place in owned:
        if place.exists() and (owner := place.stat().st_uid) != 0:
            user = _user_name(owner)
            hint = f"runuser -u {user} -- ..."
            return f"{place} belongs to {user}, not root: run this as {user} ({hint})"
    return None


def _user_name(uid: int) -> str:
    try:
        return pwd.getpwuid(uid).pw_name
    except KeyError:  # no such user in the password file: the number is all there is
        return str(uid)
