"""What every config file of the project shares: YAML with lines, typed fields, file:line errors.

Pure: text and a file name in, data or `ConfigError` out; reading the file is the caller's job.

- `parse_yaml` loads text with `StrictLoader`: duplicate keys are errors (PyYAML keeps the last
  one silently) and the 1-based line of every key path is recorded.
- `validate_document` runs a pydantic model over the data and turns every validation error into
  a `ConfigIssue` `file:line: key.path: message`, using the nearest recorded line.
- `ConfigModel`, `Duration`, `Size`, `ConfigPath`, `Broker` and `raise_at` are the building
  blocks of the agent's and the collector's config models.

Error tree::

    ConfigError     carries every ConfigIssue found; str() is one issue per line
"""

from __future__ import annotations

import difflib
import types
import typing
import urllib.parse
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any, NoReturn, Self, TypeAlias, TypeVar, cast

import yaml
from pydantic import (
    AfterValidator,
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    PlainValidator,
    ValidationError,
    ValidationInfo,
    model_validator,
)
from pydantic_core import InitErrorDetails, PydanticCustomError

from specs.durations import format_duration, format_size, parse_duration, parse_size

KeyPath: TypeAlias = tuple[str | int, ...]
ModelT = TypeVar("ModelT", bound=BaseModel)

BASE_DIR = "base_dir"
"""Validation-context key: the folder relative paths in the file are resolved against."""

# Aliases let one node stand for many; a small file must not expand into gigabytes of data.
_MAX_EXPANDED_NODES = 1_000_000
_MERGE_TAG = "tag:yaml.org,2002:merge"
_SHOWN_WIDTH = 40
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


@dataclass(frozen=True, slots=True)
class ConfigIssue:
    """One problem in a config file, printed `file:line: key.path: message`."""

    file: str
    line: int | None
    path: str
    message: str
    column: int | None = None

    def __str__(self) -> str:
        where = self.file if self.line is None else f"{self.file}:{self.line}"
        if self.column is not None:
            where = f"{where}:{self.column}"
        return f"{where}: {self.path}: {self.message}" if self.path else f"{where}: {self.message}"


class ConfigError(Exception):
    """A config file is unusable; `issues` lists every problem found, in file order."""

    def __init__(self, issues: Iterable[ConfigIssue]) -> None:
        self.issues = tuple(issues)
        super().__init__("\n".join(str(issue) for issue in self.issues))


@dataclass(frozen=True, slots=True)
class ParsedYaml:
    """A loaded YAML document: its data, the line of every key path and the issues found."""

    file: str
    data: object
    lines: Mapping[KeyPath, int]
    issues: tuple[ConfigIssue, ...] = ()

    def line_of(self, path: Sequence[str | int]) -> int:
        """Return the line of `path`, or of its nearest ancestor that has one."""
        key = tuple(path)
        while key and key not in self.lines:
            key = key[:-1]
        return self.lines.get(key, 1)


if TYPE_CHECKING:
    _LoaderBase = yaml.SafeLoader
else:
    _LoaderBase = object


