"""`collector` imports a command's module only when that command runs.

The suite runs `collector keys init`, `gateways add` and the like as subprocesses many times,
and an operator runs them by hand: each would otherwise wait for fastapi and uvicorn (and
every other command's module) to load. Each check is a fresh interpreter (sys.modules of this
test process holds everything the suite imported) that runs the real command line and writes
the modules it held at its exit. Timing is left to measurement; this guards the cause.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

from collector.cli import COMMANDS
from tests.support.broker import free_port
from tests.support.collector_env import write_collector_config

RUN_AND_LIST = """\
import atexit, json, sys
from pathlib import Path

atexit.register(lambda: Path("modules.json").write_text(json.dumps(sorted(sys.modules))))
from collector.cli import main

main(sys.argv[1:], prog_name="collector")
"""
WEB = ("fastapi", "uvicorn", "starlette", "collector.api.app", "collector.api.server")
# The PostgreSQL back end: loaded for a postgresql:// URL only (these configs are SQLite).
POSTGRES = ("asyncpg", "collector.storage.postgres")


def _held_after(folder: Path, *args: str) -> set[str]:
    done = subprocess.run(
        [sys.executable, "-c", RUN_AND_LIST, *args],
        cwd=folder,
        capture_output=True,
        text=True,
        check=False,
    )
    assert done.returncode == 0, done.stderr
    return set(json.loads((folder / "modules.json").read_text(encoding="utf-8")))


def test_creating_the_collector_key_loads_no_web_server_and_no_other_command(
    tmp_path: Path,
) -> None:
    config = write_collector_config(tmp_path, broker_port=free_port(), api_port=free_port())
    modules = _held_after(tmp_path, "keys", "init", "-c", str(config))
    assert (tmp_path / "keys" / "collector.key").exists(), "the command ran"
    assert {"collector.cli.keys", "collector.config"} <= modules
    others = {path.partition(":")[0] for name, path in COMMANDS.items() if name != "keys"}
    held = sorted(name for name in (*WEB, *POSTGRES, *others) if name in modules)
    assert held == [], f"`collector keys init` imported {held}"


def test_help_on_a_light_command_loads_no_web_server(tmp_path: Path) -> None:
    modules = _held_after(tmp_path, "gateways", "list", "--help")
    assert "collector.cli.gateways" in modules
    held = sorted(name for name in (*WEB, *POSTGRES) if name in modules)
    assert held == [], f"`collector gateways list --help` imported {held}"
