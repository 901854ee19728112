"""Validate parsed YAML with a pydantic model; every error becomes a `file:line` issue.

- `validate_document` runs a model over the data and turns every validation error into a
  `ConfigIssue` `file:line: key.path: message` at the nearest recorded line, in YAML terms
  (a mapping, a list), with a suggestion for a misspelt key.
- `raise_at` lets a model's cross-field check point at the exact key it complains about.
- `problems_at` places problems found after loading (in files a config names) at their lines.
"""

from __future__ import annotations

import difflib
import math
import re
import types
import typing
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Annotated, Any, NoReturn, TypeVar

from pydantic import BaseModel, ValidationError
from pydantic_core import InitErrorDetails, PydanticCustomError

from configkit.issues import (
    ConfigError,
    ConfigIssue,
    KeyPath,
    format_path,
    show_value,
    unreadable,
)
from configkit.yamllines import ParsedYaml, parse_yaml

ModelT = TypeVar("ModelT", bound=BaseModel)

# Pydantic error types whose message reads better with the offending value after it.
_SHOW_INPUT = frozenset(
    {
        "bool_type",
        "float_parsing",
        "float_type",
        "int_from_float",
        "int_parsing",
        "int_type",
        "literal_error",
        "path_type",
        "string_type",
        "greater_than",
        "greater_than_equal",
        "less_than",
        "less_than_equal",
        "finite_number",
        "string_pattern_mismatch",
        "string_too_short",
    }
)


def validate_document(
    model: type[ModelT],
    parsed: ParsedYaml,
    *,
    context: Mapping[str, object] | None = None,
) -> ModelT:
    """Validate parsed data with `model`, raising `ConfigError` with every issue found."""
    issues = list(parsed.issues)
    if not isinstance(parsed.data, dict):
        found = "is empty" if parsed.data is None else f"holds a {type(parsed.data).__name__}"
        message = f"the file {found}; expected a mapping with keys {', '.join(_keys_of(model))}"
        raise ConfigError([*issues, ConfigIssue(parsed.file, parsed.line_of(()), "", message)])
    try:
        result = model.model_validate(parsed.data, context=dict(context or {}))
    except ValidationError as exc:
        issues.extend(issues_from_validation(exc, parsed, model))
        raise ConfigError(sorted(issues, key=_issue_order)) from None
    if issues:
        raise ConfigError(issues)
    return result


def _issue_order(issue: ConfigIssue) -> tuple[int, int, str]:
    return (issue.line or 0, issue.column or 0, issue.path)


def issues_from_validation(
    error: ValidationError,
    parsed: ParsedYaml,
    model: type[BaseModel] | None = None,
) -> list[ConfigIssue]:
    """Turn each pydantic error into a `ConfigIssue` placed at the nearest recorded line."""
    issues = []
    for detail in error.errors(include_url=False):
        path = _data_path(detail["loc"], parsed.data)
        message = _message(detail["type"], detail["msg"], detail.get("ctx"), detail["input"])
        if detail["type"] == "extra_forbidden" and model is not None:
            message += unknown_key_hint(path, model)
        issues.append(ConfigIssue(parsed.file, parsed.line_of(path), format_path(path), message))
    return issues


def _data_path(loc: tuple[str | int, ...], data: object) -> KeyPath:
    """Follow `loc` through the data, dropping the tags pydantic adds for unions."""
    kept: list[str | int] = []
    node = data
    for index, part in enumerate(loc):
        found, child = _child(node, part)
        if found:
            kept.append(part)
            node = child
        elif index == len(loc) - 1 and part != "[key]":
            kept.append(part)  # a missing key: not in the data, but it is what the user must add
        # Anything else is a union tag such as 'modbus_tcp' or 'function-after[...]': dropped.
    return tuple(kept)


def _child(node: object, part: str | int) -> tuple[bool, object]:
    if isinstance(node, dict) and part in node:
        return True, node[part]
    if isinstance(node, list) and isinstance(part, int) and 0 <= part < len(node):
        return True, node[part]
    return False, None


# Pydantic names Python types ("a valid tuple", "instance of SiteInfo"); say it in YAML terms.
_PLAIN_MESSAGES = {
    "missing": "missing required key",
    "extra_forbidden": "unknown key",
    "model_type": "must be a mapping of keys and values, got {shown}",
    "model_attributes_type": "must be a mapping of keys and values, got {shown}",
    "dict_type": "must be a mapping of keys and values, got {shown}",
    "tuple_type": "must be a list, got {shown}",
    "list_type": "must be a list, got {shown}",
}


def _message(kind: str, message: str, ctx: dict[str, Any] | None, value: object) -> str:
    if kind in _PLAIN_MESSAGES:
        return _PLAIN_MESSAGES[kind].format(shown=show_value(value))
    if kind in {"value_error", "assertion_error"} and ctx and "error" in ctx:
        return str(ctx["error"])
    if kind in _SHOW_INPUT:
        return f"{message}, got {show_value(value)}{_exponent_hint(kind, value)}"
    return message


