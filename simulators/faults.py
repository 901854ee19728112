"""Fault modes for the Modbus TCP simulators, applied through pymodbus's trace hooks.

    fault           what a client sees
    normal          correct replies, values move
    silent          the request is read, no reply ever comes (the client times out)
    exception:CODE  every request answered with Modbus exception CODE (default 4)
    garbage         every reply replaced by random bytes that are no valid Modbus TCP frame
    frozen          correct replies, but the values stop changing

`FaultInjector` holds the current fault of one server; its `trace_pdu` and `trace_packet`
methods are that server's pymodbus ``trace_pdu``/``trace_packet`` hooks, so a fault can be
switched while clients are connected and applies from the next reply on. Only replies are
changed: a request still reaches the register tables (a write sent to a silent or faulting
server still lands), as when a device acts but its answer is lost. `frozen` is carried out
by the server, which stops publishing new values while `FaultInjector.frozen` is set.
"""

from __future__ import annotations

import enum
import random
from dataclasses import dataclass
from typing import TYPE_CHECKING

from pymodbus.pdu import ExceptionResponse

if TYPE_CHECKING:
    from pymodbus.pdu import ModbusPDU

__all__ = ["DEVICE_FAILURE", "FAULT_CHOICES", "Fault", "FaultInjector", "FaultKind"]

DEVICE_FAILURE = 4
"""Modbus exception 4, SERVER DEVICE FAILURE: the default code of the exception fault."""
FAULT_CHOICES = "normal|silent|garbage|frozen|exception[:CODE]"
"""How `Fault.parse` spells the faults, for usage texts."""

_MAX_EXCEPTION_CODE = 0xFF
_GARBAGE_SIZE = (8, 40)  # bytes: at least a whole MBAP header, so the client reads all of it


class FaultKind(enum.StrEnum):
    """How a simulated Modbus TCP server misbehaves."""

    NORMAL = "normal"
    SILENT = "silent"
    EXCEPTION = "exception"
    GARBAGE = "garbage"
    FROZEN = "frozen"


@dataclass(frozen=True, slots=True)
class Fault:
    """One fault mode; `code` is the Modbus exception code of `FaultKind.EXCEPTION`."""

    kind: FaultKind = FaultKind.NORMAL
    code: int = DEVICE_FAILURE

    def __post_init__(self) -> None:
        if not 1 <= self.code <= _MAX_EXCEPTION_CODE:
            raise ValueError(f"exception code {self.code} is outside 1..{_MAX_EXCEPTION_CODE}")

    @classmethod
    def normal(cls) -> Fault:
        """Return no fault."""
        return cls()

    @classmethod
    def silent(cls) -> Fault:
        """Return the fault that reads every request and never answers."""
        return cls(FaultKind.SILENT)

    @classmethod
    def exception(cls, code: int = DEVICE_FAILURE) -> Fault:
        """Return the fault that answers every request with Modbus exception `code`."""
        return cls(FaultKind.EXCEPTION, code)

    @classmethod
    def garbage(cls) -> Fault:
        """Return the fault that answers every request with random bytes."""
        return cls(FaultKind.GARBAGE)

    @classmethod
    def frozen(cls) -> Fault:
        """Return the fault that stops the values from changing."""
        return cls(FaultKind.FROZEN)

    @classmethod
    def parse(cls, text: str) -> Fault:
        """Parse ``normal``, ``silent``, ``garbage``, ``frozen`` or ``exception[:CODE]``.

        Raises:
            ValueError: anything else, or a code outside 1..255.
        """
        name, colon, code_text = text.strip().partition(":")
        try:
            kind = FaultKind(name)
        except ValueError:
            raise ValueError(f"{text!r}: want {FAULT_CHOICES}") from None
        if not colon:
            return cls(kind)
        if kind is not FaultKind.EXCEPTION:
            raise ValueError(f"{text!r}: only exception takes a code")
        try:
            code = int(code_text, 0)
        except ValueError:
            raise ValueError(f"{text!r}: the exception code must be a number") from None
        return cls.exception(code)

    def __str__(self) -> str:
        if self.kind is FaultKind.EXCEPTION:
            return f"{self.kind}:{self.code}"
        return str(self.kind)


class FaultInjector:
    """The current fault of one server, and the pymodbus trace hooks that apply it.

    `rng` draws the garbage; give it its own generator so that a fault does not shift the
    seeded values of the simulation.
    """

    def __init__(self, rng: random.Random, fault: Fault | None = None) -> None:
        self.fault = fault or Fault.normal()
        self._rng = rng

    @property
    def frozen(self) -> bool:
        """Whether the server should stop changing its values."""
        return self.fault.kind is FaultKind.FROZEN

    def trace_pdu(self, sending: bool, pdu: ModbusPDU) -> ModbusPDU:
        """Replace an outgoing reply by the exception reply, under the exception fault."""
        if not sending or self.fault.kind is not FaultKind.EXCEPTION:
            return pdu
        return ExceptionResponse(
            pdu.function_code & 0x7F,
            self.fault.code,
            device_id=pdu.dev_id,
            transaction=pdu.transaction_id,
        )

    def trace_packet(self, sending: bool, packet: bytes) -> bytes:
        """Drop an outgoing frame (silent) or replace it by random bytes (garbage)."""
        if not sending:
            return packet
        if self.fault.kind is FaultKind.SILENT:
            return b""  # an empty write sends nothing
        if self.fault.kind is FaultKind.GARBAGE:
            return self._garbage()
        return packet

    def _garbage(self) -> bytes:
        """Return random bytes that no Modbus TCP client accepts as a reply.

        The MBAP protocol id (bytes 2 and 3) of a real frame is always 0; garbage never has
        0 there, so it cannot pass for a reply, however the other bytes fall.
        """
        data = bytearray(self._rng.randbytes(self._rng.randint(*_GARBAGE_SIZE)))
        data[2:4] = self._rng.randrange(1, 1 << 16).to_bytes(2, "big")
        return bytes(data)
