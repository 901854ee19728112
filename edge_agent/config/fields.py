"""Field types shared by the site-map models: identifiers and plain numbers from YAML."""

from __future__ import annotations

import re
from typing import Annotated

from pydantic import AfterValidator, BeforeValidator, Field

from configkit.fields import digits_as_text
from drivers.serial.settings import BAUDRATES
from specs import identifiers

_AsText = BeforeValidator(digits_as_text)

EnterpriseCode = Annotated[str, _AsText, AfterValidator(identifiers.check_enterprise_code)]
"""统一社会信用代码 with a valid GB 32100 check character."""

DistrictCode = Annotated[str, _AsText, AfterValidator(identifiers.check_district_code)]
"""6-digit GB/T 2260 district code."""

MineCode = Annotated[str, _AsText, AfterValidator(identifiers.check_mine_code)]
"""9-digit coal mine code."""

PointCode = Annotated[str, _AsText, AfterValidator(identifiers.check_point_code)]
"""Point code: letters, digits, `-`, `_`, `.`; unique per gateway."""

_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.\-]{0,63}")


def _check_name(value: str) -> str:
    # fullmatch: `$` after `match` also matches before a last line break, and a device id
    # "tank-plc\n" went into the signed meta, logs and check's table.
    if not _NAME.fullmatch(value):
        raise ValueError(
            f"{value!r} must be 1-64 letters, digits, '-', '_' or '.', "
            "starting with a letter or digit"
        )
    return value


Name = Annotated[str, AfterValidator(_check_name)]
"""A device id, template name or point prefix: letters, digits, `-`, `_`, `.`; 1-64 long."""

Number = Annotated[float, Field(strict=True, allow_inf_nan=False)]
"""A finite number; YAML ints are accepted, quoted numbers and booleans are not."""


def _check_host(value: str) -> str:
    if not value or any(char.isspace() for char in value):
        raise ValueError(f"host {value!r} must be a host name or IP address without spaces")
    return value


Host = Annotated[str, AfterValidator(_check_host)]
"""A host name or IP address."""


def _check_device_path(value: str) -> str:
    if not value.startswith("/") or any(char.isspace() for char in value):
        raise ValueError(f"port {value!r} must be a serial device path such as /dev/ttyUSB0")
    return value


DevicePath = Annotated[str, AfterValidator(_check_device_path)]
"""A serial device path (`/dev/ttyUSB0`, `/dev/ttyS1`, a `/dev/serial/by-id/...` link)."""


def _check_baudrate(value: int) -> int:
    if value not in BAUDRATES:
        raise ValueError(
            f"baudrate {value} is not a standard rate; use one of {', '.join(map(str, BAUDRATES))}"
        )
    return value


Baudrate = Annotated[int, Field(strict=True), AfterValidator(_check_baudrate)]
"""A standard serial line rate (1200 .. 230400 baud)."""
