"""Pure serial core: checksums against known vectors, framing, value parsing, line settings."""

from __future__ import annotations

import itertools

import pytest
from hypothesis import given
from hypothesis import strategies as st
from pymodbus.framer import FramerRTU

from drivers.base import DecodeError
from drivers.serial.checksum import (
    Checksum,
    ChecksumSpec,
    append_checksum,
    checksum_value,
    crc16_modbus,
    lrc8,
    split_checksum,
    xor8,
)
from drivers.serial.framing import (
    Delimited,
    DelimiterFramer,
    Discarded,
    FixedLength,
    FixedLengthFramer,
    Frame,
    FrameEvent,
    Framer,
)
from drivers.serial.parse import LinePoint, decode_line, parse_line, parse_value
from drivers.serial.settings import Parity, SerialSettings

# --- checksums --------------------------------------------------------------------------------

NMEA_GGA = b"GPGGA,123519,4807.038,N,01131.000,E,1,08,0.9,545.4,M,46.9,M,,"


@pytest.mark.parametrize(
    ("kind", "data", "expected"),
    [
        # The CRC catalogue's check value of CRC-16/MODBUS.
        (Checksum.CRC16_MODBUS, b"123456789", 0x4B37),
        # Modbus RTU "read 10 holding registers from 0 at unit 1": 01 03 00 00 00 0A C5 CD.
        (Checksum.CRC16_MODBUS, bytes.fromhex("01030000000A"), 0xCDC5),
        (Checksum.CRC16_MODBUS, b"", 0xFFFF),
        # The textbook NMEA sentence $GPGGA,...*47.
        (Checksum.XOR, NMEA_GGA, 0x47),
        (Checksum.XOR, b"", 0x00),
        # Modbus ASCII ":01030000000AF2": the LRC of 01 03 00 00 00 0A.
        (Checksum.LRC, bytes.fromhex("01030000000A"), 0xF2),
        (Checksum.LRC, b"", 0x00),
    ],
)
def test_checksum_known_vectors(kind: Checksum, data: bytes, expected: int) -> None:
    assert checksum_value(kind, data) == expected


@given(st.binary(max_size=300))
def test_crc16_agrees_with_pymodbus(data: bytes) -> None:
    # pymodbus returns the CRC byte-swapped (as it goes on the wire, high byte = first sent).
    swapped = int.from_bytes(crc16_modbus(data).to_bytes(2, "little"), "big")
    assert FramerRTU.compute_CRC(data) == swapped


@given(st.binary(max_size=300))
def test_lrc_makes_the_byte_sum_zero_and_xor_cancels(data: bytes) -> None:
    assert (sum(data) + lrc8(data)) % 256 == 0
    assert xor8(data + bytes([xor8(data)])) == 0


@pytest.mark.parametrize("kind", list(Checksum))
def test_append_then_split_round_trips(kind: Checksum) -> None:
    spec = ChecksumSpec(kind)
    framed = append_checksum(b"H2S=12.3 ppm", spec)
    assert framed.startswith(b"H2S=12.3 ppm*")
    assert len(framed) == len(b"H2S=12.3 ppm*") + kind.hex_digits
    assert split_checksum(framed, spec) == b"H2S=12.3 ppm"


def test_xor_line_text_is_two_upper_hex_digits() -> None:
    assert append_checksum(NMEA_GGA, ChecksumSpec(Checksum.XOR)) == NMEA_GGA + b"*47"
    assert append_checksum(b"123456789", ChecksumSpec(Checksum.CRC16_MODBUS, b"#")) == (
        b"123456789#4B37"
    )
    assert split_checksum(b"123456789#4b37", ChecksumSpec(Checksum.CRC16_MODBUS, b"#"))


def test_separator_inside_the_payload_uses_the_last_one() -> None:
    spec = ChecksumSpec(Checksum.XOR)
    framed = append_checksum(b"A*B", spec)
    assert split_checksum(framed, spec) == b"A*B"


