"""An `outbox.path` the agent cannot use is refused at its line, before anything starts.

A folder where the outbox file should be, a file where its folder should be, a device, or a
folder no file can be created in used to pass `check`; `run` then died with a Python traceback
from inside the start-up (NotADirectoryError, sqlite3's 'disk I/O error', 'unable to open
database file') or, for a folder, moved the folder aside as a "corrupt outbox": under systemd, a
crash loop with no line to fix. Now `check` and `run` name the setting's line, as for any map
mistake (`check` leaves permissions to `run`, which may run as another user).
"""

from __future__ import annotations

import os
import pwd
import sqlite3
import subprocess
import sys
from collections.abc import Iterator
from contextlib import closing
from pathlib import Path

import pytest

from tests.support.cli_runs import (
    agent_cli,
    as_a_user_kept_out_of,
    bound_by_file_modes,
    folder_open_to_all,
    in_a_process,
    keyed_example_site,
)


@pytest.fixture
def site(tmp_path: Path) -> Path:
    return keyed_example_site(tmp_path)


def _with_outbox_at(site: Path, path: Path) -> int:
    """Set `outbox.path` to `path`; the line number of its `path:` key."""
    text = site.read_text(encoding="utf-8").replace("path: state/outbox.db", f"path: {path}")
    site.write_text(text, encoding="utf-8")
    lines = text.splitlines()
    return 1 + next(number for number, line in enumerate(lines) if line == f"  path: {path}")


def _unusable(tmp_path: Path, problem: str) -> tuple[Path, str]:
    """An outbox path with `problem`, and what the refusal says of it."""
    if problem == "another program's database":
        path = tmp_path / "state" / "outbox.db"
        path.parent.mkdir()
        _another_programs_database(path)
        return path, f"{path} is not a Ganzhi outbox: an SQLite database with other tables (tags)"
    return _no_file(tmp_path, problem)


def _no_file(tmp_path: Path, problem: str) -> tuple[Path, str]:
    """An outbox path where no outbox file can be, and what the refusal says of it."""
    if problem == "a folder":
        path = tmp_path / "state" / "outbox.db"
        path.mkdir(parents=True)
        return path, f"{path} is a folder, not a file"
    if problem == "a file as its folder":
        (tmp_path / "state").write_text("not a folder\n", encoding="utf-8")
        return tmp_path / "state" / "outbox.db", f"{tmp_path / 'state'} is not a folder"
    if problem == "no regular file":
        # A FIFO in the test's own folder, not /dev/null: a run that failed to refuse it would
        # leave its side files (journal, reserve, locks) in /dev, shared by the whole machine.
        path = tmp_path / "state" / "outbox.db"
        path.parent.mkdir()
        os.mkfifo(path)
        return path, f"{path} is not a regular file"
    if problem.startswith("a folder as its "):
        # A file the agent keeps beside the outbox: SQLite's -wal would make the outbox look
        # corrupt (moved aside with its backlog), the lock ended `run` in a traceback.
        path = tmp_path / "state" / "outbox.db"
        beside = path.with_name(path.name + problem.removeprefix("a folder as its "))
        beside.mkdir(parents=True)
        return path, f"{beside} is a folder, not a file"
    absent = tmp_path / "unmounted" / "ganzhi"  # a data partition not mounted, say
    if problem == "a link to nowhere as its folder":
        (tmp_path / "state").symlink_to(absent)
        return tmp_path / "state" / "outbox.db", f"{tmp_path / 'state'} links to {absent},"
    if problem == "a link to nowhere":
        (tmp_path / "state").mkdir()
        (tmp_path / "state" / "outbox.db").symlink_to(absent)
        return tmp_path / "state" / "outbox.db", f"{tmp_path / 'state' / 'outbox.db'} links to"
    raise AssertionError(problem)


def _another_programs_database(path: Path) -> None:
    """An SQLite file of some other program (a historian's, say): tables, no outbox state."""
    with closing(sqlite3.connect(path)) as db, db:
        db.execute("CREATE TABLE tags (name TEXT PRIMARY KEY, value REAL)")
        db.execute("INSERT INTO tags VALUES ('T001', 1.5)")


PROBLEMS = [
    "another program's database",
    "a folder",
    "a file as its folder",
    "no regular file",
    "a link to nowhere as its folder",
    "a link to nowhere",
    "a folder as its -wal",
    "a folder as its -shm",
    "a folder as its .agent-lock",
    "a folder as its .reserve",
]


@pytest.mark.parametrize("problem", PROBLEMS)
def test_check_refuses_an_outbox_path_that_is_no_file(
    site: Path, tmp_path: Path, problem: str
) -> None:
    path, says = _unusable(tmp_path, problem)
    line = _with_outbox_at(site, path)
    result = agent_cli("check", "-c", str(site))
    assert result.exit_code == 2, result.output
    assert f"{site}:{line}: outbox.path: {says}" in result.stderr


