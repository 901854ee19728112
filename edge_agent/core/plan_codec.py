"""The run plan's JSON: frozen dataclasses, enums, tuples, bytes and paths, and back (pure).

`edge-agent run` checks the site map (pydantic, YAML), compiles what the runtime needs into
frozen dataclasses and hands them to `edge_agent.runner` in a fresh interpreter that never
imports the config package (G7). The plan crosses that exec as this JSON.

Each value says what it is, so decoding needs no type hints: a dataclass is
`{"$": "module:Class", field: value...}`, an enum `{"$e": "module:Class", "v": value}`, bytes
`{"$b": hex}`, a path `{"$p": text}`, a mapping `{"$m": [[key, value]...]}`, a frozenset
`{"$s": [...]}`; lists decode as tuples (a frozen dataclass holds tuples). Only classes of
this project's own packages are looked up, so a plan names nothing else to import.
"""

from __future__ import annotations

import dataclasses
import enum
import importlib
import json
from pathlib import Path
from typing import Any, TextIO, TypeVar

T = TypeVar("T")

_OWN_PACKAGES = ("drivers.", "edge_agent.", "specs.")


class PlanCodecError(ValueError):
    """The plan's JSON names something that is not one of this project's types."""


def _name(cls: type) -> str:
    return f"{cls.__module__}:{cls.__qualname__}"


def _encode(value: object) -> object:
    # Enums first: a StrEnum is a str too, and must come back as its enum.
    if isinstance(value, enum.Enum):
        return {"$e": _name(type(value)), "v": value.value}
    if value is None or isinstance(value, bool | int | float | str):
        return value
    if isinstance(value, bytes | Path | dict):
        return _encode_tagged(value)
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        # What the constructor takes: a field it derives (init=False) is derived again.
        fields = {
            f.name: _encode(getattr(value, f.name)) for f in dataclasses.fields(value) if f.init
        }
        return {"$": _name(type(value)), **fields}
    if isinstance(value, tuple | list):
        return [_encode(item) for item in value]
    if isinstance(value, frozenset):
        return {"$s": [_encode(item) for item in value]}
    raise TypeError(f"a plan holds no {type(value).__name__}")


def _encode_tagged(value: bytes | Path | dict[object, object]) -> dict[str, object]:
    if isinstance(value, bytes):
        return {"$b": value.hex()}
    if isinstance(value, Path):
        return {"$p": str(value)}
    return {"$m": [[_encode(k), _encode(v)] for k, v in value.items()]}


def _class(name: str) -> type:
    module, _, qualname = name.partition(":")
    if not module.startswith(_OWN_PACKAGES):
        raise PlanCodecError(f"{name} is not a type of this project")
    target: Any = importlib.import_module(module)
    for part in qualname.split("."):
        target = getattr(target, part)
    if not isinstance(target, type):
        raise PlanCodecError(f"{name} is not a class")
    return target


def _tuples(value: object) -> object:
    """A JSON array as the tuple it was; every object in it is decoded already."""
    if isinstance(value, list):
        return tuple(_tuples(item) for item in value)
    return value


def _scalar_key(value: object) -> tuple[type, object] | None:
    """A key equal only for scalars that are the same value; None when `value` is no scalar.

    With the type, as 1 == 1.0 == True; a float by its hex, as 0.0 == -0.0.
    """
    kind = type(value)
    if isinstance(value, float) and kind is float:
        return kind, value.hex()
    if value is None or kind in {str, int, bool} or isinstance(value, enum.Enum):
        return kind, value
    return None


class _Decoder:
    """Decodes each JSON object as the parser finishes it (`json.loads`' `object_hook`).

    The JSON is never held as a tree of dicts and lists beside what it decodes to: at 1,000
    points that tree was some 5 MiB, and the heap it grew stayed resident after it was freed
    (G7). Equal strings and floats of field values (a point's device id, quota, units, scale,
    repeated per point) are kept once, and so are equal frozen dataclasses of scalars: they
    are immutable, so sharing them changes no value.
    """

    def __init__(self) -> None:
        self._classes: dict[str, type] = {}
        self._strings: dict[str, str] = {}
        self._floats: dict[str, float] = {}
        self._shared: dict[tuple[object, ...], object] = {}

    def _value(self, value: object) -> object:
        if isinstance(value, list):
            return _tuples(value)
        if type(value) is str:
            return self._strings.setdefault(value, value)
        if isinstance(value, float) and type(value) is float:
            return self._floats.setdefault(value.hex(), value)
        return value

    def _instance(self, cls: type, fields: dict[str, object]) -> object:
        """`cls(**fields)`, or the equal instance made before (frozen, fields all scalars).

        1,000 points' all-None `Limits` are one object.
        """
        params = cls.__dataclass_params__  # type: ignore[attr-defined]
        if not (params.frozen and params.eq):
            return cls(**fields)
        key: list[object] = [cls]
        for name, value in fields.items():
            scalar = _scalar_key(value)
            if scalar is None:
                return cls(**fields)
            key += (name, scalar)
        whole = tuple(key)
        shared = self._shared.get(whole)
        if shared is None:
            shared = self._shared[whole] = cls(**fields)
        return shared

    def _class(self, name: str) -> type:
        cls = self._classes.get(name)
        if cls is None:
            cls = self._classes[name] = _class(name)
        return cls

    def __call__(self, value: dict[str, Any]) -> object:
        if "$" in value:
            cls = self._class(value["$"])
            if not dataclasses.is_dataclass(cls):
                raise PlanCodecError(f"{value['$']} is not a dataclass")
            return self._instance(cls, {k: self._value(v) for k, v in value.items() if k != "$"})
        if "$e" in value:
            cls = self._class(value["$e"])
            if not issubclass(cls, enum.Enum):
                raise PlanCodecError(f"{value['$e']} is not an enum")
            return cls(value["v"])
        if "$b" in value:
            return bytes.fromhex(value["$b"])
        if "$p" in value:
            return Path(value["$p"])
        if "$s" in value:
            return frozenset(self._value(item) for item in value["$s"])
        if "$m" in value:
            return {self._value(k): self._value(v) for k, v in value["$m"]}
        raise PlanCodecError(f"unknown plan value {sorted(value)}")


def encode_plan(plan: object) -> bytes:
    """The JSON of `plan`, a frozen dataclass.

    Raises:
        TypeError: it holds a value of a type the codec does not carry.
    """
    return json.dumps(_encode(plan), separators=(",", ":")).encode()


def write_plan(plan: object, out: TextIO) -> None:
    """`encode_plan`'s JSON, written to `out` in pieces.

    The whole text is never held, nor its bytes beside it: at 1,000 points each is over a
    megabyte, on top of `edge-agent run`'s start-up peak (G7).

    Raises:
        TypeError: it holds a value of a type the codec does not carry.
    """
    json.dump(_encode(plan), out, separators=(",", ":"))


def decode_plan(data: bytes, expected: type[T]) -> T:
    """The plan `encode_plan` wrote, checked to be an `expected`.

    Raises:
        PlanCodecError: the JSON is not a plan of `expected` of this version.
    """
    plan = _tuples(json.loads(data, object_hook=_Decoder()))
    if not isinstance(plan, expected):
        raise PlanCodecError(f"the plan is a {type(plan).__name__}, not a {expected.__name__}")
    return plan
