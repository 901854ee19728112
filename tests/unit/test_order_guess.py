from __future__ import annotations

import pytest

from drivers.modbus.codec import DataType, Order, encode
from edge_agent.core.order_guess import rank_orders
from specs.catalogue import default_catalogue

LEVEL = default_catalogue().indicators["WHP-LT"]
TEMPERATURE = default_catalogue().indicators["WHP-TT"]


@pytest.mark.parametrize("byte_order", list(Order))
@pytest.mark.parametrize("word_order", list(Order))
@pytest.mark.parametrize("value", [7.25, 0.83, 12.5])
def test_the_true_order_of_a_float_level_ranks_first(
    byte_order: Order, word_order: Order, value: float
) -> None:
    registers = encode(value, DataType.FLOAT32, byte_order, word_order)
    ranked = rank_orders(
        registers, DataType.FLOAT32, scale=1.0, offset=0.0, unit="m", indicator=LEVEL
    )
    best = ranked[0]
    assert (best.byte_order, best.word_order) == (byte_order, word_order)
    assert best.plausible
    assert best.value == pytest.approx(value)


def test_a_swapped_int32_temperature_is_found() -> None:
    registers = encode(2345, DataType.INT32, Order.BIG, Order.LITTLE)  # 23.45 ℃ with scale 0.01
    ranked = rank_orders(
        registers, DataType.INT32, scale=0.01, offset=0.0, unit="℃", indicator=TEMPERATURE
    )
    assert (ranked[0].byte_order, ranked[0].word_order) == (Order.BIG, Order.LITTLE)
    assert ranked[0].value == pytest.approx(23.45)
    assert not ranked[-1].plausible


def test_wrong_register_count_gives_no_candidates() -> None:
    assert rank_orders((1,), DataType.FLOAT32, scale=1, offset=0, unit="m", indicator=LEVEL) == []
