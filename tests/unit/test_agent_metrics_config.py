"""`metrics: {listen: ...}` in the site map: off by default; mistakes name file, line and key."""

from __future__ import annotations

import pytest

from configkit.network import ListenAddress
from tests.support.config_files import EXAMPLE_TEXT, SITE, edit


def test_metrics_are_off_unless_the_site_map_asks() -> None:
    assert SITE.parse(EXAMPLE_TEXT).metrics is None


@pytest.mark.parametrize(
    ("listen", "expected"),
    [
        ('"127.0.0.1:9108"', ListenAddress("127.0.0.1", 9108)),
        ('"[::1]:9108"', ListenAddress("::1", 9108)),
        ('"0.0.0.0:9100"', ListenAddress("0.0.0.0", 9100)),  # noqa: S104 - a parsed value
    ],
)
def test_metrics_listen_is_host_and_port(listen: str, expected: ListenAddress) -> None:
    config = SITE.parse(f"{EXAMPLE_TEXT}metrics: {{listen: {listen}}}\n")
    assert config.metrics is not None
    assert config.metrics.listen == expected
    assert str(config.metrics.listen) == listen.strip('"')


@pytest.mark.parametrize(
    ("setting", "key", "offset", "message"),
    [
        ('listen: "127.0.0.1"', "metrics.listen", 1, "host:port"),
        ('listen: "127.0.0.1:99999"', "metrics.listen", 1, "host:port"),
        ('listen: ":9108"', "metrics.listen", 1, "host:port"),
        ("listen: 9108", "metrics.listen", 1, "must be a string"),
        ('listne: "127.0.0.1:9108"', "metrics.listne", 1, "did you mean 'listen'"),
        ('listne: "127.0.0.1:9108"', "metrics.listen", 0, "missing required key"),
    ],
)
def test_a_bad_metrics_setting_names_its_line_and_key(
    setting: str, key: str, offset: int, message: str
) -> None:
    text, line = edit(f"{EXAMPLE_TEXT}metrics: PLACE\n", "metrics: PLACE", f"metrics:\n  {setting}")
    found = {issue.path: issue for issue in SITE.issues_of(text)}
    issue = found[key]
    assert (issue.file, issue.line) == (SITE.file, line + offset)
    assert message in issue.message
    assert str(issue).startswith(f"{SITE.file}:{line + offset}: {key}: ")
