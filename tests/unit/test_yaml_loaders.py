"""configkit.yamllines parses with libyaml when PyYAML has it (a third of the peak memory on a large
site map, G7) and falls back to the pure-Python StrictLoader for the error messages; both
must read every document alike."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml

from configkit import yamllines
from configkit.issues import ConfigError
from configkit.yamllines import StrictLoader, parse_yaml

ROOT = Path(__file__).resolve().parents[2]
MAPS = sorted((ROOT / "configs").glob("*.yaml"))


def test_libyaml_is_used_when_pyyaml_has_it() -> None:
    assert yaml.__with_libyaml__, "this machine's PyYAML should have libyaml"
    assert yamllines._FastStrictLoader is not StrictLoader


@pytest.mark.parametrize("path", MAPS, ids=[p.stem for p in MAPS])
def test_both_parsers_read_the_shipped_maps_alike(path: Path) -> None:
    text = path.read_text(encoding="utf-8")
    fast, fast_data = yamllines._load(yamllines._FastStrictLoader, text)
    pure, pure_data = yamllines._load(StrictLoader, text)
    assert fast_data == pure_data
    assert fast.lines == pure.lines
    assert len(fast.lines) > 10


def test_duplicates_and_aliases_are_found_by_the_fast_parser_too() -> None:
    text = "a: &x {b: 1, b: 2}\nc: *x\n"
    fast, _ = yamllines._load(yamllines._FastStrictLoader, text)
    pure, _ = yamllines._load(StrictLoader, text)
    assert fast.duplicates == pure.duplicates == [(("a", "b"), 1, 1)]
    with pytest.raises(ConfigError, match="mapping values are not allowed here"):
        parse_yaml("a: b: c\n", "site.yaml")  # PyYAML's message, not libyaml's


@pytest.mark.parametrize(
    ("text", "where", "says"),
    [
        ('a:\n  b: "x\\0y"\n', "site.yaml:2: a.b", "holds a NUL character (U+0000)"),
        ('a:\n  - ok\n  - "\\uDC80"\n', "site.yaml:3: a[1]", "holds U+DC80, a lone surrogate"),
        ('a:\n  "k\\0": 1\n', "site.yaml:2: a", "key 'k\\x00' holds a NUL character"),
        ('"\\uD800": 1\n', "site.yaml:1", "key '\\ud800' holds U+D800, a lone surrogate"),
    ],
)
def test_text_no_program_can_use_is_refused_at_its_line(text: str, where: str, says: str) -> None:
    """A NUL or a lone surrogate in a config text: a NUL reached what the collector refuses or
    what cannot name a host; a lone surrogate crashed `check` (UnicodeEncodeError from pydantic)
    instead of naming its line. Any program's config: refused while loading (libyaml refuses
    a surrogate escape itself; the pure-Python parser, which then gives the message, takes it)."""
    loaded, _ = yamllines._load(StrictLoader, text)
    assert len(loaded.bad_text) == 1
    with pytest.raises(ConfigError) as caught:
        parse_yaml(text, "site.yaml")
    [issue] = caught.value.issues
    assert str(issue).startswith(f"{where}: {says}"), str(issue)
    str(issue).encode("utf-8")  # printable: no lone surrogate in the message itself