def test_check_takes_an_outbox_folder_not_made_yet(site: Path, tmp_path: Path) -> None:
    _with_outbox_at(site, tmp_path / "var" / "lib" / "ganzhi" / "outbox.db")
    assert agent_cli("check", "-c", str(site)).exit_code == 0
    assert not (tmp_path / "var").exists(), "check made the folder"


@pytest.mark.timeout(60)  # without the refusal the agent would run on: fail, never hang
@pytest.mark.parametrize("problem", PROBLEMS)
def test_run_refuses_before_anything_starts(site: Path, tmp_path: Path, problem: str) -> None:
    path, says = _unusable(tmp_path, problem)
    line = _with_outbox_at(site, path)
    beside = set(path.parent.glob("outbox.db.*"))  # what the problem itself put there
    done = in_a_process("edge-agent", "run", "-c", str(site), cwd=tmp_path)
    assert done.returncode == 2, done.stderr
    assert f"{site}:{line}: outbox.path: {says}" in done.stderr
    assert "Traceback" not in done.stderr
    made = set(path.parent.glob("outbox.db.*")) - beside
    assert not made, "refused only after the outbox was opened"


@pytest.mark.parametrize(
    "command",
    [
        ["status"],
        ["status", "--json"],
        ["outbox", "stats"],
        ["outbox", "export"],
        ["outbox", "resend", "--from-seq", "1"],
    ],
)
@pytest.mark.parametrize("problem", ["a file as its folder", "a link to nowhere as its folder"])
def test_a_state_folder_that_is_no_folder_is_named_by_status_and_outbox(
    site: Path, tmp_path: Path, command: list[str], problem: str
) -> None:
    """The state folder replaced by a regular file: `status` said the agent is not running and
    `outbox.db: no outbox yet (the agent has not run)` (exit 3), `outbox ...` the same
    (exit 1). Now each names the folder at `outbox.path`'s line, exit 2, as `check` and `run`."""
    path, says = _no_file(tmp_path, problem)
    line = _with_outbox_at(site, path)
    done = in_a_process("edge-agent", *command, "-c", str(site), cwd=tmp_path)
    assert done.returncode == 2, done.stderr
    assert f"{site}:{line}: outbox.path: {says}" in done.stderr
    assert "no outbox yet" not in done.stderr + done.stdout
    assert "Traceback" not in done.stderr


@pytest.mark.timeout(60)
def test_run_refuses_a_folder_no_file_can_be_created_in(site: Path, tmp_path: Path) -> None:
    # /proc takes no new files, even from root (who may write anywhere chmod can forbid).
    line = _with_outbox_at(site, Path("/proc/outbox.db"))
    done = in_a_process("edge-agent", "run", "-c", str(site), cwd=tmp_path)
    assert done.returncode == 2, done.stderr
    assert f"{site}:{line}: outbox.path: cannot create files in /proc:" in done.stderr
    assert "Traceback" not in done.stderr


def _named_file(site: Path, which: str) -> tuple[Path, str]:
    """A file the site map names, and the setting that names it."""
    if which == "the gateway key":
        return site.parent / "keys" / "gateway.key", "signing.key_file"
    if which == "the collector key":
        return site.parent / "keys" / "collector.pub", "uplink.collector_key"
    return site, "the site map itself"


@pytest.mark.timeout(60)
@pytest.mark.parametrize("which", ["the gateway key", "the collector key", "the site map"])
@pytest.mark.parametrize("command", ["check", "run"])
def test_an_outbox_path_naming_another_file_of_the_map_is_refused(
    site: Path, tmp_path: Path, which: str, command: str
) -> None:
    """A slip of the pen once made the agent move the gateway key aside as a 'corrupt outbox'
    and create its database in the key's place (or the site map's): the next start failed."""
    named, setting = _named_file(site, which)
    line = _with_outbox_at(site, named)
    before = named.read_bytes()
    done = in_a_process("edge-agent", command, "-c", str(site), cwd=tmp_path)
    assert done.returncode == 2, done.stderr
    assert (
        f"{site}:{line}: outbox.path: {named} is also {setting}; the outbox would take its place"
        in done.stderr
    )
    assert named.read_bytes() == before
    assert not list(named.parent.glob(f"{named.name}.*corrupt*"))


@pytest.fixture
def open_to_all() -> Iterator[Path]:
    with folder_open_to_all() as folder:
        yield folder


@pytest.mark.timeout(60)
@pytest.mark.parametrize("command", ["check", "run"])
def test_an_outbox_folder_the_user_cannot_look_into_is_named_at_its_line(
    open_to_all: Path, command: str
) -> None:
    """`check` run by a user who may not look into the outbox's folder ended in a
    PermissionError traceback (`run` too): now a refusal at `outbox.path`'s line, exit 2, as the
    gateway key's 'cannot read' is."""
    site = keyed_example_site(open_to_all)
    state = open_to_all / "state"
    state.mkdir()
    line = 1 + site.read_text(encoding="utf-8").splitlines().index("  path: state/outbox.db")
    prefix = as_a_user_kept_out_of(state, open_to_all)
    says = f"{site}:{line}: outbox.path: cannot look into {state}: Permission denied\n"
    _refused(prefix, command, site, says)


