"""docs/api/openapi.json and docs/api.md are the collector's own OpenAPI document, not a copy."""

from __future__ import annotations

from devtools.api_reference import (
    OPENAPI,
    SUMMARY,
    openapi_document,
    openapi_text,
    summary_text,
)


def test_committed_files_equal_a_fresh_rendering() -> None:
    document = openapi_document()
    assert OPENAPI.read_text(encoding="utf-8") == openapi_text(document), "run `make docs`"
    assert SUMMARY.read_text(encoding="utf-8") == summary_text(document), "run `make docs`"


def test_every_operation_is_in_the_index_with_what_it_does() -> None:
    document = openapi_document()
    index = SUMMARY.read_text(encoding="utf-8")
    for path, operations in document["paths"].items():
        for method, operation in operations.items():
            assert f"| {method.upper()} | `{path}` |" in index
            assert operation.get("description"), f"{method} {path} has no docstring"
