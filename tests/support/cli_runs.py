"""The agent's and the collector's commands run in-process (click's runner), and the example site.

The security tests call `edge-agent` and `collector` as an operator would, but without a
process each: `agent_cli(...)` and `collector_cli(...)` return click's `Result` (exit code, stdout,
stderr). The collector logs JSON here, as it does under systemd. `json_output` runs a command
as a process instead and reads the JSON it prints; `in_a_process` runs one to its end (`run` and
`serve`, which exec or serve on, never run in the test's own process). `AGENT` and `COLLECTOR`
name each program's CLI and start command, and check that a start which must be refused was
refused before it opened anything.
`stops_quietly_when_the_reader_goes_away` pipes a command's output to `head -1`, in effect.
`as_a_user_kept_out_of` runs a command as a user who may not look into one folder of the site.
"""

from __future__ import annotations

import contextlib
import json
import os
import pwd
import resource
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Final, Literal

from click.testing import CliRunner, Result

from collector.cli import main as collector_main
from edge_agent.cli import main as agent_main
from specs.signing import generate_signing_key

CONFIGS = Path(__file__).resolve().parents[2] / "configs"
EXAMPLE_SITE = CONFIGS / "tankfarm.yaml"
SIGPIPE_EXIT: Final = 128 + signal.SIGPIPE  # what a shell reports for `seq 1 100000 | head -1`

_MAINS: Final = {
    "edge-agent": "from edge_agent.cli import main; main()",
    "collector": "from collector.cli import main; main()",
}


def agent_cli(*args: str) -> Result:
    """`edge-agent ARGS...`."""
    return CliRunner().invoke(agent_main, list(args))


def collector_cli(*args: str) -> Result:
    """`collector --log-format json ARGS...`."""
    return CliRunner().invoke(collector_main, ["--log-format", "json", *args])


def example_copy(name: str, folder: Path, *changes: tuple[str, str]) -> Path:
    """A copy of configs/`name` in `folder` (its relative paths then lead into `folder`), with
    the first `old` of each `(old, new)` in `changes` made `new` (`old` must be there)."""
    copy = folder / name
    shutil.copyfile(CONFIGS / name, copy)
    if changes:
        text = copy.read_text(encoding="utf-8")
        for old, new in changes:
            assert old in text, old
            text = text.replace(old, new, 1)
        copy.write_text(text, encoding="utf-8")
    return copy


def example_site(folder: Path) -> Path:
    """A copy of configs/tankfarm.yaml in `folder` (its key paths are relative to it)."""
    return example_copy(EXAMPLE_SITE.name, folder)


def keyed_example_site(folder: Path) -> Path:
    """`example_site` with its gateway key made (0600) and a collector public key beside it."""
    copy = example_site(folder)
    assert agent_cli("keys", "init", "-c", str(copy)).exit_code == 0
    collector_key = generate_signing_key().public().public_pem()
    (folder / "keys" / "collector.pub").write_bytes(collector_key)
    return copy


