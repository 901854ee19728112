"""Device models of the site map: one per driver, told apart by the `driver` key.

`DeviceConfig` is a union discriminated by `driver`: `modbus_tcp`, `modbus_rtu`, `opcua` or
`serial`. Every device has `id`, `poll` and points (its own and a template's); the rest are the
driver's settings. Rules that span devices (one line setting per RS-485 port, one unit id per
slave, a serial ASCII port to itself) are checked by `SiteConfig`, which sees them all.
"""

# No `from __future__ import annotations`: pydantic reads these annotations at runtime.

from typing import Annotated, Literal, Self, TypeAlias, get_args
from urllib.parse import urlsplit

from pydantic import (
    AfterValidator,
    BaseModel,
    BeforeValidator,
    Field,
    ModelWrapValidatorHandler,
    ValidationError,
    field_validator,
    model_validator,
)
from pydantic_core import ErrorDetails, InitErrorDetails, PydanticCustomError
from pydantic_core.core_schema import ErrorType

from configkit.fields import ConfigModel, ConfigPath, Duration, duration_bounds
from configkit.issues import KeyPath
from configkit.secretfiles import SecretFile
from configkit.validation import raise_at, unknown_key_hint
from edge_agent.config.fields import Baudrate, DevicePath, Host, Name
from edge_agent.config.points import PointConfig, point_source_problems

SUPPORTED_DRIVERS = ("modbus_tcp", "modbus_rtu", "opcua", "serial")
"""Drivers this version can run (DESIGN section 7)."""

MAX_UNIT_ID = 247
"""Highest Modbus slave address; 0 is broadcast (no slave answers), 248..255 are reserved."""

_BUILTIN_ERRORS = frozenset(get_args(ErrorType))

Parity = Literal["N", "E", "O"]
"""N none, E even, O odd."""

MODBUS_SERIAL_PARITY: Parity = "E"
"""The Modbus over Serial Line spec's default parity (8E1); by the spec 8N1 needs two stop
bits, though many instruments ship set to 8N1 with one."""

StopBits = Literal[1, 2]

Seconds = Annotated[Duration, duration_bounds(above=0)]


def _rebuilt(error: ErrorDetails, model: type[BaseModel]) -> InitErrorDetails:
    """Re-raise one pydantic error unchanged, except that an unknown key gets its hint."""
    loc, value = error["loc"], error["input"]
    if error["type"] == "extra_forbidden":
        message = "unknown key" + unknown_key_hint(loc, model)
        return InitErrorDetails(
            type=PydanticCustomError("config", "{message}", {"message": message}),
            loc=loc,
            input=value,
        )
    if error["type"] in _BUILTIN_ERRORS:
        detail = InitErrorDetails(type=error["type"], loc=loc, input=value)
        if "ctx" in error:
            detail["ctx"] = error["ctx"]
        return detail
    # A custom error (raise_at's "config", a PydanticCustomError): keep its text as it is.
    return InitErrorDetails(
        type=PydanticCustomError(error["type"], "{message}", {"message": error["msg"]}),
        loc=loc,
        input=value,
    )


def _raw_point_problems(data: object) -> list[tuple[KeyPath, str]]:
    """Check which source key each point of a raw device mapping has (see `points`)."""
    if not isinstance(data, dict):
        return []
    driver, points = data.get("driver"), data.get("points")
    if not isinstance(driver, str) or not isinstance(points, list):
        return []
    return [
        (("points", index, *path), message)
        for index, point in enumerate(points)
        for path, message in point_source_problems(driver, point)
    ]


class _Device(ConfigModel):
    """What every device has: an id and its points, its own and a template's.

    Its points are the template's points, each coded `point_prefix + point`, followed by
    its own `points`; a device needs at least one of the two.
    """

    id: Name
    """The device's name in this map, unique across the gateway; logs, metrics and `status` use
    it.
    """
    template: Name | None = None
    """The name of a template under `templates` whose points this device has."""
    point_prefix: Name | None = None
    """Prefixed to each template point's code, so codes stay unique across devices of one
    template.
    """
    points: tuple[PointConfig, ...] = ()
    """The device's own points, after the template's."""

    @model_validator(mode="wrap")
    @classmethod
    def _all_problems_at_once(cls, data: object, handler: ModelWrapValidatorHandler[Self]) -> Self:
        # Two things a plain model cannot do inside a union of device models:
        # - whether each point has the right source key (address, node or pattern) depends on
        #   the driver; checked on the raw mapping, it shows together with every field error
        #   instead of only after they are fixed;
        # - the loader's "did you mean" hint for an unknown key cannot see through the union,
        #   so unknown keys get their hint here, from this very model.
        problems = _raw_point_problems(data)
        try:
            device = handler(data)
        except ValidationError as exc:
            details = [_rebuilt(error, cls) for error in exc.errors(include_url=False)]
            details += [
                InitErrorDetails(
                    type=PydanticCustomError("config", "{message}", {"message": message}),
                    loc=path,
                    input=None,
                )
                for path, message in problems
            ]
            raise ValidationError.from_exception_data(exc.title, details) from None
        if problems:
            raise_at(problems)
        return device

    @model_validator(mode="after")
    def _template_rules(self) -> Self:
        problems: list[tuple[KeyPath, str]] = []
        if self.template is not None and self.point_prefix is None:
            problems.append(
                (
                    ("template",),
                    (
                        "a device with a template also needs point_prefix, so that its point "
                        "codes differ from other devices of the same template"
                    ),
                )
            )
        if self.point_prefix is not None and self.template is None:
            problems.append((("point_prefix",), "point_prefix applies only with a template"))
        if self.template is None and not self.points:
            problems.append((("points",), "a device needs points, a template, or both"))
        if problems:
            raise_at(problems)
        return self


