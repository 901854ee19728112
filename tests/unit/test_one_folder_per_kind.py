"""Adding a driver kind is one folder plus one entry in `KINDS` (issue 12.2), proven on a copy.

The test copies the packages to a temporary tree, adds a throwaway kind there as a folder
(`edge_agent/kinds/gauge/`: its device model and its `DriverKind`) and registers it in
`edge_agent/kinds/__init__.py` (the entry and its import), and checks that nothing else of the
tree changed. Then, in a fresh interpreter on that tree, a site map with a `gauge` device
parses and validates (with the usual file:line errors, the driver list and the point-source
rule taken from the registry), its driver builds and reads (from the device, and from the run
plan `edge-agent run` hands the runner), `edge-agent check` shows it in a table of its own and
the site map's reference (`make docs`) documents its model.
"""

from __future__ import annotations

import filecmp
import os
import shutil
import sys
from pathlib import Path

from tests.support.cli_runs import json_output
from tests.support.config_files import site_head

ROOT = Path(__file__).resolve().parents[2]
# What the agent, the check command and the reference generator import.
PACKAGES = ("edge_agent", "drivers", "specs", "configkit", "hostkit", "collector", "devtools")

GAUGE_INIT = '''\
"""The `gauge` kind: a dial gauge read by a camera (a throwaway kind of a registry test)."""

from edge_agent.kinds.gauge.config import GaugeDevice
from edge_agent.kinds.gauge.kind import GAUGE

__all__ = ["GAUGE", "GaugeDevice"]
'''

GAUGE_CONFIG = '''\
"""The gauge device model."""

from typing import ClassVar, Literal

from edge_agent.config.device_base import DeviceBase, Seconds
from edge_agent.config.point_source import SourceKey


class GaugeDevice(DeviceBase):
    """A dial gauge read by a camera."""

    point_source: ClassVar[SourceKey] = "address"

    driver: Literal["gauge"]
    """Which driver reads the device: `gauge`."""
    camera: str
    """The camera that looks at the dials."""
    poll: Seconds
    """How often the dials are read."""
'''

GAUGE_KIND = '''\
"""How a gauge device maps to its driver, builds and shows."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from drivers.base import Buses, Driver, Quality, RawSample
from edge_agent.core.points import ResolvedPoint
from edge_agent.kinds.descriptor import DriverKind, PointView
from edge_agent.kinds.gauge.config import GaugeDevice


@dataclass(frozen=True, slots=True)
class GaugeSettings:
    device_id: str
    camera: str
    dials: tuple[tuple[str, int], ...]


def gauge_settings(device: GaugeDevice, points: Sequence[ResolvedPoint]) -> GaugeSettings:
    dials = tuple((p.point, p.register.start) for p in points)
    return GaugeSettings(device.id, device.camera, dials)


class GaugeDriver:
    def __init__(self, settings: GaugeSettings) -> None:
        self._settings = settings

    @property
    def device_id(self) -> str:
        return self._settings.device_id

    async def connect(self) -> None:
        return None

    async def read(self) -> list[RawSample]:
        return [
            RawSample(key, float(dial) / 10, Quality.GOOD, 0.0, 0.0, raw=(dial,))
            for key, dial in self._settings.dials
        ]

    async def close(self) -> None:
        return None


def build_gauge(settings: GaugeSettings, _buses: Buses | None) -> Driver:
    return GaugeDriver(settings)


GAUGE = DriverKind(
    config=GaugeDevice,
    settings=gauge_settings,
    build=build_gauge,
    view=PointView(
        columns=("dial",),
        cells=lambda point: (f"dial {point.register.start}",),
        as_json=lambda point: {"dial": point.register.start},
        raw_text=lambda sample: " ".join(map(str, sample.raw)),
    ),
)
'''

