"""The indicator catalogue: what each quota code means, its units, range and alarm vocabulary.

The catalogue is data (`indicators.yaml` beside this module, documented at its top); this module
parses it and checks it strictly. A broken data file is a `CatalogueError` that names file,
line and key of every problem, so a mistake in the regulatory data cannot slip into a release
as a silently wrong conversion or threshold.

Error tree::

    CatalogueError      the data file breaks its rules; `issues` lists each problem
"""

from __future__ import annotations

from functools import cache
from importlib import resources
from typing import TYPE_CHECKING, Any

from configkit.issues import ConfigError, ConfigIssue, format_path
from specs.catalogue.model import (
    DATA_FILE,
    DERIVED_FAMILY,
    FORMAT_VERSION,
    RATE_LEVEL,
    AlarmLevel,
    Binding,
    Catalogue,
    CatalogueError,
    Confidence,
    Direction,
    Domain,
    Edge,
    Escalation,
    Indicator,
    Kind,
    Op,
    Threshold,
    UnitConversion,
)

if TYPE_CHECKING:
    from configkit.yamllines import ParsedYaml

__all__ = [
    "DATA_FILE",
    "DERIVED_FAMILY",
    "FORMAT_VERSION",
    "RATE_LEVEL",
    "AlarmLevel",
    "Binding",
    "Catalogue",
    "CatalogueError",
    "Confidence",
    "Direction",
    "Domain",
    "Edge",
    "Escalation",
    "Indicator",
    "Kind",
    "Op",
    "Threshold",
    "UnitConversion",
    "default_catalogue",
    "load_catalogue",
    "parse_catalogue",
]


# --- loading ----------------------------------------------------------------------------------


# The loaders import the YAML parser and the pydantic schema when they run, not with the
# package: the running agent holds the indicators of its points (`specs.catalogue.model`)
# and never parses the catalogue (G7).


def _checked(parsed: ParsedYaml) -> Catalogue:
    from configkit.validation import validate_document  # noqa: PLC0415
    from specs.catalogue.checks import Checker  # noqa: PLC0415
    from specs.catalogue.schema import CatalogueModel  # noqa: PLC0415

    try:
        model = validate_document(CatalogueModel, parsed)
    except ConfigError as exc:
        raise CatalogueError(exc.issues) from None
    checker = Checker(model)
    catalogue = checker.run()
    if checker.problems:
        raise CatalogueError(
            ConfigIssue(parsed.file, parsed.line_of(path), format_path(path), message)
            for path, message in checker.problems
        )
    return catalogue


def load_catalogue(text: str, file: str = DATA_FILE) -> Catalogue:
    """Parse and check catalogue YAML text; `CatalogueError` names file:line of each problem."""
    from configkit.yamllines import parse_yaml  # noqa: PLC0415

    try:
        parsed = parse_yaml(text, file)
    except ConfigError as exc:
        raise CatalogueError(exc.issues) from None
    if parsed.issues:  # duplicate keys
        raise CatalogueError(parsed.issues)
    return _checked(parsed)


def parse_catalogue(data: Any) -> Catalogue:  # noqa: ANN401 - untyped YAML tree in
    """Build a checked catalogue from an already parsed YAML tree (no line numbers)."""
    from configkit.yamllines import ParsedYaml  # noqa: PLC0415

    return _checked(ParsedYaml("<catalogue>", data, {}))


@cache
def default_catalogue() -> Catalogue:
    """The catalogue shipped with this package (parsed once per process)."""
    text = resources.files(__package__).joinpath("indicators.yaml").read_text(encoding="utf-8")
    return load_catalogue(text)