class ModbusTcpDevice(_Device):
    """An instrument or PLC reached over Modbus TCP, polled every `poll` seconds."""

    driver: Literal["modbus_tcp"]
    """Which driver reads the device: `modbus_tcp`."""
    host: Host
    """The device's IP address or host name."""
    port: Annotated[int, Field(strict=True, ge=1, le=65535)] = 502
    """Its Modbus TCP port."""
    unit_id: Annotated[int, Field(strict=True, ge=0, le=MAX_UNIT_ID)] = 1
    """The unit identifier in each request (a gateway in front of serial slaves routes by it)."""
    poll: Seconds
    """How often every point of the device is read."""
    timeout: Seconds = 1.0
    """How long one request may take before the read counts as failed."""
    # Unused registers one read may span to merge neighbouring points (a read holds <= 125).
    max_gap: Annotated[int, Field(strict=True, ge=0, le=125)] = 8
    """Unused registers one read may span to merge neighbouring points (a read holds at most
    125).
    """


def _slave_address(unit_id: int) -> int:
    if unit_id == 0:
        raise ValueError("unit_id 0 is the broadcast address, which no slave answers; use 1..247")
    if not 1 <= unit_id <= MAX_UNIT_ID:
        raise ValueError(f"unit_id {unit_id} is outside the slave addresses 1..{MAX_UNIT_ID}")
    return unit_id


class ModbusRtuDevice(_Device):
    """One slave on an RS-485 Modbus RTU bus.

    Every device with the same `port` is a slave on one bus: they share one serial port and
    one transaction at a time, so they must agree on `baudrate`, `parity`, `stopbits` and
    `bytesize`, and each needs its own `unit_id`. `parity` defaults to E (even), the Modbus
    serial-line default; many instruments ship set to N, so check the instrument's manual.
    `timeout` is per request: a silent slave costs the bus at most one timeout per poll cycle.
    """

    driver: Literal["modbus_rtu"]
    """Which driver reads the device: `modbus_rtu`."""
    port: DevicePath
    """The serial device path of the RS-485 bus, e.g. /dev/ttyUSB0; devices on one port share the
    bus.
    """
    baudrate: Baudrate = 9600
    """Line speed in bits per second; the same for every slave on the port."""
    parity: Parity = MODBUS_SERIAL_PARITY
    """N, E (the Modbus default) or O; the same for every slave on the port."""
    stopbits: StopBits = 1
    """1 or 2; the same for every slave on the port."""
    bytesize: Literal[8] = 8
    """Data bits: Modbus RTU uses 8."""
    unit_id: Annotated[int, Field(strict=True), AfterValidator(_slave_address)]
    """The slave address, 1 to 247, unique on the port."""
    poll: Seconds
    """How often every point of the device is read."""
    timeout: Seconds = 1.0
    """How long one request may wait for the slave's answer; a silent slave costs the bus this
    once per cycle.
    """
    max_gap: Annotated[int, Field(strict=True, ge=0, le=125)] = 8
    """Unused registers one read may span to merge neighbouring points (a read holds at most
    125).
    """

    @field_validator("bytesize", mode="before")
    @classmethod
    def _eight_bits(cls, bytesize: object) -> object:
        if bytesize != 8:  # noqa: PLR2004 - the one size RTU has
            raise ValueError(f"Modbus RTU sends 8-bit bytes: bytesize must be 8, got {bytesize!r}")
        return bytesize