@pytest.mark.parametrize(
    ("frame", "match"),
    [
        (b"H2S=12.3 ppm", "separator"),
        (b"H2S=12.3 ppm*", "hex digits"),
        (b"H2S=12.3 ppm*4", "hex digits"),
        (b"H2S=12.3 ppm*+4", "hex digits"),
        (b"H2S=12.3 ppm* 4", "hex digits"),
        (b"H2S=12.3 ppm*4_", "hex digits"),
        (b"H2S=12.3 ppm*ZZ", "hex digits"),
        (b"H2S=12.3 ppm*\xff\xfe", "hex digits"),
        (b"H2S=12.3 ppm*00", "mismatch"),
    ],
)
def test_split_checksum_rejects(frame: bytes, match: str) -> None:
    with pytest.raises(DecodeError, match=match):
        split_checksum(frame, ChecksumSpec(Checksum.XOR))


def test_checksum_spec_needs_a_separator() -> None:
    with pytest.raises(ValueError, match="separator"):
        ChecksumSpec(Checksum.XOR, b"")


# --- delimiter framing ------------------------------------------------------------------------


def frames(events: list[FrameEvent]) -> list[bytes]:
    return [e.data for e in events if isinstance(e, Frame)]


def discarded(events: list[FrameEvent]) -> list[Discarded]:
    return [e for e in events if isinstance(e, Discarded)]


def test_lines_split_at_the_delimiter() -> None:
    framer = DelimiterFramer(b"\r\n")
    assert frames(framer.feed(b"A=1\r\nB=2\r\nC=")) == [b"A=1", b"B=2"]
    assert framer.buffered == 2
    assert frames(framer.feed(b"3\r\n")) == [b"C=3"]
    assert framer.buffered == 0


def test_a_delimiter_split_over_two_chunks_still_ends_the_line() -> None:
    framer = DelimiterFramer(b"\r\n")
    assert framer.feed(b"A=1\r") == []
    assert frames(framer.feed(b"\nB")) == [b"A=1"]
    assert framer.buffered == 1


def test_empty_lines_are_skipped_and_a_lone_cr_is_data() -> None:
    framer = DelimiterFramer(b"\r\n")
    assert frames(framer.feed(b"\r\n\r\nX\rY\r\n")) == [b"X\rY"]


def test_a_line_of_exactly_max_frame_is_kept_one_more_is_dropped() -> None:
    framer = DelimiterFramer(b"\n", max_frame=4)
    assert frames(framer.feed(b"abcd\n")) == [b"abcd"]
    events = framer.feed(b"abcde\nok\n")
    assert frames(events) == [b"ok"]
    assert [d.size for d in discarded(events)] == [5]


def test_overlong_noise_is_dropped_with_its_tail_and_the_framer_resyncs() -> None:
    framer = DelimiterFramer(b"\r\n", max_frame=8)
    events = framer.feed(b"0123456789")  # already too long, no delimiter yet
    assert frames(events) == []
    assert discarded(events)
    assert framer.buffered <= framer.max_buffered
    events = framer.feed(b"TAIL\r\nH2S=1\r\n")
    # The tail of the overlong line is not a frame; the next line is.
    assert frames(events) == [b"H2S=1"]
    assert any(b"TAIL" in d.excerpt for d in discarded(events))


def test_reset_drops_and_reports_a_partial_frame() -> None:
    framer = DelimiterFramer()
    framer.feed(b"H2S=1")
    dropped = framer.reset()
    assert dropped is not None
    assert (dropped.size, dropped.reason) == (5, "partial frame")
    assert "partial frame" in dropped.describe()
    assert framer.reset() is None
    assert frames(framer.feed(b"2.3\r\n")) == [b"2.3"]


def test_a_partial_line_glues_onto_the_next_without_reset() -> None:
    # Why the drivers reset before a request and after a quiet gap: a cut line is not
    # recognisable as such from the bytes alone.
    framer = DelimiterFramer()
    assert frames(framer.feed(b"H2S=1" + b"H2S=12.3\r\n")) == [b"H2S=1H2S=12.3"]


