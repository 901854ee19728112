"""The collector config: the example loads, mistakes name their line and key."""

from __future__ import annotations

from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from collector.config import (
    load_collector_config,
)
from collector.storage.retention import RetentionPolicy
from configkit.issues import ConfigError
from configkit.network import parse_broker_url, parse_listen
from tests.support.config_files import COLLECTOR, Mistake, edit, mistake_id

EXAMPLE = Path(__file__).resolve().parents[2] / "configs" / "collector.yaml"
TEXT = EXAMPLE.read_text(encoding="utf-8")


def test_example_loads() -> None:
    config = load_collector_config(EXAMPLE)
    folder = EXAMPLE.parent
    assert (config.broker.host, config.broker.port) == ("127.0.0.1", 1883)
    assert config.storage.backend == "sqlite"
    assert config.storage.sqlite_path == folder / "state" / "collector.db"
    assert config.signing.key_file == folder / "keys" / "collector.key"
    assert (config.api.listen.host, config.api.listen.port) == ("127.0.0.1", 8080)
    assert [t.name for t in config.api.tokens] == ["province-platform", "nanchang-city"]
    assert config.api.tokens[0].districts == ("*",)
    assert config.api.tokens[1].districts == ("360100",)
    assert config.ingest.batch_max == 200
    assert config.ingest.share_group == "gz-collectors"
    assert config.offline_after == 60.0


def test_tokens_do_not_show_in_reprs() -> None:
    config = COLLECTOR.parse(TEXT)
    assert "dev-only-change-me" not in repr(config)
    assert config.api.tokens[0].secret.get_secret_value() == "dev-only-change-me"


def test_growth_keys_have_defaults() -> None:
    text, _ = edit(TEXT, "  batch_max: 200 ", "  # ")
    text, _ = edit(text, "share_group: gz-collectors ", "share_group: eu ")
    text, _ = edit(text, "offline_after: 60s", "")
    config = COLLECTOR.parse(text)
    assert (config.ingest.batch_max, config.ingest.share_group) == (200, "eu")
    assert config.offline_after == 60.0
    text, _ = edit(text, "  ahead_allowance: 15m", "")
    assert COLLECTOR.parse(text).ingest.ahead_allowance == 900.0


@pytest.mark.parametrize(
    ("url", "path"),
    [
        ("sqlite:///state/collector.db", COLLECTOR.base / "state" / "collector.db"),
        ("sqlite:////var/lib/ganzhi/collector.db", Path("/var/lib/ganzhi/collector.db")),
    ],
)
def test_sqlite_paths(url: str, path: Path) -> None:
    text, _ = edit(TEXT, '"sqlite:///state/collector.db"', f'"{url}"')
    storage = COLLECTOR.parse(text).storage
    assert storage.sqlite_path == path
    assert storage.url == f"sqlite:///{path}"


def test_postgresql_url_passes_unchanged() -> None:
    url = "postgresql://ganzhi@127.0.0.1/ganzhi"
    text, _ = edit(TEXT, '"sqlite:///state/collector.db"', f'"{url}"')
    storage = COLLECTOR.parse(text).storage
    assert (storage.backend, storage.url, storage.sqlite_path) == ("postgresql", url, None)


# (old, new, key, a part of the message)
MISTAKES = [
    Mistake(*row, match="part")
    for row in [
        ('"sqlite:///state/collector.db"', '"mysql://x/y"', "storage.url", "must start with"),
        ('"sqlite:///state/collector.db"', '"sqlite:///"', "storage.url", "needs a file path"),
        ('"127.0.0.1:8080"', '"127.0.0.1"', "api.listen", "host:port"),
        ('"127.0.0.1:8080"', '"127.0.0.1:99999"', "api.listen", "host:port"),
        ('"mqtt://127.0.0.1:1883"', '"tcp://127.0.0.1:1883"', "broker", "mqtt://host:port"),
        ("offline_after: 60s", "offline_after: 0s", "offline_after", "more than 0s"),
        ("batch_max: 200", "batch_max: 0", "ingest.batch_max", "greater than or equal to 1"),
        ("share_group: gz-collectors", "share_group: a/b", "ingest.share_group", "one word"),
        (
            "ahead_allowance: 15m",
            "ahead_allowance: -1s",
            "ingest.ahead_allowance",
            "a number and a unit",
        ),
        # Readings within it are current: their months get partitions (PostgreSQL), as many
        # in one transaction as it spans.
        ("ahead_allowance: 15m", "ahead_allowance: 1000d", "ingest.ahead_allowance", "at most 31d"),
        # A line end after the name: `$` alone would take it (re.match), and the group or the
        # client id would reach the broker with the line end in it.
        (
            "share_group: gz-collectors",
            'share_group: "gz-collectors\\n"',
            "ingest.share_group",
            "one word",
        ),
        (
            "# client_id: gz-collector-province-1",
            'client_id: "gz-collector-1\\n"',
            "ingest.client_id",
            "1 to 128 letters",
        ),
        ('districts: ["360100"]', 'districts: ["36010"]', "api.tokens[1].districts[0]", "6-digit"),
        ('districts: ["360100"]', "districts: []", "api.tokens[1].districts", "district codes"),
        ('token: "dev-only-change-me",', 'token: "",', "api.tokens[0].token", "at least 1"),
    ]
]


