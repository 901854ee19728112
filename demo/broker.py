"""A real Mosquitto on a free loopback port, with its own config: for the demo and the tests."""

from __future__ import annotations

import contextlib
import os
import shutil
import signal
import socket
import subprocess
import time
from dataclasses import dataclass
from pathlib import Path

from demo.ports import free_port

__all__ = ["MOSQUITTO", "Broker", "free_port", "wait_for_port"]  # free_port: the benchmarks'

MOSQUITTO = shutil.which("mosquitto") or "/usr/sbin/mosquitto"


def wait_for_port(port: int, timeout: float = 10.0) -> None:
    """Block until something accepts TCP connections on 127.0.0.1:port."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        with contextlib.suppress(OSError), socket.create_connection(("127.0.0.1", port), 0.2):
            return
        time.sleep(0.05)
    raise TimeoutError(f"nothing listens on 127.0.0.1:{port} after {timeout}s")


@dataclass
class Broker:
    """A Mosquitto process that can be stopped and started again on the same port."""

    port: int
    workdir: Path
    process: subprocess.Popen[bytes] | None = None
    extra_config: str = ""  # lines appended to the config (`max_packet_size 16384`, say)

    @property
    def url(self) -> str:
        """The broker URL as configs spell it."""
        return f"mqtt://127.0.0.1:{self.port}"

    def start(self) -> None:
        """Start mosquitto and wait until it accepts connections."""
        conf = self.workdir / "mosquitto.conf"
        # No persistence and no queue caps: the agent's outbox and the collector's ACK carry
        # reliability; the broker is only a pipe.
        conf.write_text(
            f"listener {self.port} 127.0.0.1\n"
            "allow_anonymous true\n"
            "persistence false\n"
            "max_queued_messages 0\n"
            "max_inflight_messages 0\n"
            "log_type error\n"
            "log_type warning\n" + self.extra_config
        )
        # The child keeps its own copy of the descriptor; ours closes at once.
        with (self.workdir / "mosquitto.log").open("ab") as log:
            self.process = subprocess.Popen([MOSQUITTO, "-c", str(conf)], stdout=log, stderr=log)
        wait_for_port(self.port)

    def stop(self, sig: int = signal.SIGTERM) -> None:
        """Stop the broker (SIGKILL to simulate a crash)."""
        if self.process is None:
            return
        if self.process.poll() is None:
            os.kill(self.process.pid, sig)
            self.process.wait(timeout=10)
        self.process = None
