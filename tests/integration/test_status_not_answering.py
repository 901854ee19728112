"""`edge-agent status` tells an agent that runs but does not answer from one that is not running.

A hung agent (a real `edge-agent run` frozen with SIGSTOP: it holds `<outbox>.agent-lock`, and
the kernel accepts on its status socket, but nothing answers) was reported as "the agent is not
running", exit 3, the exit status kept for a stopped agent: a monitor read a hung agent as
stopped. So was a socket that accepts and answers garbage. Now both say that the agent runs but
does not answer, exit NOT_ANSWERING_EXIT (4, the LSB "status unknown"), with the file view.
"""

from __future__ import annotations

import json
import socket
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from edge_agent.cli.status import NOT_ANSWERING_EXIT, NOT_RUNNING_EXIT
from tests.support.cli_runs import frozen_agent, in_a_process, keyed_example_site

GARBAGE_SERVER = """
import socket, sys
answer = sys.argv[2].encode() if len(sys.argv) > 2 else b"\\xff\\xfe garbage\\n\\x00\\x01"
server = socket.socket(socket.AF_UNIX)
server.bind(sys.argv[1])
server.listen(5)
print("listening", flush=True)
while True:
    connection, _ = server.accept()
    connection.recv(4096)
    connection.sendall(answer)
    connection.close()
"""


def _statuses(site: Path) -> tuple[int, str, int, dict[str, object]]:
    text = in_a_process("edge-agent", "status", "-c", str(site), cwd=site.parent)
    as_json = in_a_process("edge-agent", "status", "-c", str(site), "--json", cwd=site.parent)
    assert "Traceback" not in text.stderr + as_json.stderr
    return text.returncode, text.stderr, as_json.returncode, json.loads(as_json.stdout)


def _statuses_of_a_server_answering(
    site: Path, *answer: str
) -> tuple[int, str, int, dict[str, object]]:
    """`_statuses` with GARBAGE_SERVER on the map's status socket (answering `answer`)."""
    (site.parent / "state").mkdir()
    sock = str(site.parent / "state" / "agent.sock")
    with subprocess.Popen(
        [sys.executable, "-c", GARBAGE_SERVER, sock, *answer], stdout=subprocess.PIPE, text=True
    ) as server:
        try:
            assert server.stdout is not None
            assert server.stdout.readline() == "listening\n"
            return _statuses(site)
        finally:
            server.kill()


@pytest.mark.timeout(120)
def test_a_frozen_agent_is_running_but_not_answering(tmp_path: Path) -> None:
    site = keyed_example_site(tmp_path)
    with frozen_agent(site):
        code, err, json_code, document = _statuses(site)
    assert (code, json_code) == (NOT_ANSWERING_EXIT, NOT_ANSWERING_EXIT), err
    assert "the agent is running but does not answer" in err
    assert "agent-lock" in err
    assert (document["running"], document["answering"]) == (True, False)
    assert "no answer" in str(document["why"])


def test_a_socket_answering_garbage_is_not_an_agent_that_stopped(tmp_path: Path) -> None:
    site = keyed_example_site(tmp_path)
    code, err, json_code, document = _statuses_of_a_server_answering(site)
    assert (code, json_code) == (NOT_ANSWERING_EXIT, NOT_ANSWERING_EXIT), err
    assert "does not answer" in err
    assert "the answer is not JSON" in err
    assert document["answering"] is False


@pytest.mark.parametrize(
    "answer",
    [
        "[1, 2]",  # JSON, not an object
        '{"ok": true}',  # an object, not a status document (no gateway)
        '{"gateway": "GATEWAY", "uplink": 5}',  # this gateway's, of the wrong shape
    ],
)
def test_json_of_the_wrong_shape_is_an_agent_not_answering_properly(
    tmp_path: Path, answer: str
) -> None:
    """Valid JSON that is no status document exited 1 (a JSON list: 'not a JSON object'; an
    object without `gateway`: 'another gateway's (None, ...)'; this gateway's of the wrong
    shape: 1 in text, 0 with --json printing it as the status). It is an agent that runs but
    does not answer as it should: 4, as a hung one, --json the same file view."""
    site = keyed_example_site(tmp_path)
    gateway = str(yaml.safe_load(site.read_text(encoding="utf-8"))["site"]["gateway"])
    answering = answer.replace("GATEWAY", gateway)
    code, err, json_code, document = _statuses_of_a_server_answering(site, answering)
    assert (code, json_code) == (NOT_ANSWERING_EXIT, NOT_ANSWERING_EXIT), err
    assert "the agent is running but does not answer" in err
    assert "not a status document" in err
    assert (document["running"], document["answering"]) == (True, False)
    assert "not a status document" in str(document["why"])


def test_a_socket_nobody_listens_on_is_still_not_running(tmp_path: Path) -> None:
    site = keyed_example_site(tmp_path)
    (tmp_path / "state").mkdir()
    with socket.socket(socket.AF_UNIX) as left:  # bound, never listening: as a killed agent's
        left.bind(str(tmp_path / "state" / "agent.sock"))
        code, err, json_code, document = _statuses(site)
    assert (code, json_code) == (NOT_RUNNING_EXIT, NOT_RUNNING_EXIT), err
    assert "the agent is not running" in err
    assert (document["running"], document["answering"]) == (False, False)
