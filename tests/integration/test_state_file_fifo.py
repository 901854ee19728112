"""Files the agent keeps beside its outbox that are FIFOs: refused at start, never waited on.

`edge-agent run` opened the agent lock (`<outbox>.agent-lock`), the command desk's state
(`<outbox>.commands.json`, read by `map_on_probation` too), the seq mark, the epoch journal
and the disk reserve with a blocking open: a FIFO nobody writes to held the start for ever,
and `check` passed over them. As key files (7396029), each is now refused before anything
starts, exit 2 at `outbox.path`, naming the file. Real edge-agent processes (the CLI's own
main), real FIFOs; a command held by one is ended by the subprocess timeout.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from demo.__main__ import write_configs
from hostkit.keyfiles import create_key_pair
from tests.support.cli_runs import in_a_process

FIFO_WORDS = "not a file but a FIFO (named pipe)"
BESIDE = (".agent-lock", ".commands.json", ".seq", ".epochs", ".reserve", ".epoch-lock", "-wal")


def _site(tmp_path: Path) -> Path:
    site = write_configs(tmp_path, "tankfarm", "mqtt://127.0.0.1:1", 1, 1)
    create_key_pair(tmp_path / "keys" / "collector.key")
    create_key_pair(tmp_path / "keys" / "gateway.key")
    return site


@pytest.mark.parametrize("command", ["check", "run"])
@pytest.mark.parametrize("suffix", BESIDE)
def test_a_state_file_that_is_a_fifo_is_refused_not_waited_on(
    tmp_path: Path, command: str, suffix: str
) -> None:
    site = _site(tmp_path)
    fifo = tmp_path / "state" / f"outbox.db{suffix}"
    fifo.parent.mkdir()
    os.mkfifo(fifo)
    # Held by the FIFO, the command is ended by the timeout and the test fails.
    done = in_a_process("edge-agent", command, "-c", str(site), cwd=tmp_path, timeout=30)
    assert done.returncode == 2, done.stderr
    problem = next(line for line in done.stderr.splitlines() if FIFO_WORDS in line)
    assert ": outbox.path: " in problem, done.stderr
    assert f"{fifo}: {FIFO_WORDS}; remove it" in problem, done.stderr
    assert "Traceback" not in done.stderr
    assert fifo.exists()  # left as it was: whoever made it says what it is for


HELD_OPENERS = """
import sys
from pathlib import Path
from edge_agent.shell.agent_lock import AgentLockNotAFileError, another_agent_runs, sole_agent
from edge_agent.shell.commands import map_on_probation
outbox = Path(sys.argv[1])
print(another_agent_runs(outbox))
try:
    with sole_agent(outbox):
        print("locked")
except AgentLockNotAFileError as exc:
    print(exc)
class Config:
    class outbox:
        path = outbox
print(map_on_probation(Config, "site: {}"))
"""


def test_the_openers_themselves_never_wait_on_a_fifo(tmp_path: Path) -> None:
    """Behind the refusal (a FIFO made between it and the start): no open waits for a writer.

    `status` asks `another_agent_runs`, the runner takes the lock with `sole_agent`, `run`'s
    metrics check asks `map_on_probation`; each met a FIFO in a blocking open.
    """
    outbox = tmp_path / "outbox.db"
    os.mkfifo(tmp_path / "outbox.db.agent-lock")
    os.mkfifo(tmp_path / "outbox.db.commands.json")
    done = subprocess.run(
        [sys.executable, "-c", HELD_OPENERS, str(outbox)],
        cwd=tmp_path,  # the code on the path, not a tree `-c` would find in the folder
        capture_output=True,
        text=True,
        check=False,
        timeout=30,  # held by the FIFO, the process is ended here and the test fails
    )
    assert done.returncode == 0, done.stderr
    lock = tmp_path / "outbox.db.agent-lock"
    assert done.stdout.splitlines() == [
        "False",
        f"{lock}: {FIFO_WORDS}; remove it (the agent's lock file goes there)",
        "False",
    ]
