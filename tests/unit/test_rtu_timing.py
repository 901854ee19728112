"""RTU timing model against the performance reference table, and the read-count lower bound."""

from __future__ import annotations

import pytest

from drivers.modbus.codec import DataType, Table
from drivers.modbus.plan import (
    UNLIMITED_GAP,
    ReadRequest,
    RegisterPoint,
    plan_reads,
    transaction_lower_bound,
)
from drivers.modbus.timing import (
    DEFAULT_TURNAROUND,
    bus_utilization,
    response_frame_bytes,
    rtu_timeout_seconds,
    rtu_transaction_seconds,
    silent_interval,
)
from drivers.serial.settings import Parity, SerialSettings
from simulators.tankfarm import register_map

H, INP = Table.HOLDING, Table.INPUT
PORT = "/dev/ttyUSB0"  # the model reads a line's framing, never its port


def line(baudrate: int, parity: Parity = Parity.EVEN, stopbits: int = 1) -> SerialSettings:
    """A line of `baudrate`, 8E1 (what the Modbus serial-line spec prescribes) unless told."""
    return SerialSettings(PORT, baudrate, parity, stopbits)


def registers(count: int, table: Table = H) -> ReadRequest:
    return ReadRequest(table, 0, count, ())


def test_character_time_counts_start_data_parity_and_stop_bits() -> None:
    assert line(9600).char_seconds == pytest.approx(11 / 9600)  # 1.146 ms, the table's char
    assert line(19200).char_seconds == pytest.approx(0.573e-3, rel=1e-3)
    assert line(9600, Parity.NONE, 2).char_seconds == pytest.approx(11 / 9600)
    assert line(9600, Parity.NONE).char_seconds == pytest.approx(10 / 9600)
    seven_odd = SerialSettings(PORT, 9600, Parity.ODD, 1, bytesize=7)
    assert seven_odd.char_seconds == pytest.approx(10 / 9600)


@pytest.mark.parametrize(
    ("baudrate", "expected"),
    [(9600, 3.5 * 11 / 9600), (19200, 3.5 * 11 / 19200), (38400, 1.75e-3), (115200, 1.75e-3)],
)
def test_silent_interval_is_three_and_a_half_chars_then_fixed(
    baudrate: int, expected: float
) -> None:
    assert silent_interval(baudrate) == pytest.approx(expected)


def test_silent_interval_rejects_a_zero_rate() -> None:
    with pytest.raises(ValueError, match="baudrate"):
        silent_interval(0)


def test_frame_sizes() -> None:
    assert response_frame_bytes(registers(10)) == 25
    assert response_frame_bytes(registers(125)) == 255
    assert response_frame_bytes(ReadRequest(Table.COIL, 0, 16, ())) == 7
    assert response_frame_bytes(ReadRequest(Table.DISCRETE, 0, 17, ())) == 8


# performance.md section 2, "Modbus RTU, read holding registers (FC03)":
# (baud, N, transaction ms at 0 turnaround, txn/s at 0, regs/s at 0, txn/s at 5 ms)
TABLE = [
    (9600, 10, 45.8, 21.8, 218, 19.7),
    (19200, 10, 22.9, 43.6, 436, 35.8),
    (38400, 10, 13.0, 77, 772, 55.7),
    (115200, 10, 6.7, 150, 1504, 85.8),
    (9600, 125, 309, 3.2, 404, 3.2),
    (19200, 125, 155, 6.5, 808, 6.3),
    (38400, 125, 78.8, 12.7, 1586, 11.9),
    (115200, 125, 28.6, 34.9, 4369, 29.8),
]


@pytest.mark.parametrize("row", TABLE)
def test_transaction_time_matches_the_reference_table(
    row: tuple[int, int, float, float, float, float],
) -> None:
    baud, n, ms, rate, regs, rate_5ms = row
    request = registers(n)
    # The table uses 11-bit characters: the spec's 8E1 (or 8N2).
    seconds = rtu_transaction_seconds(request, line(baud), turnaround=0.0)
    assert seconds * 1e3 == pytest.approx(ms, rel=0.01, abs=0.05)
    assert 1 / seconds == pytest.approx(rate, rel=0.01, abs=0.05)
    assert n / seconds == pytest.approx(regs, rel=0.01)
    slow = rtu_transaction_seconds(request, line(baud, Parity.NONE, 2), turnaround=0.005)
    assert 1 / slow == pytest.approx(rate_5ms, rel=0.01, abs=0.05)


def test_default_turnaround_is_the_conservative_five_ms() -> None:
    request = registers(10)
    assert DEFAULT_TURNAROUND == 0.005
    assert rtu_transaction_seconds(request, line(9600)) == pytest.approx(
        rtu_transaction_seconds(request, line(9600), turnaround=0.0) + 0.005
    )
    with pytest.raises(ValueError, match="turnaround"):
        rtu_transaction_seconds(request, line(9600), turnaround=-1.0)


