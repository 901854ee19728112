"""G10 (README, Benchmarks): RTU transactions per second on a 19,200-baud line.

A simulated RTU bus on a pseudo-terminal, throttled to the baud rate's character time,
serves 10-register reads back to back. The baseline is the theoretical rate the RTU timing
model computes for the same request at the same line settings (request + response frames at
11 bits per character, plus the t3.5 silences). Target: measured >= 0.9x theoretical.

Figures (bench/results.py), min/median/max over `--repeats` runs of `--seconds` each:
G10 measured/theoretical (gated, >= 0.9), and the transactions/s measured (for the record).

Run: `.venv/bin/python -m bench.rtu [--repeats 3] [--seconds 3] [--json PATH]` (about
`repeats x seconds` plus a second each); exits 1 when the ratio's median misses.
"""

from __future__ import annotations

import argparse
import asyncio
import sys

from bench.results import BenchResult, Figure, add_json_argument, finished
from drivers.modbus.codec import DataType, Table
from drivers.modbus.plan import RegisterPoint
from drivers.modbus.rtu import ModbusRtuDriver
from drivers.modbus.rtu_bus import RtuBus
from drivers.modbus.timing import rtu_transaction_seconds
from drivers.serial.settings import Parity, SerialSettings
from simulators.rtu_bus import RtuBusSim
from simulators.rtu_slaves import RAMP_BASE, pattern_slave
from tests.support.connected import connected

BAUD = 19200
SECONDS = 3.0
TARGET = 0.9


async def measure(seconds: float = SECONDS) -> dict[str, float]:
    """Back-to-back 10-register reads for `seconds`; the rate and the model's rate."""
    async with RtuBusSim([pattern_slave(1)], baudrate=BAUD) as line:
        # 8N2: 11-bit characters like Modbus's 8E1; a pty cannot keep parity across reopening.
        bus = RtuBus(SerialSettings(line.path, BAUD, Parity.NONE, 2))
        points = [
            RegisterPoint(f"r{i}", Table.HOLDING, RAMP_BASE + i, DataType.UINT16) for i in range(10)
        ]
        driver = ModbusRtuDriver("bench", bus, 1, points, timeout=0.5)
        theoretical = 1 / rtu_transaction_seconds(driver.plan[0], bus.settings, turnaround=0.0)
        loop = asyncio.get_running_loop()
        async with connected(driver):
            started, count = loop.time(), 0
            while loop.time() - started < seconds:
                await driver.read()
                count += 1
            rate = count / (loop.time() - started)
    return {
        "rtu_baud": BAUD,
        "rtu_txn_per_s": round(rate, 1),
        "rtu_theoretical_txn_per_s": round(theoretical, 1),
        "g10_ratio": round(rate / theoretical, 3),
    }


def main() -> int:
    """Measure, write the result, and fail when the ratio's median misses its target."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--seconds", type=float, default=SECONDS, help="per repeat")
    add_json_argument(parser)
    args = parser.parse_args()
    runs = [asyncio.run(measure(args.seconds)) for _ in range(args.repeats)]
    theoretical = runs[0]["rtu_theoretical_txn_per_s"]
    result = BenchResult(
        "rtu",
        (
            Figure(
                "G10", "RTU transactions/s at 19,200 baud over theoretical", "x",
                tuple(r["g10_ratio"] for r in runs), target=TARGET,
                baseline=f"the RTU timing model's {theoretical:g} txn/s (10-register FC03, 8N2)",
            ),
            Figure(
                "", "RTU transactions/s at 19,200 baud", "txn/s",
                tuple(r["rtu_txn_per_s"] for r in runs),
            ),
        ),
        notes=("A pseudo-terminal throttled to the character time stands in for the RS-485 line.",),
    )  # fmt: skip
    return finished(args.json, result)


if __name__ == "__main__":
    sys.exit(main())
