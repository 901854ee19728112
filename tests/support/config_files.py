"""Config tests share these: parse a text as one program's config file and look at its errors.

`SITE` and `COLLECTOR` parse a text as the named file in a fixed folder (paths resolve against
it), so every test states its expectations as `file:line: key: message`. `site_head` is the
part of a site map every test writes the same way (site, uplink, signing, outbox).
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


def site_head(
    domain: str = "WHP",
    *,
    enterprise: str = "91360100MA35GW001H",
    district: str = "360100",
    gateway: str = "91360100MA35GW001H-GW01",
    broker_port: int = 1883,
    uplink: str = "",
    outbox: str = "",
) -> str:
    """The first eight lines of a site map, up to where `devices:` begins.

    `uplink` and `outbox` are more `, key: value` pairs for those sections' flow mappings.
    """
    return (
        "site:\n"
        f"  enterprise: {enterprise}\n"
        f'  district: "{district}"\n'
        f"  domain: {domain}\n"
        f"  gateway: {gateway}\n"
        f'uplink: {{broker: "mqtt://127.0.0.1:{broker_port}", collector_key: keys/collector.pub'
        f"{uplink}}}\n"
        "signing: {key_file: keys/gateway.key}\n"
        f"outbox: {{path: state/outbox.db{outbox}}}\n"
    )
