"""An outbox SQLite cannot read for a reason that is not the file's own is left as it is.

Only SQLite's verdict that the file itself is damaged (SQLITE_CORRUPT, SQLITE_NOTADB, a failed
quick_check, a state table that is not the outbox's) moves it aside with its backlog. With room
on the disk, a lock another process holds (SQLITE_BUSY), a file SQLite cannot open
(SQLITE_CANTOPEN: too many open files, a link to nowhere in the place of its -wal) or an I/O
error (SQLITE_IOERR: a device in the place of its -shm; a failed read of the file itself is its
own damage: tests/unit/test_outbox_damage_verdict.py) says nothing of the file: a real
`edge-agent run` (and `backfill`, `keys rotate`) names the path and the error, exits 1 and
leaves the file byte for byte as it was, so that systemd's restart tries again; once the cause
is gone the outbox opens on the same epoch and backlog (20 undelivered blocks, 1,000 readings).
Every cause here works as root, as CI runs.

A lock is waited for before SQLITE_BUSY (the outbox's busy timeout: 30 s in every plan `edge-agent
run` compiles). The lock cases start what `run` execs, `edge_agent.runner`, on the plan `run`
compiles from the site map with that wait cut to 1 s: the same agent, exit and message, without
waiting out 30 s twice.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import stat
import subprocess
import sys
import tempfile
from collections.abc import Callable, Iterator
from contextlib import AbstractContextManager
from dataclasses import replace
from pathlib import Path

import pytest

from edge_agent.config import parse_site_config
from edge_agent.core.plan import OUTBOX_BUSY_TIMEOUT
from edge_agent.core.plan_codec import write_plan
from edge_agent.core.plan_compile import compile_plan
from edge_agent.shell.outbox_open import open_outbox
from specs.catalogue import default_catalogue
from tests.support.cli_runs import in_a_process
from tests.support.held_process import held_process
from tests.support.outbox_site import KEY, SITE, site_with_its_outbox

pytestmark = pytest.mark.timeout(180)

BLOCKS = 20
READINGS = 50


def _holder_script(*, exclusive: bool) -> str:
    """Python run in another process: a write transaction on the outbox, held until stdin ends.

    `exclusive`: in SQLite's exclusive locking mode, as `PRAGMA locking_mode=EXCLUSIVE` in a
    sqlite3 shell; nobody else may then even read the file. Without it, only writers wait.
    """
    return "\n".join(
        [
            "import sqlite3, sys",
            "db = sqlite3.connect(sys.argv[1], isolation_level=None)",
            *(["db.execute('PRAGMA locking_mode=EXCLUSIVE')"] if exclusive else []),
            "db.execute('BEGIN IMMEDIATE')",
            "db.execute(\"UPDATE meta SET value = value WHERE key = 'epoch'\")",
            "print('held', flush=True)",
            "sys.stdin.read()",
        ]
    )


@contextlib.contextmanager
def _held_by_another_process(path: Path, *, exclusive: bool) -> Iterator[None]:
    # Left, its stdin ends and its transaction is rolled back as the process ends.
    with held_process(_holder_script(exclusive=exclusive), str(path)):
        yield


def _locked_exclusively(path: Path) -> AbstractContextManager[None]:
    return _held_by_another_process(path, exclusive=True)


def _write_locked(path: Path) -> AbstractContextManager[None]:
    return _held_by_another_process(path, exclusive=False)


@contextlib.contextmanager
def _wal_linked_to_nowhere(path: Path) -> Iterator[None]:
    wal = path.with_name(path.name + "-wal")
    wal.symlink_to(path.parent / "gone" / wal.name)
    yield
    wal.unlink()


@contextlib.contextmanager
def _device_at_shm(path: Path) -> Iterator[None]:
    shm = path.with_name(path.name + "-shm")
    os.mknod(shm, 0o600 | stat.S_IFCHR, os.makedev(1, 3))  # /dev/null's: it maps no memory
    yield
    shm.unlink()


Cause = Callable[[Path], AbstractContextManager[None]]
Start = Callable[[Path, Path], subprocess.CompletedProcess[str]]
SHORT_BUSY_TIMEOUT = 1.0


def _edge_agent_run(site: Path, cwd: Path) -> subprocess.CompletedProcess[str]:
    return in_a_process("edge-agent", "run", "-c", str(site), cwd=cwd)


def _runner_waiting_briefly_for_locks(site: Path, cwd: Path) -> subprocess.CompletedProcess[str]:
    """What `edge-agent run -c site` execs, on the plan it compiles, with a 1 s busy timeout."""
    text = site.read_text(encoding="utf-8")
    config = parse_site_config(text, str(site), site.parent)
    plan = compile_plan(
        config, default_catalogue(), site_file=site, site_text=text, wire_of=os.path.realpath
    )
    assert plan.outbox.busy_timeout == OUTBOX_BUSY_TIMEOUT == 30.0  # what a site gets
    brief = replace(plan, outbox=replace(plan.outbox, busy_timeout=SHORT_BUSY_TIMEOUT))
    with tempfile.TemporaryFile("w+", encoding="ascii") as file:
        write_plan(brief, file)
        file.flush()
        fd = file.fileno()
        return subprocess.run(
            [sys.executable, "-m", "edge_agent.runner", "--plan-fd", str(fd)],
            pass_fds=(fd,),
            cwd=cwd,
            capture_output=True,
            text=True,
            check=False,
            timeout=45,
        )


async def _backlog(path: Path) -> tuple[str, int, int, int]:
    """The outbox's epoch, last seq, undelivered blocks and records, opened as the agent does."""
    async with open_outbox(path, SITE, KEY) as outbox:
        stats = await outbox.stats()
    return stats.epoch, stats.last_seq, stats.undelivered, stats.undelivered_records


