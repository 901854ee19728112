"""G10 (README, Benchmarks): RTU transactions per second on a 19,200-baud line.

A simulated RTU bus on a pseudo-terminal, throttled to the baud rate's character time,
serves 10-register reads back to back. The baseline is the theoretical rate the RTU timing
model computes for the same request at the same line settings (request + response frames at
11 bits per character, plus the t3.5 silences). Target: measured >= 0.9x theoretical.

Run: `.venv/bin/python -m bench.rtu`. Prints one JSON line; exits 1 when the ratio misses.
"""

from __future__ import annotations

import asyncio
import json
import sys

from drivers.modbus.codec import DataType, Table
from drivers.modbus.plan import RegisterPoint
from drivers.modbus.rtu import ModbusRtuDriver, RtuBus
from drivers.modbus.timing import rtu_transaction_seconds
from drivers.serial.settings import Parity, SerialSettings
from drivers.sim.rtu_bus import RAMP_BASE, RtuBusSim, pattern_slave

BAUD = 19200
SECONDS = 3.0
TARGET = 0.9


async def measure() -> dict[str, float]:
    """Back-to-back 10-register reads for SECONDS; the rate and the model's rate."""
    async with RtuBusSim([pattern_slave(1)], baudrate=BAUD) as line:
        # 8N2: 11-bit characters like Modbus's 8E1; a pty cannot keep parity across reopening.
        bus = RtuBus(SerialSettings(line.path, BAUD, Parity.NONE, 2))
        points = [
            RegisterPoint(f"r{i}", Table.HOLDING, RAMP_BASE + i, DataType.UINT16) for i in range(10)
        ]
        driver = ModbusRtuDriver("bench", bus, 1, points, timeout=0.5)
        theoretical = 1 / rtu_transaction_seconds(driver.plan[0], BAUD, "N", 2, turnaround=0.0)
        loop = asyncio.get_running_loop()
        await driver.connect()
        try:
            started, count = loop.time(), 0
            while loop.time() - started < SECONDS:
                await driver.read()
                count += 1
            rate = count / (loop.time() - started)
        finally:
            await driver.close()
    return {
        "rtu_baud": BAUD,
        "rtu_txn_per_s": round(rate, 1),
        "rtu_theoretical_txn_per_s": round(theoretical, 1),
        "g10_ratio": round(rate / theoretical, 3),
    }


def main() -> int:
    """Measure, print, and fail when the ratio misses its target."""
    figures = asyncio.run(measure())
    print(json.dumps(figures))
    return 0 if figures["g10_ratio"] >= TARGET else 1


if __name__ == "__main__":
    sys.exit(main())
