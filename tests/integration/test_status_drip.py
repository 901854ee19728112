"""`edge-agent status` gives up on a status socket that answers a byte at a time.

The 5 s answer timeout applied to each read, not to the answer: a peer on `agent.sock` sending
one byte a second kept the command reading for as long as the bytes came (a hostile tester's
ran past 60 s). The whole exchange (connect, request, answer) now has 5 s: it says the agent
runs but does not answer, exit NOT_ANSWERING_EXIT, long before the drip ends.
"""

from __future__ import annotations

import subprocess
import sys
import time
from pathlib import Path

import pytest

from edge_agent.cli.status import ANSWER_TIMEOUT, NOT_ANSWERING_EXIT
from tests.support.cli_runs import in_a_process, keyed_example_site

DRIP_SECONDS = 40
"""How long the peer drips (a byte each 0.5 s), then closes: far past ANSWER_TIMEOUT."""
DRIP_SERVER = """
import socket, sys, threading, time
server = socket.socket(socket.AF_UNIX)
server.bind(sys.argv[1])
server.listen(5)
print("listening", flush=True)
def drip(connection):
    with connection:
        end = time.monotonic() + float(sys.argv[2])
        try:
            while time.monotonic() < end:
                connection.sendall(b" ")
                time.sleep(0.5)
        except OSError:
            pass
while True:
    connection, _ = server.accept()
    threading.Thread(target=drip, args=(connection,), daemon=True).start()
"""


@pytest.mark.timeout(DRIP_SECONDS + 30)
def test_an_answer_dripping_a_byte_at_a_time_is_no_answer(tmp_path: Path) -> None:
    site = keyed_example_site(tmp_path)
    (tmp_path / "state").mkdir()
    sock = str(tmp_path / "state" / "agent.sock")
    with subprocess.Popen(
        [sys.executable, "-c", DRIP_SERVER, sock, str(DRIP_SECONDS)],
        stdout=subprocess.PIPE,
        text=True,
    ) as server:
        try:
            assert server.stdout is not None
            assert server.stdout.readline() == "listening\n"
            started = time.monotonic()
            result = in_a_process(
                "edge-agent", "status", "-c", str(site), cwd=tmp_path, timeout=DRIP_SECONDS + 20
            )
            took = time.monotonic() - started
        finally:
            server.kill()
    assert "Traceback" not in result.stderr
    assert result.returncode == NOT_ANSWERING_EXIT, result.stderr
    assert "the agent is running but does not answer" in result.stderr
    assert f"no answer on {sock} within {ANSWER_TIMEOUT:g} s" in result.stderr
    # Generous for a loaded machine, but before the drip would have ended (and its spaces
    # been read as "not JSON").
    assert took < DRIP_SECONDS, f"status read the drip for {took:.0f} s"