class _StrictLoading(_LoaderBase):
    """Duplicate keys refused and the line of every key path recorded, on either parser."""

    def __init__(self, text: str) -> None:
        super().__init__(text)
        self.lines: dict[KeyPath, int] = {}
        self.duplicates: list[tuple[KeyPath, int, int]] = []  # path, line, line of the first
        self._expanded: dict[int, int] = {}

    def get_single_node(self) -> yaml.Node | None:
        """Compose the document, then index its lines and find duplicate keys."""
        node = super().get_single_node()
        if node is not None:
            self.lines[()] = node.start_mark.line + 1
            self._index(node, (), set())
        return node

    def get_single_data(self) -> Any:  # noqa: ANN401 - YAML gives whatever the text says
        """Load the document; used by `yaml.load(text, Loader=StrictLoader)`."""
        node = self.get_single_node()
        if self.duplicates:
            path, line, first = self.duplicates[0]
            raise yaml.constructor.ConstructorError(
                problem=f"duplicate key {format_path(path)} (first at line {first})",
                problem_mark=yaml.Mark("<text>", 0, line - 1, 0, None, 0),
            )
        return None if node is None else self.construct_document(node)

    def construct_object(self, node: yaml.Node, deep: bool = False) -> Any:  # noqa: ANN401
        """Construct one node; a scalar Python cannot represent becomes a marked YAML error."""
        try:
            return super().construct_object(node, deep=deep)
        except ValueError as exc:
            # PyYAML lets int("", 2) for `0b_` or datetime() for `2001-02-30` escape unmarked.
            shown = _shown(node.value) if isinstance(node, yaml.ScalarNode) else "value"
            raise yaml.constructor.ConstructorError(
                problem=f"cannot read {shown} as {node.tag.rsplit(':', 1)[-1]}: {exc}",
                problem_mark=node.start_mark,
            ) from None

    def _index(self, node: yaml.Node, path: KeyPath, open_nodes: set[int]) -> int:
        """Record lines below `node` and return how many nodes it expands to."""
        if id(node) in open_nodes:
            raise yaml.constructor.ConstructorError(
                problem="an alias refers to a node that contains it; recursive data is not allowed",
                problem_mark=node.start_mark,
            )
        if id(node) in self._expanded:
            # Second visit through an alias: the paths below keep the alias's line.
            return self._expanded[id(node)]
        open_nodes.add(id(node))
        size = 1
        if isinstance(node, yaml.MappingNode):
            size += self._index_mapping(node, path, open_nodes)
        elif isinstance(node, yaml.SequenceNode):
            for index, item in enumerate(node.value):
                self.lines[(*path, index)] = item.start_mark.line + 1
                size += self._index(item, (*path, index), open_nodes)
        open_nodes.discard(id(node))
        self._expanded[id(node)] = size
        if size > _MAX_EXPANDED_NODES:
            raise yaml.constructor.ConstructorError(
                problem=f"the document expands to more than {_MAX_EXPANDED_NODES} values",
                problem_mark=node.start_mark,
            )
        return size

    def _index_mapping(self, node: yaml.MappingNode, path: KeyPath, open_nodes: set[int]) -> int:
        size = 0
        first_line: dict[object, int] = {}
        for key_node, value_node in node.value:
            if key_node.tag == _MERGE_TAG or not isinstance(key_node, yaml.ScalarNode):
                # Merged and complex keys have no path of their own (PyYAML checks them when
                # constructing); a side path keeps their lines off the explicit keys.
                side = (*path, key_node.tag)
                size += self._index(key_node, side, open_nodes)
                size += self._index(value_node, side, open_nodes)
                continue
            key = self.construct_object(key_node)
            line = key_node.start_mark.line + 1
            if key in first_line:
                self.duplicates.append(((*path, _path_part(key)), line, first_line[key]))
            else:
                first_line[key] = line
            child = (*path, _path_part(key))
            self.lines[child] = line
            size += self._index(value_node, child, open_nodes)
        return size


class StrictLoader(_StrictLoading, yaml.SafeLoader):
    """SafeLoader that rejects duplicate keys and records the line of every key path."""


# libyaml's parser composes a 1,000-point site map with about a third of the pure-Python
# parser's peak memory (an agent keeps its peak: G7); its error messages differ, so a
# document it refuses is parsed again by StrictLoader for the messages people know.
_CSafeLoader: type[yaml.SafeLoader] | None = getattr(yaml, "CSafeLoader", None)
_FastStrictLoader: type[StrictLoader] = (
    StrictLoader
    if _CSafeLoader is None
    else cast("type[StrictLoader]", type("_FastStrictLoader", (_StrictLoading, _CSafeLoader), {}))
)


def _path_part(key: object) -> str | int:
    if isinstance(key, str) or (isinstance(key, int) and not isinstance(key, bool)):
        return key
    return str(key)


def parse_yaml(text: str, file: str) -> ParsedYaml:
    """Load one YAML document, with the line of every key path and all duplicate keys."""
    try:
        try:
            loader, data = _load(_FastStrictLoader, text)
        except (yaml.YAMLError, RecursionError):
            if _FastStrictLoader is StrictLoader:
                raise
            loader, data = _load(StrictLoader, text)
    except yaml.YAMLError as exc:
        raise ConfigError([_yaml_issue(exc, file, text)]) from None
    except RecursionError:
        raise ConfigError(
            [ConfigIssue(file, None, "", "the document is nested too deeply")]
        ) from None
    duplicates = tuple(
        ConfigIssue(file, line, format_path(path), f"duplicate key (first at line {first})")
        for path, line, first in loader.duplicates
    )
    return ParsedYaml(file, data, dict(loader.lines), duplicates)