def test_framer_configurations() -> None:
    line: Framer = Delimited(b";", 16).framer()
    assert frames(line.feed(b"a;b;")) == [b"a", b"b"]
    fixed: Framer = FixedLength(3, b"#").framer()
    assert frames(fixed.feed(b"#ab#cd")) == [b"#ab", b"#cd"]
    with pytest.raises(ValueError, match="delimiter"):
        Delimited(b"")
    with pytest.raises(ValueError, match="delimiter"):
        Delimited(max_frame=0)
    with pytest.raises(ValueError, match="length"):
        FixedLength(0)
    with pytest.raises(ValueError, match="length"):
        FixedLength(2, b"###")
    with pytest.raises(ValueError, match="delimiter"):
        DelimiterFramer(b"")
    with pytest.raises(ValueError, match="length"):
        FixedLengthFramer(0)


# --- fixed-length framing ---------------------------------------------------------------------


def test_fixed_length_without_marker_cuts_every_n_bytes() -> None:
    framer = FixedLengthFramer(4)
    assert frames(framer.feed(b"abcdefghij")) == [b"abcd", b"efgh"]
    assert framer.buffered == 2
    assert framer.reset() is not None  # realign, as before a request
    assert frames(framer.feed(b"wxyz")) == [b"wxyz"]


def test_fixed_length_with_marker_hunts_through_noise() -> None:
    framer = FixedLengthFramer(5, b"\x02")
    events = framer.feed(b"zz\x02ABCD\x01\x02EF")
    assert frames(events) == [b"\x02ABCD"]
    assert [(d.size, d.reason) for d in discarded(events)] == [
        (2, "noise before start marker"),
        (1, "noise before start marker"),
    ]
    assert frames(framer.feed(b"GH")) == [b"\x02EFGH"]


def test_fixed_length_keeps_a_marker_split_over_chunks() -> None:
    framer = FixedLengthFramer(6, b"ST")
    assert frames(framer.feed(b"noiseS")) == []
    assert framer.buffered == 1
    assert frames(framer.feed(b"Tabcd")) == [b"STabcd"]


# --- properties: any bytes, any chunking ------------------------------------------------------


def _chunked(data: bytes, cuts: list[int]) -> list[bytes]:
    points = sorted({c % (len(data) + 1) for c in cuts})
    edges = [0, *points, len(data)]
    return [data[a:b] for a, b in itertools.pairwise(edges)]


def _fed_in_chunks(framer: Framer, data: bytes, cuts: list[int]) -> list[FrameEvent]:
    """Feed `data` cut at `cuts`; the framer never holds more than it says it may."""
    events: list[FrameEvent] = []
    for chunk in _chunked(data, cuts):
        events += framer.feed(chunk)
        assert framer.buffered <= framer.max_buffered
    return events


CUTS = st.lists(st.integers(0, 2000), max_size=20)


line_bytes = st.lists(
    st.one_of(st.binary(max_size=40), st.sampled_from([b"\r\n", b"\r", b"\n", b"#", b"ST"])),
    max_size=30,
).map(b"".join)


@given(
    data=line_bytes,
    cuts=CUTS,
    max_frame=st.integers(1, 50),
    delimiter=st.sampled_from([b"\r\n", b"\n", b"END"]),
)
def test_delimiter_framer_never_raises_never_outgrows_and_ignores_chunking(
    data: bytes, cuts: list[int], max_frame: int, delimiter: bytes
) -> None:
    expected = frames(DelimiterFramer(delimiter, max_frame).feed(data))
    got = frames(_fed_in_chunks(DelimiterFramer(delimiter, max_frame), data, cuts))
    assert got == expected
    assert all(0 < len(f) <= max_frame and delimiter not in f for f in got)


@given(
    data=line_bytes,
    cuts=CUTS,
    length=st.integers(1, 30),
    start=st.sampled_from([b"", b"#", b"ST"]),
)
def test_fixed_length_framer_never_raises_and_never_outgrows(
    data: bytes, cuts: list[int], length: int, start: bytes
) -> None:
    if len(start) > length:
        return
    for frame in frames(_fed_in_chunks(FixedLengthFramer(length, start), data, cuts)):
        assert len(frame) == length
        assert frame.startswith(start)