def _refused(prefix: list[str], command: str, site: Path, says: str) -> None:
    """`edge-agent COMMAND -c SITE` behind `prefix` is refused, exit 2, saying `says`."""
    main = "from edge_agent.cli import main; main()"
    done = subprocess.run(
        [*prefix, sys.executable, "-c", main, command, "-c", str(site)],
        cwd=site.parent,
        capture_output=True,
        text=True,
        check=False,
        timeout=45,
    )
    assert "Traceback" not in done.stderr, done.stderr
    assert done.returncode == 2, done.stderr
    assert says in done.stderr, done.stderr


def _in_users_folder(open_to_all: Path) -> tuple[Path, int]:
    """A site whose state folder belongs to `nobody`, as /var/lib/ganzhi belongs to the
    service's user; its `outbox.path` line."""
    site = keyed_example_site(open_to_all)
    state = open_to_all / "state"
    state.mkdir()
    nobody = pwd.getpwnam("nobody")
    os.chown(state, nobody.pw_uid, nobody.pw_gid)
    return site, 1 + site.read_text(encoding="utf-8").splitlines().index("  path: state/outbox.db")


AS_ROOT = pytest.mark.skipif(os.geteuid() != 0, reason="only root may write in others' folders")


@AS_ROOT
@pytest.mark.timeout(60)
@pytest.mark.parametrize("command", ["run", "backfill"])
def test_root_is_refused_in_the_service_users_folder(open_to_all: Path, command: str) -> None:
    """An agent run by hand as root in the service's state folder left `outbox.db` (and its
    journal, seq and epoch files) root's: the service, started next as its user, then failed in
    SQLite ('attempt to write a readonly database'). Now refused at `outbox.path`'s line."""
    site, line = _in_users_folder(open_to_all)
    state = open_to_all / "state"
    log = open_to_all / "log.csv"
    log.write_text("point,t,value\n", encoding="utf-8")
    args = ["run"] if command == "run" else ["backfill", "--csv", str(log)]
    done = in_a_process("edge-agent", *args, "-c", str(site), cwd=open_to_all)
    assert "Traceback" not in done.stderr, done.stderr
    assert done.returncode == 2, done.stderr
    assert (
        f"{site}:{line}: outbox.path: {state} belongs to nobody, not root: run this as nobody"
        in done.stderr
    )
    assert list(state.iterdir()) == [], "root made files in the service user's folder"


@AS_ROOT
@pytest.mark.timeout(60)
def test_root_may_check_a_map_whose_state_folder_is_the_services(open_to_all: Path) -> None:
    """`check` creates nothing there, so root checking before `systemctl start` is fine."""
    site, _ = _in_users_folder(open_to_all)
    done = in_a_process("edge-agent", "check", "-c", str(site), cwd=open_to_all)
    assert done.returncode == 0, done.stderr


@pytest.mark.timeout(60)
@pytest.mark.parametrize("which", ["outbox.db", "outbox.db-wal"])
def test_run_refuses_an_outbox_file_it_cannot_write(site: Path, tmp_path: Path, which: str) -> None:
    """An outbox file (or its -wal) the agent's user may read but not write: a copy put back
    by root, a backup restored 0444. `run` started, then failed every seal ('attempt to write
    a readonly database') with the readings piling up in memory until the ring let them go.
    Now it is refused at `outbox.path`'s line before anything starts, as an unusable folder."""
    state = tmp_path / "state"
    state.mkdir()
    for name in ("outbox.db", "outbox.db-wal"):
        (state / name).write_bytes(b"")
    (state / which).chmod(0o444)
    line = 1 + site.read_text(encoding="utf-8").splitlines().index("  path: state/outbox.db")
    says = f"{site}:{line}: outbox.path: cannot write {state / which}: Permission denied\n"
    _refused(bound_by_file_modes(), "run", site, says)


@pytest.mark.timeout(60)
def test_run_leaves_another_programs_database_as_it_was(site: Path, tmp_path: Path) -> None:
    """`outbox.path` pointed at another program's SQLite database: the agent created its own
    tables in it (the file held no `meta` table, so it passed for a new outbox) and went on.
    Now `run` refuses at the line, exit 2, and writes nothing there."""
    path = tmp_path / "state" / "outbox.db"
    path.parent.mkdir()
    _another_programs_database(path)
    before = path.read_bytes()
    _with_outbox_at(site, path)
    done = in_a_process("edge-agent", "run", "-c", str(site), cwd=tmp_path)
    assert done.returncode == 2, done.stderr
    assert path.read_bytes() == before
    assert sorted(p.name for p in path.parent.iterdir()) == ["outbox.db"]
