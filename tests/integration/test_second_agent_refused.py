"""A second `edge-agent run` on an outbox another agent runs on is refused, and the first runs on.

Started by hand while the service ran, a second agent used to run beside the first: both polled
every device and sealed each reading twice into the one outbox, and under the one MQTT client id
they threw each other off the broker several times a second. Now the running agent holds
`<outbox>.agent-lock` and a second one exits 1 at once naming the outbox (1, not 2: under
systemd, the unit then starts as soon as the hand-started agent stops).
"""

from __future__ import annotations

import subprocess
import sys
import time
from pathlib import Path

import pytest

from tests.support.broker import free_port
from tests.support.cli_runs import keyed_example_site

RUN = [sys.executable, "-c", "from edge_agent.cli import main; main()", "run", "-c"]


@pytest.mark.timeout(90)
@pytest.mark.parametrize("metrics", [False, True], ids=["no metrics", "metrics on"])
def test_a_second_agent_on_the_same_outbox_is_refused(tmp_path: Path, *, metrics: bool) -> None:
    site = keyed_example_site(tmp_path)
    if metrics:  # the first agent holds metrics.listen: still the other agent, exit 1, not 2
        listen = f'metrics:\n  listen: "127.0.0.1:{free_port()}"\n'
        site.write_text(site.read_text(encoding="utf-8") + listen, encoding="utf-8")
    outbox = site.parent / "state" / "outbox.db"
    first = subprocess.Popen(
        [*RUN, str(site)],
        cwd=tmp_path,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        deadline = time.monotonic() + 30
        while not (outbox.parent / "agent.sock").exists():  # listening: the outbox is open
            assert first.poll() is None, "the first agent ended"
            assert time.monotonic() < deadline, "the first agent did not start"
            time.sleep(0.1)
        second = subprocess.run(
            [*RUN, str(site)], cwd=tmp_path, capture_output=True, text=True, check=False, timeout=30
        )
        assert second.returncode == 1, second.stderr
        assert f"{outbox}: another edge-agent runs on this outbox" in second.stderr
        assert "Traceback" not in second.stderr
        assert first.poll() is None, "the first agent ended"
    finally:
        first.terminate()
        first.wait(timeout=30)
    assert first.returncode == 0
