"""docs/config-site.md and docs/config-collector.md, from the models the programs validate with.

The reference is rendered from each model's JSON Schema (types, defaults, bounds, choices, the
model and field docstrings), so they cannot drift from what `edge-agent check` and `collector check`
accept: `tests/unit/test_config_reference.py` fails when a committed page differs from a
fresh rendering. Regenerate with `make docs` (`python -m devtools.config_reference`).
"""

from __future__ import annotations

import argparse
import json
import sys
import warnings
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from pydantic import BaseModel
from pydantic.json_schema import PydanticJsonSchemaWarning

from collector.config import CollectorConfig
from edge_agent.config.site import SiteConfig

Schema = Mapping[str, Any]

_FORMATS = {
    "duration": "duration",
    "size": "size",
    "path": "path",
    "mqtt-url": "broker URL",
    "listen": "host:port",
}
_BOUNDS = (
    ("minimum", "≥"),
    ("exclusiveMinimum", ">"),
    ("maximum", "≤"),
    ("exclusiveMaximum", "<"),
    ("minLength", "length ≥"),
    ("maxLength", "length ≤"),
    ("minItems", "items ≥"),
    ("maxItems", "items ≤"),
)


@dataclass(frozen=True)
class Section:
    """One table of the reference: the keys of one model at one place in the file."""

    paths: tuple[str, ...]
    model: str
    description: str
    rows: tuple[tuple[str, str, str, str], ...]  # key, type, default, description


def _ref_name(schema: Schema) -> str | None:
    ref = schema.get("$ref")
    return ref.rsplit("/", 1)[-1] if isinstance(ref, str) else None


def _alternatives(schema: Schema) -> list[Schema]:
    for key in ("anyOf", "oneOf"):
        if key in schema:
            return [s for s in schema[key] if s.get("type") != "null"]
    return [schema]


def _nullable(schema: Schema) -> bool:
    return any(s.get("type") == "null" for s in schema.get("anyOf", ()))


def _type_text(schema: Schema) -> str:
    """A short type for the table: `duration`, `int (≥ 1, ≤ 1000)`, `"a" | "b"`, `[Point]`."""
    parts = [_one_type(s) for s in _alternatives(schema)]
    text = " or ".join(dict.fromkeys(parts))
    return f"{text} or null" if _nullable(schema) else text


def _one_type(schema: Schema) -> str:
    name = _ref_name(schema)
    if name is not None:
        return f"[{name}](#{name.lower()})"
    if "enum" in schema:
        return " or ".join(f"`{json.dumps(v, ensure_ascii=False)}`" for v in schema["enum"])
    if "const" in schema:
        return f"`{json.dumps(schema['const'], ensure_ascii=False)}`"
    kind = schema.get("type")
    if kind == "array":
        items = schema.get("items", {})
        return f"list of {_type_text(items)}" if items else "list"
    if kind == "object" and "additionalProperties" in schema:
        values = schema["additionalProperties"]
        inner = _type_text(values) if isinstance(values, Mapping) else "any"
        return f"map of name → {inner}"
    base = _FORMATS.get(
        str(schema.get("format")),
        {"number": "number", "integer": "int"}.get(str(kind), str(kind) if kind else "any"),
    )
    bounds = [f"{sign} {schema[key]}" for key, sign in _BOUNDS if key in schema]
    if "pattern" in schema:
        bounds.append(f"matches `{schema['pattern']}`")
    return f"{base} ({', '.join(bounds)})" if bounds else base


def _default_text(schema: Schema, required: bool) -> str:
    if required:
        return "**required**"
    if "default" not in schema:
        return "—"
    return f"`{json.dumps(schema['default'], ensure_ascii=False)}`"


def _first_paragraph(text: str) -> str:
    return " ".join(text.strip().split("\n\n", 1)[0].split())


def _cell(text: str) -> str:
    return text.replace("|", "\\|")