# YAML 1.1 (PyYAML) takes 1.0e-3 and 1.0e+3 for numbers but 1e-3 and 1.0e3 for text: its float
# needs a dot before the exponent and a sign on it.
_EXPONENT_AS_TEXT = re.compile(r"([-+]?[0-9]+)(\.[0-9]*)?[eE]([-+]?)([0-9]+)")


def _exponent_hint(kind: str, value: object) -> str:
    """Why a number written as 1e-3 or 1.0e3 is refused where one is expected; what to write."""
    if kind not in {"float_type", "float_parsing"} or not isinstance(value, str):
        return ""
    written = _EXPONENT_AS_TEXT.fullmatch(value)
    if written is None or not math.isfinite(number := float(value)):
        return ""
    whole, fraction, sign, digits = written.groups()
    missing = [what for what, there in (("no dot", fraction), ("no sign", sign)) if not there]
    if not missing:  # '1.0e+3' in quotes: YAML's number, made text by the quotes
        return ""
    why = {
        ("no dot",): "with an exponent but no dot",
        ("no sign",): "whose exponent has no sign",
        ("no dot", "no sign"): "with an exponent but no dot and no sign",
    }[tuple(missing)]
    letter = value[len(whole) + len(fraction or "")]
    dotted = f"{whole}{fraction or '.0'}{letter}{sign or '+'}{digits}"
    plain = repr(number)
    # 1e-20 has no shorter plain spelling: only the dotted one is offered.
    instead = dotted + ("" if "e" in plain else f" or {plain}")
    return f" (YAML reads a number {why} as text: write {instead})"


def unknown_key_hint(path: KeyPath, model: type[BaseModel]) -> str:
    """The hint after "unknown key" at `path` of `model`: did you mean 'x'? or the keys allowed."""
    allowed = _keys_of(_model_at(model, path[:-1]))
    if not allowed or not path:
        return ""
    close = difflib.get_close_matches(str(path[-1]), allowed, n=1)
    if close:
        return f"; did you mean {close[0]!r}?"
    return f"; allowed here: {', '.join(allowed)}"


def _keys_of(model: object) -> list[str]:
    if not (isinstance(model, type) and issubclass(model, BaseModel)):
        return []
    return [info.alias or name for name, info in model.model_fields.items()]


def _model_at(model: type[BaseModel], path: KeyPath) -> object:
    """Find the model class that validates the mapping at `path` (None when unsure)."""
    current: object = model
    for part in path:
        current = _unwrap(current)
        if isinstance(current, type) and issubclass(current, BaseModel):
            fields = {info.alias or name: info for name, info in current.model_fields.items()}
            current = fields[part].annotation if part in fields else None
            continue
        origin, args = typing.get_origin(current), typing.get_args(current)
        if origin is tuple and args:
            current = args[0]
        elif origin in {list, dict} and args:
            current = args[-1]
        else:
            return None
    return _unwrap(current)


def _unwrap(annotation: object) -> object:
    """Strip `Annotated` and `X | None` so that the model class inside shows."""
    while True:
        origin = typing.get_origin(annotation)
        if origin is Annotated:
            annotation = typing.get_args(annotation)[0]
        elif origin in {typing.Union, types.UnionType}:
            members = [a for a in typing.get_args(annotation) if a is not type(None)]
            if len(members) != 1:
                return annotation
            annotation = members[0]
        else:
            return annotation


def raise_at(problems: Iterable[tuple[KeyPath, str]]) -> NoReturn:
    """Fail validation with one error per (relative key path, message).

    Pydantic prefixes each path with the location of the model being validated, so a
    cross-field check can point at the exact key (and line) it complains about.
    """
    details = [config_error(path, message) for path, message in problems]
    raise ValidationError.from_exception_data("config", details)


def config_error(path: KeyPath, message: str, value: object = None) -> InitErrorDetails:
    """One problem as pydantic error data: `message` at `path`, as `raise_at` raises it.

    For a validator that raises its own errors together with pydantic's, and so cannot call
    `raise_at`.
    """
    return InitErrorDetails(
        type=PydanticCustomError("config", "{message}", {"message": message}),
        loc=path,
        input=value,
    )


def problems_at(path: Path, problems: Iterable[tuple[KeyPath, str]]) -> ConfigError:
    """Place problems found after loading (in files the config names) at their keys' lines."""
    try:
        parsed = parse_yaml(path.read_text(encoding="utf-8"), str(path))
    except (OSError, UnicodeDecodeError) as exc:
        return unreadable(str(path), exc)
    return ConfigError(
        ConfigIssue(str(path), parsed.line_of(key_path), format_path(key_path), message)
        for key_path, message in problems
    )
