"""A real Mosquitto run from a config file it is given (`collector broker-config` writes one)."""

from __future__ import annotations

import subprocess
from dataclasses import dataclass

from demo.broker import MOSQUITTO, Broker, wait_for_port


@dataclass
class ConfiguredBroker(Broker):
    """Mosquitto as `mosquitto -c <workdir>/mosquitto.conf`: the config is not ours to write.

    `port` must be the port that config listens on (TLS: the URL is `mqtts://`).
    """

    @property
    def url(self) -> str:
        """The broker URL as configs spell it."""
        return f"mqtts://127.0.0.1:{self.port}"

    def start(self) -> None:
        """Start mosquitto on its config and wait until it accepts TCP connections."""
        with (self.workdir / "mosquitto.log").open("ab") as log:
            self.process = subprocess.Popen(
                [MOSQUITTO, "-c", str(self.workdir / "mosquitto.conf")], stdout=log, stderr=log
            )
        try:
            wait_for_port(self.port)
        except TimeoutError:
            self.stop()
            log_text = (self.workdir / "mosquitto.log").read_text(errors="replace")
            raise AssertionError(f"mosquitto did not start:\n{log_text}") from None
