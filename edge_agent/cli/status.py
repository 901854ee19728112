"""`edge-agent status -c site.yaml [--json] [--watch [SECONDS]]` (DESIGN sections 6 and 11).

Asks the running agent on its status socket (edge_agent.shell.status_server) and prints
what it answers: uplink, each device's last good read and last error, the RTU buses' measured
load, the outbox, the clock and the active alarms. When nobody answers there, it says that
the agent is not running, shows what the files tell (the outbox, the clock, the planned RTU
load) and exits with NOT_RUNNING_EXIT, so a script can tell the two apart; when an agent runs
(it holds the outbox's agent lock, or the socket accepts) but gives no readable answer, it says
so, shows the same files and exits with NOT_ANSWERING_EXIT. So too when the socket's backlog
stays full until the deadline: the agent runs, but is too busy (or stopped) to take the call.
"""

from __future__ import annotations

import json
import math
import os
import socket
import struct
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Final

import click

from edge_agent.cli.options import config_option, load_or_exit
from edge_agent.cli.refusals import refuse_outbox_folder_not_a_folder
from edge_agent.config import SiteConfig
from edge_agent.core.agent_status import AgentSnapshot, SnapshotFormatError, snapshot_from_json
from edge_agent.core.agent_status_text import format_age, render_snapshot
from edge_agent.core.plan_compile import bus_plans
from edge_agent.core.points import resolve_points
from edge_agent.shell.agent_lock import agent_lock_path, another_agent_runs
from edge_agent.shell.host import clock_synchronized
from edge_agent.shell.outbox_admin import OutboxAccessError, OutboxSummary, summarize
from edge_agent.shell.status_server import REQUEST, status_socket_path

NOT_RUNNING_EXIT: Final = 3
"""Exit status when no agent runs: nobody listens on the status socket and nobody holds the
outbox's agent lock (the file view is printed). 3 is the LSB `status` code for "not running"."""
NOT_ANSWERING_EXIT: Final = 4
"""Exit status when an agent runs but gives no answer: it holds the agent lock, or the socket
accepts, but no readable answer comes within ANSWER_TIMEOUT (a hung or stopped agent), or
its listen backlog stays full that long (an agent running but busy), or what comes is JSON but
no status document (the file view is printed). 4 is the LSB `status` code for "status
unknown"."""
FAILED_EXIT: Final = 1
"""Exit status when the agent answered with an error, the socket may not be opened, or the
agent answering on it is another gateway's."""
ANSWER_TIMEOUT: Final = 5.0
"""Seconds the agent has to answer, from the connect (a full backlog waited out) to the answer's
last byte (not per read: a peer sending a byte a second would hold a per-read timeout off for
ever); a busy loop still answers in milliseconds."""
_MAX_ANSWER_BYTES: Final = 16 * 1024 * 1024
_CLEAR_SCREEN: Final = "\033[H\033[2J"


class _NotRunningError(Exception):
    """Nobody answers on the status socket."""


class _NotAnsweringError(Exception):
    """The status socket accepts, but no readable answer comes."""


class _BusyError(_NotAnsweringError):
    """The status socket's listen backlog stayed full: an agent listens, and accepts nobody."""


class _AskFailedError(Exception):
    """The socket is there but may not be used, or the agent's answer is an error."""


def _ask(path: Path) -> dict[str, object]:
    """The agent's status document (_NotRunningError, _NotAnsweringError, _AskFailedError)."""
    deadline = time.monotonic() + ANSWER_TIMEOUT
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as sock:
        try:
            _connect(sock, path, deadline)
        except BlockingIOError:  # EAGAIN: the backlog still full at the deadline
            raise _BusyError(
                f"{path} accepted no connection within {ANSWER_TIMEOUT:g} s: its backlog is full"
            ) from None
        except (FileNotFoundError, NotADirectoryError, ConnectionRefusedError):
            # NotADirectoryError: a file where the outbox folder should be; no agent is there.
            raise _NotRunningError(f"nobody answers on {path}") from None
        except PermissionError:
            raise _AskFailedError(
                f"{path}: permission denied (run this as the agent's user, or root)"
            ) from None
        except OSError as exc:  # e.g. 'AF_UNIX path too long' (the address holds 107 bytes)
            raise _AskFailedError(f"{path}: cannot connect: {exc.strerror or exc}") from None
        try:
            sock.settimeout(_time_left(deadline))
            sock.sendall(REQUEST)
            answer = _read_all(sock, deadline)
        except TimeoutError:
            raise _NotAnsweringError(f"no answer on {path} within {ANSWER_TIMEOUT:g} s") from None
        except ConnectionError as exc:
            raise _NotAnsweringError(f"{path}: {exc}") from None
    try:
        document = json.loads(answer)
    except ValueError:
        raise _NotAnsweringError(f"{path}: the answer is not JSON") from None
    if not isinstance(document, dict):
        raise _NotAnsweringError(f"{path}: the answer is not a status document (no JSON object)")
    if "error" in document:
        raise _AskFailedError(f"the agent says: {document['error']}")
    return document