@contextlib.contextmanager
def frozen_agent(site: Path) -> Iterator[subprocess.Popen[bytes]]:
    """A real `edge-agent run` of `site`, listening on its status socket, stopped (SIGSTOP).

    It holds the outbox's agent lock and the kernel accepts on its socket, but nothing answers;
    it is resumed and terminated on leaving."""
    sock = site.parent / "state" / "agent.sock"
    agent = subprocess.Popen(
        [sys.executable, "-c", _MAINS["edge-agent"], "run", "-c", str(site)],
        cwd=site.parent,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        deadline = time.monotonic() + 30
        while not sock.exists():  # listening: the outbox is open
            assert agent.poll() is None, "the agent ended"
            assert time.monotonic() < deadline, "the agent did not start"
            time.sleep(0.1)
        os.kill(agent.pid, signal.SIGSTOP)
        try:
            yield agent
        finally:
            os.kill(agent.pid, signal.SIGCONT)
    finally:
        agent.terminate()
        agent.wait(timeout=30)


def in_a_process(
    program: Literal["edge-agent", "collector"],
    *args: str,
    cwd: Path,
    timeout: float = 45,
    address_space: int | None = None,
    open_files: int | None = None,
) -> subprocess.CompletedProcess[str]:
    """`program ARGS...` in a process of its own, to its end; its exit code and output.

    `address_space` (bytes) holds the process to that much memory: a command that reads
    without bound then fails fast (MemoryError) instead of starving the test machine.
    `open_files` holds it to that many file descriptors (RLIMIT_NOFILE, root bound too).
    """

    def limit_resources() -> None:
        if address_space is not None:
            resource.setrlimit(resource.RLIMIT_AS, (address_space, address_space))
        if open_files is not None:
            resource.setrlimit(resource.RLIMIT_NOFILE, (open_files, open_files))

    return subprocess.run(
        [sys.executable, "-c", _MAINS[program], *args],
        cwd=cwd,
        capture_output=True,
        text=True,
        check=False,
        timeout=timeout,
        preexec_fn=limit_resources,
    )


@dataclass(frozen=True)
class Program:
    """One program as the start-up tests run it: its name, its CLI (in-process), the command
    that starts it and what that command opens in `state/` first."""

    name: Literal["edge-agent", "collector"]
    cli: Callable[..., Result]
    start: str
    opens: str

    def refused_at_start(
        self, config: Path, says: str, *, status: int = 2
    ) -> subprocess.CompletedProcess[str]:
        """The start command on `config`, in a process in the config's folder: it ended with
        `status` saying `says`, no traceback, before `state/` (where it `opens`) was made."""
        folder = config.parent
        done = in_a_process(self.name, self.start, "-c", str(config), cwd=folder)
        assert done.returncode == status, done.stderr
        assert says in done.stderr
        assert "Traceback" not in done.stderr
        assert not (folder / "state").exists(), f"refused only after the {self.opens} was opened"
        return done


AGENT: Final = Program("edge-agent", agent_cli, "run", "outbox")
COLLECTOR: Final = Program("collector", collector_cli, "serve", "database")


def json_output(
    argv: Sequence[str], *, cwd: Path, timeout: float, env: Mapping[str, str] | None = None
) -> object:
    """What `argv`, run in `cwd` to its end, printed as JSON; the test fails unless it exits 0."""
    done = subprocess.run(
        argv, cwd=cwd, env=env, capture_output=True, text=True, check=False, timeout=timeout
    )
    assert done.returncode == 0, done.stderr
    return json.loads(done.stdout)


def stops_quietly_when_the_reader_goes_away(
    program: Literal["edge-agent", "collector"], *args: str
) -> None:
    """`program ARGS... | head -1` ends with SIGPIPE_EXIT and says nothing about it on stderr.

    The command's output must be larger than a pipe holds (64 KiB) and written in pieces, so
    that it is still writing when the reader closes after the first line.
    """
    process = subprocess.Popen(
        [sys.executable, "-c", _MAINS[program], *args],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
    )
    assert process.stdout is not None
    assert process.stderr is not None
    with process:
        assert process.stdout.readline()
        process.stdout.close()
        stderr = process.stderr.read().decode()
    assert process.wait(timeout=60) == SIGPIPE_EXIT, stderr
    assert "Broken pipe" not in stderr
    assert "Traceback" not in stderr
    assert "Exception ignored" not in stderr


@contextlib.contextmanager
def folder_open_to_all() -> Iterator[Path]:
    """A folder another user may look into (pytest's own tmp_path base is 0700 to its user)."""
    folder = Path(tempfile.mkdtemp(prefix="ganzhi-"))
    folder.chmod(0o755)
    try:
        yield folder
    finally:
        for inside in folder.rglob("*"):  # a folder closed by the test is opened to go
            if inside.is_dir() and not inside.is_symlink():
                inside.chmod(0o700)
        shutil.rmtree(folder)


def as_a_user_kept_out_of(folder: Path, site_folder: Path) -> list[str]:
    """Close `folder` to the user a command will run as; the prefix that runs it as that user.

    As root (CI), `folder` is given to `nobody` (0700), as /etc/ganzhi/keys or the state folder
    belong to the service's user, and the command runs as root without the capabilities that
    let root ignore file modes (CAP_DAC_OVERRIDE, CAP_DAC_READ_SEARCH): kept out of that folder
    like any other user, yet still able to read the project's code and the rest of the site
    wherever the clone is (`mktemp -d` makes a folder only its owner may enter: a command run
    as `nobody` could not even import the program). As any other user, `folder` is made 0000
    to that user himself.
    """
    if os.geteuid() != 0:
        folder.chmod(0)
        return []
    nobody = pwd.getpwnam("nobody")
    assert site_folder in folder.parents, (folder, site_folder)
    os.chown(folder, nobody.pw_uid, nobody.pw_gid)
    folder.chmod(0o700)
    return bound_by_file_modes()


def bound_by_file_modes() -> list[str]:
    """The prefix that runs a command bound by file modes as any user is: as root, without
    the capabilities that let root ignore them (CAP_DAC_OVERRIDE, CAP_DAC_READ_SEARCH)."""
    if os.geteuid() != 0:
        return []
    return ["setpriv", "--bounding-set=-dac_override,-dac_read_search", "--inh-caps=-all"]
