"""Key and certificate files that are FIFOs: refused before a byte is read, never waited on.

`edge-agent run` and `check` opened the collector key (and `uplink.tls`' CA and certificate)
with a blocking open: a FIFO nobody writes to held the command for ever. Like a config file
given as a FIFO (a350fa9), each is now refused unread, exit 2, naming the file. Real
processes of the installed entry point, real FIFOs.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from demo.__main__ import write_configs
from hostkit.keyfiles import create_key_pair

BIN = Path(sys.executable).parent
FIFO_WORDS = "not a file but a FIFO (named pipe)"


def _site(tmp_path: Path, *, tls: bool = False) -> Path:
    """The tank farm's map in tmp with every key in place (collector key, gateway key)."""
    broker = "mqtts://127.0.0.1:1" if tls else "mqtt://127.0.0.1:1"
    site = write_configs(tmp_path, "tankfarm", broker, 1, 1)
    create_key_pair(tmp_path / "keys" / "collector.key")
    create_key_pair(tmp_path / "keys" / "gateway.key")
    if tls:
        text = yaml.safe_load(site.read_text(encoding="utf-8"))
        text["uplink"]["tls"] = {"ca": "keys/ca.pem"}
        site.write_text(yaml.safe_dump(text, allow_unicode=True), encoding="utf-8")
    return site


def _edge_agent(*args: str, cwd: Path) -> subprocess.CompletedProcess[str]:
    # A command held by a FIFO is ended by the timeout: the test then fails on its exception.
    return subprocess.run(
        [str(BIN / "edge-agent"), *args],
        cwd=cwd,
        capture_output=True,
        text=True,
        check=False,
        timeout=60,
    )


@pytest.mark.parametrize("command", ["check", "run"])
@pytest.mark.parametrize(
    ("fifo_at", "setting"),
    [
        ("keys/collector.key.pub", "uplink.collector_key"),
        ("keys/gateway.key", "signing.key_file"),
        ("keys/ca.pem", "uplink.tls.ca"),
    ],
)
def test_a_key_file_that_is_a_fifo_is_refused_not_waited_on(
    tmp_path: Path, command: str, fifo_at: str, setting: str
) -> None:
    site = _site(tmp_path, tls=fifo_at == "keys/ca.pem")
    fifo = tmp_path / fifo_at
    fifo.unlink(missing_ok=True)
    os.mkfifo(fifo)
    done = _edge_agent(command, "-c", str(site), cwd=tmp_path)
    assert done.returncode == 2, done.stderr
    problem = next(line for line in done.stderr.splitlines() if FIFO_WORDS in line)
    assert f": {setting}: " in problem, done.stderr
    assert f"{fifo}: {FIFO_WORDS}" in problem, done.stderr
    assert "Traceback" not in done.stderr


def test_backfill_refuses_a_gateway_key_that_is_a_fifo(tmp_path: Path) -> None:
    site = _site(tmp_path)
    fifo = tmp_path / "keys" / "gateway.key"
    fifo.unlink()
    os.mkfifo(fifo)
    csv = tmp_path / "log.csv"
    csv.write_text("point,t,value\nT001-LT-01,2024-03-01 08:00:00,1\n", encoding="utf-8")
    done = _edge_agent("backfill", "-c", str(site), "--csv", str(csv), cwd=tmp_path)
    assert done.returncode == 2, done.stderr
    assert f"{fifo}: {FIFO_WORDS}; give the key file" in done.stderr
    assert "Traceback" not in done.stderr