def _connect(sock: socket.socket, path: Path, deadline: float) -> None:
    """`sock` connected to `path`, a full listen backlog waited out until `deadline`.

    A Unix socket whose backlog is full (the agent busy, or many clients at once) refuses a
    non-blocking connect at once with EAGAIN, which read as "cannot connect" (exit 1). A
    blocking one waits in the kernel until the agent accepts a connection, for at most its send
    timeout (SO_SNDTIMEO, the time left): woken by the accept itself, no retry loop polling
    the socket. Still full then: BlockingIOError (EAGAIN).
    """
    left = _time_left(deadline)
    seconds = int(left)
    # A zero timeval is no timeout at all: at least a microsecond.
    micros = max(int((left - seconds) * 1_000_000), 0 if seconds else 1)
    sock.settimeout(None)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_SNDTIMEO, struct.pack("@ll", seconds, micros))
    sock.connect(str(path))


def _check_gateway(document: dict[str, object], config: SiteConfig, path: Path) -> None:
    """_AskFailedError unless the agent answering is this site map's gateway's.

    An answer naming no gateway is no status document: _NotAnsweringError.

    Site maps whose outboxes share a folder share its socket: the agent started first
    answers there, the others run without one (`status_socket_failed`).
    """
    answered = document.get("gateway")
    if not isinstance(answered, str):
        raise _NotAnsweringError(f"{path}: the answer is not a status document (no gateway)")
    if answered != config.site.gateway:
        raise _AskFailedError(
            f"{path}: the agent answering there is another gateway's ({answered},"
            f" not {config.site.gateway}): site maps whose outboxes share a folder share its"
            " status socket; give this map's outbox a folder of its own"
        )


def _time_left(deadline: float) -> float:
    """Seconds until `deadline` (time.monotonic); TimeoutError when it has passed."""
    left = deadline - time.monotonic()
    if left <= 0:
        raise TimeoutError
    return left


def _read_all(sock: socket.socket, deadline: float) -> bytes:
    """Everything the peer sends until it closes, by `deadline` (else TimeoutError)."""
    chunks: list[bytes] = []
    size = 0
    while True:
        sock.settimeout(_time_left(deadline))
        chunk = sock.recv(65536)
        if not chunk:
            break
        chunks.append(chunk)
        size += len(chunk)
        if size > _MAX_ANSWER_BYTES:
            raise _AskFailedError("the answer is implausibly long")
    return b"".join(chunks)


@dataclass(frozen=True, slots=True)
class _View:
    """One look at the agent: what to print, and the exit status it earns."""

    text: str
    exit_code: int


def _snapshot(document: dict[str, object], path: Path) -> AgentSnapshot:
    """The status document read; JSON of another shape is no answer (_NotAnsweringError)."""
    try:
        return snapshot_from_json(document)
    except SnapshotFormatError as exc:
        raise _NotAnsweringError(f"{path}: the answer is not a status document: {exc}") from None


def _running_view(document: dict[str, object], snapshot: AgentSnapshot, *, as_json: bool) -> _View:
    if as_json:
        return _View(json.dumps(document, ensure_ascii=False), 0)
    return _View(render_snapshot(snapshot), 0)