def test_a_timeout_costs_the_timeout_plus_the_silence() -> None:
    assert rtu_timeout_seconds(0.5, line(9600)) == pytest.approx(0.5 + 3.5 * 11 / 9600)
    assert rtu_timeout_seconds(0.5, line(115200)) == pytest.approx(0.50175)
    with pytest.raises(ValueError, match="timeout"):
        rtu_timeout_seconds(0.0, line(9600))


def test_bus_utilization_adds_each_devices_cycle_over_its_interval() -> None:
    ten, full = registers(10), registers(125)
    # Two devices on 9600 baud 8E1: a 10-register read every 0.5 s, and two reads every 2 s.
    u = bus_utilization([[ten], [full, ten]], [0.5, 2.0], line(9600), turnaround=0.0)
    t_ten = rtu_transaction_seconds(ten, line(9600), turnaround=0.0)
    t_full = rtu_transaction_seconds(full, line(9600), turnaround=0.0)
    assert u == pytest.approx(t_ten / 0.5 + (t_full + t_ten) / 2.0)
    assert u == pytest.approx(0.0917 + 0.1776, rel=0.01)
    # 30 devices with one 10-register read every second overload a 9600-baud bus.
    assert bus_utilization([[ten]] * 30, [1.0] * 30, line(9600), turnaround=0.0) > 1.0
    assert bus_utilization([], [], line(9600)) == 0.0
    with pytest.raises(ValueError, match="poll intervals"):
        bus_utilization([[ten]], [], line(9600))
    with pytest.raises(ValueError, match="interval"):
        bus_utilization([[ten]], [0.0], line(9600))


# --- the lower bound on transactions ----------------------------------------------------------


def words(
    starts: list[int], table: Table = H, dtype: DataType = DataType.UINT16
) -> list[RegisterPoint]:
    return [RegisterPoint(f"{table}{s}", table, s, dtype) for s in starts]


def headcount_map(workshops: int = 40) -> list[RegisterPoint]:
    """A fireworks site: (present, rated) per workshop in input registers, a status word."""
    points = words(list(range(2 * workshops)), INP)
    points += [RegisterPoint("status", H, 0, DataType.UINT16)]
    return points


REPRESENTATIVE_MAPS: dict[str, tuple[list[RegisterPoint], int]] = {
    "contiguous 300 registers": (words(list(range(300))), 3),
    "contiguous floats (125 is odd)": (words(list(range(0, 300, 2)), dtype=DataType.FLOAT32), 3),
    "sparse, far apart": (words([0, 1000, 2000, 3000]), 4),
    "sparse, one window apart": (words([0, 124, 125, 249]), 2),
    "float straddling a window edge": (
        [*words([0]), RegisterPoint("f", H, 123, DataType.FLOAT64)],
        2,
    ),
    "multiple tables": (
        words([0, 5, 9], H)
        + words([0, 100], INP)
        + words(list(range(0, 2001, 40)), Table.COIL, DataType.BOOL)
        + words([7], Table.DISCRETE, DataType.BOOL),
        5,
    ),
    "gaps of 0..60": (words([0, 1, 3, 10, 30, 70, 100, 160, 161]), 2),
    "bits of one register": (
        [RegisterPoint(f"b{b}", H, 7, DataType.BOOL, bit=b) for b in range(16)],
        1,
    ),
    "headcount counter, 40 workshops": (headcount_map(), 2),
    # holding: tanks 0..25, pattern 1000..1048; input: tanks, pattern; coils; discretes
    "tank farm simulator": ([s.point for s in register_map(3)], 6),
}


@pytest.mark.parametrize("name", list(REPRESENTATIVE_MAPS))
def test_plan_reaches_the_lower_bound_when_gaps_may_be_read(name: str) -> None:
    points, bound = REPRESENTATIVE_MAPS[name]
    assert transaction_lower_bound(points) == bound
    assert len(plan_reads(points, max_gap=UNLIMITED_GAP)) == bound


def test_a_small_max_gap_costs_requests_beyond_the_bound() -> None:
    points = words([0, 30, 60, 90])
    assert transaction_lower_bound(points) == 1
    assert len(plan_reads(points, max_gap=10)) == 4
    assert len(plan_reads(points, max_gap=29)) == 1


def test_the_tank_farm_needs_no_extra_request_at_the_default_gap() -> None:
    points = [s.point for s in register_map(3)]
    assert len(plan_reads(points)) == transaction_lower_bound(points)


def test_lower_bound_limits_and_errors() -> None:
    assert transaction_lower_bound([]) == 0
    assert transaction_lower_bound(words(list(range(20))), max_registers=10) == 2
    bits = words(list(range(30)), Table.COIL, DataType.BOOL)
    assert transaction_lower_bound(bits, max_bits=8) == 4
    with pytest.raises(ValueError, match="limit"):
        transaction_lower_bound(words([0], dtype=DataType.FLOAT64), max_registers=3)
    with pytest.raises(ValueError, match="limits"):
        transaction_lower_bound([], max_registers=0)
