"""The field types config models are built of: durations, sizes, paths, codes.

`ConfigModel` is the base of every config model (unknown keys are errors, values never
change); `Duration` and `Size` read `500ms` or `64MiB` as people write them; `ConfigPath`
resolves a relative path against the config file's folder (`BASE_DIR` in the validation
context).
"""

from __future__ import annotations

from collections.abc import Sized
from pathlib import Path
from typing import Annotated, TypeVar

from pydantic import AfterValidator, BaseModel, BeforeValidator, ConfigDict, Field, ValidationInfo

from configkit.durations import format_duration, format_size, parse_duration, parse_size

BASE_DIR = "base_dir"
"""Validation-context key: the folder relative paths in the file are resolved against."""


class ConfigModel(BaseModel):
    """Base of every config model: unknown keys are errors and values never change."""

    # Attribute docstrings become field descriptions: docs/config-reference.md shows them.
    model_config = ConfigDict(extra="forbid", frozen=True, use_attribute_docstrings=True)


def digits_as_text(value: object) -> object:
    """Turn an unquoted all-digit code (an int to YAML) back into text; other values pass."""
    # Credit, district and mine codes never start with 0, so nothing is lost.
    if isinstance(value, int) and not isinstance(value, bool):
        return str(value)
    return value


_DURATION_HINT = "a number of seconds or a string such as 500ms, 1s, 5m, 1h or 7d"


def _seconds(value: object) -> object:
    if isinstance(value, str):
        return parse_duration(value)
    if value is True or value is False:  # an int to Python, a mistake in a config file
        raise ValueError(f"duration must be {_DURATION_HINT}, got {value!r}")
    return value


def _bytes(value: object) -> object:
    if isinstance(value, str | int):
        return parse_size(value)
    return value


Duration = Annotated[
    float,
    BeforeValidator(_seconds),
    Field(allow_inf_nan=False, json_schema_extra={"format": "duration"}),
]
"""Seconds; YAML may say `500ms`, `1s`, `5m`, `1h`, `7d` or a plain number of seconds."""

Size = Annotated[int, BeforeValidator(_bytes), Field(json_schema_extra={"format": "size"})]
"""Bytes; YAML may say `512KiB`, `64MiB`, `2GiB` or a plain number of bytes."""


def duration_bounds(
    *,
    above: float | None = None,
    at_least: float | None = None,
    at_most: float | None = None,
) -> AfterValidator:
    """Return a check that a `Duration` lies within bounds, speaking in durations."""

    def check(seconds: float) -> float:
        shown = format_duration(seconds)
        if above is not None and seconds <= above:
            raise ValueError(f"must be more than {format_duration(above)}, got {shown}")
        if at_least is not None and seconds < at_least:
            raise ValueError(f"must be at least {format_duration(at_least)}, got {shown}")
        if at_most is not None and seconds > at_most:
            raise ValueError(f"must be at most {format_duration(at_most)}, got {shown}")
        return seconds

    return AfterValidator(check)


def size_at_least(low: int) -> AfterValidator:
    """Return a check that a `Size` is at least `low` bytes, speaking in sizes."""

    def check(size: int) -> int:
        if size < low:
            raise ValueError(f"must be at least {format_size(low)}, got {format_size(size)}")
        return size

    return AfterValidator(check)


_Items = TypeVar("_Items", bound=Sized)


def at_least_items(count: int, message: str) -> AfterValidator:
    """Return a check that a list has at least `count` items, else the error `message`.

    Run once every item is valid: a length constraint (`Field(min_length=...)`) would also
    fire when items fail, adding a bogus second error.
    """

    def check(items: _Items) -> _Items:
        if len(items) < count:
            raise ValueError(message)
        return items

    return AfterValidator(check)


def _usable_path_text(value: object) -> object:
    # A NUL (no file can have one) never gets here: the loader refuses it in any text
    # (configkit.yamllines.text_problem).
    if isinstance(value, str) and not value.strip():
        raise ValueError("path must not be empty")
    return value


def resolve_path(value: Path, info: ValidationInfo) -> Path:
    """Resolve a relative path against the validation context's `BASE_DIR`, when given."""
    base = info.context.get(BASE_DIR) if isinstance(info.context, dict) else None
    if isinstance(base, Path) and not value.is_absolute():
        return base / value
    return value


ConfigPath = Annotated[Path, BeforeValidator(_usable_path_text), AfterValidator(resolve_path)]
"""A file path; relative paths are resolved against the config file's folder."""