def _file_view(config: SiteConfig, why: str, *, as_json: bool, running: bool) -> _View:
    """What can be told without the agent: the outbox file, the clock, the planned RTU load."""
    exit_code = NOT_ANSWERING_EXIT if running else NOT_RUNNING_EXIT
    plans = bus_plans(config, resolve_points(config), wire_of=os.path.realpath)
    synchronized = clock_synchronized()
    summary: OutboxSummary | None = None
    outbox_problem: str | None = None
    try:
        summary = summarize(config.outbox.path, max_bytes=config.outbox.max_bytes, now=time.time())
    except OutboxAccessError as exc:
        outbox_problem = str(exc)
    if as_json:
        document = {
            "running": running,
            "answering": False,
            "why": why,
            "gateway": config.site.gateway,
            "clock": {"synchronized": synchronized},
            "outbox": None if summary is None else summary.to_json(),
            "outbox_problem": outbox_problem,
            "rtu_buses_planned": [
                {"port": plan.port, "utilization": round(plan.utilization, 4)} for plan in plans
            ],
        }
        return _View(json.dumps(document, ensure_ascii=False), exit_code)
    lines = [f"gateway      {config.site.gateway}"]
    if summary is None:
        lines.append(f"outbox       {outbox_problem}")
    else:
        blocks, readings = summary.undelivered_blocks, summary.undelivered_readings
        age = summary.oldest_undelivered_age_s
        lines += [
            f"epoch        {summary.epoch}",
            f"last seq     {summary.last_seq}",
            (
                f"undelivered  {blocks} block{'s' * (blocks != 1)},"
                f" {readings} reading{'s' * (readings != 1)}"
            ),
            f"oldest       {'-' if age is None else f'{format_age(age)} ago'}",
        ]
    lines.append(f"clock        {'synchronized' if synchronized else 'NOT synchronized'}")
    lines += [f"rtu bus      {plan.describe().removeprefix('rtu bus ')}" for plan in plans]
    return _View("\n".join(lines), exit_code)


def _look(config: SiteConfig, path: Path, *, as_json: bool) -> _View:
    try:
        document = _ask(path)
        _check_gateway(document, config, path)
        snapshot = _snapshot(document, path)
    except _AskFailedError as exc:
        return _View(str(exc), FAILED_EXIT)
    except (_NotRunningError, _NotAnsweringError) as exc:
        reason = str(exc)
        running = isinstance(exc, _NotAnsweringError)
        if another_agent_runs(config.outbox.path):
            running = True
            reason += f"; it holds {agent_lock_path(config.outbox.path)}"
        said = "is running but does not answer" if running else "is not running"
        if isinstance(exc, _BusyError):
            said = "is running but busy"
        click.echo(f"edge-agent status: the agent {said} ({reason}); what the files say:", err=True)
        return _file_view(config, reason, as_json=as_json, running=running)
    return _running_view(document, snapshot, as_json=as_json)


WATCH_LONGEST: Final = 86_400.0
"""The longest --watch period: a day (time.sleep refuses NaN and periods past time_t)."""


def _watch_period(
    _ctx: click.Context, _param: click.Parameter, value: float | None
) -> float | None:
    # FloatRange lets NaN through: no comparison with it is ever true.
    if value is not None and math.isnan(value):
        raise click.BadParameter(f"{value} is not a number of seconds")
    return value


@click.command()
@config_option
@click.option("--json", "as_json", is_flag=True, help="Print the agent's status document.")
@click.option(
    "--watch",
    type=click.FloatRange(min=0.2, max=WATCH_LONGEST),
    callback=_watch_period,
    is_flag=False,
    flag_value=2.0,
    default=None,
    metavar="[SECONDS]",
    help="Look again every SECONDS (2 when not given) until Ctrl-C.",
)
@click.option(
    "--count",
    type=click.IntRange(min=1),
    default=None,
    help="With --watch: stop after this many looks.",
)
def status(config_path: Path, as_json: bool, watch: float | None, count: int | None) -> None:
    """Ask the running agent: uplink, devices, RTU buses, outbox, clock, active alarms.

    Exit 0 when the agent answered, 3 when it is not running (the outbox file, the clock
    and the planned RTU load are shown instead), 4 when it runs but does not answer (it
    holds the outbox's agent lock, or its socket accepts, but no status document comes in
    5 s: a hung or stopped agent; or the socket's backlog stays full for 5 s: a busy one; the
    files are shown too), 1 when it answered with an
    error, its socket may not be opened, or another gateway's agent answers there, 2 when
    the outbox's folder is a file. --watch ends with the status of its last look.
    """
    config = load_or_exit(config_path)
    refuse_outbox_folder_not_a_folder(config_path, config)
    path = status_socket_path(config)
    looks = 1 if watch is None else count
    done = 0
    view = _View("", 0)
    try:
        while looks is None or done < looks:
            if done:
                time.sleep(watch or 0.0)
            view = _look(config, path, as_json=as_json)
            done += 1
            # A terminal gets the screen redrawn; a pipe gets one view after another (text
            # views a blank line apart, JSON one document a line).
            if watch is not None and not as_json:
                if sys.stdout.isatty():
                    click.echo(_CLEAR_SCREEN, nl=False)
                elif done > 1:
                    click.echo("")
            click.echo(view.text, err=view.exit_code == FAILED_EXIT)
    except KeyboardInterrupt:
        pass  # how --watch ends
    raise click.exceptions.Exit(view.exit_code)
