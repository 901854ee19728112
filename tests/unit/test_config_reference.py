"""The config reference pages are generated from the models and cannot drift from them."""

from __future__ import annotations

from pydantic import BaseModel

from devtools.config_reference import PAGES, render, sections
from edge_agent.config.sections import UplinkConfig
from edge_agent.config.site import SiteConfig


def test_committed_pages_equal_a_fresh_rendering() -> None:
    for page in PAGES:
        committed = page.output.read_text(encoding="utf-8")
        assert committed == render(page), f"{page.output.name} is stale: run `make docs`"


def test_every_key_of_every_reachable_model_has_a_row() -> None:
    # A key the YAML accepts but the page leaves out would be a key nobody can find.
    for page in PAGES:
        rendered = {s.model: {row[0].strip("`") for row in s.rows} for s in sections(page.model)}
        pending: list[type[BaseModel]] = [page.model]
        checked: set[type[BaseModel]] = set()
        while pending:
            model = pending.pop()
            checked.add(model)
            assert set(model.model_fields) <= rendered[model.__name__], model.__name__
            for field in model.model_fields.values():
                pending += [t for t in _models_in(field.annotation) if t not in checked]
        assert len(checked) == len(rendered), "every section is a model the file can hold"


def test_a_field_docstring_becomes_its_meaning() -> None:
    uplink = next(s for s in sections(SiteConfig) if s.model == UplinkConfig.__name__)
    rows = {row[0]: row for row in uplink.rows}
    assert rows["`publish_rate`"][3].startswith("Blocks per second")
    assert rows["`max_inflight`"][1] == "int (≥ 1, ≤ 1000)"
    assert rows["`broker`"][2] == "**required**"
    assert rows["`ack_timeout`"][1] == "duration"


def _models_in(annotation: object) -> list[type[BaseModel]]:
    if isinstance(annotation, type) and issubclass(annotation, BaseModel):
        return [annotation]
    found: list[type[BaseModel]] = []
    for argument in getattr(annotation, "__args__", ()):
        found += _models_in(argument)
    return found


def test_every_key_says_what_it_means() -> None:
    # A key is documented where it is declared (an attribute docstring under the field).
    undocumented = [
        f"{section.model}.{row[0]}"
        for page in PAGES
        for section in sections(page.model)
        for row in section.rows
        if not row[3]
    ]
    assert not undocumented, f"give these fields a docstring: {undocumented}"
