"""`edge-agent status` waits out a full listen backlog on the status socket, within its 5 s.

A Unix socket whose backlog is full (the agent busy, many clients at once) refuses a
non-blocking connect at once with EAGAIN: status said `cannot connect: Resource temporarily
unavailable` and exited 1, as for an agent broken or not there. Now the connect waits, in the
kernel, until the agent accepts one, within the exchange's ANSWER_TIMEOUT: room made in time,
the agent answers (exit 0); still full at the deadline, status says the agent is running but
busy, exit NOT_ANSWERING_EXIT (4, as for an agent that does not answer in time).

The agent is a real `edge-agent run`, frozen with SIGSTOP once it listens; the backlog is then
filled by connections nobody accepts.
"""

from __future__ import annotations

import contextlib
import json
import os
import platform
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from edge_agent.cli.status import ANSWER_TIMEOUT, NOT_ANSWERING_EXIT
from tests.support.cli_runs import frozen_agent, in_a_process, keyed_example_site

pytestmark = pytest.mark.timeout(120)

STATUS = [sys.executable, "-c", "from edge_agent.cli import main; main()", "status", "-c"]
# connect(2)'s number, as /proc/<pid>/syscall gives it while a process waits in it.
CONNECT_SYSCALL = {"x86_64": "42", "aarch64": "203"}


@contextlib.contextmanager
def _backlog_filled(path: Path) -> Iterator[list[socket.socket]]:
    """Connections to `path` made until the listener's backlog refuses one (EAGAIN)."""
    held: list[socket.socket] = []
    try:
        while True:
            client = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
            client.settimeout(0.0)  # non-blocking: a full backlog is EAGAIN at once
            try:
                client.connect(str(path))
            except BlockingIOError:
                client.close()
                break
            held.append(client)
            assert len(held) < 1000, "the backlog never filled"
        yield held
    finally:
        for client in held:
            client.close()


def test_a_backlog_full_to_the_deadline_is_an_agent_running_but_busy(tmp_path: Path) -> None:
    site = keyed_example_site(tmp_path)
    with frozen_agent(site), _backlog_filled(tmp_path / "state" / "agent.sock") as held:
        assert held  # the agent's backlog (ACCEPT_BACKLOG) took some before it refused
        started = time.monotonic()
        text = in_a_process("edge-agent", "status", "-c", str(site), cwd=tmp_path)
        waited = time.monotonic() - started
        as_json = in_a_process("edge-agent", "status", "-c", str(site), "--json", cwd=tmp_path)
    assert "Traceback" not in text.stderr + as_json.stderr
    # Before: 1, "cannot connect: Resource temporarily unavailable", at once.
    assert (text.returncode, as_json.returncode) == (NOT_ANSWERING_EXIT, NOT_ANSWERING_EXIT), (
        text.stderr
    )
    assert "the agent is running but busy" in text.stderr
    assert f"accepted no connection within {ANSWER_TIMEOUT:g} s: its backlog is full" in (
        text.stderr
    )
    assert "agent-lock" in text.stderr
    assert waited >= ANSWER_TIMEOUT  # it waited the deadline out, not refused at once
    document = json.loads(as_json.stdout)
    assert (document["running"], document["answering"]) == (True, False)
    assert "its backlog is full" in str(document["why"])


def test_a_backlog_that_makes_room_in_time_gets_the_answer(tmp_path: Path) -> None:
    site = keyed_example_site(tmp_path)
    sock = tmp_path / "state" / "agent.sock"
    with frozen_agent(site) as agent, _backlog_filled(sock) as held:
        status = subprocess.Popen(
            [*STATUS, str(site), "--json"],
            cwd=tmp_path,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        # Once status waits in connect(2) on the full backlog, the agent goes on: it accepts
        # the held connections (closed: each ends at once) and then status's.
        syscall = Path(f"/proc/{status.pid}/syscall")
        connect = CONNECT_SYSCALL[platform.machine()]
        deadline = time.monotonic() + 30
        while syscall.read_text().split(" ")[0] != connect:
            assert status.poll() is None, "status ended without waiting in connect(2)"
            assert time.monotonic() < deadline, "status never reached its connect"
            time.sleep(0.01)
        for client in held:
            client.close()
        os.kill(agent.pid, signal.SIGCONT)
        out, err = status.communicate(timeout=60)
    assert "Traceback" not in err
    assert status.returncode == 0, err  # before: 1, "Resource temporarily unavailable"
    assert json.loads(out)["gateway"]
