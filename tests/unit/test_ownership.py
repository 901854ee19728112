"""`hostkit.ownership`: root refuses to make files in another user's folder, and says who to be.

Run as root only: the rule is root's, and only root can give a folder to another user.
"""

from __future__ import annotations

import os
import pwd
import shlex
import subprocess
from pathlib import Path

import pytest

from hostkit.ownership import root_among_others_files

pytestmark = pytest.mark.skipif(os.geteuid() != 0, reason="the rule is root's; chown needs root")


def _given_to(folder: Path, uid: int, gid: int) -> Path:
    folder.mkdir()
    os.chown(folder, uid, gid)
    return folder


def test_a_folder_not_made_yet_is_judged_by_the_folder_it_would_be_made_in(tmp_path: Path) -> None:
    # Root would make `state/sub` (root's) inside the service user's `state`, and the file
    # in it: what the docstring invites a caller to pass (the file, and the folder it would
    # be made in) must not pass because neither is there yet.
    nobody = pwd.getpwnam("nobody")
    state = _given_to(tmp_path / "state", nobody.pw_uid, nobody.pw_gid)
    outbox = state / "sub" / "outbox.db"
    assert root_among_others_files(outbox, outbox.parent) == (
        f"{state} belongs to nobody, not root: run this as nobody (runuser -u nobody -- ...)"
    )


def test_folders_of_root_all_the_way_up_are_roots_to_fill(tmp_path: Path) -> None:
    assert root_among_others_files(tmp_path / "a" / "b" / "c.db", tmp_path / "a" / "b") is None


def _unnamed_uid() -> int:
    for uid in range(54321, 54421):
        try:
            pwd.getpwuid(uid)
        except KeyError:
            return uid
    pytest.fail("no user id without a name in 54321..54420")


def test_an_owner_with_no_name_gets_a_hint_that_works(tmp_path: Path) -> None:
    # A volume of the host mounted in a container belongs to a user id the container's
    # password file does not know: `runuser -u 54321` refuses an id ("user 54321 does not
    # exist"), so the hint must be one that takes a number.
    uid = _unnamed_uid()
    state = _given_to(tmp_path / "state", uid, uid)
    problem = root_among_others_files(state)
    assert problem is not None
    assert problem.startswith(f"{state} belongs to user id {uid}, not root: run this as user id")
    hint = problem[problem.index("(") + 1 : problem.rindex(" -- ...)")]
    done = subprocess.run(
        [*shlex.split(hint), "--", "id", "-u"], capture_output=True, text=True, check=False
    )
    assert (done.returncode, done.stdout.strip()) == (0, str(uid)), (hint, done.stderr)