def _check_endpoint(endpoint: str) -> str:
    shape = "must look like opc.tcp://host:port or opc.tcp://host:port/path"
    try:
        parts = urlsplit(endpoint)
        port = parts.port
    except ValueError:
        raise ValueError(f"endpoint {endpoint!r} {shape}") from None
    if parts.scheme != "opc.tcp" or not parts.hostname or port == 0:
        raise ValueError(f"endpoint {endpoint!r} {shape}")
    if parts.username or parts.password or parts.query or parts.fragment:
        raise ValueError(f"endpoint {endpoint!r} {shape}, without user, query or fragment")
    return endpoint


Endpoint = Annotated[str, AfterValidator(_check_endpoint)]


class OpcUaSecurityConfig(ConfigModel):
    """The secure channel: Basic256Sha256, Sign or SignAndEncrypt, certificates from files.

    `cert` and `key` are this agent's application instance certificate and private key (PEM
    or DER); `server_cert` pins the server's certificate. Without `server_cert` the agent
    trusts whatever certificate the server announces (trust on first use, every connect),
    which is fit for commissioning only. Relative paths are relative to the site map.
    """

    policy: Literal["Basic256Sha256"] = "Basic256Sha256"
    """The security policy of the secure channel."""
    mode: Literal["Sign", "SignAndEncrypt"] = "SignAndEncrypt"
    """Sign, or SignAndEncrypt (default)."""
    cert: ConfigPath
    """This agent's application instance certificate (PEM or DER)."""
    key: ConfigPath
    """The private key of `cert`."""
    server_cert: ConfigPath | None = None
    """The server's certificate, pinned; without it any certificate the server announces is
    trusted (commissioning only).
    """


class OpcUaDevice(_Device):
    """An OPC UA server (a DCS, a PLC, a data logger) and the nodes read from it.

    `mode: subscribe` (default) asks the server for data changes every `publishing_interval`;
    every `poll` the agent takes each point's newest value (or the last one again, flagged
    `held`, while the subscription's keepalives vouch that it is unchanged). `mode: poll` reads
    every node with one Read call per `poll`. A link silent for 1.5 `keepalive` periods counts
    as lost. `timeout` bounds each request and the wait for first values.
    """

    driver: Literal["opcua"]
    """Which driver reads the device: `opcua`."""
    endpoint: Endpoint
    """The server's endpoint URL, `opc.tcp://host:port/path`."""
    mode: Literal["subscribe", "poll"] = "subscribe"
    """`subscribe`: the server reports data changes; `poll`: one Read call per `poll`."""
    security: OpcUaSecurityConfig | None = None
    """The secure channel; absent: no security (None policy)."""
    username: Annotated[str, Field(min_length=1)] | None = None
    """User name for a user-name identity token; absent: anonymous."""
    password: str | None = Field(default=None, repr=False)
    """The password of `username`, in the map itself (prefer `password_file`)."""
    # Or the password in a private file of its own (configkit.secretfiles), so the map holds none.
    password_file: SecretFile | None = None
    """A private file (mode 0600 or 0400) holding the password of `username`."""
    poll: Seconds = 1.0
    """How often each point's newest value is taken (subscribe) or read (poll)."""
    publishing_interval: Seconds = 1.0
    """How often the server sends data changes of the subscription."""
    keepalive: Seconds = 10.0
    """The subscription's keepalive period; a link silent for 1.5 of them counts as lost."""
    timeout: Seconds = 4.0
    """How long a request, and the wait for first values, may take."""

    @model_validator(mode="after")
    def _consistent(self) -> Self:
        problems: list[tuple[KeyPath, str]] = []
        if self.password is not None and self.username is None:
            problems.append((("password",), "a password needs a username"))
        if self.password_file is not None:
            if self.password is not None:
                problems.append((("password_file",), "give password or password_file, not both"))
            elif self.username is None:
                problems.append((("password_file",), "a password needs a username"))
        if self.keepalive < self.publishing_interval:
            problems.append(
                (
                    ("keepalive",),
                    (
                        f"keepalive ({self.keepalive:g}s) must be at least one "
                        f"publishing_interval ({self.publishing_interval:g}s)"
                    ),
                )
            )
        if problems:
            raise_at(problems)
        return self

    @property
    def login_password(self) -> str | None:
        """The session password: `password`, or the content of `password_file`."""
        if self.password_file is not None:
            return self.password_file.get_secret_value()
        return self.password


def _line_text(value: str) -> str:
    """Check a request, delimiter or marker: non-empty ASCII, escapes really escaped."""
    if not value:
        raise ValueError("must not be empty")
    if not value.isascii():
        raise ValueError(f"{value!r} must be ASCII text")
    if any(f"\\{letter}" in value for letter in "rn"):
        # Single quotes in YAML keep `\r` as two characters; the instrument wants CR.
        raise ValueError(
            f"{value!r} holds a backslash and a letter: write it in double quotes, as in "
            '"RD\\r\\n", so that YAML turns \\r and \\n into CR and LF'
        )
    return value


