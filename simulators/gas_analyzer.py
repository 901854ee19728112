r"""A simulated serial ASCII gas analyzer on a pseudo terminal.

Asked ``RD\r\n`` it answers one line with every gas it measures, with an optional checksum
after ``*`` (hex; see `drivers.serial.checksum`)::

    H2S=12.3 ppm,CO=4.0 ppm*5C\r\n

In free-running mode it sends that line every `interval` seconds without being asked. An
unknown command is answered ``ERR=01``. Values wander slowly (one decimal, so what a parser
reads equals `values` exactly) unless `frozen`.

Faults (`fault`): ``silent`` (sends nothing), ``garbage`` (random bytes instead of a line),
``bad_checksum`` (a valid line with a wrong check value), ``partial`` (the first half of the
line and no delimiter), ``error`` (``ERR=03``, the sensor reports a fault). Independently,
`noise` is the probability that a line is preceded by a few random bytes without a delimiter,
as line noise glues onto the next line.

Run it: ``python -m simulators.gas_analyzer --link /tmp/ttyGAS`` prints the pty path and
serves until SIGINT or SIGTERM; see ``--help``.
"""

from __future__ import annotations

import argparse
import asyncio
import enum
import random
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from drivers.serial.checksum import Checksum, ChecksumSpec, append_checksum, checksum_value
from drivers.serial.framing import DelimiterFramer, Frame
from simulators.lifecycle import ticks
from simulators.pty import PtySimulator, serve_pty

if TYPE_CHECKING:
    from collections.abc import Coroutine, Sequence
    from typing import Any

__all__ = ["AnalyzerFault", "Gas", "GasAnalyzerSim", "main"]

READ_COMMAND = b"RD"
EOL = b"\r\n"
_NOISE_BYTES = bytes(b for b in range(256) if b not in EOL)


class AnalyzerFault(enum.StrEnum):
    """How the simulated analyzer misbehaves."""

    NONE = "none"
    SILENT = "silent"
    GARBAGE = "garbage"
    BAD_CHECKSUM = "bad_checksum"
    PARTIAL = "partial"
    ERROR = "error"


@dataclass(frozen=True, slots=True)
class Gas:
    """One measured gas: its name on the line, starting value, unit and plausible range."""

    name: str
    value: float
    unit: str = "ppm"
    high: float = 100.0


DEFAULT_GASES = (Gas("H2S", 12.3), Gas("CO", 4.0), Gas("O2", 20.9, "%VOL", 25.0))


