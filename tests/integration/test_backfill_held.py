"""`edge-agent backfill` against readings the outbox holds already, live ones included.

A (point, t) the outbox holds (sealed live by the running agent, or imported earlier) is not
sealed again: the same value and quality count as `duplicate`; another value or quality is a
`conflict`, named on stderr (`FILE:LINE: conflicts with ...`), counted apart, exit 1. So is a
row of the same file that repeats a (point, t) with another value. Real outbox files, real
processes; the live case beside a real running agent (simulator, Mosquitto, collector).
"""

from __future__ import annotations

import json
import subprocess
from collections import Counter
from pathlib import Path

import pytest
from click.testing import CliRunner, Result

from demo.__main__ import write_configs
from edge_agent.cli import main
from specs.records import Reading
from tests.e2e.harness import BIN, Site, wait_until
from tests.support.outbox_file import committed_readings

pytestmark = pytest.mark.timeout(300)


def _live(site: Site, count: int) -> list[Reading]:
    """`count` readings the running agent sealed, one per (point, t)."""
    found: dict[tuple[str, str], Reading] = {}
    for record in site.outbox_records():
        if "backfill" not in record.flags and record.value is not None:
            found.setdefault((record.point, record.t), record)
    return list(found.values())[:count]


def _csv(path: Path, readings: list[Reading], shift: float) -> Path:
    with path.open("w", encoding="utf-8") as out:
        out.write("point,t,value,quality\n")
        for r in readings:
            assert r.value is not None
            out.write(f"{r.point},{r.t},{r.value + shift!r},{r.quality.value}\n")
    return path


def _run(site: Site, csv: Path) -> tuple[int, dict[str, object], list[str]]:
    done = subprocess.run(
        [str(BIN / "edge-agent"), "backfill", "-c", "site.yaml", "--csv", str(csv), "--json"],
        cwd=site.work,
        capture_output=True,
        text=True,
        timeout=240,
        check=False,
    )
    return done.returncode, json.loads(done.stdout), done.stderr.splitlines()


def test_readings_the_running_agent_sealed_are_not_sealed_again(site: Site) -> None:
    site.start_agent()
    wait_until(lambda: site.sealed_blocks() > 0, 60, "the agent's first block")
    wait_until(lambda: len(_live(site, 50)) == 50, 60, "50 live readings in the outbox")
    live = _live(site, 50)

    code, same, errors = _run(site, _csv(site.work / "same.csv", live, 0))
    assert (same["imported"], same["duplicate"], same["conflict"], code) == (0, 50, 0, 0)
    assert errors == []

    code, changed, errors = _run(site, _csv(site.work / "changed.csv", live, 1000))
    assert (changed["imported"], changed["duplicate"], changed["conflict"]) == (0, 0, 50)
    assert code == 1
    assert len(errors) == 50
    assert all(": conflicts with a reading already in the outbox (" in e for e in errors)
    assert errors[0].startswith(f"{site.work / 'changed.csv'}:2: ")
    assert site.alive("agent")

    keys = Counter((r.point, r.t) for r in committed_readings(site.outbox_path))
    assert [key for key, n in keys.items() if n > 1] == []


@pytest.fixture
def site_map(tmp_path: Path) -> Path:
    """The tank farm's site map with its gateway key; no agent, no outbox yet."""
    site_yaml = write_configs(tmp_path, "tankfarm", "mqtt://127.0.0.1:1", 1, 1)
    assert _invoke("keys", "init", "-c", str(site_yaml)).exit_code == 0
    return site_yaml


def _invoke(*args: str) -> Result:
    return CliRunner().invoke(main, list(args), catch_exceptions=False)


def _held(site_map: Path) -> list[tuple[str, str, float | None]]:
    readings = committed_readings(site_map.parent / "state" / "outbox.db")
    return [(r.point, r.t, r.value) for r in readings]


def test_another_value_for_the_same_point_and_time_is_a_conflict(site_map: Path) -> None:
    first = site_map.parent / "a.csv"
    first.write_text(
        "point,t,value\n"
        "T001-LT-01,2026-12-01 10:00:00,1.5\n"
        "T001-LT-01,2026-12-01 10:00:00,9.9\n"
        "T001-LT-01,2026-12-01T02:00:00Z,7.7\n"
        "T001-LT-01,2026-12-01T02:00:00Z,1.5\n",
        encoding="utf-8",
    )
    result = _invoke("backfill", "-c", str(site_map), "--csv", str(first), "--json")
    body = json.loads(result.stdout)
    counted = (body["imported"], body["duplicate"], body["conflict"], body["rejected"])
    assert counted == (1, 1, 2, 0)
    assert result.exit_code == 1
    kept = "line 2 (value 1.5, quality good)"
    assert result.stderr.splitlines() == [
        f"{first}:3: conflicts with {kept}",
        f"{first}:4: conflicts with {kept}",
    ]
    t = "2026-12-01T02:00:00.000+00:00"
    assert _held(site_map) == [("T001-LT-01", t, 1.5)]

    corrected = site_map.parent / "corrected.csv"
    corrected.write_text("point,t,value\nT001-LT-01,2026-12-01 10:00:00,4.2\n", encoding="utf-8")
    result = _invoke("backfill", "-c", str(site_map), "--csv", str(corrected))
    assert result.exit_code == 1
    assert result.stdout.splitlines()[0] == (
        f"{corrected}: imported 0, duplicate 0, conflict 1, rejected 0"
        + result.stdout.splitlines()[0].split("rejected 0", 1)[1]
    )
    assert result.stderr.splitlines() == [
        (
            f"{corrected}:2: conflicts with a reading already in the outbox"
            " (value 1.5, quality good), which is kept"
        )
    ]
    assert _held(site_map) == [("T001-LT-01", t, 1.5)]

    same = site_map.parent / "same.csv"
    same.write_text("point,t,value\nT001-LT-01,2026-12-01 10:00:00,1.5\n", encoding="utf-8")
    result = _invoke("backfill", "-c", str(site_map), "--csv", str(same), "--json")
    assert result.exit_code == 0, result.stderr
    body = json.loads(result.stdout)
    assert (body["imported"], body["duplicate"], body["conflict"]) == (0, 1, 0)
