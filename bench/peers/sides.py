"""The two gateways under test behind one interface: start, count, stop.

`TbSide` is ThingsBoard IoT Gateway with the stand-in platform (bench/peers/tb_gateway.py,
tb_platform.py) on a broker with the stand-in's ACL; `OurSide` is our agent and collector
(bench/peers/ours.py) on demo.broker's Mosquitto. What each delivered is counted at its
server side: the stand-in's telemetry values, the collector's stored readings.
"""

from __future__ import annotations

import subprocess
from dataclasses import dataclass, field
from pathlib import Path
from typing import Protocol

from bench.peers.ours import OurSite
from bench.peers.tb_gateway import TbDevice, spawn, write_config
from bench.peers.tb_platform import TbBroker, TbPlatform
from bench.rig import stop_processes
from demo.broker import Broker, free_port


class Side(Protocol):
    """One gateway under test and the server side that counts what it delivers."""

    name: str

    def broker(self, work: Path) -> Broker: ...
    def start(self, work: Path, broker_port: int, devices: tuple[TbDevice, ...]) -> int: ...
    def delivered(self) -> int: ...
    def series(self) -> list[list[float]]: ...
    def unstored(self, sealed_by: float) -> tuple[int, int] | None: ...
    def exited(self) -> str | None: ...
    def stop(self) -> None: ...


@dataclass
class TbSide:
    name: str = "tb"
    storage: dict[str, object] = field(default_factory=dict)
    platform: TbPlatform | None = None
    gateway: subprocess.Popen[bytes] | None = None

    def broker(self, work: Path) -> Broker:
        return TbBroker(port=free_port(), workdir=work)

    def start(self, work: Path, broker_port: int, devices: tuple[TbDevice, ...]) -> int:
        self.storage = write_config(work / "config", broker_port, devices)
        self.platform = TbPlatform(broker_port)
        self.platform.start()
        self.gateway = spawn(work, work / "config")
        return self.gateway.pid

    def delivered(self) -> int:
        assert self.platform is not None
        return self.platform.distinct_values()

    def series(self) -> list[list[float]]:
        assert self.platform is not None
        return list(self.platform.series().values())

    def unstored(self, sealed_by: float) -> tuple[int, int] | None:  # noqa: ARG002
        return None  # what the gateway produced is not visible from outside it

    def exited(self) -> str | None:
        return "thingsboard-gateway" if self.gateway and self.gateway.poll() is not None else None

    def stop(self) -> None:
        if self.gateway is not None:
            stop_processes([self.gateway], 30)
        if self.platform is not None:
            self.platform.stop()


@dataclass
class OurSide:
    name: str = "ours"
    site: OurSite | None = None

    def broker(self, work: Path) -> Broker:
        return Broker(port=free_port(), workdir=work)

    def start(self, work: Path, broker_port: int, devices: tuple[TbDevice, ...]) -> int:
        self.site = OurSite(work, f"mqtt://127.0.0.1:{broker_port}")
        return self.site.start(devices)

    def delivered(self) -> int:
        assert self.site is not None
        return self.site.delivered()

    def series(self) -> list[list[float]]:
        assert self.site is not None
        return list(self.site.series().values())

    def unstored(self, sealed_by: float) -> tuple[int, int] | None:
        assert self.site is not None
        return self.site.unstored(sealed_by)

    def exited(self) -> str | None:
        return self.site.exited() if self.site else None

    def stop(self) -> None:
        if self.site is not None:
            self.site.stop()