# Runs in the copied tree: what the registry, the loader, a driver, `check` and the reference
# generator make of the new kind.
PROBE = """\
import asyncio, io, json, sys
from pathlib import Path

from click.testing import CliRunner

import edge_agent
from devtools.config_reference import PAGES, render
from edge_agent.cli import main
from edge_agent.config import SUPPORTED_DRIVERS, ConfigError, load_site_config
from edge_agent.core.plan import AgentPlan
from edge_agent.core.plan_codec import decode_plan, write_plan
from edge_agent.core.plan_compile import compile_plan
from edge_agent.core.points import resolve_points
from edge_agent.kinds import KINDS, build_driver
from edge_agent.shell.device_pollers import build_driver as build_planned
from specs.catalogue import default_catalogue

good, bad = Path(sys.argv[1]), Path(sys.argv[2])
config = load_site_config(good)
points = resolve_points(config)
gauge = next(d for d in config.devices if d.driver == "gauge")
driver = build_driver(gauge, [p for p in points if p.device_id == gauge.id])


# What `edge-agent run` does: the compiled plan crosses the exec as JSON, and the runner
# builds the driver by the `build` the plan names, without the config models.
encoded = io.StringIO()
write_plan(compile_plan(config, default_catalogue()), encoded)
plan = decode_plan(encoded.getvalue().encode(), AgentPlan)
planned = next(d for d in plan.devices if d.driver == "gauge")


async def read_once(driver):
    await driver.connect()
    try:
        return [(s.key, s.value) for s in await driver.read()]
    finally:
        await driver.close()


try:
    load_site_config(bad)
    issues = []
except ConfigError as exc:
    issues = [str(issue) for issue in exc.issues]
check = CliRunner().invoke(main, ["check", "-c", str(good)])
print(json.dumps({
    "package": edge_agent.__file__,
    "drivers": list(SUPPORTED_DRIVERS),
    "kind": type(KINDS.kind_of(gauge)).__name__,
    "readings": asyncio.run(read_once(driver)),
    "planned": [planned.build, asyncio.run(read_once(build_planned(planned)))],
    "issues": issues,
    "check": [check.exit_code, check.output],
    "reference": render(PAGES[0]),
}))
"""


def _copy_tree(to: Path) -> None:
    for package in PACKAGES:
        shutil.copytree(
            ROOT / package, to / package, ignore=shutil.ignore_patterns("__pycache__", "*.pyc")
        )


def _register_gauge(tree: Path) -> None:
    """The whole change a new kind makes: its folder, and its entry in KINDS with its import."""
    folder = tree / "edge_agent" / "kinds" / "gauge"
    folder.mkdir()
    (folder / "__init__.py").write_text(GAUGE_INIT, encoding="utf-8")
    (folder / "config.py").write_text(GAUGE_CONFIG, encoding="utf-8")
    (folder / "kind.py").write_text(GAUGE_KIND, encoding="utf-8")
    registry = tree / "edge_agent" / "kinds" / "__init__.py"
    text = registry.read_text(encoding="utf-8")
    last_import = "from edge_agent.kinds.serial import SERIAL\n"
    last_entry = "    SERIAL,\n"
    assert text.count(last_import) == 1
    assert text.count(last_entry) == 1
    text = text.replace(last_import, last_import + "from edge_agent.kinds.gauge import GAUGE\n")
    text = text.replace(last_entry, last_entry + "    GAUGE,\n")
    registry.write_text(text, encoding="utf-8")


def _changed_files(original: Path, copy: Path) -> list[str]:
    """Files that differ between the two trees, or exist in one only (relative paths)."""
    changed: list[str] = []

    def walk(compared: filecmp.dircmp[str], prefix: str) -> None:
        changed.extend(f"{prefix}{name}" for name in compared.diff_files)
        changed.extend(f"{prefix}{name}" for name in compared.left_only + compared.right_only)
        for name, sub in compared.subdirs.items():
            walk(sub, f"{prefix}{name}/")

    for package in PACKAGES:
        ignore = [*filecmp.DEFAULT_IGNORES, "__pycache__"]
        walk(filecmp.dircmp(original / package, copy / package, ignore=ignore), f"{package}/")
    return sorted(changed)