def _load(loader_class: type[StrictLoader], text: str) -> tuple[StrictLoader, object]:
    """The loader (with its lines and duplicates) and the data of one document."""
    loader = loader_class(text)
    try:
        node = loader.get_single_node()
        return loader, None if node is None else loader.construct_document(node)
    finally:
        loader.dispose()


def _yaml_issue(error: yaml.YAMLError, file: str, text: str) -> ConfigIssue:
    if isinstance(error, yaml.MarkedYAMLError):
        mark = error.problem_mark or error.context_mark
        message = error.problem or error.context or "invalid YAML"
        if error.context and error.problem:
            context_line = f" at line {error.context_mark.line + 1}" if error.context_mark else ""
            message = f"{error.problem} ({error.context}{context_line})"
        if mark is None:
            return ConfigIssue(file, None, "", message)
        return ConfigIssue(file, mark.line + 1, "", message, column=mark.column + 1)
    if isinstance(error, yaml.reader.ReaderError):
        line = text.count("\n", 0, error.position) + 1
        column = error.position - (text.rfind("\n", 0, error.position) + 1) + 1
        character = error.character
        shown = f"U+{character:04X}" if isinstance(character, int) else repr(character)
        return ConfigIssue(file, line, "", f"character {shown} is not allowed in YAML", column)
    return ConfigIssue(file, None, "", str(error))


def format_path(path: Sequence[str | int]) -> str:
    """Render a key path the way people read it: `devices[0].points[2].address.start`."""
    text = ""
    for part in path:
        if isinstance(part, int):
            text += f"[{part}]"
        elif not part or "." in part or part != part.strip():
            text += f"[{part!r}]"  # keys a dotted path cannot show as they are
        else:
            text = f"{text}.{part}" if text else part
    return text


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


def unreadable(file: str, error: OSError | UnicodeDecodeError) -> ConfigError:
    """Return the `ConfigError` for a config file that cannot be read as UTF-8 text."""
    if isinstance(error, UnicodeDecodeError):
        return ConfigError([ConfigIssue(file, None, "", f"not UTF-8 text: {error.reason}")])
    return ConfigError([ConfigIssue(file, None, "", f"cannot read: {error.strerror or error}")])


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
            message += _suggestion(path, model)
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
        return _PLAIN_MESSAGES[kind].format(shown=_shown(value))
    if kind in {"value_error", "assertion_error"} and ctx and "error" in ctx:
        return str(ctx["error"])
    if kind in _SHOW_INPUT:
        return f"{message}, got {_shown(value)}"
    return message


def _shown(value: object) -> str:
    if isinstance(value, dict):
        return "a mapping"
    if isinstance(value, list):
        return "a list"
    text = repr(value)
    return text if len(text) <= _SHOWN_WIDTH else text[: _SHOWN_WIDTH - 3] + "..."


def _suggestion(path: KeyPath, model: type[BaseModel]) -> str:
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


# --- building blocks of config models -------------------------------------------------------


class ConfigModel(BaseModel):
    """Base of every config model: unknown keys are errors and values never change."""

    # Attribute docstrings become field descriptions: docs/config-reference.md shows them.
    model_config = ConfigDict(extra="forbid", frozen=True, use_attribute_docstrings=True)


def raise_at(problems: Iterable[tuple[KeyPath, str]]) -> NoReturn:
    """Fail validation with one error per (relative key path, message).

    Pydantic prefixes each path with the location of the model being validated, so a
    cross-field check can point at the exact key (and line) it complains about.
    """
    details = [
        InitErrorDetails(
            type=PydanticCustomError("config", "{message}", {"message": message}),
            loc=path,
            input=None,
        )
        for path, message in problems
    ]
    raise ValidationError.from_exception_data("config", details)


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


def _non_empty_path(value: object) -> object:
    if isinstance(value, str) and not value.strip():
        raise ValueError("path must not be empty")
    return value


def resolve_path(value: Path, info: ValidationInfo) -> Path:
    """Resolve a relative path against the validation context's `BASE_DIR`, when given."""
    base = info.context.get(BASE_DIR) if isinstance(info.context, dict) else None
    if isinstance(base, Path) and not value.is_absolute():
        return base / value
    return value


ConfigPath = Annotated[Path, BeforeValidator(_non_empty_path), AfterValidator(resolve_path)]
"""A file path; relative paths are resolved against the config file's folder."""


