"""A device that never ends (`/dev/zero`), given where a collector command reads a file, is
refused after a bounded read: a public key at most 64 KiB, a site map at most a config file's
64 MiB. Found by a hostile tester: `gateways add --public-key /dev/zero` read until the kernel
killed it (exit 137, taking the machine's memory with it) and `sites push ... /dev/zero` did the
same. Each run here is held to 1 GiB of address space, so a regression fails fast.
"""

from __future__ import annotations

from pathlib import Path
from typing import Final

from tests.support.cli_runs import in_a_process
from tests.support.collector_client import sim_gateway

ONE_GIB: Final = 1 << 30
GATEWAY: Final = sim_gateway(1).gateway
CONFIG: Final = """\
broker: "mqtt://127.0.0.1:1"
storage: {url: "sqlite:///state/collector.db"}
signing: {key_file: keys/collector.key}
api: {listen: "127.0.0.1:8080"}
"""


def _config(folder: Path) -> Path:
    (folder / "state").mkdir()
    path = folder / "collector.yaml"
    path.write_text(CONFIG, encoding="utf-8")
    return path


def test_a_public_key_that_never_ends_is_refused(tmp_path: Path) -> None:
    config = _config(tmp_path)
    done = in_a_process(
        "collector", "gateways", "add", "-c", str(config), "--gateway", GATEWAY,
        "--public-key", "/dev/zero", cwd=tmp_path, address_space=ONE_GIB,
    )  # fmt: skip
    assert done.returncode == 2, done.stderr
    assert "--public-key" in done.stderr
    assert "/dev/zero: not a file but a character device; give the key file" in done.stderr
    assert "Traceback" not in done.stderr


def test_a_site_map_that_never_ends_is_refused(tmp_path: Path) -> None:
    config = _config(tmp_path)
    made = in_a_process("collector", "keys", "init", "-c", str(config), cwd=tmp_path)
    assert made.returncode == 0, made.stderr
    done = in_a_process(
        "collector", "sites", "push", "-c", str(config), "--gateway", GATEWAY, "/dev/zero",
        cwd=tmp_path, address_space=ONE_GIB,
    )  # fmt: skip
    assert done.returncode == 2, done.stderr
    assert "SITE_FILE" in done.stderr
    assert "/dev/zero: not a file but a character device" in done.stderr
    assert "Traceback" not in done.stderr