class GasAnalyzerSim(PtySimulator):
    """A running analyzer; use as ``async with GasAnalyzerSim() as sim`` and open `sim.path`."""

    kind = "analyzer"
    task_name = "gas-analyzer-sim"

    def __init__(
        self,
        gases: Sequence[Gas] = DEFAULT_GASES,
        *,
        checksum: Checksum | None = Checksum.XOR,
        separator: bytes = b"*",
        free_running: float | None = None,
        response_delay: float = 0.005,
        noise: float = 0.0,
        seed: int = 0,
        link: Path | None = None,
        echo: bool = False,
    ) -> None:
        """Configure the analyzer; `start` (or ``async with``) opens the pty.

        Args:
            gases: what it measures, in line order.
            checksum: the check appended to each line, or None.
            separator: what separates the line from its check value.
            free_running: send a line every so many seconds; None answers requests only.
            response_delay: how long it takes to answer a request, seconds.
            noise: probability (0..1) that a line is preceded by random bytes.
            seed: seed of every random choice.
            link: a symlink to create to the pty path.
            echo: send each request straight back before answering it, as a two-wire RS-485
                adapter that hears its own transmitter does.

        Raises:
            ValueError: no gases, a bad probability or a non-positive period.
        """
        if not gases or not 0.0 <= noise <= 1.0:
            raise ValueError("need at least one gas and 0 <= noise <= 1")
        if (free_running is not None and free_running <= 0) or response_delay < 0:
            raise ValueError("need free_running > 0 and response_delay >= 0")
        super().__init__(link)
        self.gases = tuple(gases)
        self.values = {g.name: round(g.value, 1) for g in gases}
        self.checksum = ChecksumSpec(checksum, separator) if checksum is not None else None
        self.free_running = free_running
        self.response_delay = response_delay
        self.noise = noise
        self.echo = echo
        self.fault = AnalyzerFault.NONE
        self.frozen = False
        self.requests = 0
        self.lines_sent = 0
        self._rng = random.Random(seed)
        self._framer = DelimiterFramer(EOL, max_frame=64)

    def line(self) -> bytes:
        """Return the current measurement line, with checksum and delimiter."""
        payload = ",".join(
            f"{g.name}={self.values[g.name]:.1f} {g.unit}" for g in self.gases
        ).encode("ascii")
        framed = append_checksum(payload, self.checksum) if self.checksum else payload
        return framed + EOL

    def _background(self) -> Coroutine[Any, Any, None] | None:
        """Free-running: send a line every `free_running` seconds."""
        return None if self.free_running is None else self._run_free(self.free_running)

    def _step(self) -> None:
        """Let every value wander a little, unless frozen."""
        if self.frozen:
            return
        for gas in self.gases:
            moved = self.values[gas.name] + self._rng.gauss(0.0, 0.2)
            self.values[gas.name] = round(min(gas.high, max(0.0, moved)), 1)

    def _output(self) -> bytes:
        """Return what the analyzer sends now for one measurement, faults included."""
        self._step()
        line = self.line()
        if self.fault is AnalyzerFault.SILENT:
            return b""
        if self.fault is AnalyzerFault.GARBAGE:
            size = self._rng.randrange(8, 40)
            return bytes(self._rng.randrange(256) for _ in range(size))
        if self.fault is AnalyzerFault.PARTIAL:
            return line[: len(line) // 2]
        if self.fault is AnalyzerFault.ERROR:
            return b"ERR=03" + EOL
        if self.fault is AnalyzerFault.BAD_CHECKSUM:
            line = self._break_checksum(line)
        if self.noise and self._rng.random() < self.noise:
            size = self._rng.randrange(1, 8)
            line = bytes(self._rng.choice(_NOISE_BYTES) for _ in range(size)) + line
        return line

    def _break_checksum(self, line: bytes) -> bytes:
        """Return the line with a check value that does not match it."""
        if self.checksum is None:
            return line
        payload = line[: -len(EOL)].rsplit(self.checksum.separator, 1)[0]
        kind = self.checksum.kind
        wrong = (checksum_value(kind, payload) + 1) % (16**kind.hex_digits)
        return (
            payload + self.checksum.separator + f"{wrong:0{kind.hex_digits}X}".encode("ascii") + EOL
        )

    async def _run_free(self, interval: float) -> None:
        """Send a line every `interval` seconds on an absolute schedule."""
        async for _ in ticks(interval):
            self._send(self._output())

    def _on_data(self, chunk: bytes) -> None:
        """Answer each complete command."""
        for event in self._framer.feed(chunk):
            if not isinstance(event, Frame):
                continue
            self.requests += 1
            if self.echo and self._pty is not None:
                super()._send(event.data + EOL)  # the line's own echo, not a line sent
            if event.data.strip() == READ_COMMAND:
                self._send_after(self.response_delay, self._output())
            elif self.fault is not AnalyzerFault.SILENT:
                self._send_after(self.response_delay, b"ERR=01" + EOL)

    def _send(self, data: bytes) -> None:
        """Write to the pty, if anything, and count it."""
        if data and self._pty is not None:
            super()._send(data)
            self.lines_sent += 1


# --------------------------------------------------------------------------------------------
# Command line


def _gas_arg(text: str) -> Gas:
    """Parse ``NAME=VALUE[:UNIT]``."""
    try:
        name, rest = text.split("=", 1)
        value_text, _, unit = rest.partition(":")
        return Gas(name, float(value_text), unit or "ppm")
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r}: want NAME=VALUE[:UNIT]") from None


def _parse(argv: list[str] | None) -> argparse.Namespace:
    """Parse the command line."""
    parser = argparse.ArgumentParser(
        prog="python -m simulators.gas_analyzer",
        description="Simulated ASCII gas analyzer on a pseudo terminal; prints the pty path.",
    )
    parser.add_argument("--link", type=Path, help="also make this symlink to the pty")
    parser.add_argument("--gas", type=_gas_arg, action="append", help="NAME=VALUE[:UNIT]")
    parser.add_argument(
        "--checksum", default="xor", choices=[*Checksum, "none"], help="line checksum"
    )
    parser.add_argument("--free-running", type=float, help="send a line every N seconds")
    parser.add_argument("--noise", type=float, default=0.0, help="noise probability per line")
    parser.add_argument(
        "--fault", default="none", choices=list(AnalyzerFault), help="misbehave this way"
    )
    parser.add_argument("--frozen", action="store_true", help="values never change")
    parser.add_argument("--seed", type=int, default=0, help="random seed")
    return parser.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    """Run the simulator; return the process exit code."""
    args = _parse(argv)
    try:
        sim = GasAnalyzerSim(
            args.gas or DEFAULT_GASES,
            checksum=None if args.checksum == "none" else Checksum(args.checksum),
            free_running=args.free_running,
            noise=args.noise,
            seed=args.seed,
            link=args.link,
        )
    except ValueError as exc:
        sys.stderr.write(f"gas_analyzer: {exc}\n")
        return 2
    sim.fault = AnalyzerFault(args.fault)
    sim.frozen = args.frozen
    asyncio.run(serve_pty(sim))
    return 0


if __name__ == "__main__":
    sys.exit(main())