@given(noise=st.binary(max_size=500), max_frame=st.integers(8, 64))
def test_a_good_line_after_any_noise_is_recovered(noise: bytes, max_frame: int) -> None:
    framer = DelimiterFramer(b"\r\n", max_frame)
    framer.feed(noise)
    assert framer.buffered <= framer.max_buffered
    got = frames(framer.feed(b"\r\nH2S=12.3\r\n"))
    assert got[-1] == b"H2S=12.3"


# --- value parsing ----------------------------------------------------------------------------

H2S = LinePoint("h2s", r"H2S=(?P<value>-?[0-9.]+)")
CO = LinePoint("co", r"CO=(?P<value>-?[0-9.]+)")


def test_pattern_finds_the_value_anywhere_in_the_line() -> None:
    assert parse_value("H2S=12.3 ppm,CO=4.0 ppm", H2S) == 12.3
    assert parse_value("H2S=-0.5", H2S) == -0.5
    assert parse_value("xx CO=4.0 ppm", CO) == 4.0


@pytest.mark.parametrize(
    ("text", "match"),
    [("CO=4.0", "does not match"), ("H2S=1.2.3", "not a number"), ("H2S=.", "not a number")],
)
def test_pattern_miss_or_non_number_is_a_decode_error(text: str, match: str) -> None:
    with pytest.raises(DecodeError, match=match):
        parse_value(text, H2S)


def test_optional_value_group_that_did_not_take_part() -> None:
    point = LinePoint("x", r"X(=(?P<value>[0-9]+))?")
    with pytest.raises(DecodeError, match="without a value"):
        parse_value("X", point)


def test_line_point_needs_a_valid_pattern_with_a_value_group() -> None:
    with pytest.raises(ValueError, match="value"):
        LinePoint("x", r"H2S=([0-9.]+)")
    with pytest.raises(ValueError, match="pattern"):
        LinePoint("x", r"H2S=(?P<value>[0-9.]+")
    assert LinePoint("x", r"(?P<value>\d)") == LinePoint("x", r"(?P<value>\d)")


def test_parse_line_per_point_results_and_whole_line_faults() -> None:
    spec = ChecksumSpec(Checksum.XOR)
    good = append_checksum(b"H2S=12.3 ppm", spec)
    parsed = parse_line(good, [H2S, CO], checksum=spec)
    assert parsed.values == {"h2s": 12.3}
    assert "does not match" in parsed.errors["co"]
    with pytest.raises(DecodeError, match="mismatch"):
        parse_line(good.replace(b"12.3", b"12.4"), [H2S], checksum=spec)
    with pytest.raises(DecodeError, match="not ascii"):
        decode_line(b"H2S=\xff12.3")
    assert decode_line(b"H2S=\xb012", encoding="latin-1") == "H2S=\xb012"


@given(st.binary(max_size=200))
def test_parse_line_on_any_bytes_returns_or_raises_decode_error_only(data: bytes) -> None:
    for checksum in (None, ChecksumSpec(Checksum.CRC16_MODBUS)):
        try:
            parsed = parse_line(data, [H2S, CO], checksum=checksum)
        except DecodeError:
            continue
        assert set(parsed.values) | set(parsed.errors) == {"h2s", "co"}


# --- line settings ----------------------------------------------------------------------------


def test_serial_settings_validate_and_time_characters() -> None:
    s = SerialSettings("/dev/ttyS1", 9600, "E")  # type: ignore[arg-type]
    assert s.parity is Parity.EVEN
    assert s.bits_per_char == 11
    assert s.char_seconds == pytest.approx(11 / 9600)
    assert SerialSettings("/dev/ttyS1").bits_per_char == 10  # 8N1
    assert SerialSettings("/dev/ttyS1", stopbits=2).bits_per_char == 11
    for kwargs in (
        {"port": ""},
        {"port": "/dev/x", "baudrate": 9601},
        {"port": "/dev/x", "stopbits": 3},
        {"port": "/dev/x", "bytesize": 5},
    ):
        with pytest.raises(ValueError, match=r"."):
            SerialSettings(**kwargs)
    with pytest.raises(ValueError, match="X"):
        SerialSettings("/dev/x", parity="X")  # type: ignore[arg-type]