def _site(devices: str) -> str:
    return site_head("WHP") + "devices:\n" + devices


GOOD = """\
  - {id: dials, driver: gauge, camera: cam-3, poll: 5s, points: [
     {point: T1-LT, quota: WHP-LT, address: {table: holding, start: 12, type: uint16}}]}
  - {id: plc, driver: modbus_tcp, host: 10.0.0.9, poll: 1s, points: [
     {point: T1-PT, quota: WHP-PT, address: {table: holding, start: 4, type: float32}}]}
"""

BAD = """\
  - {id: dials, driver: gauge, camra: cam-3, poll: 5s, points: [
     {point: T1-LT, quota: WHP-LT, pattern: 'L=(?P<value>[0-9.]+)'}]}
"""


def test_a_new_kind_is_one_folder_and_one_registry_entry(tmp_path: Path) -> None:
    tree = tmp_path / "tree"
    _copy_tree(tree)
    _register_gauge(tree)
    assert _changed_files(ROOT, tree) == [
        "edge_agent/kinds/__init__.py",
        "edge_agent/kinds/gauge",
    ]
    registry = (tree / "edge_agent" / "kinds" / "__init__.py").read_text(encoding="utf-8")
    before = (ROOT / "edge_agent" / "kinds" / "__init__.py").read_text(encoding="utf-8")
    assert len(registry.splitlines()) == len(before.splitlines()) + 2  # the entry, its import

    good, bad = tmp_path / "good.yaml", tmp_path / "bad.yaml"
    good.write_text(_site(GOOD), encoding="utf-8")
    bad.write_text(_site(BAD), encoding="utf-8")
    environment = {**os.environ, "PYTHONPATH": str(tree)}
    seen = json_output(
        [sys.executable, "-c", PROBE, str(good), str(bad)], cwd=tree, env=environment, timeout=120
    )
    assert isinstance(seen, dict)

    assert seen["package"] == str(tree / "edge_agent" / "__init__.py"), "ran the copy"
    assert seen["drivers"] == ["modbus_tcp", "modbus_rtu", "opcua", "serial", "gauge"]
    assert seen["kind"] == "DriverKind"
    assert seen["readings"] == [["T1-LT", 1.2]]
    assert seen["planned"] == ["edge_agent.kinds.gauge.kind:build_gauge", [["T1-LT", 1.2]]]
    # Field errors with file:line, the unknown key's hint and the point-source rule, which
    # learnt from the registry that `pattern` belongs to serial devices.
    line = 10  # the device's line; the point's is the next one
    assert seen["issues"] == [
        f"{bad}:{line}: devices[0].camera: missing required key",
        f"{bad}:{line}: devices[0].camra: unknown key; did you mean 'camera'?",
        (
            f"{bad}:{line + 1}: devices[0].points[0].address: missing required key: gauge "
            "points need their Modbus address, such as {table: holding, start: 0, type: float32}"
        ),
        (
            f"{bad}:{line + 1}: devices[0].points[0].pattern: pattern applies only to serial "
            "points; gauge points are read by `address`"
        ),
    ]
    exit_code, output = seen["check"]
    assert exit_code == 0, output
    rows = [row.split() for row in output.splitlines()]
    # A table of its own, after the Modbus one, with its own column.
    assert ["device", "point", "quota", "name", "dial", "scale", "offset", "unit"] in rows
    gauge_row = next(r for r in rows if r[:1] == ["dials"])
    assert gauge_row[:3] == ["dials", "T1-LT", "WHP-LT"]
    assert "12" in gauge_row
    assert "2 devices, 2 points" in output
    assert "## GaugeDevice" in seen["reference"]
    assert (
        "| `camera` | string | **required** | The camera that looks at the dials. |"
        in (seen["reference"])
    )