@dataclass(frozen=True, slots=True)
class BrokerUrl:
    """Where the MQTT broker listens; `mqtts` means TLS."""

    scheme: str
    host: str
    port: int

    @property
    def tls(self) -> bool:
        """Whether the connection uses TLS."""
        return self.scheme == "mqtts"

    def __str__(self) -> str:
        host = f"[{self.host}]" if ":" in self.host else self.host
        return f"{self.scheme}://{host}:{self.port}"


_DEFAULT_PORTS = {"mqtt": 1883, "mqtts": 8883}


def parse_broker_url(text: str) -> BrokerUrl:
    """Parse `mqtt://host[:port]` or `mqtts://host[:port]` (ports default to 1883 and 8883)."""
    shape = "must look like mqtt://host:port or mqtts://host:port"
    try:
        parts = urllib.parse.urlsplit(text.strip())
    except ValueError:  # such as an unclosed IPv6 bracket
        raise ValueError(f"broker {text!r} {shape}") from None
    if parts.scheme not in _DEFAULT_PORTS:
        raise ValueError(f"broker {text!r} {shape}")
    if parts.username or parts.password or parts.path not in {"", "/"}:
        raise ValueError(f"broker {text!r} {shape}, without user, path or query")
    if parts.query or parts.fragment or not parts.hostname:
        raise ValueError(f"broker {text!r} {shape}, without user, path or query")
    try:
        port = parts.port
    except ValueError:
        raise ValueError(f"broker {text!r} has an invalid port") from None
    if port == 0:
        raise ValueError(f"broker {text!r} has an invalid port")
    return BrokerUrl(parts.scheme, parts.hostname, port or _DEFAULT_PORTS[parts.scheme])


def _broker(value: object) -> BrokerUrl:
    if isinstance(value, BrokerUrl):
        return value
    if not isinstance(value, str):
        raise PydanticCustomError(
            "string_type", "broker must be a string such as 'mqtt://127.0.0.1:1883'"
        )
    return parse_broker_url(value)


Broker = Annotated[
    BrokerUrl,
    PlainValidator(_broker, json_schema_input_type=str),
    Field(json_schema_extra={"format": "mqtt-url"}),
]
"""An MQTT broker address, written `mqtt://host:port` or `mqtts://host:port` in YAML."""


class TlsConfig(ConfigModel):
    """Files for a TLS link to the broker; `ca` defaults to the system's trust store.

    The agent's `uplink.tls` and the collector's `broker_tls`: `cert` and `key` are the
    client certificate a broker that requires one (DESIGN section 11) checks.
    """

    ca: ConfigPath | None = None
    """The CA certificate the broker's certificate is checked against; absent: the system's trust
    store.
    """
    cert: ConfigPath | None = None
    """This side's client certificate (with `key`), for a broker that requires one."""
    key: ConfigPath | None = None
    """The private key of `cert` (mode 0600)."""

    @model_validator(mode="after")
    def _cert_with_key(self) -> Self:
        if (self.cert is None) != (self.key is None):
            missing = "key" if self.key is None else "cert"
            raise_at([((missing,), "cert and key go together: give both or neither")])
        return self


@dataclass(frozen=True, slots=True)
class ListenAddress:
    """A TCP address to listen on (the collector's API, the agent's metrics)."""

    host: str
    port: int

    def __str__(self) -> str:
        host = f"[{self.host}]" if ":" in self.host else self.host
        return f"{host}:{self.port}"


def parse_listen(text: str, example: str = "127.0.0.1:8080") -> ListenAddress:
    """Parse `host:port` (IPv6 hosts in brackets: `[::1]:8080`); ValueError otherwise."""
    bad = ValueError(f"listen {text!r} must look like host:port, such as {example}")
    try:
        parts = urllib.parse.urlsplit(f"//{text.strip()}")
        port = parts.port
    except ValueError:  # an unclosed IPv6 bracket or a port out of range
        raise bad from None
    if not parts.hostname or not port or parts.path or parts.query or parts.username:
        raise bad
    return ListenAddress(parts.hostname, port)


def listen_validator(example: str) -> Callable[[object], ListenAddress]:
    """A pydantic PlainValidator function for a `listen` key; `example` goes in its errors."""

    def validate(value: object) -> ListenAddress:
        if isinstance(value, ListenAddress):
            return value
        if not isinstance(value, str):
            raise PydanticCustomError("string_type", f"listen must be a string such as '{example}'")
        return parse_listen(value, example)

    return validate
