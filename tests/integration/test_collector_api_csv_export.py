"""`collector export --format csv` writes what `GET /v1/readings` streams as text/csv, on
SQLite and PostgreSQL; bad options are usage errors (exit 2)."""

from __future__ import annotations

import asyncio
import os
import stat
from pathlib import Path

import pytest
from click.testing import CliRunner, Result

from collector.api.routes.readings import CSV_PAGE
from collector.cli import main
from collector.cli.export import EXPORT_PAGE
from collector.storage import open_storage
from specs.records import Quality, Reading, iso_time
from tests.support.broker import free_port
from tests.support.collector_api import (
    BEIJING,
    FLOAT32,
    NANCHANG,
    auth,
    level,
    pressure,
    serve,
    store_blocks,
)
from tests.support.collector_client import BASE_TIME
from tests.support.collector_env import register, write_collector_config

READINGS = 3000  # per point: more rows than one page of the export and of the API stream
FROM = iso_time(BASE_TIME + 100)
TO = iso_time(BASE_TIME + 2 * READINGS - 100)


def _readings() -> list[Reading]:
    found: list[Reading] = []
    for i in range(READINGS):
        t = BASE_TIME + 2 * i
        found.append(level(t, FLOAT32 if i % 10 == 0 else i / 8))
        quality = Quality.BAD if i % 50 == 0 else Quality.GOOD
        found.append(pressure(t, None if quality is Quality.BAD else i / 1000, quality))
    return found


async def _fill(storage_url: str) -> None:
    async with open_storage(storage_url) as storage:
        await register(storage, NANCHANG, BEIJING)
        readings = _readings()
        await store_blocks(
            storage, NANCHANG, [readings[i : i + 500] for i in range(0, len(readings), 500)]
        )
        await store_blocks(storage, BEIJING, [[level(BASE_TIME + 200, 1.0)]])


async def _api_csv(storage_url: str, tz: str) -> bytes:
    async with open_storage(storage_url) as storage, serve(storage) as http:
        response = await http.get(
            "/v1/readings",
            params={"gateway": NANCHANG.gateway, "from": FROM, "to": TO, "tz": tz},
            headers={**auth(), "Accept": "text/csv"},
        )
        assert response.status_code == 200
        return response.content


@pytest.fixture
def config(tmp_path: Path, storage_url: str) -> Path:
    asyncio.run(_fill(storage_url))
    return write_collector_config(
        tmp_path, broker_port=1, api_port=free_port(), storage_url=storage_url
    )


def _export(config: Path, *extra: str, gateway: str = NANCHANG.gateway) -> Result:
    args = ["export", "-c", str(config), "--format", "csv", "--gateway", gateway]
    return CliRunner().invoke(main, [*args, "--from", FROM, "--to", TO, *extra])


@pytest.mark.parametrize("tz", ["+00:00", "+08:00"])
def test_export_equals_the_api_csv(config: Path, storage_url: str, tmp_path: Path, tz: str) -> None:
    out = tmp_path / "readings.csv"
    result = _export(config, "--out", str(out), "--tz", tz)
    assert result.exit_code == 0, result.output
    exported = out.read_bytes()
    assert exported == asyncio.run(_api_csv(storage_url, tz))
    lines = exported.decode("utf-8").split("\r\n")
    assert lines[0] == "gateway,point,quota,t,value,unit,quality,flags"
    rows = len(lines) - 2  # header, and the empty piece after the last CRLF
    assert rows == 2 * (READINGS - 100) > max(EXPORT_PAGE, CSV_PAGE)
    assert all(line.split(",")[3].endswith(tz) for line in lines[1:-1])
    assert ",2.4833622,m," in exported.decode("utf-8")
    assert f"exported {rows} readings of gateway {NANCHANG.gateway}" in result.stderr
    assert not list(tmp_path.glob(f".{out.name}.*"))  # no partial file left


def test_export_to_stdout_shows_the_config_offset_and_no_bar(config: Path) -> None:
    result = _export(config)
    assert result.exit_code == 0, result.output
    written = result.stdout_bytes.decode("utf-8")  # `stdout` would turn CRLF into LF
    assert written.startswith("gateway,point,quota,t,value,unit,quality,flags\r\n")
    assert "+00:00," in written
    # No terminal: no progress bar, only the summary on stderr.
    summary = f"exported {2 * (READINGS - 100)} readings of gateway {NANCHANG.gateway}"
    assert result.stderr.splitlines() == [f"{summary} to stdout (times at +00:00)"]


@pytest.mark.parametrize(
    ("extra", "message"),
    [
        (["--from", "yesterday"], "--from"),
        (["--to", "2026-05-28T20:00:00"], "has no offset"),
        (["--to", FROM], "must be later than --from"),
        (["--tz", "+8"], "--tz"),
        (["--tz", "+15:00"], "beyond"),
        (["--format", "xml"], "--format"),
    ],
)
def test_bad_options_exit_2_with_a_clear_message(
    config: Path, tmp_path: Path, extra: list[str], message: str
) -> None:
    out = tmp_path / "readings.csv"
    result = _export(config, "--out", str(out), *extra)
    assert result.exit_code == 2, result.output
    assert message in result.stderr
    assert not out.exists()
    assert not list(tmp_path.glob(f".{out.name}.*"))  # no partial file left


def test_an_unknown_gateway_exits_2(config: Path, tmp_path: Path) -> None:
    out = tmp_path / "readings.csv"
    result = _export(config, "--out", str(out), gateway=f"{NANCHANG.enterprise}-GW09")
    assert result.exit_code == 2
    assert "is not registered" in result.stderr
    assert not out.exists()


@pytest.mark.parametrize("kind", ["fifo", "symlink"])
def test_an_out_that_is_no_regular_file_is_refused_and_left_alone(
    config: Path, tmp_path: Path, kind: str
) -> None:
    """`--out` is replaced by a rename: a device, FIFO or link there would be replaced too.

    Found by a hostile tester: `--out /dev/full` (as root) turned the device into a file
    of CSV and said "exported"; `--out /dev/stdout` would replace the link the same way.
    """
    out = tmp_path / "readings.csv"
    if kind == "fifo":
        os.mkfifo(out)
    else:
        (tmp_path / "elsewhere.csv").write_text("kept\n", encoding="utf-8")
        out.symlink_to(tmp_path / "elsewhere.csv")
    result = _export(config, "--out", str(out))
    assert result.exit_code == 2, result.output
    assert f"{out} is not a regular file" in result.stderr
    assert stat.S_ISFIFO(out.lstat().st_mode) if kind == "fifo" else out.is_symlink()
    assert not list(tmp_path.glob(f".{out.name}.*"))  # no partial file left


@pytest.mark.parametrize("kind", ["missing folder", "file as folder"])
def test_an_out_whose_folder_is_not_there_is_a_usage_error(
    config: Path, tmp_path: Path, kind: str
) -> None:
    """`--out nosuch/x.csv` ended with exit 1 and a bare "[Errno 2] No such file or directory:
    'nosuch'" (after reading the database); the folder is named, exit 2, before anything runs."""
    folder = tmp_path / "nosuch"
    if kind == "file as folder":
        folder.write_text("a file\n", encoding="utf-8")
    out = folder / "readings.csv"
    result = _export(config, "--out", str(out))
    assert result.exit_code == 2, result.output
    says = "does not exist" if kind == "missing folder" else "is not a folder"
    assert f"{folder} {says} (the export is written beside --out)" in result.stderr