LineText = Annotated[str, AfterValidator(_line_text)]

Checksum = Literal["none", "xor", "lrc", "crc16_modbus"]

MAX_FRAME = 256
"""Longest frame (line) an ASCII instrument may send; longer ones are noise."""


class SerialDevice(_Device):
    r"""An RS-232/485 instrument that speaks ASCII lines.

    With `request` (such as ``"RD\r\n"``) the agent asks every `poll` and parses the answer
    that arrives within `timeout`; without it the instrument is free-running and each `poll`
    takes the newest line that is younger than `max_age`. Frames end with `delimiter`
    (default CR LF) or are `length` bytes long (optionally starting with `start`). With a
    `checksum` each frame ends with `separator` and the check value in hex. Each point finds
    its value in the frame with `pattern`.
    """

    driver: Literal["serial"]
    """Which driver reads the device: `serial` (ASCII lines)."""
    port: DevicePath
    """The serial device path, e.g. /dev/ttyS1; an ASCII instrument needs its port to itself."""
    baudrate: Baudrate = 9600
    """Line speed in bits per second."""
    parity: Parity = "N"
    """N (default), E or O."""
    stopbits: StopBits = 1
    """1 or 2."""
    bytesize: Literal[7, 8] = 8
    """Data bits, 7 or 8."""
    request: LineText | None = None
    """What to send every `poll` (escapes such as \r\n allowed); absent: the instrument is free-
    running.
    """
    delimiter: LineText | None = None
    """What ends a frame (default CR LF); or give `length`."""
    length: Annotated[int, Field(strict=True, ge=1, le=MAX_FRAME)] | None = None
    """Frames of this many bytes instead of delimited lines."""
    start: LineText | None = None
    """What a fixed-`length` frame starts with, to find frame boundaries."""
    checksum: Checksum = "none"
    """The check at the end of each frame: none, xor, lrc or crc16_modbus, in hex after
    `separator`.
    """
    separator: LineText = "*"
    """What separates a frame's text from its checksum."""
    poll: Seconds
    """How often the instrument is asked (with `request`) or its newest line taken."""
    timeout: Seconds = 1.0
    """How long to wait for the answer to `request`."""
    max_age: Seconds = 10.0
    """A free-running instrument's newest line older than this is stale (quality bad)."""

    @property
    def free_running(self) -> bool:
        """Whether the instrument sends on its own (no request)."""
        return self.request is None

    @property
    def line_delimiter(self) -> str:
        """The delimiter of delimiter framing (CR LF unless set)."""
        return "\r\n" if self.delimiter is None else self.delimiter

    @model_validator(mode="after")
    def _consistent(self) -> Self:
        given = self.model_fields_set
        problems: list[tuple[KeyPath, str]] = []
        if self.length is not None and self.delimiter is not None:
            problems.append((("length",), "frames end with a delimiter or have a length, not both"))
        if self.start is not None and self.length is None:
            problems.append((("start",), "start applies only with length (fixed-length frames)"))
        if self.start is not None and self.length is not None and len(self.start) > self.length:
            problems.append((("start",), f"start is longer than the frame ({self.length})"))
        if "separator" in given and self.checksum == "none":
            problems.append((("separator",), "separator applies only with a checksum"))
        if "max_age" in given and self.request is not None:
            problems.append(
                (("max_age",), "max_age applies only to free-running instruments (no request)")
            )
        if problems:
            raise_at(problems)
        return self


def _known_driver(data: object) -> object:
    # Checked before the union picks a model, so that a wrong driver is one clear error at
    # the `driver` key rather than pydantic's "does not match any of the expected tags".
    if not isinstance(data, dict):
        return data
    if "driver" not in data:
        raise_at([(("driver",), f"missing required key; one of {', '.join(SUPPORTED_DRIVERS)}")])
    driver = data["driver"]
    if driver not in SUPPORTED_DRIVERS:
        raise_at(
            [
                (
                    ("driver",),
                    (
                        f"driver {driver!r} is not supported by this version; "
                        f"supported: {', '.join(SUPPORTED_DRIVERS)}"
                    ),
                )
            ]
        )
    return data


DeviceConfig: TypeAlias = Annotated[
    ModbusTcpDevice | ModbusRtuDevice | OpcUaDevice | SerialDevice,
    Field(discriminator="driver"),
    BeforeValidator(_known_driver),
]
"""Any device of the site map, told apart by its `driver` key."""

SerialLineDevice: TypeAlias = ModbusRtuDevice | SerialDevice
"""Devices on a serial port."""
