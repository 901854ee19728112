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


@pytest.mark.parametrize("value", [7.25, 12.5, 1.0])
def test_a_denormal_decoding_is_never_plausible(value: float) -> None:
    # 7.25 m with swapped words decodes to about 2.3e-41: inside [0, 40] m, yet no level
    # gauge reports a subnormal float; ranking it plausible hides the real mistake.
    registers = encode(value, DataType.FLOAT32, Order.BIG, Order.BIG)
    ranked = rank_orders(
        registers, DataType.FLOAT32, scale=1.0, offset=0.0, unit="m", indicator=LEVEL
    )
    assert [c.plausible for c in ranked] == [True, False, False, False], ranked


def test_an_absurdly_small_value_is_not_plausible_but_zero_is() -> None:
    # 1e-12 m is a millionth of a micrometre: below any instrument's resolution for a 40 m
    # range; an exact zero (empty tank) is an ordinary reading.
    tiny = encode(1e-12, DataType.FLOAT32, Order.BIG, Order.BIG)
    zero = encode(0.0, DataType.FLOAT32, Order.BIG, Order.BIG)
    first = rank_orders(tiny, DataType.FLOAT32, scale=1.0, offset=0.0, unit="m", indicator=LEVEL)
    empty = rank_orders(zero, DataType.FLOAT32, scale=1.0, offset=0.0, unit="m", indicator=LEVEL)
    assert not any(c.plausible for c in first)
    assert all(c.plausible for c in empty)
