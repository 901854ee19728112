"""Pure framing of a serial byte stream: bytes in, frames out, no I/O (in the style of h11).

A framer is fed whatever chunks the port delivers and returns the events those bytes complete:
a `Frame` for each whole frame and a `Discarded` for bytes that cannot belong to a valid one
(an overlong line, noise before a start marker, a partial frame dropped by `reset`). Nothing
raises, whatever the bytes: a noisy line yields `Discarded` events, never an exception.

Every framer keeps at most `max_buffered` bytes between calls, so noise that never contains a
delimiter cannot grow memory: once a pending line is longer than the limit, its bytes are
dropped and so is everything up to the next delimiter (the tail of an overlong line is not a
frame either).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Protocol

__all__ = [
    "DEFAULT_MAX_FRAME",
    "Delimited",
    "DelimiterFramer",
    "Discarded",
    "FixedLength",
    "FixedLengthFramer",
    "Frame",
    "FrameEvent",
    "Framer",
    "Framing",
]

DEFAULT_MAX_FRAME = 256
_EXCERPT = 32  # bytes of a discarded run kept for the error text


@dataclass(frozen=True, slots=True)
class Frame:
    """One complete frame, without its delimiter."""

    data: bytes


@dataclass(frozen=True, slots=True)
class Discarded:
    """Bytes dropped because they cannot be (part of) a valid frame.

    Only the first bytes are kept (`excerpt`), so a long noise burst is not held in memory.
    """

    size: int
    reason: str
    excerpt: bytes

    @classmethod
    def of(cls, data: bytes, reason: str) -> Discarded:
        """Describe a dropped run of bytes."""
        return cls(len(data), reason, data[:_EXCERPT])

    def describe(self) -> str:
        """Return a one-line text for an error message."""
        return f"{self.reason}: {self.size} byte(s) dropped, starting {self.excerpt!r}"


FrameEvent = Frame | Discarded


class Framer(Protocol):
    """**Protocol**: a byte-stream splitter with a bounded buffer."""

    @property
    def buffered(self) -> int:
        """Return how many bytes of an incomplete frame are held."""
        ...

    @property
    def max_buffered(self) -> int:
        """Return the most bytes the framer ever holds between calls."""
        ...

    def feed(self, data: bytes) -> list[FrameEvent]:
        """Take the next bytes from the port; return the events they complete, in order."""
        ...

    def reset(self) -> Discarded | None:
        """Drop any partial frame (say, before a new request) and report it if there was one."""
        ...


class DelimiterFramer:
    r"""Split at a delimiter such as ``b"\r\n"``; frames longer than `max_frame` are dropped.

    Empty frames (two delimiters in a row) are skipped: they carry nothing to parse.

    Raises:
        ValueError: (on construction) an empty delimiter or a `max_frame` below 1.
    """

    def __init__(self, delimiter: bytes = b"\r\n", max_frame: int = DEFAULT_MAX_FRAME) -> None:
        if not delimiter or max_frame < 1:
            raise ValueError("need a non-empty delimiter and max_frame >= 1")
        self._delimiter = delimiter
        self._max_frame = max_frame
        # A delimiter may arrive split over two chunks: keep its possible start.
        self._keep = len(delimiter) - 1
        self._buffer = b""
        self._discarding = False

    @property
    def buffered(self) -> int:
        """Return how many bytes of an incomplete frame are held."""
        return len(self._buffer)

    @property
    def max_buffered(self) -> int:
        """Return the most bytes held between calls: a whole frame plus a split delimiter."""
        return self._max_frame + self._keep

    def feed(self, data: bytes) -> list[FrameEvent]:
        """Take the next bytes from the port; return the events they complete, in order."""
        events: list[FrameEvent] = []
        buffer = self._buffer + data
        start = 0
        while (end := buffer.find(self._delimiter, start)) >= 0:
            chunk = buffer[start:end]
            start = end + len(self._delimiter)
            if self._discarding:
                self._discarding = False
                if chunk:
                    events.append(Discarded.of(chunk, self._overlong))
            elif len(chunk) > self._max_frame:
                events.append(Discarded.of(chunk, self._overlong))
            elif chunk:
                events.append(Frame(chunk))
        rest = buffer[start:]
        if self._discarding or len(rest) > self.max_buffered:
            # Whatever the pending bytes turn out to be, this frame is already too long.
            self._discarding = True
            cut = len(rest) - self._keep
            if cut > 0:
                events.append(Discarded.of(rest[:cut], self._overlong))
                rest = rest[cut:]
        self._buffer = rest
        return events

    def reset(self) -> Discarded | None:
        """Drop any partial frame and report it if there was one."""
        pending, self._buffer = self._buffer, b""
        self._discarding = False
        return Discarded.of(pending, "partial frame") if pending else None

    @property
    def _overlong(self) -> str:
        """Return the reason text for an overlong frame."""
        return f"frame longer than {self._max_frame} bytes without {self._delimiter!r}"


class FixedLengthFramer:
    """Cut frames of exactly `length` bytes, optionally each starting with a `start` marker.

    Without a marker the framer cannot tell noise from data and simply cuts every `length`
    bytes; `reset` (before each request) realigns it. With a marker it hunts: bytes before a
    marker are discarded, and the frame includes the marker.

    Raises:
        ValueError: (on construction) a length below 1 or a marker longer than the frame.
    """

    def __init__(self, length: int, start: bytes = b"") -> None:
        if length < 1 or len(start) > length:
            raise ValueError("need length >= 1 and a start marker no longer than the frame")
        self._length = length
        self._start = start
        self._buffer = b""

    @property
    def buffered(self) -> int:
        """Return how many bytes of an incomplete frame are held."""
        return len(self._buffer)

    @property
    def max_buffered(self) -> int:
        """Return the most bytes held between calls: one byte short of a frame."""
        return self._length - 1

    def feed(self, data: bytes) -> list[FrameEvent]:
        """Take the next bytes from the port; return the events they complete, in order."""
        events: list[FrameEvent] = []
        buffer = self._buffer + data
        while True:
            if self._start:
                found = buffer.find(self._start)
                if found < 0:
                    # Keep only what could be the first bytes of a marker split over chunks.
                    keep = min(len(buffer), len(self._start) - 1)
                    noise = buffer[: len(buffer) - keep]
                    if noise:
                        events.append(Discarded.of(noise, "noise before start marker"))
                    buffer = buffer[len(buffer) - keep :]
                    break
                if found:
                    events.append(Discarded.of(buffer[:found], "noise before start marker"))
                    buffer = buffer[found:]
            if len(buffer) < self._length:
                break
            events.append(Frame(buffer[: self._length]))
            buffer = buffer[self._length :]
        self._buffer = buffer
        return events

    def reset(self) -> Discarded | None:
        """Drop any partial frame and report it if there was one."""
        pending, self._buffer = self._buffer, b""
        return Discarded.of(pending, "partial frame") if pending else None


@dataclass(frozen=True, slots=True)
class Delimited:
    """Configuration of delimiter framing (the usual ASCII instrument: lines ending CR LF).

    Raises:
        ValueError: (on construction) an empty delimiter or a `max_frame` below 1.
    """

    delimiter: bytes = b"\r\n"
    max_frame: int = DEFAULT_MAX_FRAME

    def __post_init__(self) -> None:
        if not self.delimiter or self.max_frame < 1:
            raise ValueError("need a non-empty delimiter and max_frame >= 1")

    def framer(self) -> DelimiterFramer:
        """Return a new framer with this configuration."""
        return DelimiterFramer(self.delimiter, self.max_frame)


@dataclass(frozen=True, slots=True)
class FixedLength:
    """Configuration of fixed-length framing, optionally hunting for a start marker.

    Raises:
        ValueError: (on construction) a length below 1 or a marker longer than the frame.
    """

    length: int
    start: bytes = b""

    def __post_init__(self) -> None:
        if self.length < 1 or len(self.start) > self.length:
            raise ValueError("need length >= 1 and a start marker no longer than the frame")

    def framer(self) -> FixedLengthFramer:
        """Return a new framer with this configuration."""
        return FixedLengthFramer(self.length, self.start)


Framing = Delimited | FixedLength
