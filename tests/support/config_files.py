"""Config tests share these: parse a text as one program's config file and look at its errors.

`SITE` and `COLLECTOR` parse a text as the named file in a fixed folder (paths resolve against
it), so every test states its expectations as `file:line: key: message`.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Generic, TypeVar

import pytest

from collector.config import CollectorConfig, parse_collector_config
from edge_agent.config import ConfigError, ConfigIssue, SiteConfig, parse_site_config

ConfigT = TypeVar("ConfigT")


@dataclass(frozen=True)
class ConfigFile(Generic[ConfigT]):
    """How one program reads a config text: its parser, the file name and folder it pretends."""

    parser: Callable[[str, str, Path], ConfigT]
    file: str
    base: Path

    def parse(self, text: str) -> ConfigT:
        return self.parser(text, self.file, self.base)

    def issues_of(self, text: str) -> tuple[ConfigIssue, ...]:
        """The issues loading `text` reports (the test fails when it loads)."""
        with pytest.raises(ConfigError) as caught:
            self.parse(text)
        return caught.value.issues

    def only_issue(self, text: str) -> ConfigIssue:
        issues = self.issues_of(text)
        assert len(issues) == 1, "\n".join(map(str, issues))
        return issues[0]


SITE = ConfigFile[SiteConfig](parse_site_config, "site.yaml", Path("/etc/ganzhi"))
COLLECTOR = ConfigFile[CollectorConfig](
    parse_collector_config, "collector.yaml", Path("/srv/collector")
)


def edit(text: str, old: str, new: str) -> tuple[str, int]:
    """Replace the only occurrence of `old`; return the text and the 1-based line it starts on."""
    assert text.count(old) == 1, f"{old!r} occurs {text.count(old)} times"
    return text.replace(old, new), line_of(text, old)


def line_of(text: str, fragment: str) -> int:
    """The 1-based line the only occurrence of `fragment` starts on."""
    assert text.count(fragment) == 1, f"{fragment!r} occurs {text.count(fragment)} times"
    return text.count("\n", 0, text.index(fragment)) + 1
