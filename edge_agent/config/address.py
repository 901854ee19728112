"""Where a Modbus point's value lives: table, first register, data type and byte layout."""

# No `from __future__ import annotations`: pydantic reads these annotations at runtime.

from typing import Annotated, Literal, Self

from pydantic import Field, model_validator

from configkit.fields import ConfigModel
from configkit.issues import KeyPath
from configkit.validation import raise_at
from drivers.modbus.codec import DataType as WordLayout
from drivers.modbus.codec import Table as ModbusTable
from drivers.modbus.codec import is_bit_table, register_count

# The site map's spelling, as the reference shows it; the codec's enums of the same values say
# how many registers a type takes and which tables hold bits. tests/unit/test_literal_mirrors.py
# holds each `Literal` here (and every other one that restates a driver's or the wire's
# vocabulary) to its enum's values, and builds a driver from each.
Table = Literal["holding", "input", "coil", "discrete"]
DataType = Literal["int16", "uint16", "int32", "uint32", "float32", "float64", "bool"]
Order = Literal["big", "little"]

LAST_ADDRESS = 65535
"""Modbus addresses are 16 bits: a value must end at or before this register."""


class Address(ConfigModel):
    """Where a value lives in the device's Modbus tables and how its bytes are laid out."""

    table: Table
    """Which Modbus table: holding or input registers, coils or discrete inputs."""
    start: Annotated[int, Field(strict=True, ge=0, le=LAST_ADDRESS)]
    """The first register's (or coil's) address, 0-based as on the wire."""
    type: DataType
    """How the registers encode the value; 32-bit types take two registers, float64 four."""
    byte_order: Order = "big"
    """Byte order inside each register (big: the Modbus standard)."""
    word_order: Order = "big"
    """Register order inside a multi-register value; many devices swap words (little). `probe
    --guess-order` finds it.
    """
    bit: Annotated[int, Field(strict=True, ge=0, le=15)] | None = None
    """For a bit packed in a register: its index, 0 (least significant) to 15."""

    @property
    def register_count(self) -> int:
        """Return how many registers (or coils) the value occupies."""
        return register_count(WordLayout(self.type))

    @model_validator(mode="after")
    def _fits(self) -> Self:
        problems: list[tuple[KeyPath, str]] = []
        bits = is_bit_table(ModbusTable(self.table))
        if bits and self.type != "bool":
            problems.append(
                (("type",), f"a {self.table} table holds single bits: type must be bool")
            )
        if self.bit is not None and (bits or self.type != "bool"):
            problems.append((("bit",), "bit applies only to type bool in a holding or input table"))
        end = self.start + self.register_count - 1
        if end > LAST_ADDRESS:
            problems.append(
                (
                    ("start",),
                    (
                        f"{self.type} needs {self.register_count} registers: from {self.start} "
                        f"it ends at {end}, past the last address {LAST_ADDRESS}"
                    ),
                )
            )
        if problems:
            raise_at(problems)
        return self