def _children(schema: Schema) -> Iterator[tuple[str, str]]:
    """(suffix, model name) for every model this property leads to."""
    for alternative in _alternatives(schema):
        name = _ref_name(alternative)
        if name is not None:
            yield "", name
        elif alternative.get("type") == "array":
            for suffix, child in _children(alternative.get("items", {})):
                yield "[]" + suffix, child
        elif isinstance(alternative.get("additionalProperties"), Mapping):
            for suffix, child in _children(alternative["additionalProperties"]):
                yield ".<name>" + suffix, child


def sections(root: type[BaseModel]) -> tuple[Section, ...]:
    """Every model reachable from `root`, once each, in the order a reader meets them."""
    with warnings.catch_warnings():
        # A default such as a time zone object is not JSON: it is left out of the schema.
        warnings.simplefilter("ignore", PydanticJsonSchemaWarning)
        schema = root.model_json_schema(mode="validation")
    definitions: Mapping[str, Schema] = schema.get("$defs", {})
    found: dict[str, Section] = {}

    def visit(path: str, name: str, model: Schema) -> None:
        if name in found:
            known = found[name]
            found[name] = Section((*known.paths, path), name, known.description, known.rows)
            return
        required = set(model.get("required", ()))
        rows = tuple(
            (
                f"`{key}`",
                _cell(_type_text(prop)),
                _cell(_default_text(prop, key in required)),
                _cell(_first_paragraph(str(prop.get("description", "")))),
            )
            for key, prop in model.get("properties", {}).items()
        )
        description = _first_paragraph(str(model.get("description", "")))
        found[name] = Section((path,), name, description, rows)
        for key, prop in model.get("properties", {}).items():
            for suffix, child in _children(prop):
                visit(f"{path}.{key}{suffix}".lstrip("."), child, definitions[child])

    visit("", root.__name__, schema)
    return tuple(found.values())


_INTRO = (
    "Generated by `make docs` from the models the programs validate with; do not edit by hand"
    " (`tests/unit/test_config_reference.py` compares). Every key not listed is an error,"
    " reported with file, line and key before anything starts. Types: a *duration* is seconds"
    " or a text such as `200ms`, `15s`, `7d`; a *size* is bytes or a text such as `2GiB`; a"
    " *path* is relative to the config file's folder. Worked examples:"
    " [configs/](../configs/)."
)


@dataclass(frozen=True)
class Page:
    """One generated reference page: which model it documents and where it is written."""

    model: type[BaseModel]
    output: Path
    title: str
    intro: str


DOCS = Path(__file__).resolve().parents[1] / "docs"
PAGES = (
    Page(
        SiteConfig,
        DOCS / "config-site.md",
        "Site map reference (`edge-agent`, /etc/ganzhi/site.yaml)",
        "One file per gateway: who it is, the uplink, signing, the outbox and the devices.",
    ),
    Page(
        CollectorConfig,
        DOCS / "config-collector.md",
        "Collector config reference (`collector`, /etc/ganzhi/collector.yaml)",
        "One file per collector process; several may share one PostgreSQL database.",
    ),
)


def render(page: Page) -> str:
    """One reference page, as markdown."""
    lines = [f"# {page.title}", "", _INTRO, "", page.intro, ""]
    for section in sections(page.model):
        where = ", ".join(f"`{p}`" if p else "the top level of the file" for p in section.paths)
        lines += [f"## {section.model}", "", f"At {where}. {section.description}".rstrip(), ""]
        lines += ["| key | type | default | meaning |", "|---|---|---|---|"]
        lines += [f"| {' | '.join(row)} |" for row in section.rows]
        lines.append("")
    return "\n".join(lines).rstrip() + "\n"


def main() -> int:
    """Write the pages, or with --check exit 1 when one differs from a fresh rendering."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--check", action="store_true", help="exit 1 when a page is stale")
    arguments = parser.parse_args()
    stale = 0
    for page in PAGES:
        text = render(page)
        if not arguments.check:
            page.output.write_text(text, encoding="utf-8")
        elif not page.output.exists() or page.output.read_text(encoding="utf-8") != text:
            print(f"{page.output} is stale: run make docs", file=sys.stderr)
            stale = 1
    return stale


if __name__ == "__main__":
    sys.exit(main())