@pytest.mark.parametrize("mistake", MISTAKES, ids=mistake_id)
def test_mistakes_name_line_and_key(mistake: Mistake) -> None:
    COLLECTOR.check_mistake(TEXT, mistake)


def test_renamed_key_reports_the_unknown_and_the_missing_key() -> None:
    text, line = edit(TEXT, "  key_file: keys/collector.key", "  key_fil: keys/collector.key")
    # The missing key is reported where its mapping starts.
    parent = text.splitlines().index("signing:") + 1
    assert [(i.line, i.path) for i in COLLECTOR.issues_of(text)] == [
        (parent, "signing.key_file"),
        (line, "signing.key_fil"),
    ]


def test_duplicate_key_and_duplicate_token() -> None:
    text, line = edit(TEXT, "offline_after: 60s", "offline_after: 60s\noffline_after: 30s")
    text, token_line = edit(text, '"dev-only-change-me-too"', '"dev-only-change-me"')
    assert [(i.line, i.path) for i in COLLECTOR.issues_of(text)] == [
        (token_line, "api.tokens[1].token"),
        (line + 1, "offline_after"),
    ]


def test_district_codes_may_be_unquoted() -> None:
    text, _ = edit(TEXT, 'districts: ["360100"]', "districts: [360100, 360102]")
    assert COLLECTOR.parse(text).api.tokens[1].districts == ("360100", "360102")


def test_unreadable_file(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match=r"collector\.yaml: cannot read"):
        load_collector_config(tmp_path / "collector.yaml")


def test_listen_and_broker_parsers() -> None:
    assert parse_listen("[::1]:8080").host == "::1"
    assert str(parse_listen("[::1]:8080")) == "[::1]:8080"
    assert str(parse_broker_url("mqtts://[::1]")) == "mqtts://[::1]:8883"
    for bad in ("mqtt://", "mqtt://h:0", "mqtt://u:p@h", "mqtt://h/x", "mqtt://h:x"):
        with pytest.raises(ValueError, match="broker"):
            parse_broker_url(bad)


@settings(max_examples=200)
@given(st.text())
def test_fuzzed_text_raises_only_config_errors(text: str) -> None:
    try:
        COLLECTOR.parse(text)
    except ConfigError as exc:
        assert exc.issues  # noqa: PT017 - the point is that nothing else escapes


@settings(max_examples=200)
@given(st.data())
def test_fuzzed_edits_of_the_example_raise_only_config_errors(data: st.DataObject) -> None:
    at = data.draw(st.integers(min_value=0, max_value=len(TEXT)))
    cut = data.draw(st.integers(min_value=0, max_value=20))
    insert = data.draw(st.text(alphabet=" :-[]{}\n'\"&*!#0123456789abc", max_size=8))
    try:
        COLLECTOR.parse(TEXT[:at] + insert + TEXT[at + cut :])
    except ConfigError as exc:
        assert exc.issues  # noqa: PT017 - the point is that nothing else escapes


RETENTION_AT = '  # url: "postgresql://ganzhi@127.0.0.1/ganzhi"'


@pytest.mark.parametrize(
    ("retention", "error_line", "path", "fragment"),
    [
        (["raw_days: 0"], 0, "storage.raw_days", "greater than 0"),
        (["raw_days: 30", "rollup_days: 10"], 1, "storage.rollup_days", "at least raw_days"),
        (["rollup_days: 10"], 0, "storage.rollup_days", "needs raw_days"),
    ],
)
def test_retention_mistakes_name_line_and_key(
    retention: list[str], error_line: int, path: str, fragment: str
) -> None:
    text, line = edit(TEXT, RETENTION_AT, "\n".join(f"  {key}" for key in retention))
    issue = COLLECTOR.only_issue(text)
    assert (issue.file, issue.line, issue.path) == (COLLECTOR.file, line + error_line, path)
    assert fragment in issue.message


def test_retention_keeps_everything_unless_told() -> None:
    # Nothing set: no pass at all, the audit rows too are kept for ever.
    assert COLLECTOR.parse(TEXT).storage.retention == RetentionPolicy(None, None, None)
    text, _ = edit(TEXT, RETENTION_AT, "  raw_days: 400\n  rollup_days: 3650")
    assert COLLECTOR.parse(text).storage.retention == RetentionPolicy(400, 3650)
