"""`edge-agent probe` against the real tank-farm simulator in its own process."""

from __future__ import annotations

import asyncio
import json
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest
import yaml
from click.testing import CliRunner
from pymodbus.client import AsyncModbusTcpClient

from edge_agent.cli import main
from tests.support.broker import free_port, wait_for_port
from tests.support.config_files import site_head

ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture
def sim_port() -> Iterator[int]:
    port = free_port()
    process = subprocess.Popen(
        [sys.executable, "-m", "simulators", "--port", str(port)],
        cwd=ROOT,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        wait_for_port(port)
        yield port
    finally:
        process.terminate()
        try:
            process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()


def _site(tmp_path: Path, port: int, *, level_word_order: str = "big") -> Path:
    site_map = yaml.safe_load((ROOT / "configs" / "tankfarm.yaml").read_text(encoding="utf-8"))
    for device in site_map["devices"]:
        device["port"] = port
        for point in device.get("points", []):
            if point["point"] == "T001-LT-01":
                # Declared with a wrong word order, as a technician might.
                point["address"]["word_order"] = level_word_order
    site = tmp_path / "site.yaml"
    site.write_text(yaml.safe_dump(site_map, allow_unicode=True), encoding="utf-8")
    return site


def test_probe_prints_raw_registers_and_decoded_values(tmp_path: Path, sim_port: int) -> None:
    result = CliRunner().invoke(main, ["probe", "-c", str(_site(tmp_path, sim_port)), "--json"])
    assert result.exit_code == 0, result.output
    rows = json.loads(result.output)
    assert len(rows) == 15
    level = next(r for r in rows if r["point"] == "T001-LT-01")
    assert len(level["raw"].split()) == 2, "a float32 is two registers"
    assert level["quality"] == "good"
    assert 0.0 <= level["value"] <= 10.0
    assert level["unit"] == "m"
    assert level["rtt_ms"] > 0


def test_guess_order_finds_a_wrong_word_order(tmp_path: Path, sim_port: int) -> None:
    site = _site(tmp_path, sim_port, level_word_order="little")
    declared = CliRunner().invoke(main, ["check", "-c", str(site)]).output
    assert "big/little" in declared, "the level really is declared with swapped words"
    result = CliRunner().invoke(
        main, ["probe", "-c", str(site), "--device", "tank-plc", "--guess-order", "--json"]
    )
    rows = json.loads(result.output)
    level = next(r for r in rows if r["point"] == "T001-LT-01")
    orders = level["orders"]
    assert [set(o) for o in orders] == [{"byte_order", "word_order", "value", "plausible"}] * 4
    assert (orders[0]["byte_order"], orders[0]["word_order"]) == ("big", "big"), orders
    assert orders[0]["plausible"] is True
    assert 0.0 <= orders[0]["value"] <= 10.0
    # The declared (swapped) order decodes the tank's level to a subnormal float: never plausible.
    declared = next(o for o in orders if (o["byte_order"], o["word_order"]) == ("big", "little"))
    assert declared["plausible"] is False, orders
    text = (
        CliRunner()
        .invoke(main, ["probe", "-c", str(site), "--device", "tank-plc", "--guess-order"])
        .output
    )
    assert "order big/big=" in text
    assert "big/little=" in text
    assert "(implausible)" in text


def test_probe_of_an_unreachable_device_reports_bad_and_exits_1(tmp_path: Path) -> None:
    result = CliRunner().invoke(main, ["probe", "-c", str(_site(tmp_path, free_port()))])
    assert result.exit_code == 1
    assert "bad" in result.output


async def _write_registers(port: int, registers: dict[int, list[int]]) -> None:
    async with AsyncModbusTcpClient("127.0.0.1", port=port) as client:
        for start, values in registers.items():
            assert not (await client.write_registers(start, values)).isError()


def _refuse_non_json(constant: str) -> object:
    raise ValueError(f"{constant} is not JSON")


def test_json_stays_json_when_a_device_sends_nan_and_infinity(tmp_path: Path) -> None:
    """A float32 of 7FC0 0000 (NaN) or 7F80 0000 (infinity) came out of `probe --json` as the
    bare words NaN and Infinity, which no JSON parser but Python's takes."""
    port = free_port()
    # A day between updates: the registers keep what is written to them here.
    process = subprocess.Popen(
        [sys.executable, "-m", "simulators", "--port", str(port), "--interval", "86400"],
        cwd=ROOT,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        wait_for_port(port)
        asyncio.run(_write_registers(port, {0: [0x7FC0, 0x0000], 2: [0x7F80, 0x0000]}))
        site = str(_site(tmp_path, port))
        result = CliRunner().invoke(
            main, ["probe", "-c", site, "--device", "tank-plc", "--guess-order", "--json"]
        )
    finally:
        process.terminate()
        process.communicate(timeout=10)
    assert result.exit_code == 1, result.output
    rows = {r["point"]: r for r in json.loads(result.stdout, parse_constant=_refuse_non_json)}
    for point, raw in (("T001-LT-01", "7FC0 0000"), ("T001-TT-01", "7F80 0000")):
        row = rows[point]
        assert (row["raw"], row["decoded"], row["value"]) == (raw, None, None), row
        assert row["quality"] == "bad"
        big_big = next(
            o for o in row["orders"] if (o["byte_order"], o["word_order"]) == ("big",) * 2
        )
        assert (big_big["value"], big_big["plausible"]) == (None, False)
    assert rows["T002-TT-01"]["quality"] == "good"


def test_a_failed_read_says_why_not_only_its_kind(tmp_path: Path) -> None:
    """A serial port that is not there, or not a serial port, was 'bad (link_down)' and
    nothing more: the driver's message (no such file, not a tty, permission denied) was
    dropped, and it is what a technician needs to put the port right."""
    site_map = yaml.safe_load((ROOT / "configs" / "tankfarm.yaml").read_text(encoding="utf-8"))
    gas = next(d for d in site_map["devices"] if d["id"] == "gas-t1")
    for key in ("host", "port"):
        gas.pop(key, None)
    not_there = tmp_path / "ttyUSB9"
    gas.update(driver="modbus_rtu", port=str(not_there), unit_id=3)
    site = tmp_path / "site.yaml"
    site.write_text(yaml.safe_dump(site_map, allow_unicode=True), encoding="utf-8")
    probe = ["probe", "-c", str(site), "--device", "gas-t1"]
    text = CliRunner().invoke(main, probe)
    assert text.exit_code == 1, text.output
    errors = [line for line in text.stdout.splitlines() if line.startswith("    error: ")]
    assert len(errors) == 1, text.stdout  # once for the device's rows, not once a row
    assert str(not_there) in errors[0]
    assert "No such file or directory" in errors[0]
    rows = json.loads(CliRunner().invoke(main, [*probe, "--json"]).stdout)
    assert rows
    for row in rows:
        assert (row["quality"], row["flags"]) == ("bad", ["link_down"])
        assert "No such file or directory" in row["error"]


def test_slaves_naming_one_bus_by_two_paths_share_it(tmp_path: Path) -> None:
    """Two slaves of one RS-485 adapter, one named by its device path and one by a link to
    it (as /dev/serial/by-id gives), are two slaves of one bus: probe stopped with a
    ValueError traceback ('SerialSettings(port=...) differs from the bus's ...') before
    reading either. (Parity N: Linux refuses a pty's second open with parity E, EINVAL
    from tcsetattr, and probe opens the bus again for each slave.)"""
    link = tmp_path / "usb-FTDI-if00-port0"
    process = subprocess.Popen(
        [sys.executable, "-m", "simulators.rtu_bus", "--units", "1,2", "--link", str(link)],
        cwd=ROOT,
        stdout=subprocess.PIPE,
        stderr=subprocess.DEVNULL,
        text=True,
    )
    try:
        assert process.stdout is not None
        pty = process.stdout.readline().strip()
        slaves = "".join(
            f"""\
  - id: rtu-{unit}
    driver: modbus_rtu
    port: {port}
    parity: N
    unit_id: {unit}
    poll: 1s
    timeout: 500ms
    points:
      - point: R{unit}
        quota: WHP-LT
        address: {{table: holding, start: {200 + unit}, type: uint16}}
"""
            for unit, port in ((1, pty), (2, link))
        )
        site = tmp_path / "site.yaml"
        site.write_text(site_head() + "devices:\n" + slaves, encoding="utf-8")
        result = CliRunner().invoke(main, ["probe", "-c", str(site), "--json"])
        assert result.exit_code == 0, result.output
        rows = {row["point"]: row for row in json.loads(result.stdout)}
        assert {point: (row["quality"], row["value"]) for point, row in rows.items()} == {
            "R1": ("good", 1.0),
            "R2": ("good", 2.0),
        }
    finally:
        process.terminate()
        process.communicate(timeout=10)