async def _outbox_and_site(tmp_path: Path) -> tuple[Path, Path, tuple[str, int, int, int]]:
    path = tmp_path / "state" / "outbox.db"
    path.parent.mkdir()
    site = await site_with_its_outbox(path, tmp_path, blocks=BLOCKS, readings=READINGS)
    backlog = await _backlog(path)
    assert backlog[1:] == (BLOCKS, BLOCKS, BLOCKS * READINGS)
    return path, site, backlog


def _left_alone(done: subprocess.CompletedProcess[str], path: Path, says: str) -> None:
    assert not list(path.parent.glob(f"{path.name}.corrupt-*")), f"moved aside: {done.stderr}"
    assert "Traceback" not in done.stderr, done.stderr
    assert done.returncode == 1, done.stderr
    assert says in done.stderr, done.stderr


@pytest.mark.parametrize(
    ("cause", "says", "start"),
    [
        (
            _locked_exclusively,
            "check the outbox: database is locked (SQLITE_BUSY): another",
            _runner_waiting_briefly_for_locks,
        ),
        (
            _write_locked,
            "open the outbox: database is locked (SQLITE_BUSY): another",
            _runner_waiting_briefly_for_locks,
        ),
        (
            _wal_linked_to_nowhere,
            "check the outbox: unable to open database file (SQLITE_CANTOPEN)",
            _edge_agent_run,
        ),
        # `edge-agent run` refuses a device there at its config check (below); the runner
        # meets one that appears after it.
        (
            _device_at_shm,
            "check the outbox: disk I/O error (SQLITE_IOERR",
            _runner_waiting_briefly_for_locks,
        ),
    ],
    ids=["locked_exclusively", "write_locked", "wal_linked_to_nowhere", "device_at_shm"],
)
async def test_run_leaves_an_outbox_it_cannot_read_alone(
    tmp_path: Path, cause: Cause, says: str, start: Start
) -> None:
    path, site, backlog = await _outbox_and_site(tmp_path)
    sealed = path.read_bytes()
    with cause(path):
        done = await asyncio.to_thread(start, site, tmp_path)
    _left_alone(done, path, f"{path}: cannot {says}")
    assert path.read_bytes() == sealed
    assert await _backlog(path) == backlog


async def test_run_refuses_a_device_beside_the_outbox_before_it_starts(tmp_path: Path) -> None:
    path, site, backlog = await _outbox_and_site(tmp_path)
    with _device_at_shm(path):
        done = await asyncio.to_thread(_edge_agent_run, site, tmp_path)
    assert done.returncode == 2, done.stderr
    assert f"outbox.path: {path}-shm: not a file but a character device" in done.stderr
    assert await _backlog(path) == backlog


@pytest.mark.parametrize("command", ["backfill", "keys rotate"])
async def test_commands_that_seal_leave_an_outbox_they_cannot_open_alone(
    tmp_path: Path, command: str
) -> None:
    """`backfill` and `keys rotate` open the outbox as `run` does."""
    path, site, backlog = await _outbox_and_site(tmp_path)
    log = tmp_path / "log.csv"
    log.write_text("point,t,value\nT001-LT-01,2024-03-01 00:00:00,1.5\n", encoding="utf-8")
    extra = ["--csv", str(log)] if command == "backfill" else []
    with _wal_linked_to_nowhere(path):
        done = await asyncio.to_thread(
            in_a_process, "edge-agent", *command.split(), "-c", str(site), *extra, cwd=tmp_path
        )
    _left_alone(done, path, f"{path}: cannot check the outbox: unable to open database file")
    assert await _backlog(path) == backlog


async def test_too_few_file_descriptors_never_move_the_outbox_aside(tmp_path: Path) -> None:
    """RLIMIT_NOFILE binds root too: with one descriptor too few, SQLite opens the outbox but
    not the -wal beside it (SQLITE_CANTOPEN). Started with 4 descriptors, then one more each
    time: every start stops before the outbox or names it, none moves it aside, and the first
    one to reach it names SQLITE_CANTOPEN and exits 1."""
    path, site, backlog = await _outbox_and_site(tmp_path)
    sealed = path.read_bytes()
    for limit in range(4, 64):
        done = await asyncio.to_thread(
            in_a_process, "edge-agent", "run", "-c", str(site), cwd=tmp_path, open_files=limit
        )
        assert not list(path.parent.glob(f"{path.name}.corrupt-*")), (limit, done.stderr)
        assert path.read_bytes() == sealed, limit
        if f"{path}: cannot" in done.stderr:
            break
    else:
        pytest.fail("no start reached the outbox")
    _left_alone(done, path, "(SQLITE_CANTOPEN): it or its -wal or -shm cannot be opened")
    assert await _backlog(path) == backlog
